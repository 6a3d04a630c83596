//! `flotilla-bench SCENARIO`: benchmarks of the real binary, one JSON object per line.
//!
//! * `exec [N]`: N (default 2,000) tasks of `/bin/true` on 2 local slots, beside
//!   `xargs -P 2 -n 1 /bin/true` over the same count in the same run: submitted in
//!   batches of 1,000 (`ratio`), then one POST per task from 4 threads (`ratio_single`),
//!   then 200 round trips one after another, submission to final status (`rtt_*`).
//! * `stream [MB]`: one task writing MB (default 200) megabytes to stdout, one observer;
//!   end-to-end throughput from submit to the status frame, once per guard mode (off,
//!   shadow, enforce) on the same server.
//! * `guard [MB]`: the privacy guard's detector engine, all rules on, over MB (default
//!   100) megabytes of generated log-like text on one core, in 64 KiB frames; also the
//!   p99 scan time of a 4 KiB frame, and the p99 time the streaming redactor (enforce)
//!   adds to a 4 KiB frame: the guard's latency outside hold-back.
//!
//! * `validate [N]`: the control plane. The cost of checking one typical RunRequest v2
//!   (parse, schema, typed), median over 20,000; then N (default 6,000) `POST /v1/tasks`
//!   per phase from 4 threads, validation enforced and off in ABBA order twice, on one server
//!   with no agents (tasks stay queued): the throughput ratio is the overhead.
//!
//! * `mttr [ROUNDS]`: 2 local agents; a running task's agent is SIGKILLed, then (next
//!   round) SIGSTOPped, ROUNDS (default 5) times each: milliseconds until the task runs
//!   again on the other agent (p50 of each).
//! * `reexec [N]`: N (default 500) short tasks on 2 local agents, each appending its
//!   number to a file, while the server is `kill -9`ed 3 times at random points and
//!   restarted: executions beyond one per task, and executions with no recorded attempt.
//! * `utilization [N]`: 8 slots on 4 agents of two capabilities, N (default 400) tasks of
//!   200 ms of mixed requirements submitted at once: busy over available slot-time,
//!   beside the same tasks started straight from 8 threads in the same run (the floor
//!   that process starts alone leave on this machine) and the ratio of the two.
//!
//! * `spawn [N]`: the agent's ways to start a task, N (default 2,000) `/bin/true` each,
//!   one after another from a single-threaded runtime as in the agent, in alternating
//!   rounds: `fork` (a `pre_exec` hook for `PR_SET_PDEATHSIG`, which forces fork + exec)
//!   and `posix_spawn` (no hook; the agent's path, with the reaper in place of the
//!   signal). Median and p90 of the `spawn` call and of spawn to exit, in microseconds.
//!
//! * `fanout [LINES]`: one task writing LINES (default 80,000) lines of 256 bytes, each
//!   stamped with the producer's clock, followed by 100 observers from one runtime (85
//!   fast, 10 reading at a tenth of their rate, 5 dropping and resuming 3 times): lines
//!   per second to all, lines lost or repeated, p99 latency, what the slow ones cost the
//!   fast ones, server memory per idle and per stalled observer, and the same fan-out
//!   through a NATS server of the run's own (`ratio`).
//! * `ingest [N]`: N (default 2,000,000) frames of 100 bytes into an in-process frame log
//!   over 64 handles from 8 tasks, until all are durable: frames and MB per second.
//! * `replay [MB]`: MB (default 1,024) megabytes in 64 KiB frames read back from an
//!   in-process frame log as an observer reads it, and through the server by one
//!   observer of a finished task (`ws_mb_per_s`).
//!
//! * `page [INSTANCES] [TASKS]`: the admin page in headless Chromium with INSTANCES
//!   (default 200) agents and TASKS (default 10,000) finished tasks: time to first
//!   render, each refresh's cost, long tasks on the main thread, and how long an
//!   operator's change through the API takes to show.
//!
//! * `rollout [TASKS]`: the autonomy upgrade's scenario: TASKS (default 60) tasks per
//!   phase on four agents, one a flaky host killed whenever it runs something for 300 ms;
//!   a baseline with the cooldown in shadow, then advanced to limited and full through
//!   its gates; the four reports and the review (docs/TECH_SPEC_AUTONOMY_UPGRADE.md).
//!
//! Run with `cargo run --release --bin flotilla-bench -- SCENARIO`; the harness builds the
//! `flotilla` binary beside itself first. Figures are for comparison within one run.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod fleet;
mod page;
mod rollout;
mod streams;

