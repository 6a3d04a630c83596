//! `flotilla canary`: proves self-healing on a real fleet. It starts its own server with
//! two local instances in a temporary state dir (or targets `--server`), runs a
//! workload across both, SIGKILLs the agent running a task in a first round and
//! SIGSTOPs one in a second, and checks that the task is rescheduled and completes once
//! and that the supervisor restarted the instance. The report goes to
//! `.runs/<scope>/canary/<run-id>/manifest.json` (`flotilla.canary-report`); progress to
//! stderr. Exit status: 0 pass, 1 fail, 2 inconclusive (a round could not run).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use flotilla_actors::domain::{now_ms, random_hex, rfc3339_ms, RunId, Scope};
use flotilla_actors::files::write_atomic;
use serde_json::{json, Value};

use crate::client::Client;

#[derive(Args)]
pub struct CanaryArgs {
    /// Target this server instead of starting one; the hang round needs its agents'
    /// processes on this machine.
    #[arg(long)]
    pub server: Option<String>,
    /// Admin token of `--server`.
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Root of `.runs/`.
    #[arg(long, default_value = ".")]
    pub artifacts_dir: PathBuf,
    /// The deployment's evidence folder: `.runs/<scope>/canary/…`.
    #[arg(long, default_value = "flotilla")]
    pub scope: String,
}

/// How long a workload task runs.
const TASK: &str = "echo start; sleep 2; echo done";
const LIMIT: Duration = Duration::from_secs(60);

pub fn run(args: CanaryArgs) -> anyhow::Result<i32> {
    let scope = Scope::parse(&args.scope).with_context(|| format!("scope {:?}", args.scope))?;
    let run_id = RunId::generate();
    let started = now_ms();
    let (client, _own, server) = match &args.server {
        Some(url) => {
            let token = args
                .token
                .clone()
                .context("--server needs FLOTILLA_TOKEN or --token")?;
            (Client::new(url, &token), None, url.clone())
        }
        None => {
            let own = OwnServer::start()?;
            (own.client.clone(), Some(own), "own".to_owned())
        }
    };
    let mut rounds = Vec::new();
    for fault in [Fault::Kill, Fault::Stop] {
        eprintln!("canary: round {}", fault.name());
        let round = match run_round(&client, fault, args.server.is_some()) {
            Ok(r) => r,
            Err(e) => json!({
                "fault": fault.name(), "result": "fail",
                "reason": format!("{e:#}"), "checks": [],
            }),
        };
        eprintln!(
            "canary: round {}: {}",
            fault.name(),
            round["result"].as_str().unwrap_or("?")
        );
        rounds.push(round);
    }
    let verdict = if rounds.iter().any(|r| r["result"] == "fail") {
        "fail"
    } else if rounds.iter().any(|r| r["result"] == "not-run") {
        "inconclusive"
    } else {
        "pass"
    };
    let report = json!({
        "schema": "flotilla.canary-report/1.0.0",
        "runId": run_id.as_str(),
        "server": server,
        "startedAt": rfc3339_ms(started),
        "finishedAt": rfc3339_ms(now_ms()),
        "verdict": verdict,
        "rounds": rounds,
    });
    let path = args
        .artifacts_dir
        .join(".runs")
        .join(scope.as_str())
        .join("canary")
        .join(run_id.as_str())
        .join("manifest.json");
    // unwrap: a JSON value always serialises.
    let bytes = serde_json::to_vec_pretty(&report).unwrap();
    write_atomic(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("canary: {verdict}; report in {}", path.display());
    println!("{}", path.display());
    Ok(match verdict {
        "pass" => 0,
        "fail" => 1,
        _ => 2,
    })
}

#[derive(Clone, Copy)]
enum Fault {
    Kill,
    Stop,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "sigkill",
            Fault::Stop => "sigstop",
        }
    }

    fn signal(self) -> i32 {
        match self {
            Fault::Kill => libc::SIGKILL,
            Fault::Stop => libc::SIGSTOP,
        }
    }
}

