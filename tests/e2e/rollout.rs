//! Gated rollouts on a real server: advancing is refused naming every gate that fails,
//! passes once the sign-off and the reports are there, is recorded in the rollout
//! manifest, rolls back on its own when completion falls after an advance, and the
//! review lands in `out/<scope>/state.json`.

use std::time::Duration;

use flotilla::client::ClientError;
use serde_json::{json, Value};

use crate::support::{flotilla_cmd, schema_errors, wait_for, App, TOKEN};

const CONFIG: &str = "[guard]\napprovers = [\"erin\"]\n\
                      [rollout]\ncooldown = \"shadow\"\nmin-tasks = 3\ncheck-every-ms = 200\n";

fn admin(app: &App, method: &str, path: &str, body: Value) -> Result<Value, ClientError> {
    app.client.admin(method, path, Some(&body))
}

fn component(app: &App, name: &str) -> Value {
    let view = app.admin_get("/admin/rollout");
    assert_eq!(
        schema_errors(include_str!("../../schemas/rollout-view.v1.json"), &view),
        Vec::<String>::new(),
        "{view}"
    );
    view["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == name)
        .cloned()
        .unwrap()
}

fn decision(reason: &str) -> Value {
    json!({"by": "erin", "reason": reason})
}

fn run_tasks(app: &App, argv: Value, n: usize) {
    for _ in 0..n {
        let t = app.submit(json!({ "argv": argv }));
        let id = t["id"].as_str().unwrap().to_owned();
        wait_for("the task ends", Duration::from_secs(20), || {
            let s = app.task(&id)["state"].clone();
            (s == "succeeded" || s == "failed").then_some(())
        });
    }
}

/// Requests an approval of `kind` (with `extra` fields) as dana; erin approves it.
fn approve(app: &App, kind: &str, extra: Value) -> String {
    let mut ask = json!({"kind": kind, "reason": "rollout", "requestedBy": "dana"});
    if let (Some(ask), Some(extra)) = (ask.as_object_mut(), extra.as_object()) {
        ask.extend(extra.clone());
    }
    let a = admin(app, "POST", "/admin/guard/approvals", ask).unwrap();
    let id = a["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/guard/approvals/{id}/approve");
    admin(app, "POST", &path, json!({"by": "erin"})).unwrap();
    id
}

/// Failed gates of a refused advance, by name.
fn refused(result: Result<Value, ClientError>) -> Vec<String> {
    match result {
        Err(ClientError::Api {
            status: 409,
            problem,
            ..
        }) => problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["pointer"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("/gates/")
                    .to_owned()
            })
            .collect(),
        other => panic!("the advance was not refused: {other:?}"),
    }
}

