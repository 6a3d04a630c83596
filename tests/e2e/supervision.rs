//! Supervision inside the server: readiness says why it is degraded, and a dead core
//! actor ends the process (non-zero) so that the restart recovers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::App;

fn readyz(app: &App) -> (u16, Value) {
    match ureq::get(&format!("{}/readyz", app.base)).call() {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
        Err(e) => panic!("GET /readyz: {e}"),
    }
}

#[test]
fn readiness_says_degraded_and_why_until_an_instance_connects() {
    let app = App::start(0);
    let (code, body) = readyz(&app);
    assert_eq!(code, 200);
    assert_eq!(body["status"], "degraded");
    assert!(body["reasons"][0]
        .as_str()
        .unwrap()
        .contains("no executor instance"));
    let dir = app.stop();
    let app = App::start_in(dir, 1);
    assert_eq!(
        readyz(&app),
        (200, json!({"status": "ready", "reasons": []}))
    );
}

#[test]
fn a_dead_dispatcher_or_store_writer_ends_the_process_and_the_restart_runs_the_task() {
    for actor in ["dispatcher", "store-writer"] {
        let dir = tempfile::tempdir().unwrap();
        let mut app = App::start_with_env(dir, 1, "127.0.0.1:0", &[("FLOTILLA_TEST_FAULT", actor)]);
        let reply = app.submit(json!({ "argv": ["echo", "recovered"] }));
        let id = reply["id"].as_str().unwrap().to_owned();
        let code = app.wait_exit(Duration::from_secs(20));
        assert_eq!(code, Some(70), "{actor}: exits non-zero");
        let log = app.log();
        let said = actor.replace('-', " ");
        assert!(
            log.contains(&format!(
                "the {said} panicked; exiting so that a restart recovers"
            )),
            "{actor}: the log says why:\n{log}"
        );
        let dir = app.crash();
        let app = App::start_in(dir, 1);
        let done = app.wait_state(&id, "succeeded", Duration::from_secs(30));
        assert_eq!(done["exitCode"], 0, "{actor}: {done}");
    }
}

#[test]
fn a_guard_worker_that_dies_is_restarted_in_place_and_only_its_attempt_stops() {
    let dir = tempfile::tempdir().unwrap();
    // One worker: the task after the fault is guarded by the very worker that died.
    std::fs::write(dir.path().join("flotilla.toml"), "[guard]\nworkers = 1\n").unwrap();
    let fault = [("FLOTILLA_TEST_FAULT", "guard-worker")];
    let app = App::start_with_env(dir, 1, "127.0.0.1:0", &fault);
    let doomed = app.submit(json!({
        "argv": ["sh", "-c", "echo flotilla-test-guard-panic; sleep 30"]
    }));
    let failed = app.wait_state(
        doomed["id"].as_str().unwrap(),
        "failed",
        Duration::from_secs(20),
    );
    assert_eq!(
        failed["reason"],
        "the guard worker redacting this attempt failed; the attempt was stopped rather than let its output through unguarded",
        "{failed}"
    );
    let after = app.submit(json!({ "argv": ["echo", "guarded again"] }));
    let done = app.wait_state(
        after["id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(20),
    );
    let out = app.output(done["handle"].as_str().unwrap());
    assert!(
        out.iter()
            .any(|(_, kind, data)| kind == "stdout" && data == "guarded again\n"),
        "{out:?}"
    );
    assert!(
        app.prometheus()
            .contains("flotilla_guard_worker_restarts_total 1"),
        "the restart is counted"
    );
    assert_eq!(readyz(&app).0, 200, "the server lives on");
}

#[test]
fn a_local_agent_that_keeps_dying_is_marked_failed_and_stays_visible() {
    let app = App::start_with_config(
        1,
        "[fleet]\nrestart-limit = 2\nrestart-window-seconds = 60\n",
    );
    let mut pid = app.instance_pid("local-1").unwrap();
    for round in 1..=3 {
        crate::support::signal(pid, libc::SIGKILL);
        if round == 3 {
            break;
        }
        pid = crate::support::wait_for("restarted", Duration::from_secs(20), || {
            app.instance_pid("local-1").filter(|p| *p != pid)
        });
    }
    let failed = crate::support::wait_for("marked failed", Duration::from_secs(20), || {
        app.instances()
            .into_iter()
            .find(|i| i["id"] == "local-1" && i["state"] == "failed")
    });
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("3 restarts within 60 s"),
        "{failed}"
    );
    assert_eq!(
        failed["pid"].as_u64(),
        Some(u64::from(pid)),
        "as it was last seen"
    );
    let (code, body) = readyz(&app);
    assert_eq!(code, 200);
    assert_eq!(body["status"], "degraded");
    assert!(
        body["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("instance local-1 failed")),
        "{body}"
    );
    assert!(app.log().contains("local agent failed: too many restarts"));
}
