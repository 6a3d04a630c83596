//! What a task, and a reader of the state dir, can find of the credentials and secrets
//! flotilla holds: nothing.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use serde_json::json;

use crate::support::{euid, App, TOKEN};

/// The reads a curious task tries, each printed as `READ <label>` and what it read, or
/// `DENIED <label>`.
const CURIOUS: &str = r#"
probe() { label=$1; shift; if out=$("$@" 2>/dev/null); then printf 'READ %s\n%s\n' "$label" "$out"; else printf 'DENIED %s\n' "$label"; fi; }
probe agent-environ cat /proc/$PPID/environ
probe server-environ cat /proc/$SERVER_PID/environ
probe agent-maps cat /proc/$PPID/maps
probe agent-fds ls /proc/$PPID/fd
probe agent-memory head -c 4096 /proc/$PPID/mem
probe state-dir ls $STATE
probe admin-token cat $STATE/admin.token
probe signing-key cat $STATE/signing.key
probe database cat $STATE/flotilla.db
probe frame-log cat $STATE/frames/00000000000000000000.log
probe agent-cmdline cat /proc/$PPID/cmdline
probe uid id -u
probe env env
"#;

#[test]
fn a_curious_task_run_as_another_user_reads_no_credential() {
    let dir = tempfile::tempdir().unwrap();
    // The test's own folder is open to all, so what keeps the task out of the state dir
    // is the state dir's own mode.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = euid() == 0;
    let user = if root { "nobody" } else { "" };
    let env: Vec<(&str, &str)> = if root {
        vec![("FLOTILLA_LOCAL_RUN_AS", user)]
    } else {
        vec![]
    };
    let app = App::start_with_env(dir, 1, "127.0.0.1:0", &env);
    let state = app.state_dir();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "state dir");
    for f in [
        "flotilla.db",
        "signing.key",
        "frames/00000000000000000000.log",
        "lock",
    ] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    let agent_token = app.agent_token();
    let reply = app.submit(json!({
        "argv": ["sh", "-c", CURIOUS],
        "cwd": "/",
        "env": {
            "SERVER_PID": app.server_pid().to_string(),
            "STATE": state.display().to_string(),
        },
    }));
    let id = reply["id"].as_str().unwrap();
    app.wait_state(id, "succeeded", Duration::from_secs(30));
    let out: String = app
        .output(reply["handle"].as_str().unwrap())
        .into_iter()
        .map(|(_, _, data)| data)
        .collect();
    let signing_key = std::fs::read_to_string(state.join("signing.key")).unwrap();
    for secret in [TOKEN, agent_token.as_str(), signing_key.trim()] {
        assert!(!out.contains(secret), "a credential was read:\n{out}");
    }
    assert!(!out.contains("FLOTILLA_AGENT_TOKEN="), "{out}");
    // The agent is not dumpable: even as its own user, a task cannot read its memory map,
    // its descriptors or its environment.
    let mut denied = vec!["agent-environ", "agent-maps", "agent-fds", "agent-memory"];
    if root {
        // As another user, nothing of the server or the state dir either.
        denied.extend([
            "server-environ",
            "state-dir",
            "admin-token",
            "signing-key",
            "database",
            "frame-log",
        ]);
        let uid = out
            .split("READ uid\n")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .unwrap_or_default();
        let nobody = flotilla::agent::user::lookup(user).unwrap().uid.to_string();
        assert_eq!(uid, nobody, "the task did not run as {user}:\n{out}");
    }
    for label in denied {
        assert!(
            out.lines().any(|l| l == format!("DENIED {label}")),
            "{label} was read:\n{out}"
        );
    }
    // The probes ran: what is the task's own is there to read.
    assert!(out.lines().any(|l| l == "READ env"), "{out}");
    assert!(out.lines().any(|l| l == "READ agent-cmdline"), "{out}");
}

#[test]
fn as_root_tasks_run_as_root_only_by_explicit_choice() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(crate::support::flotilla_exe())
            .args(args)
            .env_remove("FLOTILLA_RUN_AS")
            .env_remove("FLOTILLA_LOCAL_RUN_AS")
            .env("FLOTILLA_TOKEN", TOKEN)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let agent = run(&[
        "agent",
        "--server",
        "http://127.0.0.1:9",
        "--run-as",
        "no-such-user-x",
    ]);
    let said = String::from_utf8_lossy(&agent.stderr);
    assert!(!agent.status.success());
    assert!(said.contains("no-such-user-x: no such user"), "{said}");
    if euid() != 0 {
        // Not root: nothing to refuse, and no other user to switch to.
        let agent = run(&[
            "agent",
            "--server",
            "http://127.0.0.1:9",
            "--run-as",
            "root",
        ]);
        let said = String::from_utf8_lossy(&agent.stderr);
        assert!(said.contains("needs root"), "{said}");
        return;
    }
    let state = dir.path().join("state").display().to_string();
    for out in [
        run(&["serve", "--bind", "127.0.0.1:0", "--state-dir", &state]),
        run(&["agent", "--server", "http://127.0.0.1:9"]),
    ] {
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains("pass --run-as USER"), "{said}");
    }
    assert!(
        !dir.path().join("state").exists(),
        "the server refused after creating its state"
    );
}

/// Every file under `dir` that holds one of `planted`, with the value found.
fn holders(dir: &std::path::Path, planted: &[&str]) -> Vec<String> {
    crate::support::files_under(dir)
        .into_iter()
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            let hit = planted
                .iter()
                .find(|v| bytes.windows(v.len()).any(|w| w == v.as_bytes()))?;
            Some(format!("{} holds {hit}", p.display()))
        })
        .collect()
}

