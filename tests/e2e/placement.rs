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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (a, b) = (app.task(first), app.task(second));
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