#[test]
fn advances_are_gated_recorded_and_rolled_back_when_a_gate_fails_after() {
    let app = App::start_with_config(2, CONFIG);
    let cooldown = component(&app, "cooldown");
    assert_eq!(cooldown["phase"], "shadow");
    assert_eq!(cooldown["next"], "limited");

    // Nothing recorded yet: no sign-off, no run metrics to check.
    let failed = refused(admin(
        &app,
        "POST",
        "/admin/rollout/cooldown/advance",
        decision("try"),
    ));
    assert_eq!(failed, ["sponsor-signoff", "completeness"]);

    // The sponsor signs off (requested by one person, approved by another) and runs
    // leave their metrics: the same advance passes.
    approve(
        &app,
        "sponsor-signoff",
        json!({"signoff": {"objectives": ["a fleet that heals itself"], "successMetrics": ["completion ≥ 95 %", "MTTR 40 % below the baseline"]}}),
    );
    run_tasks(&app, json!(["true"]), 3);
    wait_for(
        "run metrics with every dimension",
        Duration::from_secs(10),
        || {
            let report = admin(&app, "POST", "/admin/reports/completeness", json!(null)).ok()?;
            (report["verdict"]["pass"] == true).then_some(())
        },
    );
    let change = admin(
        &app,
        "POST",
        "/admin/rollout/cooldown/advance",
        decision("signed off"),
    )
    .unwrap();
    assert_eq!(
        schema_errors(
            include_str!("../../schemas/rollout-change.v1.json"),
            &change
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        (change["from"].as_str(), change["to"].as_str()),
        (Some("shadow"), Some("limited"))
    );
    assert!(
        change["gates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["pass"] == true),
        "{change}"
    );
    let cooldown = component(&app, "cooldown");
    assert_eq!(cooldown["phase"], "limited");
    let run_id = cooldown["runId"].as_str().unwrap().to_owned();

    // To full, the post-rollout report and the MTTR delta must pass: with no baseline
    // the step is refused, naming it.
    let failed = refused(admin(
        &app,
        "POST",
        "/admin/rollout/cooldown/advance",
        decision("more"),
    ));
    assert!(failed.contains(&"mttr-delta".to_owned()), "{failed:?}");
    assert!(failed.contains(&"post-rollout".to_owned()), "{failed:?}");

    // Completion falls after the advance: the check rolls the cooldown back on its own.
    run_tasks(&app, json!(["false"]), 3);
    let back = wait_for("the automatic rollback", Duration::from_secs(10), || {
        Some(component(&app, "cooldown")).filter(|c| c["phase"] == "shadow")
    });
    let last = back["changes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["automatic"], true, "{last}");
    assert_eq!(last["by"], "flotilla");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("completion rate 0.0 %"),
        "{last}"
    );
    let prom = app.prometheus();
    assert!(
        prom.contains("flotilla_rollout_changes_total{component=\"cooldown\",to=\"shadow\",automatic=\"true\"} 1"),
        "{prom}"
    );

    // Every change is in the rollout run's manifest, with its gates and approver.
    let manifest_path = app
        .artifacts()
        .join(".runs/flotilla/cli")
        .join(&run_id)
        .join("manifest.json");
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    assert_eq!(
        schema_errors(
            include_str!("../../schemas/rollout-manifest.v1.json"),
            &manifest
        ),
        Vec::<String>::new()
    );
    let changes = manifest["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["by"], "erin");
    assert_eq!(changes[1]["automatic"], true);

    // Going back needs no gate; at the end there is nothing to do, and that is said.
    let validation = admin(
        &app,
        "POST",
        "/admin/rollout/validation/rollback",
        decision("drift seen"),
    )
    .unwrap();
    assert_eq!(
        (validation["from"].as_str(), validation["to"].as_str()),
        (Some("full"), Some("limited"))
    );
    let modes = app.admin_get("/admin/control-plane");
    assert!(modes.to_string().contains("\"mode\":\"shadow\""), "{modes}");
    let at_end = admin(
        &app,
        "POST",
        "/admin/rollout/cooldown/rollback",
        decision("again"),
    );
    assert!(
        matches!(at_end, Err(ClientError::Api { status: 409, .. })),
        "{at_end:?}"
    );
    let unknown = admin(&app, "POST", "/admin/rollout/dns/advance", decision("x"));
    assert!(
        matches!(unknown, Err(ClientError::Api { status: 404, .. })),
        "{unknown:?}"
    );

    // The review goes to out/<scope>/state.json, and the CLI reports say why they fail.
    let review = admin(
        &app,
        "POST",
        "/admin/rollout/review",
        json!({"by": "dana", "summary": "cooldown rolled back; keep it in shadow"}),
    )
    .unwrap();
    assert_eq!(review["pass"], false, "{review}");
    let state_path = app.artifacts().join("out/flotilla/state.json");
    let state = wait_for("the review in state.json", Duration::from_secs(10), || {
        let s: Value = serde_json::from_slice(&std::fs::read(&state_path).ok()?).ok()?;
        (s["rolloutReview"]["by"] == "dana").then_some(s)
    });
    assert_eq!(
        schema_errors(include_str!("../../schemas/handles-state.v1.json"), &state),
        Vec::<String>::new()
    );
    let out = flotilla_cmd()
        .args([
            "report",
            "mttr-delta",
            "--server",
            &app.base,
            "--token",
            TOKEN,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a failing report exits 1");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["verdict"]["reasons"]
            .to_string()
            .contains("no baseline report"),
        "{doc}"
    );
    assert!(app
        .artifacts()
        .join("out/flotilla/metrics/mttr-delta.json")
        .is_file());
}

#[test]
fn guard_enforcement_needs_the_privacy_approval_and_goes_back_to_shadow_when_it_is_revoked() {
    let app = App::start_with_config(1, CONFIG);
    approve(
        &app,
        "sponsor-signoff",
        json!({"signoff": {"objectives": ["no secret at rest"], "successMetrics": ["0 privacy incidents"]}}),
    );
    run_tasks(&app, json!(["true"]), 1);
    wait_for("complete run metrics", Duration::from_secs(10), || {
        let report = admin(&app, "POST", "/admin/reports/completeness", json!(null)).ok()?;
        (report["verdict"]["pass"] == true).then_some(())
    });
    // The sign-off alone is not enough for the guard.
    let failed = refused(admin(
        &app,
        "POST",
        "/admin/rollout/guard/advance",
        decision("enforce"),
    ));
    assert_eq!(failed, ["privacy-approval"]);
    let policy = approve(&app, "guard-policy", json!({}));
    let change = admin(
        &app,
        "POST",
        "/admin/rollout/guard/advance",
        decision("approved"),
    )
    .unwrap();
    assert_eq!(change["to"], "limited");
    let guard = app.admin_get("/admin/guard");
    assert_eq!(
        (guard["mode"].as_str(), guard["phase"].as_str()),
        (Some("enforce"), Some("limited"))
    );

    // The privacy owner withdraws the approval: the guard goes back to shadow on its own.
    admin(
        &app,
        "POST",
        &format!("/admin/guard/approvals/{policy}/revoke"),
        json!({"by": "erin"}),
    )
    .unwrap();
    let back = wait_for("the guard back in shadow", Duration::from_secs(10), || {
        Some(component(&app, "guard")).filter(|c| c["phase"] == "shadow")
    });
    let last = back["changes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["automatic"], true, "{last}");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("privacy-approval"),
        "{last}"
    );
    assert_eq!(app.admin_get("/admin/guard")["mode"], "shadow");
}

#[test]
fn reports_are_computed_from_what_a_real_run_recorded() {
    let app = App::start_with_config(2, CONFIG);
    let from = flotilla_actors::domain::rfc3339_ms(flotilla_actors::domain::now_ms() - 1);
    run_tasks(&app, json!(["true"]), 3);
    run_tasks(&app, json!(["false"]), 1);
    // An agent killed under a running task: one incident, repaired on the other agent.
    let long = app.submit(json!({"argv": ["sleep", "1"], "maxAttempts": 3}));
    let id = long["id"].as_str().unwrap().to_owned();
    let running = app.wait_state(&id, "running", Duration::from_secs(20));
    let victim = running["instance"].as_str().unwrap().to_owned();
    crate::support::signal(app.instance_pid(&victim).unwrap(), libc::SIGKILL);
    app.wait_state(&id, "succeeded", Duration::from_secs(30));
    let to = flotilla_actors::domain::rfc3339_ms(flotilla_actors::domain::now_ms() + 1);

    let path = format!("/admin/reports/baseline?from={from}&to={to}");
    let baseline = admin(&app, "POST", &path, json!(null)).unwrap();
    assert_eq!(
        schema_errors(include_str!("../../schemas/report.v1.json"), &baseline),
        Vec::<String>::new()
    );
    let m = &baseline["measures"];
    assert_eq!(m["tasks"]["finished"], 5, "{baseline}");
    assert_eq!(m["tasks"]["succeeded"], 4);
    assert_eq!(m["tasks"]["completionRate"], 0.8);
    assert_eq!(
        (
            m["mttr"]["incidents"].clone(),
            m["mttr"]["repaired"].clone()
        ),
        (json!(1), json!(1))
    );
    assert!(m["mttr"]["meanMs"].as_f64().unwrap() >= 0.0);
    assert_eq!(baseline["verdict"]["pass"], true, "{baseline}");
    let written: Value = serde_json::from_slice(
        &std::fs::read(app.artifacts().join(".runs/flotilla/metrics/baseline.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written, baseline);

    // The same window as a post-rollout report: 80 % misses the 95 % target, and says so.
    let path = format!("/admin/reports/post-rollout?from={from}&to={to}");
    let post = admin(&app, "POST", &path, json!(null)).unwrap();
    assert_eq!(post["verdict"]["pass"], false);
    assert!(
        post["verdict"]["reasons"]
            .to_string()
            .contains("completion rate 80.0 %"),
        "{post}"
    );
    // The same run on both sides: no reduction (a repair within the same millisecond has
    // nothing to reduce, and says that instead).
    let delta = admin(&app, "POST", "/admin/reports/mttr-delta", json!(null)).unwrap();
    let m = &delta["measures"];
    assert_eq!(m["baselineMeanMs"], m["postRolloutMeanMs"], "{delta}");
    assert_eq!(delta["verdict"]["pass"], false, "{delta}");
    let why = delta["verdict"]["reasons"].to_string();
    assert!(
        why.contains("0.0 % less") || why.contains("the baseline MTTR is 0 ms"),
        "{delta}"
    );
}

#[test]
fn an_advanced_rollout_and_its_record_survive_a_kill_of_the_server() {
    let app = App::start_with_config(1, CONFIG);
    approve(
        &app,
        "sponsor-signoff",
        json!({"signoff": {"objectives": ["heal"], "successMetrics": ["completion ≥ 95 %"]}}),
    );
    run_tasks(&app, json!(["true"]), 1);
    wait_for("complete run metrics", Duration::from_secs(10), || {
        let report = admin(&app, "POST", "/admin/reports/completeness", json!(null)).ok()?;
        (report["verdict"]["pass"] == true).then_some(())
    });
    admin(
        &app,
        "POST",
        "/admin/rollout/cooldown/advance",
        decision("signed off"),
    )
    .unwrap();
    let before = component(&app, "cooldown");
    assert_eq!(before["phase"], "limited");

    // kill -9, then a new server on the same state: flotilla.toml still says shadow, the
    // record says limited, and the record wins.
    let dir = app.crash();
    let app = App::start_in(dir, 1);
    let after = component(&app, "cooldown");
    assert_eq!(after["phase"], "limited", "{after}");
    assert_eq!(after["runId"], before["runId"]);
    assert_eq!(after["changes"], before["changes"]);
}
