//! Fleet scenarios: how fast a lost instance's work runs again (`mttr`), whether a
//! crash of the server runs anything twice (`reexec`), and how busy saturated mixed
//! load keeps the slots (`utilization`, beside the same load run without flotilla).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::{round, Server};

/// Milliseconds from a fault to the task running again on another instance, over
/// `rounds` SIGKILLs and `rounds` SIGSTOPs of the agent that runs it.
pub fn mttr(exe: &PathBuf, rounds: u64) -> anyhow::Result<Value> {
    // The same agent is faulted round after round: lift the restart limit that would
    // otherwise (rightly) mark it failed.
    let server = Server::start(exe, 2, "[fleet]\nrestart-limit = 1000\n")?;
    let mut kill = Vec::new();
    let mut stop = Vec::new();
    for round in 0..2 * rounds {
        let sig = if round % 2 == 0 {
            libc::SIGKILL
        } else {
            libc::SIGSTOP
        };
        let reply = server
            .client
            .submit(&json!({"argv": ["sleep", "60"], "maxAttempts": 3}))?;
        let id = reply["id"].as_str().context("no id")?.to_owned();
        let running = wait_task(&server, &id, Duration::from_secs(30), |t| {
            t["state"] == "running"
        })?;
        let victim = running["instance"]
            .as_str()
            .context("no instance")?
            .to_owned();
        let pid = instance_pid(&server, &victim)?.context("victim not connected")?;
        // Let the attempt start on the agent before the fault.
        std::thread::sleep(Duration::from_millis(200));
        let fault = Instant::now();
        signal(pid, sig);
        wait_task(&server, &id, Duration::from_secs(30), |t| {
            t["state"] == "running" && t["attempts"] == 2 && t["instance"] != victim.as_str()
        })?;
        let ms = fault.elapsed().as_secs_f64() * 1000.0;
        if sig == libc::SIGKILL {
            kill.push(ms);
        } else {
            stop.push(ms);
        }
        server.client.cancel(&id)?;
        // The supervisor restarts the victim (the hung one after killing it).
        server.wait(Duration::from_secs(30), |c| {
            let back = instance_pid(&server, &victim)?.is_some_and(|p| p != pid);
            Ok(back && c.instances()?["instances"].as_array().map_or(0, Vec::len) == 2)
        })?;
        server.wait(Duration::from_secs(30), |_| {
            Ok(server.client.task(&id)?["state"] == "cancelled")
        })?;
    }
    Ok(json!({
        "scenario": "mttr",
        "rounds": rounds,
        "lease_timeout_ms": flotilla_actors::fleet::DEFAULT_LEASE_TIMEOUT_MS,
        "mttr_kill_p50_ms": round(median(&mut kill)),
        "mttr_stop_p50_ms": round(median(&mut stop)),
        "kill_ms": kill.iter().map(|x| round(*x)).collect::<Vec<_>>(),
        "stop_ms": stop.iter().map(|x| round(*x)).collect::<Vec<_>>(),
    }))
}

/// `n` short tasks, each appending its number to a shared file, while the server is
/// `kill -9`ed `kills` times at random points and restarted on the same state dir.
/// Counts executions per task against recorded attempts.
pub fn reexec(exe: &PathBuf, n: u64, kills: u64) -> anyhow::Result<Value> {
    let config = "[fleet]\nreattach-grace-ms = 5000\n";
    let mut server = Server::start(exe, 2, config)?;
    let runs = server.dir.join("runs.log");
    let mut rng = Rng::seeded();
    let start = Instant::now();
    let mut ids = Vec::with_capacity(n as usize);
    let per_kill = n / (kills + 1);
    let mut kill_at: Vec<u64> = (1..=kills)
        .map(|k| k * per_kill + rng.below(per_kill / 2))
        .collect();
    kill_at.reverse();
    for i in 0..n {
        if kill_at.last() == Some(&i) {
            kill_at.pop();
            // Let the burst run a moment, then crash at a point of the rng's choosing.
            std::thread::sleep(Duration::from_millis(rng.below(300)));
            server.crash_and_restart(exe, 2)?;
        }
        let script = format!("echo {i} >> {}; sleep 0.05", runs.display());
        let reply = server
            .client
            .submit(&json!({"argv": ["sh", "-c", script], "maxAttempts": 5}))?;
        ids.push(reply["id"].as_str().context("no id")?.to_owned());
    }
    server.wait(Duration::from_secs(300), |_| Ok(server.finished()? == n))?;
    let secs = start.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&runs).unwrap_or_default();
    let mut executions: HashMap<u64, u64> = HashMap::new();
    for line in text.lines() {
        *executions.entry(line.trim().parse()?).or_default() += 1;
    }
    let mut attempts = 0;
    let mut unrecorded = 0;
    let mut failed = 0;
    for (i, id) in ids.iter().enumerate() {
        let t = server.client.task(id)?;
        let recorded = t["attempts"].as_u64().unwrap_or(0);
        let ran = executions.get(&(i as u64)).copied().unwrap_or(0);
        attempts += recorded;
        unrecorded += ran.saturating_sub(recorded);
        failed += u64::from(t["state"] != "succeeded");
    }
    let ran: u64 = executions.values().sum();
    Ok(json!({
        "scenario": "reexec_after_server_kill",
        "tasks": n,
        "server_kills": kills,
        "secs": round(secs),
        "failed": failed,
        "never_ran": n - executions.len() as u64,
        "executions": ran,
        "recorded_attempts": attempts,
        "reexec_after_server_kill": ran - executions.len() as u64,
        "unrecorded_executions": unrecorded,
    }))
}

