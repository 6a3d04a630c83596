//! Placement policies, per-capability limits and the cooldown, with real agents.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{signal, wait_for, App};

fn instances_of(app: &App, ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            app.wait_state(id, "running", Duration::from_secs(20))["instance"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn submit_sleepers(app: &App, n: usize, secs: &str) -> Vec<String> {
    (0..n)
        .map(|_| {
            app.submit(json!({"argv": ["sleep", secs]}))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn bin_pack_fills_one_instance_and_least_loaded_spreads() {
    let app = App::start_with_config(2, "local-slots = 2\n[scheduler]\npolicy = \"bin-pack\"\n");
    let ids = submit_sleepers(&app, 2, "3");
    let on = instances_of(&app, &ids);
    assert_eq!(on[0], on[1], "bin-pack puts both on one instance: {on:?}");

    let app = App::start_with_config(2, "local-slots = 2\n");
    let ids = submit_sleepers(&app, 2, "3");
    let on = instances_of(&app, &ids);
    assert_ne!(on[0], on[1], "least-loaded spreads them: {on:?}");
}

#[test]
fn a_capability_limit_holds_tasks_back_whatever_the_free_slots() {
    let app = App::start_with_config(2, "[scheduler.limits]\nlocal = 1\n");
    let first = app.submit(json!({"argv": ["sleep", "2"], "capabilities": ["local"]}));
    let second = app.submit(json!({"argv": ["true"], "capabilities": ["local"]}));
    let plain = app.submit(json!({"argv": ["sleep", "1"]}));
    let (first, second) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    app.wait_state(first, "running", Duration::from_secs(20));
    // A task without the limited capability takes the other slot meanwhile.
    app.wait_state(
        plain["id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(20),
    );
    // Until the first ends, the second never runs, though a slot is free.
    // The second is read before the first: while the first is still running
    // at the later read, the second must have been queued at the earlier one.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let b = app.task(second);
        let a = app.task(first);
        if a["state"] == "succeeded" {
            break;
        }
        assert_eq!(b["state"], "queued", "ran beside the first: {b}");
        assert!(Instant::now() < deadline, "the first task never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    app.wait_state(second, "succeeded", Duration::from_secs(20));
}

#[test]
fn an_instance_that_lost_an_attempt_cools_down_before_it_gets_work_again() {
    let app = App::start_with_config(2, "[scheduler]\ncooldown-ms = 4000\n");
    let first = app.submit(json!({"argv": ["sleep", "30"], "maxAttempts": 3}));
    let first = first["id"].as_str().unwrap().to_owned();
    let running = app.wait_state(&first, "running", Duration::from_secs(20));
    let victim = running["instance"].as_str().unwrap().to_owned();
    let pid = app.instance_pid(&victim).unwrap();
    let lost_at = Instant::now();
    signal(pid, libc::SIGKILL);
    // The task moves to the other instance at once, which is then full.
    wait_for("the task moved", Duration::from_secs(10), || {
        let t = app.task(&first);
        (t["state"] == "running" && t["instance"] != victim.as_str()).then_some(())
    });
    wait_for("the victim is back", Duration::from_secs(10), || {
        app.instance_pid(&victim).filter(|p| *p != pid).map(|_| ())
    });
    let second = app.submit(json!({"argv": ["true"]}));
    let second = second["id"].as_str().unwrap().to_owned();
    // Connected and free, but cooling down: the task waits.
    while lost_at.elapsed() < Duration::from_millis(3000) {
        assert_eq!(app.task(&second)["state"], "queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    let done = app.wait_state(&second, "succeeded", Duration::from_secs(20));
    assert_eq!(done["instance"], victim.as_str());
    assert!(lost_at.elapsed() >= Duration::from_millis(4000));
    app.client.cancel(&first).unwrap();
}

/// `flotilla instances …` against the test's server; its stdout.
fn cli(app: &App, args: &[&str]) -> String {
    let out = crate::support::flotilla_cmd()
        .arg("instances")
        .args(args)
        .args(["--server", &app.base])
        .env("FLOTILLA_TOKEN", crate::support::TOKEN)
        .output()
        .expect("run flotilla instances");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn state_of(app: &App, id: &str) -> String {
    app.instances()
        .iter()
        .find(|i| i["id"] == id)
        .map(|i| i["state"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn operators_cordon_drain_and_restart_instances() {
    let app = App::start(2);
    let listed = cli(&app, &[]);
    assert!(
        listed.contains("local-1") && listed.contains("ready"),
        "{listed}"
    );
    let cordoned = cli(&app, &["cordon", "local-1"]);
    assert!(
        cordoned
            .lines()
            .any(|l| l.starts_with("local-1") && l.contains("cordoned")),
        "{cordoned}"
    );
    let ids = submit_sleepers(&app, 2, "1");
    assert_eq!(
        instances_of(&app, &ids),
        ["local-2", "local-2"],
        "a cordoned instance gets nothing"
    );

    // Drain local-2 while it runs: draining, then drained; new work waits meanwhile.
    let busy = app.submit(json!({"argv": ["sleep", "1"]}));
    let busy = busy["id"].as_str().unwrap();
    app.wait_state(busy, "running", Duration::from_secs(20));
    cli(&app, &["drain", "local-2"]);
    assert_eq!(state_of(&app, "local-2"), "draining");
    let waiting = app.submit(json!({"argv": ["true"]}));
    let waiting = waiting["id"].as_str().unwrap();
    app.wait_state(busy, "succeeded", Duration::from_secs(20));
    wait_for("drained", Duration::from_secs(10), || {
        (state_of(&app, "local-2") == "drained").then_some(())
    });
    assert_eq!(app.task(waiting)["state"], "queued");
    cli(&app, &["uncordon", "local-1"]);
    let done = app.wait_state(waiting, "succeeded", Duration::from_secs(20));
    assert_eq!(done["instance"], "local-1");

    // A restart replaces a local agent's process; a remote one is not the server's.
    let before = app.instance_pid("local-1").unwrap();
    cli(&app, &["restart", "local-1"]);
    wait_for("local-1 restarted", Duration::from_secs(20), || {
        app.instance_pid("local-1")
            .filter(|p| *p != before)
            .map(|_| ())
    });
    let _remote = app.remote_agent("remote-1", "remote");
    wait_for("remote-1 connected", Duration::from_secs(20), || {
        app.instance_pid("remote-1").map(|_| ())
    });
    match app
        .client
        .admin("POST", "/admin/instances/remote-1/restart", None)
    {
        Err(flotilla::client::ClientError::Api { status: 409, .. }) => {}
        other => panic!("expected 409, got {other:?}"),
    }
    match app
        .client
        .admin("POST", "/admin/instances/nobody/cordon", None)
    {
        Err(flotilla::client::ClientError::Api { status: 404, .. }) => {}
        other => panic!("expected 404, got {other:?}"),
    }

    // A drain is kept in the store: it outlives a restart of the server.
    let app = App::start_in(app.stop(), 2);
    assert_eq!(state_of(&app, "local-2"), "drained");
    assert_eq!(state_of(&app, "local-1"), "ready");
}

#[test]
fn weighted_fair_shares_follow_the_weights_over_a_thousand_tasks() {
    let app = App::start_with_config(
        2,
        "[scheduler]\nfair-label = \"tenant\"\n[scheduler.weights]\nalpha = 3\n",
    );
    let starts = app.dir.path().join("starts");
    // Hold the fleet while the backlog builds, so both tenants always have work waiting.
    for id in ["local-1", "local-2"] {
        cli(&app, &["cordon", id]);
    }
    let mut ids = Vec::new();
    for i in 0..1000 {
        let tenant = if i % 2 == 0 { "alpha" } else { "beta" };
        let script = format!("echo {tenant} >> {}", starts.display());
        let reply = app.submit(json!({
            "schema": "flotilla.run-request/2.0.0",
            "argv": ["sh", "-c", script],
            "labels": {"tenant": tenant},
            "schedule": {"strategy": "weighted-fair"},
        }));
        ids.push(reply["id"].as_str().unwrap().to_owned());
    }
    for id in ["local-1", "local-2"] {
        cli(&app, &["uncordon", id]);
    }
    wait_for("every task ran", Duration::from_secs(120), || {
        let s = app.client.summary().unwrap();
        (s["succeeded"] == 1000).then_some(())
    });
    let text = std::fs::read_to_string(&starts).unwrap();
    let order: Vec<&str> = text.lines().collect();
    assert_eq!(order.len(), 1000);
    // While both have work waiting (alpha's 500 last about 667 starts at 3:1), alpha
    // takes three starts of four, within 5 % of that.
    let alpha = order[..600].iter().filter(|t| **t == "alpha").count() as f64 / 600.0;
    assert!(
        (alpha - 0.75).abs() <= 0.75 * 0.05,
        "alpha's share {alpha:.3}, want 0.75 ± 5 %"
    );
    eprintln!("alpha's share of the first 600 starts: {alpha:.3}");
    // beta never starves: it starts within the first few.
    assert!(order[..8].contains(&"beta"), "{:?}", &order[..8]);
}

#[test]
fn under_load_no_instance_exceeds_its_slots_or_runs_what_it_lacks() {
    let app = App::start_with_config(2, "local-slots = 2\n");
    let _gpu = app.remote_agent("gpu-1", "gpu");
    app.wait_instances(3);
    let stamps = app.dir.path().join("stamps");
    std::fs::create_dir_all(&stamps).unwrap();
    let tasks: Vec<(usize, String, bool)> = (0..60)
        .map(|i| {
            let gpu = i % 3 == 0;
            let script = format!(
                "echo $(date +%s%N) > {0}/{i}.s; sleep 0.05; echo $(date +%s%N) > {0}/{i}.e",
                stamps.display()
            );
            let caps: Vec<&str> = if gpu { vec!["gpu"] } else { vec![] };
            let reply = app.submit(json!({"argv": ["sh", "-c", script], "capabilities": caps}));
            (i, reply["id"].as_str().unwrap().to_owned(), gpu)
        })
        .collect();
    let mut runs: std::collections::BTreeMap<String, Vec<(u64, u64)>> = Default::default();
    for (i, id, gpu) in &tasks {
        let done = app.wait_state(id, "succeeded", Duration::from_secs(60));
        let instance = done["instance"].as_str().unwrap().to_owned();
        if *gpu {
            assert_eq!(
                instance, "gpu-1",
                "a gpu task ran where there is none: {done}"
            );
        }
        let stamp = |ext: &str| -> u64 {
            let path = stamps.join(format!("{i}.{ext}"));
            std::fs::read_to_string(path)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        runs.entry(instance)
            .or_default()
            .push((stamp("s"), stamp("e")));
    }
    for (instance, intervals) in &runs {
        // The most runs at one moment: at each start, count those begun and not ended.
        let most = intervals
            .iter()
            .map(|(s, _)| intervals.iter().filter(|(a, b)| a <= s && s < b).count())
            .max()
            .unwrap_or(0);
        let slots = if instance == "gpu-1" { 1 } else { 2 };
        assert!(
            most <= slots,
            "{instance} ran {most} at once with {slots} slots"
        );
    }
    assert_eq!(
        runs.len(),
        3,
        "all three instances took work: {:?}",
        runs.keys()
    );
}

#[test]
fn short_tasks_are_sent_ahead_and_one_cancelled_while_it_waits_never_runs() {
    let app = App::start(1);
    // Short tasks teach the server that this instance's tasks are short.
    for _ in 0..5 {
        let t = app.submit(json!({"argv": ["true"]}));
        app.wait_state(
            t["id"].as_str().unwrap(),
            "succeeded",
            Duration::from_secs(20),
        );
    }
    let blocker = app.submit(json!({"argv": ["sleep", "3"]}));
    let blocker = blocker["id"].as_str().unwrap().to_owned();
    app.wait_state(&blocker, "running", Duration::from_secs(20));
    // The next task goes ahead to the busy agent: recorded as running, it waits there
    // for the slot.
    let marker = app.dir.path().join("ran");
    let waiting = app.submit(json!({"argv": ["touch", marker.display().to_string()]}));
    let waiting = waiting["id"].as_str().unwrap().to_owned();
    let ahead = app.wait_state(&waiting, "running", Duration::from_secs(5));
    assert_eq!(ahead["instance"], "local-1", "{ahead}");
    app.client.cancel(&waiting).unwrap();
    let cancelled = app.wait_state(&waiting, "cancelled", Duration::from_secs(2));
    assert_eq!(
        app.task(&blocker)["state"],
        "running",
        "cancelled before the slot freed"
    );
    assert!(
        !marker.exists(),
        "a task cancelled while it waited never ran: {cancelled}"
    );
    app.wait_state(&blocker, "succeeded", Duration::from_secs(20));
    assert!(!marker.exists());
}
