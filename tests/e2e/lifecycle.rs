//! Cancel, timeout, failures to start, and the run manifest.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{files_under, schema_errors, wait_for, App};

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Reads the pid a task wrote, once it exists.
fn read_pid(path: &std::path::Path) -> i32 {
    wait_for("pid file", Duration::from_secs(20), || {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
}

#[test]
fn cancel_kills_the_whole_process_group() {
    let app = App::start(1);
    let pidfile = app.dir.path().join("grandchild.pid");
    let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
    let reply = app.submit(json!({"argv": ["sh", "-c", script]}));
    let id = reply["id"].as_str().unwrap();
    app.wait_state(id, "running", Duration::from_secs(20));
    let grandchild = read_pid(&pidfile);
    assert!(alive(grandchild));
    let answer = app.client.cancel(id).unwrap();
    assert_eq!(answer["state"], "cancelling");
    let done = app.wait_state(id, "cancelled", Duration::from_secs(20));
    assert_eq!(done["attempts"], 1);
    wait_for("grandchild gone", Duration::from_secs(10), || {
        (!alive(grandchild)).then_some(())
    });
    // Cancelling again is a conflict; a queued task is cancelled at once.
    assert!(app.client.cancel(id).is_err());
}

#[test]
fn a_queued_task_is_cancelled_at_once_and_a_timeout_kills() {
    let app = App::start(1);
    let blocker = app.submit(json!({"argv": ["sleep", "60"], "timeoutSeconds": 1}));
    let queued = app.submit(json!({"argv": ["true"]}));
    let qid = queued["id"].as_str().unwrap();
    assert_eq!(app.client.cancel(qid).unwrap()["state"], "cancelled");
    assert_eq!(app.task(qid)["state"], "cancelled");
    let t = app.wait_state(
        blocker["id"].as_str().unwrap(),
        "timed_out",
        Duration::from_secs(20),
    );
    assert!(t["reason"].as_str().unwrap().contains("timeout"), "{t}");
}

#[test]
fn a_program_that_cannot_start_fails_with_the_reason() {
    let app = App::start(1);
    let reply = app.submit(json!({"argv": ["/no/such/program"]}));
    let t = app.wait_state(
        reply["id"].as_str().unwrap(),
        "failed",
        Duration::from_secs(20),
    );
    assert!(
        t["reason"].as_str().unwrap().contains("/no/such/program"),
        "{t}"
    );
    let bad_cwd = app.submit(json!({"argv": ["true"], "cwd": "/no/such/dir"}));
    app.wait_state(
        bad_cwd["id"].as_str().unwrap(),
        "failed",
        Duration::from_secs(20),
    );
}

#[test]
fn the_manifest_records_the_run_and_matches_its_schema() {
    let app = App::start(1);
    let reply = app.submit(json!({
        "argv": ["sh", "-c", "echo out; exit 4"],
        "labels": {"team": "infra"},
        "env": {"GREETING": "hi"},
    }));
    let id = reply["id"].as_str().unwrap();
    let run = reply["runId"].as_str().unwrap();
    app.wait_state(id, "failed", Duration::from_secs(20));
    let path = app.manifest_path(id, run);
    let manifest: Value = wait_for("final manifest", Duration::from_secs(10), || {
        let m: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        (m["state"] == "failed").then_some(m)
    });
    let errors = schema_errors(include_str!("../../schemas/manifest.v2.json"), &manifest);
    assert!(errors.is_empty(), "{errors:?}\n{manifest:#}");
    assert_eq!(manifest["taskId"], id);
    assert_eq!(manifest["handle"], reply["handle"]);
    assert_eq!(manifest["exitCode"], 4);
    assert_eq!(manifest["request"]["labels"]["team"], "infra");
    assert_eq!(
        manifest["controlPlane"]["validation"]["outcome"],
        "accepted"
    );
    let attempts = manifest["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["instance"], "local-1");
    assert!(attempts[0]["endedAt"].is_string());
    // Written atomically: no temp file is left beside it. One may exist for a moment
    // while the run's metrics.json is being replaced after the manifest; none stays.
    wait_for("no temp file left", Duration::from_secs(10), || {
        let leftovers = files_under(&app.artifacts())
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".tmp"))
            .count();
        (leftovers == 0).then_some(())
    });
}

#[test]
fn a_remote_agent_with_its_own_token_runs_the_task_that_waited_for_it() {
    let app = App::start(1);
    let waiting = app.submit(json!({"argv": ["echo", "on the gpu box"], "capabilities": ["gpu"]}));
    let id = waiting["id"].as_str().unwrap();
    assert!(app.task(id)["reason"].as_str().unwrap().contains("gpu"));

    // What an operator does for a remote machine: mint an agent token, start an agent.
    let token: serde_json::Value = ureq::post(&format!("{}/v1/tokens/agent", app.base))
        .set(
            "authorization",
            &format!("Bearer {}", crate::support::TOKEN),
        )
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let token = token["token"].as_str().unwrap();
    let mut agent = crate::support::flotilla_cmd()
        .args([
            "agent",
            "--server",
            &app.base,
            "--id",
            "gpu-box",
            "--capabilities",
            "gpu,os:linux",
            "--slots",
            "2",
        ])
        .env("FLOTILLA_AGENT_TOKEN", token)
        .env_remove("FLOTILLA_TOKEN")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let done = app.wait_state(id, "succeeded", Duration::from_secs(30));
    assert_eq!(done["instance"], "gpu-box");
    assert!(
        done["reason"].is_null(),
        "the wait reason is cleared: {done}"
    );
    let gpu_box = app
        .instances()
        .into_iter()
        .find(|i| i["id"] == "gpu-box")
        .unwrap();
    assert_eq!(gpu_box["slots"], 2);
    let _ = agent.kill();
    let _ = agent.wait();
    // Its departure is noticed.
    app.wait_instances(1);
}