/// 8 slots on 4 remote agents (two offer `a`, two `b`, two slots each) under `n` tasks of
/// 200 ms each, a third needing `a`, a third `b`, a third either; submitted up front.
/// Each task stamps its own start and end: busy slot-time over available slot-time
/// (8 × first start to last end).
pub fn utilization(exe: &PathBuf, n: u64) -> anyhow::Result<Value> {
    let server = Server::start(exe, 0, "")?;
    let stamps = server.dir.join("stamps");
    std::fs::create_dir_all(&stamps)?;
    let mut agents = Vec::new();
    for (id, cap) in [("a-1", "a"), ("a-2", "a"), ("b-1", "b"), ("b-2", "b")] {
        agents.push(Agent::start(exe, &server, id, cap, 2)?);
    }
    server.wait(Duration::from_secs(30), |c| {
        Ok(c.instances()?["instances"].as_array().map_or(0, Vec::len) == 4)
    })?;
    for i in 0..n {
        let caps: Vec<&str> = match i % 3 {
            0 => vec!["a"],
            1 => vec!["b"],
            _ => vec![],
        };
        let script = stamped_task(&stamps, i);
        server
            .client
            .submit(&json!({"argv": ["sh", "-c", script], "capabilities": caps}))?;
    }
    server.wait(Duration::from_secs(600), |_| Ok(server.finished()? == n))?;
    let (busy, makespan) = busy_and_makespan(&stamps, n)?;
    drop(agents);
    drop(server);

    // The same tasks run straight from 8 threads, each starting the next the moment the
    // last one ends: what the process starts alone cost on this machine, in this run.
    let floor_stamps = std::env::temp_dir().join(format!("flotilla-floor-{}", std::process::id()));
    std::fs::create_dir_all(&floor_stamps)?;
    let next = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let _ = Command::new("sh")
                    .args(["-c", &stamped_task(&floor_stamps, i)])
                    .status();
            });
        }
    });
    let (floor_busy, floor_makespan) = busy_and_makespan(&floor_stamps, n)?;
    let _ = std::fs::remove_dir_all(&floor_stamps);
    let utilization = busy / (8.0 * makespan);
    let floor = floor_busy / (8.0 * floor_makespan);
    Ok(json!({
        "scenario": "utilization",
        "tasks": n,
        "slots": 8,
        "makespan_s": round(makespan),
        "ideal_makespan_s": round(n as f64 * 0.2 / 8.0),
        "utilization": round(utilization),
        "direct_makespan_s": round(floor_makespan),
        "direct_utilization": round(floor),
        "ratio_to_direct": round(utilization / floor),
    }))
}

/// A task of 200 ms that stamps when it began and ended into `dir/<i>`.
fn stamped_task(dir: &Path, i: u64) -> String {
    format!(
        "s=$(date +%s%N); sleep 0.2; echo $s $(date +%s%N) > {}",
        dir.join(i.to_string()).display()
    )
}

/// The busy time of `n` stamped tasks, summed, and from the first start to the last
/// end, in seconds.
fn busy_and_makespan(dir: &Path, n: u64) -> anyhow::Result<(f64, f64)> {
    let (mut first, mut last, mut busy) = (u64::MAX, 0u64, 0u64);
    for i in 0..n {
        let text = std::fs::read_to_string(dir.join(i.to_string()))
            .with_context(|| format!("task {i} left no stamps"))?;
        let mut parts = text.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(s)), Some(Ok(e))) = (parts.next(), parts.next()) else {
            bail!("task {i}: unreadable stamps {text:?}");
        };
        first = first.min(s);
        last = last.max(e);
        busy += e - s;
    }
    Ok((busy as f64 / 1e9, (last - first) as f64 / 1e9))
}

/// A remote agent of the bench, killed when dropped.
struct Agent(Child);

impl Agent {
    fn start(
        exe: &Path,
        server: &Server,
        id: &str,
        caps: &str,
        slots: u32,
    ) -> anyhow::Result<Self> {
        let token = server.client.admin("POST", "/v1/tokens/agent", None)?;
        let child = Command::new(exe)
            .args(["agent", "--server", server.client.base(), "--id", id])
            .args(["--capabilities", caps, "--slots", &slots.to_string()])
            .env(
                "FLOTILLA_AGENT_TOKEN",
                token["token"].as_str().context("no token")?,
            )
            .env_remove("FLOTILLA_TOKEN")
            .env("FLOTILLA_RUN_AS", crate::own_uid())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting an agent")?;
        Ok(Self(child))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_task(
    server: &Server,
    id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    server
        .client
        .wait_task(id, limit, done)?
        .with_context(|| format!("task {id} did not get there in time"))
}

fn instance_pid(server: &Server, id: &str) -> anyhow::Result<Option<u32>> {
    Ok(server.client.instance_pid(id)?)
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill only sends a signal, to an agent of the bench's own server.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// A small xorshift generator seeded from the clock: the kill points (and the fan-out's
/// drop points) differ per run.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self(nanos | 1)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
