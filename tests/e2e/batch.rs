//! Batch submission: `POST /v1/tasks/batch` and `flotilla submit --from`.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use flotilla::client::ClientError;
use serde_json::{json, Value};

use crate::support::{flotilla_cmd, App, TOKEN};

/// Each result's status, in order.
fn statuses(reply: &Value) -> Vec<u64> {
    reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_batch_answers_each_item_on_its_own_and_commits_the_accepted_ones() {
    let app = App::start(2);
    let keyed = json!({
        "schema": "flotilla.run-request/2.1.0", "argv": ["echo", "keyed"], "idempotencyKey": "ci-77",
    });
    let reply = app
        .client
        .submit_batch(&[
            json!({"id": "batch-a", "argv": ["echo", "a"]}),
            json!({"argv": []}),
            keyed.clone(),
            json!({"id": "batch-a", "argv": ["echo", "again"]}),
            keyed.clone(),
            json!({"schema": "flotilla.run-request/2.1.0", "argv": ["true"],
                   "schedule": {"strategy": "fan-out", "shards": 3, "maxInstances": 2}}),
            json!({"schema": "flotilla.run-request/9.0.0", "argv": ["true"]}),
        ])
        .unwrap();
    assert_eq!(
        statuses(&reply),
        [201, 422, 201, 409, 200, 422, 400],
        "{reply}"
    );
    assert_eq!(
        (reply["accepted"].as_u64(), reply["refused"].as_u64()),
        (Some(3), Some(4))
    );
    let r = &reply["results"];
    assert_eq!(r[1]["problem"]["errors"][0]["pointer"], "/argv", "{reply}");
    assert_eq!(
        r[3]["problem"]["detail"],
        "a task with id batch-a already exists"
    );
    assert_eq!(
        r[4]["task"]["id"], r[2]["task"]["id"],
        "the key gives back its first task"
    );
    assert_eq!(
        r[5]["problem"]["errors"][0]["pointer"],
        "/schedule/maxInstances"
    );
    assert_eq!(r[6]["problem"]["errors"][0]["pointer"], "/schema");
    assert_eq!(r[0]["task"]["id"], "batch-a");
    assert!(r[0]["task"]["observerToken"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));

    // Two tasks were stored, and both run; the refused ones left nothing behind.
    let keyed_id = r[2]["task"]["id"].as_str().unwrap().to_owned();
    for id in ["batch-a", keyed_id.as_str()] {
        app.wait_state(id, "succeeded", Duration::from_secs(20));
    }
    let all = app.client.tasks(None).unwrap();
    assert_eq!(all["tasks"].as_array().map(Vec::len), Some(2), "{all}");
    // The key holds across batches and single submissions.
    let again = app
        .client
        .submit_batch(std::slice::from_ref(&keyed))
        .unwrap();
    assert_eq!(statuses(&again), [200]);
    assert_eq!(again["results"][0]["task"]["id"], keyed_id.as_str());
    assert_eq!(app.client.submit(&keyed).unwrap()["id"], keyed_id.as_str());
}

#[test]
fn a_batch_over_its_limits_is_refused_whole_and_stores_nothing() {
    let app = App::start_with_config(1, "max-batch-items = 3\nmax-batch-bytes = 2048\n");
    let refused = |result: Result<Value, ClientError>| match result {
        Err(ClientError::Api {
            status, problem, ..
        }) => (
            status,
            problem["errors"][0]["pointer"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            problem["errors"][0]["rule"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        ),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let four: Vec<Value> = (0..4).map(|_| json!({"argv": ["true"]})).collect();
    assert_eq!(
        refused(app.client.submit_batch(&four)),
        (413, "/tasks".into(), "maxItems".into())
    );
    let big = vec![json!({"argv": ["echo", "x".repeat(3000)]})];
    assert_eq!(
        refused(app.client.submit_batch(&big)),
        (413, "".into(), "maxBytes".into())
    );
    assert_eq!(
        refused(app.client.submit_batch(&[])),
        (422, "/tasks".into(), "minItems".into())
    );
    let shapes = [
        (&b"[]"[..], (422, "", "type")),
        (
            br#"{"tasks": [], "atomic": true}"#,
            (422, "/atomic", "additionalProperties"),
        ),
        (
            br#"{"tasks": [{"argv": ["true"]}, 7]}"#,
            (422, "/tasks/1", "type"),
        ),
        (b"{\"tasks\": [", (400, "", "json")),
    ];
    for (body, (status, pointer, rule)) in shapes {
        let raw = app.client.admin_raw("POST", "/v1/tasks/batch", body);
        assert_eq!(
            refused(raw),
            (status, pointer.into(), rule.into()),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let all = app.client.tasks(None).unwrap();
    assert_eq!(all["tasks"].as_array().map(Vec::len), Some(0), "{all}");
}

#[test]
fn the_cli_submits_a_thousand_lines_in_batches_and_follows_every_task() {
    let app = App::start_with_config(2, "local-slots = 2\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tasks.jsonl");
    let lines: Vec<String> = (0..1000)
        .map(|i| json!({"argv": ["sh", "-c", format!("exit {}", u8::from(i == 500))]}).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = flotilla_cmd()
        .args(["submit", "--watch", "--from"])
        .arg(&file)
        .env("FLOTILLA_SERVER", &app.base)
        .env("FLOTILLA_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ids: Vec<&str> = stdout.lines().collect();
    assert_eq!(ids.len(), 1000, "{stderr}");
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        1000,
        "one id per line, distinct"
    );
    assert!(
        stderr.contains("flotilla: 999 succeeded, 1 did not, 0 refused"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("task {} failed", ids[500])),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "one task failed");
    assert_eq!(app.task(ids[999])["state"], "succeeded");

    // A line that is not JSON stops everything before anything is submitted.
    std::fs::write(&file, "{\"argv\": [\"true\"]}\nnot json\n").unwrap();
    let out = flotilla_cmd()
        .args(["submit", "--from"])
        .arg(&file)
        .env("FLOTILLA_SERVER", &app.base)
        .env("FLOTILLA_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2: not a JSON document; nothing was submitted"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(2), "an error, not a task's failure");
    let all = app.client.tasks(None).unwrap();
    assert_eq!(all["tasks"].as_array().map(Vec::len), Some(1000));
}
