//! Chaos: 1,000 tasks over 4 agents while a random agent is SIGKILLed or SIGSTOPped
//! every 2 s and the server is `kill -9`ed twice. Every task ends once, every execution
//! is a recorded attempt, and no attempt runs on an instance lacking its capabilities.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{alive, flotilla_cmd, wait_for, App, ChildGuard, TOKEN};

const TASKS: usize = 1000;

/// A remote agent offering `gpu`, finding the server through its `server.url` (so it
/// follows the server across restarts); respawned by the chaos loop when killed.
fn remote_agent(app: &App, id: &str) -> ChildGuard {
    let token: Value = ureq::post(&format!("{}/v1/tokens/agent", app.base))
        .set("authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    ChildGuard(
        flotilla_cmd()
            .args(["agent", "--id", id, "--capabilities", "gpu,os:linux"])
            .arg("--server-file")
            .arg(app.state_dir().join("server.url"))
            .env("FLOTILLA_AGENT_TOKEN", token["token"].as_str().unwrap())
            .env_remove("FLOTILLA_TOKEN")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A tiny xorshift: each run faults different agents at different moments.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn a_thousand_tasks_survive_agent_kills_hangs_and_two_server_crashes() {
    let config = "[fleet]\nreattach-grace-ms = 5000\nrestart-limit = 1000\n\
                  [scheduler]\ncooldown-ms = 100\ncooldown-max-ms = 400\n";
    let mut app = App::start_with_config(2, config);
    let runs = app.dir.path().join("runs");
    let remotes: Arc<Mutex<Vec<(String, ChildGuard)>>> = Arc::new(Mutex::new(
        ["gpu-1", "gpu-2"]
            .iter()
            .map(|id| (id.to_string(), remote_agent(&app, id)))
            .collect(),
    ));
    app.wait_instances(4);

    let mut gpu = Vec::new();
    let mut ids = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let needs_gpu = i % 4 == 0;
        let script = format!("echo {i} >> {}; sleep 0.02", runs.display());
        let caps: Vec<&str> = if needs_gpu { vec!["gpu"] } else { vec![] };
        let reply = app.submit(json!({
            "argv": ["sh", "-c", script], "capabilities": caps, "maxAttempts": 20,
        }));
        ids.push(reply["id"].as_str().unwrap().to_owned());
        gpu.push(needs_gpu);
    }

    // The chaos: every 2 s a random connected agent is SIGKILLed or SIGSTOPped (and
    // continued 4 s later); killed remote agents are started again.
    let base = Arc::new(Mutex::new(app.base.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(Mutex::new(Vec::<String>::new()));
    let chaos = {
        let (base, stop, faults, remotes) =
            (base.clone(), stop.clone(), faults.clone(), remotes.clone());
        let state_dir = app.state_dir();
        std::thread::spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
            let token: Value = ureq::post(&format!("{}/v1/tokens/agent", base.lock().unwrap()))
                .set("authorization", &format!("Bearer {TOKEN}"))
                .call()
                .unwrap()
                .into_json()
                .unwrap();
            let token = token["token"].as_str().unwrap().to_owned();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(2));
                for (id, child) in remotes.lock().unwrap().iter_mut() {
                    if matches!(child.0.try_wait(), Ok(Some(_))) {
                        child.0 = flotilla_cmd()
                            .args(["agent", "--id", id, "--capabilities", "gpu,os:linux"])
                            .arg("--server-file")
                            .arg(state_dir.join("server.url"))
                            .env("FLOTILLA_AGENT_TOKEN", &token)
                            .env_remove("FLOTILLA_TOKEN")
                            .stdin(Stdio::null())
                            .stderr(Stdio::null())
                            .spawn()
                            .unwrap();
                    }
                }
                let url = format!("{}/v1/instances", base.lock().unwrap());
                let Ok(list) = ureq::get(&url)
                    .set("authorization", &format!("Bearer {TOKEN}"))
                    .call()
                else {
                    continue; // the server is down this moment
                };
                let list: Value = list.into_json().unwrap();
                let instances = list["instances"].as_array().cloned().unwrap_or_default();
                if instances.is_empty() {
                    continue;
                }
                let victim = &instances[rng.below(instances.len() as u64) as usize];
                let pid = victim["pid"].as_u64().unwrap() as i32;
                let hang = rng.below(2) == 0;
                // SAFETY: signals to an agent process of this test's fleet.
                unsafe { libc::kill(pid, if hang { libc::SIGSTOP } else { libc::SIGKILL }) };
                faults.lock().unwrap().push(format!(
                    "{} {}",
                    if hang { "SIGSTOP" } else { "SIGKILL" },
                    victim["id"]
                ));
                if hang {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(4));
                        // SAFETY: as above; a process already gone makes this a no-op.
                        unsafe { libc::kill(pid, libc::SIGCONT) };
                    });
                }
            }
        })
    };

    // Two crashes of the server while the work runs.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(5));
        let dir = app.crash();
        app = App::start_in(dir, 2);
        *base.lock().unwrap() = app.base.clone();
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let s = app.client.summary().unwrap();
        let done: u64 = ["succeeded", "failed", "cancelled", "timed_out"]
            .iter()
            .map(|k| s[k].as_u64().unwrap_or(0))
            .sum();
        if done == TASKS as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every task ended: {s}\nfaults: {:?}",
            faults.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    chaos.join().unwrap();
    let faults = faults.lock().unwrap().clone();
    assert!(faults.len() >= 5, "the chaos faulted agents: {faults:?}");

    let text = std::fs::read_to_string(&runs).unwrap();
    let mut executions: HashMap<usize, u64> = HashMap::new();
    for line in text.lines() {
        *executions.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    let gpu_ids: Vec<&str> = vec!["gpu-1", "gpu-2"];
    for (i, id) in ids.iter().enumerate() {
        let t = app.task(id);
        assert_eq!(t["state"], "succeeded", "task {i}: {t}");
        let recorded = t["attempts"].as_u64().unwrap();
        let ran = executions.get(&i).copied().unwrap_or(0);
        assert!(ran >= 1, "task {i} never ran: {t}");
        assert!(
            ran <= recorded,
            "task {i} ran {ran} times, {recorded} attempts recorded: {t}"
        );
        if gpu[i] {
            let run = t["runId"].as_str().unwrap();
            let manifest = app.manifest_path(id, run);
            let m: Value = wait_for(
                &format!("task {i}: the manifest is final"),
                Duration::from_secs(20),
                || {
                    let m: Value = serde_json::from_slice(&std::fs::read(&manifest).ok()?).ok()?;
                    (m["state"] == "succeeded").then_some(m)
                },
            );
            for a in m["attempts"].as_array().unwrap() {
                let on = a["instance"].as_str().unwrap();
                assert!(
                    gpu_ids.contains(&on),
                    "task {i} needs gpu, attempt on {on}: {m}"
                );
            }
        }
    }
    for (_, child) in remotes.lock().unwrap().drain(..) {
        let pid = child.pid();
        drop(child);
        assert!(!alive(pid));
    }
}