#[test]
fn secret_env_values_are_sealed_at_rest_and_open_for_the_task_across_a_restart_and_a_rotation() {
    let named = format!("plant-named-{}", std::process::id());
    let marked = format!("plant-marked-{}", std::process::id());
    let plain = format!("plain-visible-{}", std::process::id());
    // argv is stored as it is: the task compares its env with values it builds itself.
    let check = "test \"$DEPLOY_TOKEN\" = \"plant-named-$N\" && test \"$CUSTOM\" = \"plant-marked-$N\" && echo opened";
    let submit = |app: &App, caps: serde_json::Value| {
        app.submit(json!({
            "argv": ["sh", "-c", check],
            "env": {
                "DEPLOY_TOKEN": named,
                "CUSTOM": marked,
                "N": std::process::id().to_string(),
                "NOTE": plain,
            },
            "secretEnv": ["CUSTOM"],
            "capabilities": caps,
        }))
    };
    let app = App::start(1);
    let now = submit(&app, json!([]));
    // One waits, queued, across a restart of the server.
    let later = submit(&app, json!(["later"]));
    let id = now["id"].as_str().unwrap();
    app.wait_state(id, "succeeded", Duration::from_secs(30));
    let shown = app.task(id);
    assert!(
        shown["request"]["env"]["CUSTOM"]
            .as_str()
            .is_some_and(|v| v.starts_with("[REDACTED:task-secret:")),
        "{shown}"
    );
    let dir = app.crash();
    let app = App::start_in(dir, 1);
    // The key is rotated while the task waits: refused while the server runs, then done.
    let rotate = || {
        crate::support::flotilla_cmd()
            .args(["seal", "rotate", "--state-dir"])
            .arg(app.state_dir())
            .output()
            .unwrap()
    };
    let refused = rotate();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("must be stopped"),
        "{said}"
    );
    let key_before = std::fs::read_to_string(app.state_dir().join("seal.key")).unwrap();
    let dir = app.stop();
    let rotated = crate::support::flotilla_cmd()
        .args(["seal", "rotate", "--state-dir"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(
        said.starts_with("sealed 4 values of 2 tasks with key "),
        "{said}"
    );
    let key_after = std::fs::read_to_string(dir.path().join("state").join("seal.key")).unwrap();
    assert_eq!(key_after.lines().count(), 1);
    assert_ne!(key_after, key_before);
    let app = App::start_in(dir, 1);
    let _agent = app.remote_agent("later-box", "later");
    let later_id = later["id"].as_str().unwrap();
    app.wait_state(later_id, "succeeded", Duration::from_secs(30));
    for reply in [&now, &later] {
        let out: String = app
            .output(reply["handle"].as_str().unwrap())
            .into_iter()
            .map(|(_, _, data)| data)
            .collect();
        assert_eq!(out, "opened\n", "the task did not get its secret values");
    }
    let dir = app.stop();
    let found = holders(dir.path(), &[&named, &marked]);
    assert!(
        found.is_empty(),
        "secret values at rest:\n{}",
        found.join("\n")
    );
    // The grep sees what the database holds: a value that is not secret is found there.
    let found = holders(&dir.path().join("state"), &[&plain]);
    assert!(
        found.iter().any(|f| f.contains("flotilla.db")),
        "the grep found nothing: {found:?}"
    );
}

#[test]
fn a_task_whose_privacy_level_is_not_enforced_is_refused_naming_what_is_missing() {
    let app = App::start(0);
    let submit = |app: &App, level: &str| {
        app.client.submit(&json!({
            "schema": "flotilla.run-request/2.1.0",
            "argv": ["true"],
            "constraints": {"privacy": level},
        }))
    };
    // The guard is in shadow (the default): output would be stored as it is.
    for level in ["sensitive", "restricted"] {
        let Err(flotilla::client::ClientError::Api { status, detail, .. }) = submit(&app, level)
        else {
            panic!("a {level} task was accepted with the guard in shadow")
        };
        assert_eq!(status, 409);
        assert!(
            detail.contains(&format!("privacy level {level} is not enforced"))
                && detail.contains("shadow mode")
                && detail.contains("guard-policy approval"),
            "{detail}"
        );
    }
    assert!(submit(&app, "standard").is_ok());
    assert_eq!(
        app.client.tasks(None).unwrap()["tasks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    drop(app);
    // The operator's opt-out covers restricted, never sensitive.
    let app = App::start_with_config(0, "[guard]\nrun-restricted-unenforced = true\n");
    assert!(submit(&app, "restricted").is_ok());
    let Err(flotilla::client::ClientError::Api { status, .. }) = submit(&app, "sensitive") else {
        panic!("a sensitive task was accepted with the guard in shadow")
    };
    assert_eq!(status, 409);
}

#[test]
fn a_queued_task_whose_secrets_no_longer_open_fails_at_recovery_with_the_reason() {
    let app = App::start(0);
    let reply = app.submit(json!({
        "argv": ["true"],
        "env": {"DEPLOY_TOKEN": "plant-lost-key-value"},
    }));
    let id = reply["id"].as_str().unwrap().to_owned();
    let dir = app.crash();
    // The key file is replaced, as a restore of the database without its key would do.
    std::fs::write(
        dir.path().join("state").join("seal.key"),
        format!("{}\n", "ab".repeat(32)),
    )
    .unwrap();
    let app = App::start_in(dir, 0);
    let task = app.wait_state(&id, "failed", Duration::from_secs(20));
    let reason = task["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("secret env values do not open")
            && reason.contains("seal.key does not hold"),
        "{task}"
    );
}