use anyhow::{bail, Context};
use flotilla::client::{next_frame, open_stream, Client};
use flotilla_actors::protocol::StreamKind;
use serde_json::{json, Value};

const TOKEN: &str = "bench-admin-token-0123456789";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("");
    let param = |default: u64| -> anyhow::Result<u64> {
        args.get(1)
            .map(|s| s.parse().with_context(|| format!("{s:?} is not a number")))
            .unwrap_or(Ok(default))
    };
    let exe = match scenario {
        "guard" | "spawn" | "ingest" => PathBuf::new(),
        _ => flotilla_exe()?,
    };
    let result = match scenario {
        "exec" => exec(&exe, param(2000)?)?,
        "stream" => stream(&exe, param(200)?)?,
        "guard" => guard(param(100)?)?,
        "validate" => validate(&exe, param(6000)?)?,
        "mttr" => fleet::mttr(&exe, param(5)?)?,
        "reexec" => fleet::reexec(&exe, param(500)?, 3)?,
        "utilization" => fleet::utilization(&exe, param(400)?)?,
        "spawn" => spawn(param(2000)?)?,
        "fanout" => streams::fanout(&exe, param(80_000)?)?,
        "ingest" => streams::ingest(param(2_000_000)?)?,
        "replay" => streams::replay(&exe, param(1024)?)?,
        "rollout" => rollout::rollout(&exe, param(60)?)?,
        "page" => {
            let tasks = args
                .get(2)
                .map(|s| s.parse().with_context(|| format!("{s:?} is not a number")))
                .unwrap_or(Ok(10_000))?;
            page::page(&exe, param(200)?, tasks)?
        }
        other => bail!(
            "unknown scenario {other:?}; use exec [N], stream [MB], guard [MB], validate [N], \
             mttr [ROUNDS], reexec [N], utilization [N], spawn [N], fanout [LINES], \
             ingest [N], replay [MB], page [INSTANCES] [TASKS] or rollout [TASKS]"
        ),
    };
    println!("{result}");
    Ok(())
}

/// This process's uid: agents run tasks as the bench's own user (as root, agents
/// refuse to without that explicit choice).
fn own_uid() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .unwrap_or_default()
}

/// The `flotilla` binary of the same profile, built first when run through cargo.
fn flotilla_exe() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("executable without a folder")?;
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "--bin", "flotilla"]);
        if dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().context("building flotilla")?;
        if !status.success() {
            bail!("building flotilla failed");
        }
    }
    let exe = dir.join("flotilla");
    if !exe.exists() {
        bail!("{} is missing; build it first", exe.display());
    }
    Ok(exe)
}

/// A `flotilla serve` in a scratch folder, stopped and removed when dropped.
struct Server {
    child: Child,
    dir: PathBuf,
    client: Client,
}

