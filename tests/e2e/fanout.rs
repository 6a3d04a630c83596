//! Fan-out and first-wins, retry policy, poison tasks and priority, with real agents.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{schema_errors, wait_for, App};

const LIMIT: Duration = Duration::from_secs(30);

/// The manifest of a task, once `check` holds of it.
fn manifest_when(app: &App, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    let run = app.task(id)["runId"].as_str().unwrap().to_owned();
    let path = app.manifest_path(id, &run);
    wait_for("the manifest", LIMIT, || {
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        check(&doc).then_some(doc)
    })
}

/// One string field of each item of a JSON array.
fn field_of_each<'a>(items: &'a Value, field: &str) -> Vec<&'a str> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[field].as_str().unwrap())
        .collect()
}

fn v2(schedule: Value, argv: &[&str]) -> Value {
    json!({"schema": "flotilla.run-request/2.1.0", "argv": argv, "schedule": schedule})
}

#[test]
fn fan_out_runs_each_shard_on_its_own_instance_and_succeeds_when_all_do() {
    // bin-pack would put all three on one instance of three slots: the shards must not.
    let app = App::start_with_config(3, "local-slots = 3\n[scheduler]\npolicy = \"bin-pack\"\n");
    app.wait_instances(3);
    let script = "echo shard $FLOTILLA_SHARD_INDEX of $FLOTILLA_SHARD_COUNT; sleep 1";
    let reply = app.submit(v2(
        json!({"strategy": "fan-out", "shards": 3}),
        &["sh", "-c", script],
    ));
    let id = reply["id"].as_str().unwrap();
    let shards = reply["shards"].as_array().expect("the shards in the reply");
    assert_eq!(shards.len(), 3, "{reply}");
    let handles: BTreeSet<&str> = shards
        .iter()
        .map(|s| s["handle"].as_str().unwrap())
        .collect();
    assert_eq!(handles.len(), 3, "each shard has its own handle: {reply}");
    assert!(!handles.contains(reply["handle"].as_str().unwrap()));

    let done = app.wait_state(id, "succeeded", LIMIT);
    assert_eq!(done["reason"], "all 3 shards succeeded", "{done}");
    let views = done["shards"].as_array().unwrap();
    let on: BTreeSet<&str> = views
        .iter()
        .map(|s| s["instance"].as_str().unwrap())
        .collect();
    assert_eq!(
        on.len(),
        3,
        "three shards on three distinct instances: {done}"
    );
    for (i, shard) in shards.iter().enumerate() {
        let view = app.task(shard["id"].as_str().unwrap());
        assert_eq!(
            (view["parent"].as_str(), view["shard"].as_u64()),
            (Some(id), Some(i as u64))
        );
        assert_eq!(view["state"], "succeeded");
        let out: String = app
            .output(shard["handle"].as_str().unwrap())
            .into_iter()
            .filter(|(_, kind, _)| kind == "stdout")
            .map(|(_, _, data)| data)
            .collect();
        assert_eq!(out, format!("shard {i} of 3\n"));
    }
    // The parent's handle carries its final status; its manifest lists the shards.
    let status = app.output(reply["handle"].as_str().unwrap());
    assert_eq!(
        status.last().map(|f| f.1.as_str()),
        Some("status"),
        "{status:?}"
    );
    let manifest = manifest_when(&app, id, |m| {
        m["state"] == "succeeded"
            && m["fanOut"]["shards"]
                .as_array()
                .is_some_and(|s| s.iter().all(|s| s["state"] == "succeeded"))
    });
    assert_eq!(manifest["fanOut"]["mode"], "fan-out");
    let errors = schema_errors(include_str!("../../schemas/manifest.v2.json"), &manifest);
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_failed_shard_fails_the_fan_out_and_stops_the_others() {
    let app = App::start(3);
    app.wait_instances(3);
    let script = "if [ $FLOTILLA_SHARD_INDEX = 1 ]; then sleep 0.3; exit 3; fi; sleep 60";
    let reply = app.submit(v2(
        json!({"strategy": "fan-out", "shards": 3}),
        &["sh", "-c", script],
    ));
    let id = reply["id"].as_str().unwrap();
    let done = app.wait_state(id, "failed", LIMIT);
    assert_eq!(
        done["reason"], "shard 1 failed: exited with status 3",
        "{done}"
    );
    let states = field_of_each(&done["shards"], "state");
    assert_eq!(states, ["cancelled", "failed", "cancelled"], "{done}");
    let stopped = app.task(reply["shards"][0]["id"].as_str().unwrap());
    assert_eq!(
        stopped["reason"], "cancelled: shard 1 of the fan-out failed",
        "{stopped}"
    );
}

#[test]
fn first_wins_keeps_the_first_success_and_cancels_the_rest() {
    let app = App::start(3);
    app.wait_instances(3);
    let script = "if [ $FLOTILLA_SHARD_INDEX = 2 ]; then sleep 0.3; echo won; exit 0; fi; sleep 60";
    let reply = app.submit(v2(
        json!({"strategy": "first-wins", "shards": 3}),
        &["sh", "-c", script],
    ));
    let id = reply["id"].as_str().unwrap();
    let done = app.wait_state(id, "succeeded", LIMIT);
    assert_eq!(
        done["reason"], "shard 2 won; the other 2 were stopped or ended",
        "{done}"
    );
    let states = field_of_each(&done["shards"], "state");
    assert_eq!(states, ["cancelled", "cancelled", "succeeded"], "{done}");
}

#[test]
fn a_fan_out_survives_a_server_crash_without_rerunning_a_shard() {
    let app = App::start(2);
    app.wait_instances(2);
    let reply = app.submit(v2(
        json!({"strategy": "fan-out", "shards": 2}),
        &["sh", "-c", "sleep 2; echo done $FLOTILLA_SHARD_INDEX"],
    ));
    let id = reply["id"].as_str().unwrap().to_owned();
    for shard in reply["shards"].as_array().unwrap() {
        app.wait_state(shard["id"].as_str().unwrap(), "running", LIMIT);
    }
    let dir = app.crash();
    let app = App::start_in(dir, 2);
    let done = app.wait_state(&id, "succeeded", LIMIT);
    for shard in done["shards"].as_array().unwrap() {
        assert_eq!(shard["attempts"], 1, "re-attached, not run again: {done}");
    }
    let manifest = manifest_when(&app, reply["shards"][0]["id"].as_str().unwrap(), |m| {
        m["state"] == "succeeded"
    });
    let actions = field_of_each(&manifest["recovery"], "action");
    assert_eq!(actions, ["reattach"], "{manifest}");
}

#[test]
fn a_non_zero_exit_is_retried_with_backoff_only_when_asked() {
    let app = App::start(1);
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    // Fails twice, then succeeds.
    let script = format!(
        "n=$(cat {0} 2>/dev/null || echo 0); echo $((n+1)) > {0}; [ $n -ge 2 ]",
        count.display()
    );
    let recovery = json!({"maxRetries": 3, "retryOn": ["nonzero-exit"], "backoffMs": 400});
    let reply = app.submit(v2(json!({"recovery": recovery}), &["sh", "-c", &script]));
    let id = reply["id"].as_str().unwrap();
    let waiting = wait_for("the first retry's backoff", LIMIT, || {
        let t = app.task(id);
        (t["state"] == "queued" && t["attempts"] == 1).then_some(t)
    });
    assert_eq!(
        waiting["reason"], "attempt 1 exited with status 1; retry 1 in 400 ms",
        "{waiting}"
    );
    let done = app.wait_state(id, "succeeded", LIMIT);
    assert_eq!(done["attempts"], 3, "{done}");
    let manifest = manifest_when(&app, id, |m| m["state"] == "succeeded");
    let attempts = manifest["attempts"].as_array().unwrap();
    let ms = |t: &Value| flotilla_actors::domain::parse_rfc3339_ms(t.as_str().unwrap()).unwrap();
    // Each retry waited its backoff, doubled the second time.
    for (i, wait) in [(1, 400), (2, 800)] {
        let gap = ms(&attempts[i]["startedAt"]) - ms(&attempts[i - 1]["endedAt"]);
        assert!(
            gap >= wait,
            "retry {i} started {gap} ms after the failure: {manifest}"
        );
    }
    let actions = field_of_each(&manifest["recovery"], "action");
    assert_eq!(
        actions,
        ["retry", "reschedule", "retry", "reschedule"],
        "{manifest}"
    );

    // Without retryOn, a failure is final.
    std::fs::remove_file(&count).unwrap();
    let once = app.submit(json!({"argv": ["sh", "-c", script]}));
    let failed = app.wait_state(once["id"].as_str().unwrap(), "failed", LIMIT);
    assert_eq!(failed["attempts"], 1, "{failed}");
}

#[test]
fn a_task_that_takes_down_every_instance_it_lands_on_is_poisoned() {
    let app = App::start(3);
    app.wait_instances(3);
    // The task kills the agent that runs it.
    let recovery = json!({"maxRetries": 9, "poisonAfter": 2});
    let reply = app.submit(v2(
        json!({"recovery": recovery}),
        &["sh", "-c", "kill -9 $PPID; sleep 5"],
    ));
    let id = reply["id"].as_str().unwrap();
    let done = app.wait_state(id, "poisoned", LIMIT);
    assert_eq!(
        done["attempts"], 2,
        "stopped before a third instance: {done}"
    );
    let reason = done["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("poisoned: its attempts were lost on 2 instances in a row"),
        "{reason}"
    );
    let manifest = manifest_when(&app, id, |m| m["state"] == "poisoned");
    let checkpoints = manifest["recovery"].as_array().unwrap();
    let actions: Vec<&str> = checkpoints
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["requeue", "reschedule", "poison"], "{manifest}");
    let moved = &checkpoints[1];
    assert_ne!(moved["fromInstance"], moved["toInstance"], "{moved}");
    assert_eq!(moved["fromInstance"], checkpoints[0]["fromInstance"]);
    assert_eq!(moved["attempt"], 2);
    // The fleet heals: the killed agents come back.
    app.wait_instances(3);
}

#[test]
fn a_higher_priority_task_overtakes_older_ones() {
    let app = App::start(1);
    let blocker = app.submit(json!({"argv": ["sleep", "1"]}));
    app.wait_state(blocker["id"].as_str().unwrap(), "running", LIMIT);
    let low = app.submit(json!({"argv": ["sleep", "1"]}));
    let high = app.submit(v2(json!({"priority": 5}), &["sleep", "1"]));
    app.wait_state(high["id"].as_str().unwrap(), "running", LIMIT);
    assert_eq!(app.task(low["id"].as_str().unwrap())["state"], "queued");
}
