//! Self-healing: a killed agent's attempt completes elsewhere; a killed server recovers.

use std::time::Duration;

use serde_json::json;

use crate::support::{wait_for, App};

#[test]
fn a_task_whose_agent_is_killed_finishes_on_another_instance() {
    let app = App::start(2);
    let reply = app.submit(json!({
        "argv": ["sh", "-c", "echo start; sleep 2; echo done"],
        "maxAttempts": 3,
    }));
    let id = reply["id"].as_str().unwrap().to_owned();
    let running = app.wait_state(&id, "running", Duration::from_secs(20));
    let victim = running["instance"].as_str().unwrap().to_owned();
    let pid = app
        .instances()
        .iter()
        .find(|i| i["id"] == victim.as_str())
        .and_then(|i| i["pid"].as_i64())
        .expect("victim's pid");
    // SAFETY: SIGKILL to an agent process this test's server started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);

    let done = app.wait_state(&id, "succeeded", Duration::from_secs(30));
    assert_eq!(done["attempts"], 2, "one lost attempt, one that completed");
    assert_ne!(done["instance"], victim.as_str(), "completed elsewhere");
    // The supervisor restarted the killed agent under the same id.
    wait_for("killed agent restarted", Duration::from_secs(30), || {
        app.instances()
            .iter()
            .any(|i| i["id"] == victim.as_str() && i["pid"].as_i64() != Some(pid))
            .then_some(())
    });
    // Observers see attempt 2's full output after attempt 1's partial one.
    let handle = reply["handle"].as_str().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut out = Vec::new();
    let status = rt
        .block_on(flotilla::client::follow(
            &app.base,
            app.client.token(),
            handle,
            0,
            Duration::from_secs(30),
            |f| out.push((f.attempt, f.data.clone())),
        ))
        .unwrap();
    assert_eq!(status.attempts, 2);
    let second: String = out
        .iter()
        .filter(|(a, _)| *a == 2)
        .map(|(_, d)| d.as_str())
        .collect();
    assert_eq!(second, "start\ndone\n");
}

#[test]
fn an_accepted_task_survives_a_crash_of_the_server() {
    // No instances: the task can only wait in the queue.
    let app = App::start(0);
    let reply = app.submit(json!({ "argv": ["echo", "survived"] }));
    let id = reply["id"].as_str().unwrap().to_owned();
    assert_eq!(app.task(&id)["state"], "queued");
    for file in [
        "flotilla.db",
        "frames/00000000000000000000.log",
        "signing.key",
    ] {
        assert!(
            app.state_dir().join(file).exists(),
            "{file} under the state dir"
        );
    }
    let dir = app.crash();

    let app = App::start_in(dir, 1);
    let done = app.wait_state(&id, "succeeded", Duration::from_secs(30));
    assert_eq!(done["exitCode"], 0);
    assert_eq!(done["attempts"], 1);
}

#[test]
fn a_second_server_on_the_same_state_dir_names_the_holder_and_exits() {
    let app = App::start(1);
    let reply = app.submit(json!({ "argv": ["sleep", "3"] }));
    let id = reply["id"].as_str().unwrap().to_owned();
    app.wait_state(&id, "running", Duration::from_secs(20));

    let second = crate::support::flotilla_cmd()
        .args(["serve", "--bind", "127.0.0.1:0", "--local-instances", "1"])
        .arg("--state-dir")
        .arg(app.state_dir())
        .arg("--artifacts-dir")
        .arg(app.artifacts())
        .env("FLOTILLA_TOKEN", crate::support::TOKEN)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run a second server");
    assert!(!second.status.success(), "the second server must fail");
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains(&format!("pid {}", app.pid())),
        "names the holder: {said}"
    );
    assert!(
        !String::from_utf8_lossy(&second.stdout).contains("listening"),
        "never binds"
    );
    // The first server's work is untouched: nothing was recovered behind its back.
    let done = app.wait_state(&id, "succeeded", Duration::from_secs(20));
    assert_eq!(done["attempts"], 1);
}
