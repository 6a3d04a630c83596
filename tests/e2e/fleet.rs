//! The fleet: re-attach after a server crash, the agent's grace, unique instance ids,
//! a hung agent killed and its task rescheduled, and fencing of an agent that returns.

use std::time::Duration;

use serde_json::json;

use crate::support::{alive, signal, wait_for, App};

/// A task that prints a numbered line every 100 ms, 30 in all.
fn counting_task() -> serde_json::Value {
    json!({
        "argv": ["sh", "-c", "for i in $(seq 1 30); do echo line $i; sleep 0.1; done"],
        "maxAttempts": 3,
    })
}

fn counted() -> String {
    (1..=30).map(|i| format!("line {i}\n")).collect()
}

/// The stdout of one attempt, joined.
fn stdout_of(frames: &[(u32, String, String)], attempt: u32) -> String {
    frames
        .iter()
        .filter(|(a, k, _)| *a == attempt && k == "stdout")
        .map(|(_, _, d)| d.as_str())
        .collect()
}

#[test]
fn a_server_crash_reruns_nothing_the_agent_reattaches_and_output_continues() {
    let app = App::start(1);
    let reply = app.submit(counting_task());
    let id = reply["id"].as_str().unwrap().to_owned();
    let handle = reply["handle"].as_str().unwrap().to_owned();
    app.wait_state(&id, "running", Duration::from_secs(20));
    let agent = app.instance_pid("local-1").expect("local-1 connected");
    // Some output is on disk before the crash, and more is on its way.
    let log = app.state_dir().join("frames/00000000000000000000.log");
    wait_for("output before the crash", Duration::from_secs(10), || {
        (std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) > 200).then_some(())
    });

    let dir = app.crash();
    assert!(alive(agent), "the local agent outlives the server");
    let app = App::start_in(dir, 1);
    let done = app.wait_state(&id, "succeeded", Duration::from_secs(30));
    assert_eq!(done["attempts"], 1, "nothing ran twice: {done}");
    assert_eq!(
        app.instance_pid("local-1"),
        Some(agent),
        "the same agent process was adopted, not a new one started"
    );
    let frames = app.output(&handle);
    assert_eq!(
        stdout_of(&frames, 1),
        counted(),
        "every line once, in order"
    );
    assert!(frames.iter().all(|(a, _, _)| *a == 1));
    assert!(
        app.log().contains("attempt re-attached"),
        "the re-attach is logged"
    );
}

#[test]
fn an_agent_whose_server_does_not_come_back_kills_its_task_and_exits() {
    let app = App::start_with_config(
        1,
        "[fleet]\nheartbeat-ms = 200\nlease-timeout-ms = 600\nreattach-grace-ms = 1500\n",
    );
    let pid_file = app.dir.path().join("child.pid");
    let reply = app.submit(json!({
        "argv": ["sh", "-c", format!("echo $$ > {}; exec sleep 60", pid_file.display())],
    }));
    let id = reply["id"].as_str().unwrap().to_owned();
    app.wait_state(&id, "running", Duration::from_secs(20));
    let child: u32 = wait_for("the task wrote its pid", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    let agent = app.instance_pid("local-1").unwrap();
    let _dir = app.crash();
    assert!(alive(child), "the task runs on through the grace");
    wait_for(
        "the agent exits after the grace",
        Duration::from_secs(15),
        || (!alive(agent)).then_some(()),
    );
    wait_for(
        "the task's process is killed",
        Duration::from_secs(5),
        || (!alive(child)).then_some(()),
    );
}

#[test]
fn a_second_agent_with_a_connected_id_is_refused_and_the_first_keeps_its_work() {
    let app = App::start(1);
    let first = app.instance_pid("local-1").unwrap();
    let reply = app.submit(json!({ "argv": ["sh", "-c", "sleep 1; echo ok"] }));
    let id = reply["id"].as_str().unwrap().to_owned();
    app.wait_state(&id, "running", Duration::from_secs(20));

    let impostor = app.remote_agent("local-1", "os:linux,local");
    wait_for("the impostor is refused", Duration::from_secs(10), || {
        app.log()
            .contains("hello refused: instance id in use")
            .then_some(())
    });
    let done = app.wait_state(&id, "succeeded", Duration::from_secs(20));
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["instance"], "local-1");
    let listed: Vec<_> = app
        .instances()
        .into_iter()
        .filter(|i| i["id"] == "local-1")
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["pid"].as_u64(), Some(u64::from(first)));
    assert!(
        alive(impostor.pid()),
        "refused with retry, not told to exit"
    );
}