impl Server {
    /// Starts `flotilla serve` with `local` agents and `config` as its flotilla.toml.
    fn start(exe: &PathBuf, local: u32, config: &str) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("flotilla-bench-{}-{}", std::process::id(), local));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("flotilla.toml"), config)?;
        Self::launch(exe, dir, local)
    }

    /// `kill -9` of the server, then a new one on the same folder (its local agents
    /// outlive the crash and re-attach).
    fn crash_and_restart(&mut self, exe: &PathBuf, local: u32) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        let next = Self::launch(exe, self.dir.clone(), local)?;
        // The old child is reaped; the new server takes its place.
        let old = std::mem::replace(self, next);
        std::mem::forget(old);
        Ok(())
    }

    fn launch(exe: &PathBuf, dir: PathBuf, local: u32) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--local-instances",
                &local.to_string(),
                "--local-slots",
                "1",
            ])
            .current_dir(&dir)
            .env("FLOTILLA_LOCAL_RUN_AS", own_uid())
            .env("FLOTILLA_TOKEN", TOKEN)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(server_log()?)
            .spawn()
            .context("starting flotilla serve")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let base = line
            .trim()
            .strip_prefix("flotilla listening on ")
            .with_context(|| format!("unexpected first line {line:?}"))?
            .to_owned();
        let client = Client::new(&base, TOKEN);
        let server = Self { child, dir, client };
        server.wait(Duration::from_secs(30), |c| {
            Ok(c.instances()?["instances"].as_array().map_or(0, Vec::len) == local as usize)
        })?;
        Ok(server)
    }

    fn wait(
        &self,
        limit: Duration,
        mut done: impl FnMut(&Client) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while !done(&self.client)? {
            if Instant::now() > deadline {
                bail!("timed out");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }

    fn finished(&self) -> anyhow::Result<u64> {
        let s: Value = self.client.summary()?;
        Ok(
            ["succeeded", "failed", "cancelled", "timed_out", "poisoned"]
                .iter()
                .map(|k| s[k].as_u64().unwrap_or(0))
                .sum(),
        )
    }
}

impl Drop for Server {
    /// Stops the server as an operator would, so that it stops its local agents too.
    fn drop(&mut self) {
        flotilla::process::terminate(&mut self.child, Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the server's log goes: `FLOTILLA_BENCH_SERVER_LOG` (a file), else nowhere.
fn server_log() -> anyhow::Result<Stdio> {
    Ok(match std::env::var_os("FLOTILLA_BENCH_SERVER_LOG") {
        Some(path) => Stdio::from(std::fs::File::create(path)?),
        None => Stdio::null(),
    })
}

/// Submits `body` `n` times from `threads` client threads.
fn submit_from(client: &Client, threads: u64, n: u64, body: &Value) -> anyhow::Result<()> {
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                let client = client.clone();
                s.spawn(move || -> anyhow::Result<()> {
                    for _ in (w..n).step_by(threads as usize) {
                        client.submit(body)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("submitter panicked"))??;
        }
        Ok(())
    })
}

/// Seconds `xargs -P 2 -n 1 /bin/true` takes over `n` arguments.
fn xargs_secs(n: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut child = Command::new("xargs")
        .args(["-P", "2", "-n", "1", "/bin/true"])
        .stdin(Stdio::piped())
        .spawn()
        .context("running xargs")?;
    let input: String = (1..=n).map(|i| format!("{i}\n")).collect();
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    if !child.wait()?.success() {
        bail!("xargs failed");
    }
    Ok(start.elapsed().as_secs_f64())
}

fn exec(exe: &PathBuf, n: u64) -> anyhow::Result<Value> {
    let xargs_before = xargs_secs(n)?;
    let server = Server::start(exe, 2, "")?;
    let task = json!({"argv": ["/bin/true"]});
    let warmup = 20;
    for _ in 0..warmup {
        server.client.submit(&task)?;
    }
    let mut done = warmup;
    server.wait(Duration::from_secs(60), |_| Ok(server.finished()? == done))?;

    // Batch submission (the default): one POST per 1,000 tasks.
    let start = Instant::now();
    let batch: Vec<Value> = (0..n.min(1000)).map(|_| task.clone()).collect();
    let mut left = n;
    while left > 0 {
        let take = left.min(1000) as usize;
        let reply = server.client.submit_batch(&batch[..take])?;
        if reply["accepted"].as_u64() != Some(take as u64) {
            bail!("a batch was not accepted whole: {reply}");
        }
        left -= take as u64;
    }
    let submitted = start.elapsed().as_secs_f64();
    done += n;
    server.wait(Duration::from_secs(600), |_| Ok(server.finished()? == done))?;
    let flotilla = start.elapsed().as_secs_f64();

    // One POST per task, from 4 client threads.
    let start = Instant::now();
    submit_from(&server.client, 4, n, &task)?;
    let single_submitted = start.elapsed().as_secs_f64();
    done += n;
    server.wait(Duration::from_secs(600), |_| Ok(server.finished()? == done))?;
    let single = start.elapsed().as_secs_f64();

    // Round trips: one task at a time, from its submission to its final status.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rtt = Vec::with_capacity(200);
    for _ in 0..200 {
        let start = Instant::now();
        let reply = server.client.submit(&task)?;
        let handle = reply["handle"].as_str().context("no handle")?;
        rt.block_on(flotilla::client::follow(
            server.client.base(),
            server.client.token(),
            handle,
            0,
            Duration::from_secs(30),
            |_| {},
        ))?;
        rtt.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    rtt.sort_by(|a, b| a.total_cmp(b));
    let failed = server.client.summary()?["failed"].as_u64().unwrap_or(0);
    drop(server);
    let xargs_after = xargs_secs(n)?;
    let xargs = xargs_before.min(xargs_after);
    Ok(json!({
        "scenario": "exec",
        "tasks": n,
        "slots": 2,
        "failed": failed,
        "submit_s": round(submitted),
        "flotilla_s": round(flotilla),
        "flotilla_per_s": round(n as f64 / flotilla),
        "single_submit_s": round(single_submitted),
        "flotilla_single_per_s": round(n as f64 / single),
        "xargs_s": round(xargs),
        "xargs_per_s": round(n as f64 / xargs),
        "ratio": round(xargs / flotilla),
        "ratio_single": round(xargs / single),
        "rtt_p50_ms": round(rtt[rtt.len() / 2]),
        "rtt_p99_ms": round(rtt[rtt.len() * 99 / 100]),
    }))
}

fn spawn(n: u64) -> anyhow::Result<Value> {
    use std::os::unix::process::CommandExt as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let one = |fork: bool| -> anyhow::Result<(f64, f64)> {
        let mut cmd = tokio::process::Command::new("/bin/true");
        cmd.env_remove("FLOTILLA_AGENT_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if fork {
            // SAFETY: prctl is async-signal-safe.
            unsafe {
                cmd.as_std_mut().pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let _in_runtime = rt.enter();
        let start = Instant::now();
        let mut child = cmd.spawn()?;
        let spawned = start.elapsed().as_secs_f64() * 1e6;
        rt.block_on(child.wait())?;
        Ok((spawned, start.elapsed().as_secs_f64() * 1e6))
    };
    let mut times = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    for round in 0..10 {
        for (i, fork) in [(0, true), (1, false)] {
            let fork = if round % 2 == 0 { fork } else { !fork };
            let i = if round % 2 == 0 { i } else { 1 - i };
            for _ in 0..n / 10 {
                let (s, e) = one(fork)?;
                times[i].0.push(s);
                times[i].1.push(e);
            }
        }
    }
    for v in times.iter_mut().flat_map(|(s, e)| [s, e]) {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    let at = |v: &[f64], q: usize| v[v.len() * q / 100];
    let stats = |v: &[f64]| json!({"p50_us": round(at(v, 50)), "p90_us": round(at(v, 90))});
    let [(fs, fe), (ps, pe)] = &times;
    Ok(json!({
        "scenario": "spawn",
        "each": n,
        "fork": {"spawn": stats(fs), "to_exit": stats(fe)},
        "posix_spawn": {"spawn": stats(ps), "to_exit": stats(pe)},
        "to_exit_fork_over_posix_spawn": round(at(fe, 50) / at(pe, 50).max(1e-9)),
    }))
}

fn stream(exe: &PathBuf, mb: u64) -> anyhow::Result<Value> {
    let server = Server::start(exe, 1, "[guard]\napprovers = [\"bench\"]\n")?;
    // Enforcing needs a policy approval: requested by one person, approved by another.
    let approval = server.client.admin(
        "POST",
        "/admin/guard/approvals",
        Some(&json!({"kind": "guard-policy", "reason": "benchmark", "requestedBy": "harness"})),
    )?;
    let id = approval["id"].as_str().context("approval without an id")?;
    server.client.admin(
        "POST",
        &format!("/admin/guard/approvals/{id}/approve"),
        Some(&json!({"by": "bench"})),
    )?;
    let mut result = json!({"scenario": "stream", "mb": mb});
    for mode in ["off", "shadow", "enforce"] {
        server.client.admin(
            "PUT",
            "/admin/guard/modes",
            Some(&json!({"mode": mode, "by": "bench"})),
        )?;
        result[mode] = stream_once(&server, mb)?;
    }
    let rate = |m: &str| result[m]["mb_per_s"].as_f64().unwrap_or(0.0);
    result["enforce_vs_off"] = round(rate("enforce") / rate("off")).into();
    Ok(result)
}

/// One task writes `mb` MB; one observer follows it to the status frame.
fn stream_once(server: &Server, mb: u64) -> anyhow::Result<Value> {
    let bytes = mb * 1_000_000;
    let line = "flotilla stream benchmark: a line of log-like text, 80 bytes long, ASCII only.";
    let script = format!("yes '{line}' | head -c {bytes}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let reply = server
        .client
        .submit(&json!({"argv": ["sh", "-c", script]}))?;
    let handle = reply["handle"].as_str().context("no handle")?.to_owned();
    let base = server.client.base().to_owned();
    let (received, frames) = rt.block_on(async {
        let mut ws = open_stream(&base, TOKEN, &handle, 0).await?;
        let (mut received, mut frames) = (0u64, 0u64);
        while let Some(f) = next_frame(&mut ws).await? {
            frames += 1;
            match f.kind {
                StreamKind::Stdout => received += f.data.len() as u64,
                StreamKind::Status => break,
                StreamKind::Stderr
                | StreamKind::Guard
                | StreamKind::Gap
                | StreamKind::Truncated => {}
            }
        }
        anyhow::Ok((received, frames))
    })?;
    let secs = start.elapsed().as_secs_f64();
    if received != bytes {
        bail!("observer received {received} bytes, expected {bytes}");
    }
    Ok(json!({
        "bytes": received,
        "frames": frames,
        "secs": round(secs),
        "mb_per_s": round(received as f64 / 1e6 / secs),
    }))
}

/// A typical RunRequest v2: a build with env, labels, a schedule and constraints.
fn typical_v2() -> Value {
    json!({
        "schema": "flotilla.run-request/2.0.0",
        "requestedBy": "ci@build-farm",
        "argv": ["cargo", "test", "--workspace", "--release"],
        "env": {"RUST_LOG": "info", "CARGO_TERM_COLOR": "never", "CI": "true"},
        "cwd": "/src/app",
        "timeoutSeconds": 1800,
        "capabilities": ["os:linux", "local"],
        "labels": {"team": "infra", "pipeline": "main"},
        "schedule": {"strategy": "single", "recovery": {"heartbeatIntervalMs": 2000, "maxRetries": 2}},
        "streaming": {"handles": ["stdout", "stderr"], "resume": true,
                      "observers": {"maxSubscribers": 8, "backpressure": "catch-up"}},
        "constraints": {"privacy": "standard", "policyVersion": "1.0.0"},
        "metrics": {"emitIntervalMs": 1000, "requiredDimensions": ["task", "instance"]}
    })
}

fn validate(exe: &PathBuf, n: u64) -> anyhow::Result<Value> {
    use flotilla_actors::control_plane::{ControlPlane, ControlPlaneConfig};
    let plane = ControlPlane::new(ControlPlaneConfig::default())?;
    let body = typical_v2().to_string().into_bytes();
    let doc = typical_v2();
    let entry = plane
        .registry
        .get("flotilla.run-request", Some("2.0.0"))
        .map_err(|e| anyhow::anyhow!(e))?;
    let median_ns = |f: &mut dyn FnMut()| {
        let mut times: Vec<u128> = (0..20_000)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_nanos()
            })
            .collect();
        times.sort_unstable();
        times[times.len() / 2]
    };
    let whole = median_ns(&mut || {
        std::hint::black_box(plane.parse_run_request(&body).ok());
    });
    let schema_only = median_ns(&mut || {
        std::hint::black_box(entry.validator.is_valid(&doc));
    });

    let server = Server::start(exe, 0, "")?;
    let rate = |mode: &str| -> anyhow::Result<f64> {
        server.client.admin(
            "PUT",
            "/admin/control-plane/modes",
            Some(&json!({"schema": "flotilla.run-request", "mode": mode, "by": "bench"})),
        )?;
        let start = Instant::now();
        submit_from(&server.client, 4, n, &typical_v2())?;
        Ok(n as f64 / start.elapsed().as_secs_f64())
    };
    rate("enforce")?; // warm-up
    let mut on = Vec::new();
    let mut off = Vec::new();
    // ABBA order, twice: the table grows through the run, so neither mode is favoured
    // by its place.
    for _ in 0..2 {
        on.push(rate("enforce")?);
        off.push(rate("off")?);
        off.push(rate("off")?);
        on.push(rate("enforce")?);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (on, off) = (mean(&on), mean(&off));
    Ok(json!({
        "scenario": "validate",
        "check_v2_us": round(whole as f64 / 1000.0),
        "schema_only_v2_us": round(schema_only as f64 / 1000.0),
        "posts": n,
        "post_per_s_enforce": round(on),
        "post_per_s_off": round(off),
        "overhead": round(1.0 - on / off),
    }))
}

/// Log-like text: build output, git history, digests, listings, timestamps and ids —
/// what tasks print, with nothing sensitive in it. Deterministic.
fn log_like(bytes: usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let hex = |n: usize, r: &mut dyn FnMut() -> u64| -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[(r() % 16) as usize]))
            .collect()
    };
    let crates = [
        "serde",
        "tokio",
        "regex",
        "sqlx-core",
        "actix-web",
        "hashbrown",
        "libc",
    ];
    let mut out = String::with_capacity(bytes + 256);
    while out.len() < bytes {
        let r = next();
        let line = match r % 7 {
            0 => format!("   Compiling {} v{}.{}.{}\n", crates[(r >> 8) as usize % crates.len()], r % 3, (r >> 4) % 40, (r >> 12) % 20),
            1 => format!("commit {}\n", hex(40, &mut next)),
            2 => format!("{}  /usr/lib/x86_64-linux-gnu/libfoo.so.{}\n", hex(64, &mut next), r % 9),
            3 => format!("-rw-r--r-- 1 root root {:>9} Nov 25 20:{:02} build-{}.log\n", r % 100_000_000, r % 60, r % 1000),
            4 => format!("2026-11-25T20:{:02}:{:02}.{:03}Z  INFO flotilla::worker: task finished task=t-{} state=succeeded\n", r % 60, (r >> 6) % 60, r % 1000, hex(16, &mut next)),
            5 => format!("test tests::case_{} ... ok\n", r % 5000),
            _ => format!("request {}-{}-4{}-a{}-{} done in {} ms\n", hex(8, &mut next), hex(4, &mut next), hex(3, &mut next), hex(3, &mut next), hex(12, &mut next), r % 900),
        };
        out.push_str(&line);
    }
    out
}

/// Cuts `text` into frames of about `size` bytes ending at line boundaries.
fn frames(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size).min(text.len());
        if end < text.len() {
            end = text[..end]
                .rfind('\n')
                .map_or(end, |n| n + 1)
                .max(start + 1);
        }
        out.push(&text[start..end]);
        start = end;
    }
    out
}

fn guard(mb: u64) -> anyhow::Result<Value> {
    let engine = flotilla_guard::Engine::new();
    let text = log_like(mb as usize * 1_000_000);
    let big = frames(&text, 64 * 1024);
    let start = Instant::now();
    let findings: usize = big.iter().map(|f| engine.scan(f).len()).sum();
    let secs = start.elapsed().as_secs_f64();
    let small = frames(&text[..text.len().min(20_000_000)], 4096);
    let mut times: Vec<u128> = small
        .iter()
        .map(|f| {
            let t = Instant::now();
            std::hint::black_box(engine.scan(f));
            t.elapsed().as_nanos()
        })
        .collect();
    times.sort_unstable();
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    let redactor_p99 = redactor_p99_ns(&small);
    Ok(json!({
        "scenario": "guard",
        "redactor_frame_4k_p99_us": round(redactor_p99 as f64 / 1000.0),
        "bytes": text.len(),
        "rules": engine.rule_count(),
        "findings": findings,
        "mb_per_s": round(text.len() as f64 / 1e6 / secs),
        "frame_4k_p99_us": round(p99 as f64 / 1000.0),
    }))
}

/// p99 of the time one `push` of the streaming redactor (enforce, standard) takes per
/// frame, over a stream cut into `frames`: what the guard adds to a frame's latency.
fn redactor_p99_ns(frames: &[&str]) -> u128 {
    use flotilla_guard::policy::{Level, Policy};
    use flotilla_guard::stream::StreamRedactor;
    let engine = std::sync::Arc::new(flotilla_guard::Engine::new());
    let mut r = StreamRedactor::new(engine).with_policy(Policy::enforce(Level::Standard));
    let mut times: Vec<u128> = frames
        .iter()
        .map(|f| {
            let t = Instant::now();
            std::hint::black_box(r.push(f));
            t.elapsed().as_nanos()
        })
        .collect();
    times.sort_unstable();
    times[(times.len() * 99 / 100).min(times.len() - 1)]
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
