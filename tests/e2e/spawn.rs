//! The agent's spawn path (`posix_spawn` and the reaper): a task's whole process group
//! dies on cancel, on timeout and with its agent, and no credential reaches its
//! environment.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::{signal, wait_for, App};

/// True while the process exists and is not a zombie waiting to be reaped.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn read_pid(path: &Path) -> u32 {
    wait_for("pid file", Duration::from_secs(20), || {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
}

/// A shell that starts a grandchild and waits on it; returns (argv, leader file, grandchild file).
fn family(dir: &Path) -> (Vec<String>, std::path::PathBuf, std::path::PathBuf) {
    let leader = dir.join("leader.pid");
    let grandchild = dir.join("grandchild.pid");
    let script = format!(
        "echo $$ > {}; sleep 60 & echo $! > {}; wait",
        leader.display(),
        grandchild.display()
    );
    (vec!["sh".into(), "-c".into(), script], leader, grandchild)
}

/// The reaper process of an agent: its child running `flotilla reap`.
fn reaper_of(agent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let is_reaper = cmdline.split(|b| *b == 0).any(|a| a == b"reap");
        (ppid == agent && is_reaper && running(pid)).then_some(pid)
    })
}

/// The pid of the server's one local agent, and of its reaper.
fn agent_and_reaper(app: &App) -> (u32, u32) {
    let instance = app.instances()[0]["id"].as_str().unwrap().to_owned();
    let agent = app.instance_pid(&instance).unwrap();
    let reaper = wait_for("the agent's reaper", Duration::from_secs(10), || {
        reaper_of(agent)
    });
    (agent, reaper)
}

#[test]
fn an_agent_killed_with_sigkill_takes_its_tasks_whole_group_along_even_after_losing_its_reaper() {
    let app = App::start(1);
    let (agent, first) = agent_and_reaper(&app);
    // The reaper can die on its own; the agent starts another at its next spawn.
    signal(first, libc::SIGKILL);
    wait_for("reaper gone", Duration::from_secs(10), || {
        (!running(first)).then_some(())
    });

    let (argv, leader, grandchild) = family(app.dir.path());
    let reply = app.submit(json!({"argv": argv, "maxAttempts": 1}));
    let id = reply["id"].as_str().unwrap();
    app.wait_state(id, "running", Duration::from_secs(20));
    let (leader, grandchild) = (read_pid(&leader), read_pid(&grandchild));
    assert!(running(leader) && running(grandchild));
    let second = wait_for("a new reaper", Duration::from_secs(10), || reaper_of(agent));
    assert_ne!(second, first);

    signal(agent, libc::SIGKILL);
    wait_for("the task's group gone", Duration::from_secs(10), || {
        (!running(leader) && !running(grandchild)).then_some(())
    });
    wait_for("the reaper gone", Duration::from_secs(10), || {
        (!running(second)).then_some(())
    });
    let lost = app.wait_state(id, "failed", Duration::from_secs(30));
    assert!(
        lost["reason"].as_str().unwrap_or("").contains("lost"),
        "{lost}"
    );
}

#[test]
fn a_reaper_that_stops_reading_is_replaced_and_never_holds_up_the_agent() {
    let app = App::start(1);
    let (agent, stuck) = agent_and_reaper(&app);
    signal(stuck, libc::SIGSTOP);
    // Each task is two lines to the reaper; its pipe holds one page.
    let tasks: Vec<serde_json::Value> = (0..400).map(|_| json!({"argv": ["true"]})).collect();
    assert_eq!(app.client.submit_batch(&tasks).unwrap()["accepted"], 400);
    app.wait_until_finished(400);
    wait_for(
        "the stopped reaper replaced",
        Duration::from_secs(10),
        || (!running(stuck)).then_some(()),
    );
    let fresh = wait_for("a new reaper", Duration::from_secs(10), || reaper_of(agent));
    assert_ne!(fresh, stuck);
    // The new one was told the live groups and does its work.
    let (argv, leader, grandchild) = family(app.dir.path());
    let reply = app.submit(json!({"argv": argv, "maxAttempts": 1}));
    app.wait_state(
        reply["id"].as_str().unwrap(),
        "running",
        Duration::from_secs(20),
    );
    let (leader, grandchild) = (read_pid(&leader), read_pid(&grandchild));
    signal(agent, libc::SIGKILL);
    wait_for("the task's group gone", Duration::from_secs(10), || {
        (!running(leader) && !running(grandchild)).then_some(())
    });
}

#[test]
fn a_timeout_kills_the_whole_group() {
    let app = App::start(1);
    let (argv, leader, grandchild) = family(app.dir.path());
    let reply = app.submit(json!({"argv": argv, "timeoutSeconds": 1}));
    let id = reply["id"].as_str().unwrap();
    let (leader, grandchild) = (read_pid(&leader), read_pid(&grandchild));
    app.wait_state(id, "timed_out", Duration::from_secs(20));
    wait_for("the task's group gone", Duration::from_secs(10), || {
        (!running(leader) && !running(grandchild)).then_some(())
    });
}

/// `NAME=value` lines of an environment block (NUL-separated) whose name holds TOKEN
/// and whose value is not empty.
fn tokens_in(block: &str) -> Vec<String> {
    block
        .split(['\0', '\n'])
        .filter_map(|l| l.split_once('='))
        .filter(|(k, v)| k.contains("TOKEN") && !v.trim_matches('\0').is_empty())
        .map(|(k, _)| k.to_owned())
        .collect()
}

#[test]
fn no_credential_reaches_a_tasks_environment_or_its_agents_or_the_servers() {
    let app = App::start(1);
    let _remote = app.remote_agent("remote-box", "remote");
    // The server was given the admin token in its environment, the agents theirs.
    let server = std::fs::read(format!("/proc/{}/environ", app.server_pid())).unwrap();
    let server = String::from_utf8_lossy(&server);
    assert!(
        !server.contains(crate::support::TOKEN),
        "the server's environ holds the admin token"
    );
    assert_eq!(tokens_in(&server), Vec::<String>::new());
    for caps in [json!([]), json!(["remote"])] {
        // What a curious task tries: its own environment, then its agent's.
        let reply = app.submit(json!({
            "argv": ["sh", "-c", "env; echo ---; cat /proc/$PPID/environ"],
            "capabilities": caps,
            "env": {"VISIBLE": "yes"},
        }));
        let id = reply["id"].as_str().unwrap();
        app.wait_state(id, "succeeded", Duration::from_secs(30));
        let out: String = app
            .output(reply["handle"].as_str().unwrap())
            .into_iter()
            .filter(|(_, kind, _)| kind == "stdout")
            .map(|(_, _, data)| data)
            .collect();
        assert!(out.lines().any(|l| l == "VISIBLE=yes"), "{out}");
        let (own, agents) = out.split_once("---").unwrap();
        assert!(
            agents.contains("PATH="),
            "the agent's environ was read: {agents:?}"
        );
        assert_eq!(tokens_in(agents), Vec::<String>::new(), "on {caps}");
        let out = own;
        let names: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, _)| k)
            .collect();
        assert!(
            !names.iter().any(|n| n.contains("TOKEN")),
            "a token variable reached the task on {caps}: {names:?}"
        );
    }
}