#[test]
fn a_hung_local_agent_is_killed_with_its_task_and_the_task_runs_elsewhere() {
    let app = App::start(2);
    let pids = app.dir.path().join("pids");
    let reply = app.submit(json!({
        "argv": ["sh", "-c", format!("echo $$ >> {}; echo start; sleep 2; echo done", pids.display())],
        "maxAttempts": 3,
    }));
    let id = reply["id"].as_str().unwrap().to_owned();
    let running = app.wait_state(&id, "running", Duration::from_secs(20));
    let victim = running["instance"].as_str().unwrap().to_owned();
    let agent = app.instance_pid(&victim).unwrap();
    let first_child: u32 = wait_for("attempt 1 wrote its pid", Duration::from_secs(10), || {
        std::fs::read_to_string(&pids)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
    });
    signal(agent, libc::SIGSTOP);

    let done = app.wait_state(&id, "succeeded", Duration::from_secs(30));
    assert_eq!(done["attempts"], 2, "{done}");
    assert_ne!(done["instance"], victim.as_str());
    wait_for("the hung agent is killed", Duration::from_secs(10), || {
        (!alive(agent)).then_some(())
    });
    assert!(!alive(first_child), "its task's process died with it");
    wait_for(
        "the hung agent is replaced",
        Duration::from_secs(20),
        || {
            app.instance_pid(&victim)
                .filter(|p| *p != agent)
                .map(|_| ())
        },
    );
    let frames = app.output(reply["handle"].as_str().unwrap());
    assert_eq!(stdout_of(&frames, 2), "start\ndone\n");
}

#[test]
fn an_agent_that_returns_after_its_lease_ran_out_is_told_to_kill_the_attempt() {
    let app = App::start_with_config(
        0,
        "[fleet]\nheartbeat-ms = 200\nlease-timeout-ms = 600\nreattach-grace-ms = 20000\n",
    );
    let pids = app.dir.path().join("pids");
    let reply = app.submit(json!({
        "argv": ["sh", "-c", format!("echo $$ >> {}; echo start; sleep 3; echo done", pids.display())],
        "maxAttempts": 3,
        "capabilities": ["remote"],
    }));
    let id = reply["id"].as_str().unwrap().to_owned();
    let one = app.remote_agent("remote-1", "remote");
    let running = app.wait_state(&id, "running", Duration::from_secs(20));
    assert_eq!(running["instance"], "remote-1");
    let first_child: u32 = wait_for("attempt 1 wrote its pid", Duration::from_secs(10), || {
        std::fs::read_to_string(&pids)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
    });
    // A partition: the agent says nothing for longer than its lease.
    signal(one.pid(), libc::SIGSTOP);
    let _two = app.remote_agent("remote-2", "remote");
    wait_for(
        "the attempt is rescheduled",
        Duration::from_secs(20),
        || (app.task(&id)["instance"] == "remote-2").then_some(()),
    );
    signal(one.pid(), libc::SIGCONT);
    wait_for(
        "the returning agent kills its attempt",
        Duration::from_secs(10),
        || (!alive(first_child)).then_some(()),
    );
    let done = app.wait_state(&id, "succeeded", Duration::from_secs(30));
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["instance"], "remote-2");
    let frames = app.output(reply["handle"].as_str().unwrap());
    assert_eq!(stdout_of(&frames, 2), "start\ndone\n");
    assert!(
        !stdout_of(&frames, 1).contains("done"),
        "nothing of the fenced attempt's end is taken"
    );
    // The attempt is recorded as fenced, with a fence checkpoint naming its epoch.
    let run = done["runId"].as_str().unwrap();
    let manifest: serde_json::Value =
        wait_for("the fence in the manifest", Duration::from_secs(10), || {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(app.manifest_path(&id, run)).ok()?).ok()?;
            (m["attempts"][0]["state"] == "fenced").then_some(m)
        });
    let recovery = manifest["recovery"].as_array().unwrap();
    let fence = recovery
        .iter()
        .find(|c| c["action"] == "fence")
        .unwrap_or_else(|| panic!("no fence checkpoint: {manifest}"));
    assert_eq!(
        (fence["attempt"].as_u64(), fence["epoch"].as_u64()),
        (Some(1), manifest["recovery"][0]["epoch"].as_u64())
    );
    assert_eq!(fence["fromInstance"], "remote-1", "{fence}");
}
