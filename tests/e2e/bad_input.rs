//! Bad input gets a clear 4xx naming the field and the rule, and nothing is stored.

use flotilla::client::{Client, ClientError};
use serde_json::{json, Value};

use crate::support::App;

/// Asserts `result` is an API error with `status` and an error at `pointer` for `rule`.
fn check_refused(result: Result<Value, ClientError>, status: u16, pointer: &str, rule: &str) {
    match result {
        Err(ClientError::Api {
            status: got,
            problem,
            ..
        }) => {
            assert_eq!(got, status, "{problem}");
            let errors = problem["errors"].as_array().cloned().unwrap_or_default();
            assert!(
                errors.iter().any(|e| e["pointer"] == pointer
                    && e["rule"] == rule
                    && !e["message"].as_str().unwrap_or("").is_empty()),
                "want {pointer} {rule} in {problem}"
            );
        }
        other => panic!("expected a {status} refusal, got {other:?}"),
    }
}

#[test]
fn every_kind_of_bad_request_is_refused_precisely_and_nothing_is_stored() {
    let app = App::start(1);
    let c = &app.client;
    check_refused(c.submit_raw(b"{\"argv\": [\"ls\""), 400, "", "json");
    check_refused(c.submit_raw(b""), 400, "", "json");
    check_refused(c.submit(&json!({})), 422, "", "required");
    check_refused(c.submit(&json!({"argv": "ls"})), 422, "/argv", "type");
    // The program is checked like every argument: a NUL in it would only fail at spawn.
    check_refused(
        c.submit(&json!({"argv": ["ec\u{0}ho"]})),
        422,
        "/argv/0",
        "pattern",
    );
    check_refused(
        c.submit(&json!({"argv": ["ls", 1]})),
        422,
        "/argv/1",
        "type",
    );
    check_refused(
        c.submit(&json!({"argv": ["ls"], "colour": "red"})),
        422,
        "/colour",
        "additionalProperties",
    );
    check_refused(
        c.submit(&json!({"argv": ["ls"], "timeoutSeconds": -1})),
        422,
        "/timeoutSeconds",
        "minimum",
    );
    check_refused(
        c.submit(&json!({"argv": ["ls"], "id": "../../etc"})),
        422,
        "/id",
        "pattern",
    );
    check_refused(
        c.submit(&json!({"argv": ["ls"], "id": ".hidden"})),
        422,
        "/id",
        "pattern",
    );
    let huge = json!({"argv": ["echo", "x".repeat(300 * 1024)]});
    check_refused(c.submit(&huge), 413, "", "maxBytes");
    // What the scheduler cannot honour is refused, never accepted and ignored.
    let v2 = |schedule: Value| json!({"schema": "flotilla.run-request/2.0.0", "argv": ["ls"], "schedule": schedule});
    check_refused(
        c.submit(&v2(
            json!({"strategy": "fan-out", "shards": 4, "maxInstances": 2}),
        )),
        422,
        "/schedule/maxInstances",
        "unsupported",
    );
    check_refused(
        c.submit(&v2(
            json!({"recovery": {"missingHeartbeatTimeoutMs": 60000}}),
        )),
        422,
        "/schedule/recovery/missingHeartbeatTimeoutMs",
        "unsupported",
    );
    check_refused(c.task("a..b"), 400, "/path/id", "pattern");
    check_refused(c.tasks(Some("done")), 400, "/query/state", "enum");
    // None of it was stored.
    let all = c.tasks(None).unwrap();
    assert_eq!(all["tasks"].as_array().map(Vec::len), Some(0), "{all}");

    // A duplicate id is a conflict, and the first task is untouched.
    app.submit(json!({"id": "only-once", "argv": ["true"]}));
    match c.submit(&json!({"id": "only-once", "argv": ["false"]})) {
        Err(ClientError::Api { status: 409, .. }) => {}
        other => panic!("expected 409, got {other:?}"),
    }
    assert_eq!(app.task("only-once")["request"]["argv"], json!(["true"]));
}

#[test]
fn a_capability_nobody_offers_keeps_the_task_queued_with_a_visible_reason() {
    let app = App::start(1);
    let reply = app.submit(json!({"argv": ["true"], "capabilities": ["gpu"]}));
    let id = reply["id"].as_str().unwrap();
    assert!(reply["reason"].as_str().unwrap().contains("gpu"), "{reply}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let task = app.task(id);
    assert_eq!(task["state"], "queued");
    assert!(
        task["reason"]
            .as_str()
            .unwrap()
            .contains("no connected instance offers all of [gpu]"),
        "{task}"
    );
    // A task the instance can run is not held up behind it.
    let other = app.submit(json!({"argv": ["true"]}));
    app.wait_state(
        other["id"].as_str().unwrap(),
        "succeeded",
        std::time::Duration::from_secs(20),
    );
}

#[test]
fn tokens_are_required_and_scoped() {
    let app = App::start(0);
    let anon = Client::new(&app.base, "not-a-token");
    match anon.tasks(None) {
        Err(ClientError::Api { status: 401, .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    let health = ureq::get(&format!("{}/healthz", app.base)).call().unwrap();
    assert_eq!(health.status(), 200);

    let a = app.submit(json!({"argv": ["true"]}));
    let b = app.submit(json!({"argv": ["true"]}));
    let a_token = a["observerToken"].as_str().unwrap();
    // An observer token follows its own handle, not another, and is no admin token.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let own =
            flotilla::client::open_stream(&app.base, a_token, a["handle"].as_str().unwrap(), 0)
                .await;
        assert!(own.is_ok(), "own handle: {:?}", own.err());
        match flotilla::client::open_stream(&app.base, a_token, b["handle"].as_str().unwrap(), 0)
            .await
        {
            Err(ClientError::Api { status: 403, .. }) => {}
            other => panic!("expected 403, got {:?}", other.err()),
        }
    });
    match Client::new(&app.base, a_token).tasks(None) {
        Err(ClientError::Api { status: 403, .. }) => {}
        other => panic!("expected 403, got {other:?}"),
    }
}