/// One injected failure: two tasks run (one on each instance under least-loaded), the
/// agent running the first is faulted, and the task must run again elsewhere and finish.
fn run_round(client: &Client, fault: Fault, remote: bool) -> anyhow::Result<Value> {
    let submit = || -> anyhow::Result<String> {
        let reply = client.submit(&json!({"argv": ["sh", "-c", TASK], "maxAttempts": 3}))?;
        Ok(reply["id"].as_str().context("no task id")?.to_owned())
    };
    let (first, second) = (submit()?, submit()?);
    let running = client
        .wait_task(&first, LIMIT, |t| t["state"] == "running")?
        .context("the first task never started")?;
    client
        .wait_task(&second, LIMIT, |t| t["state"] != "queued")?
        .context("the second task never started")?;
    let victim = running["instance"]
        .as_str()
        .context("no instance")?
        .to_owned();
    let pid = client.instance_pid(&victim)?.context("the instance left")?;
    let mut round = json!({"fault": fault.name(), "instance": victim, "task": first});
    if remote && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        round["result"] = "not-run".into();
        round["reason"] =
            format!("the agent of {victim} (pid {pid}) is not on this machine").into();
        round["checks"] = json!([]);
        return Ok(round);
    }
    // Let the attempt get going on the agent before the fault.
    client.wait_task(&first, Duration::from_millis(300), |_| false)?;
    eprintln!(
        "canary: {} {victim} (pid {pid}) while it runs {first}",
        fault.name()
    );
    let t0 = Instant::now();
    // SAFETY: kill only sends a signal, to the agent process of the instance named.
    unsafe {
        libc::kill(pid as libc::pid_t, fault.signal());
    }
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1000.0;
    let detected = client
        .wait_task(&first, LIMIT, |t| t["attempts"].as_u64() >= Some(2))?
        .map(|_| ms(Instant::now()));
    let moved = client
        .wait_task(&first, LIMIT, |t| {
            t["attempts"].as_u64() >= Some(2)
                && t["instance"] != victim.as_str()
                && t["state"] != "queued"
        })?
        .map(|_| ms(Instant::now()));
    let deadline = Instant::now() + LIMIT;
    let mut mttr = None;
    while Instant::now() < deadline {
        if client.instance_pid(&victim)?.is_some_and(|p| p != pid) {
            mttr = Some(ms(Instant::now()));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let end = |id: &str| client.wait_task(id, LIMIT, |t| t["finishedAt"].is_string());
    let (a, b) = (end(&first)?, end(&second)?);
    let ok = |t: &Option<Value>| t.as_ref().is_some_and(|t| t["state"] == "succeeded");
    let attempts = a.as_ref().and_then(|t| t["attempts"].as_u64()).unwrap_or(0);
    let checks = vec![
        check(
            "the attempt on the faulted instance counted as lost",
            detected.is_some(),
            None,
        ),
        check("rescheduled to another instance", moved.is_some(), None),
        check(
            "the faulted task completed once more, and only once",
            ok(&a) && attempts == 2,
            Some(format!("{attempts} attempts")),
        ),
        check("the other task succeeded", ok(&b), None),
        check(
            "the supervisor restarted the instance",
            mttr.is_some(),
            None,
        ),
    ];
    let passed = checks.iter().all(|c| c["ok"] == true);
    round["detectMs"] = detected.map(round3).into();
    round["rescheduleMs"] = moved.map(round3).into();
    round["mttrMs"] = mttr.map(round3).into();
    round["checks"] = checks.into();
    round["result"] = if passed { "pass" } else { "fail" }.into();
    if !passed {
        round["reason"] = "a check failed".into();
    }
    Ok(round)
}

fn check(name: &str, ok: bool, detail: Option<String>) -> Value {
    let mut c = json!({"name": name, "ok": ok});
    if let Some(d) = detail {
        c["detail"] = d.into();
    }
    c
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The canary's own server: two local instances of two slots in a temporary state dir,
/// stopped (with its agents) and removed when dropped.
struct OwnServer {
    child: Child,
    dir: PathBuf,
    client: Client,
}

impl OwnServer {
    fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("flotilla-canary-{}", random_hex(8)));
        std::fs::create_dir_all(&dir)?;
        // The same agent may be faulted twice: a restart limit does not get in the way.
        std::fs::write(
            dir.join("flotilla.toml"),
            "local-slots = 2\n[fleet]\nrestart-limit = 100\n",
        )?;
        let token = format!("canary-{}", random_hex(16));
        let exe = std::env::current_exe().context("locating the flotilla executable")?;
        let mut child = Command::new(exe)
            .args(["serve", "--bind", "127.0.0.1:0", "--local-instances", "2"])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--artifacts-dir")
            .arg(dir.join("artifacts"))
            .current_dir(&dir)
            .env("FLOTILLA_TOKEN", &token)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting flotilla serve")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
        let Some(base) = line.trim().strip_prefix("flotilla listening on ") else {
            bail!("the server did not start: {line:?}");
        };
        let client = Client::new(base, &token);
        let server = Self { child, dir, client };
        eprintln!(
            "canary: own server on {base}, state in {}",
            server.dir.display()
        );
        let deadline = Instant::now() + LIMIT;
        while server.client.instances()?["instances"]
            .as_array()
            .map_or(0, Vec::len)
            < 2
        {
            if Instant::now() > deadline {
                bail!("the two local instances did not connect");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        crate::process::terminate(&mut self.child, Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
