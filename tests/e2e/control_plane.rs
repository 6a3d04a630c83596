//! The control plane as a client sees it: the schema registry, RunRequest v2 beside v1,
//! idempotency keys, shadow validation with its drift report, and enforcement rolling
//! back to shadow when too many requests are refused.

use std::time::Duration;

use flotilla::client::ClientError;
use serde_json::{json, Value};

use crate::support::{files_under, wait_for, App};

fn get(app: &App, path: &str) -> Result<Value, ClientError> {
    app.client.admin("GET", path, None)
}

fn manifest_of(app: &App, id: &str) -> Value {
    wait_for("the task's manifest", Duration::from_secs(10), || {
        let path = files_under(&app.artifacts().join(".runs").join(id))
            .into_iter()
            .find(|p| p.ends_with("manifest.json"))?;
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    })
}

#[test]
fn schemas_are_served_by_id_and_version_and_v2_requests_run_beside_v1() {
    // A restricted task below runs with the guard in shadow: the operator's opt-out.
    let app = App::start_with_config(1, "[guard]\nrun-restricted-unenforced = true\n");
    let list = get(&app, "/v1/schemas").unwrap();
    let rr = list["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "flotilla.run-request")
        .unwrap()
        .clone();
    assert_eq!(rr["versions"], json!(["1.2.0", "2.2.0"]));
    let v1 = get(&app, "/v1/schemas/flotilla.run-request?version=1.2.0").unwrap();
    assert_eq!(v1["$id"], "flotilla.run-request/1.2.0");
    let latest = get(&app, "/v1/schemas/flotilla.run-request").unwrap();
    assert_eq!(latest["$id"], "flotilla.run-request/2.2.0");
    let Err(ClientError::Api { status, detail, .. }) =
        get(&app, "/v1/schemas/flotilla.run-request?version=9.0.0")
    else {
        panic!("an unknown version is refused")
    };
    assert_eq!(status, 404);
    assert!(detail.contains("supported: 1.2.0, 2.2.0"), "{detail}");

    // A body naming a version that does not exist: 400 with what is supported.
    let Err(ClientError::Api {
        status, problem, ..
    }) = app
        .client
        .submit(&json!({"schema": "flotilla.run-request/3.0.0", "argv": ["true"]}))
    else {
        panic!("refused")
    };
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["pointer"], "/schema");

    // v2 with an idempotency key: the second submission returns the first task.
    let body = json!({
        "schema": "flotilla.run-request/2.0.0",
        "idempotencyKey": "deploy-2026-11-25",
        "requestedBy": "ci",
        "argv": ["echo", "v2"],
        "schedule": {"recovery": {"maxRetries": 1}},
        "constraints": {"privacy": "restricted"},
    });
    let first = app.submit(body.clone());
    let again = app.client.submit(&body).unwrap();
    assert_eq!(again["id"], first["id"], "same key, same task");
    let id = first["id"].as_str().unwrap();
    app.wait_state(id, "succeeded", Duration::from_secs(20));
    let tasks = app.client.tasks(None).unwrap();
    assert_eq!(
        tasks["tasks"].as_array().unwrap().len(),
        1,
        "one task, not two"
    );
    let m = manifest_of(&app, id);
    let v = &m["controlPlane"]["validation"];
    // A body naming 2.0.0 is checked against the v2 file, which carries 2.2.0.
    assert_eq!(
        (
            v["version"].as_str(),
            v["mode"].as_str(),
            v["outcome"].as_str()
        ),
        (Some("2.2.0"), Some("enforce"), Some("accepted"))
    );
    assert_eq!(m["request"]["schedule"]["recovery"]["maxRetries"], 1);
    assert_eq!(m["privacy"]["level"], "restricted");

    // v1 still works and is upgraded to v2.
    let old = app.submit(json!({"argv": ["true"], "maxAttempts": 2}));
    let t = app.task(old["id"].as_str().unwrap());
    assert_eq!(t["request"]["schema"], "flotilla.run-request/2.2.0");
    assert_eq!(t["request"]["schedule"]["recovery"]["maxRetries"], 1);
}

#[test]
fn shadow_records_drift_and_enforcement_rolls_back_when_too_much_is_refused() {
    let app = App::start_with_config(
        1,
        "[control-plane]\nrollback-min-requests = 10\nrollback-window-requests = 50\n",
    );
    // Enforced: 10 good requests and one bad; 1 of 11 is over 1%: rolled back.
    for _ in 0..10 {
        app.submit(json!({"argv": ["true"]}));
    }
    let refused = app
        .client
        .submit(&json!({"argv": ["true"], "timeoutSeconds": 0}));
    assert!(matches!(refused, Err(ClientError::Api { status: 422, .. })));
    let cp = get(&app, "/admin/control-plane").unwrap();
    let mode = cp["modes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["schema"] == "flotilla.run-request")
        .unwrap()
        .clone();
    assert_eq!(mode["mode"], "shadow", "{cp}");
    let rollback = mode["rolledBackBy"].as_str().unwrap().to_owned();
    assert_eq!(
        cp["switches"].as_array().unwrap().last().unwrap()["by"],
        "rollback"
    );

    // Now in shadow: the same bad request is let through, its violation recorded as drift
    // with a redacted sample, and its manifest says so.
    let leaky = "password=Tr0ub4dor&3xq!Vz";
    let t = app.submit(
        json!({"argv": ["true"], "timeoutSeconds": 0, "labels": {"note": leaky}, "cwd": ""}),
    );
    let id = t["id"].as_str().unwrap();
    let m = manifest_of(&app, id);
    let v = &m["controlPlane"]["validation"];
    assert_eq!(
        (v["mode"].as_str(), v["outcome"].as_str()),
        (Some("shadow"), Some("accepted-with-violations"))
    );
    assert_eq!(v["rollback"], rollback.as_str());
    let drift_file = app
        .artifacts()
        .join("out/flotilla/control-plane/drift.json");
    let drift: Value = wait_for(
        "drift.json with the violation",
        Duration::from_secs(10),
        || {
            let d: Value = serde_json::from_slice(&std::fs::read(&drift_file).ok()?).ok()?;
            let seen = d["violations"]
                .as_array()?
                .iter()
                .any(|v| v["pointer"] == "/timeoutSeconds" && v["count"].as_u64() >= Some(1));
            seen.then_some(d)
        },
    );
    assert_eq!(drift["schema"], "flotilla.drift-report/1.0.0");
    assert_eq!(drift["rollbacks"][0]["id"], rollback.as_str());
    assert_eq!(
        get(&app, "/admin/control-plane/drift").unwrap()["rollbacks"][0]["id"],
        rollback.as_str()
    );
    let prom = app.prometheus();
    assert!(
        prom.contains("flotilla_validation_rollbacks_total 1"),
        "{prom}"
    );
    assert!(app
        .log()
        .contains("validation rolled back from enforce to shadow"));

    // An operator switches enforcement on again; it is recorded.
    app.client
        .admin("PUT", "/admin/control-plane/modes", Some(&json!({"schema": "flotilla.run-request", "mode": "enforce", "by": "alice", "reason": "client fixed"})))
        .unwrap();
    assert!(matches!(
        app.client
            .submit(&json!({"argv": ["true"], "timeoutSeconds": 0})),
        Err(ClientError::Api { status: 422, .. })
    ));
    let modes: Value = serde_json::from_slice(
        &std::fs::read(
            app.artifacts()
                .join(".runs/flotilla/control-plane/modes.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        modes["switches"].as_array().unwrap().last().unwrap()["by"],
        "alice"
    );
}
