//! `rollout [TASKS]`: the autonomy upgrade's scenario. One server, three local agents and
//! a flaky host (`flaky-1`, a remote agent): whatever it runs for 300 ms, it dies
//! (`kill -9`, by the bench's chaos thread) and its service manager starts it again
//! 100 ms later, the same in every phase. TASKS (default 60) tasks of
//! 0.4 s per phase, submitted at once, so the queue stays full:
//!
//! 1. baseline, with the cooldown after a lost attempt in `shadow` (logged, not applied):
//!    `flotilla report baseline` over the phase;
//! 2. the sponsor signs off; the cooldown is advanced to `limited` through its gates;
//! 3. the same load; the cooldown is advanced to `full` if its gates pass (post-rollout
//!    over the limited phase, MTTR delta against the baseline), and stays otherwise;
//! 4. the same load again; then `post-rollout` over the second and third phases
//!    together, `mttr-delta` against the baseline, `completeness`, and the review. (The
//!    third phase alone is measured too; a cooldown that keeps the flaky host out leaves
//!    it without an incident to time.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use serde_json::{json, Value};

use super::{round, Server};

const CONFIG: &str = "[guard]\napprovers = [\"erin\"]\n\
    [fleet]\nrestart-limit = 1000\n\
    [rollout]\ncooldown = \"shadow\"\nmin-tasks = 20\ncheck-every-ms = 1000\n";

const FLAKY: &str = "flaky-1";

fn now_rfc3339() -> String {
    flotilla_actors::domain::rfc3339_ms(flotilla_actors::domain::now_ms())
}

/// The flaky host: a remote agent, killed (`kill -9`) whenever it has run an attempt for
/// 300 ms, and started again 100 ms later, as a service manager would, until `stop`.
fn chaos(exe: PathBuf, base: String, stop: Arc<AtomicBool>, kills: Arc<AtomicU64>) {
    let start = || {
        std::process::Command::new(&exe)
            .args(["agent", "--server", &base, "--id", FLAKY, "--slots", "1"])
            .args([
                "--capabilities",
                "os:linux,local",
                "--run-as",
                &super::own_uid(),
            ])
            .env("FLOTILLA_AGENT_TOKEN", super::TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
    };
    let Ok(mut agent) = start() else { return };
    let client = flotilla::client::Client::new(&base, super::TOKEN);
    let mut busy_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(25));
        let Ok(list) = client.instances() else {
            continue;
        };
        let busy =
            list["instances"].as_array().into_iter().flatten().any(|i| {
                i["id"] == FLAKY && i["running"].as_array().is_some_and(|r| !r.is_empty())
            });
        busy_since = match (busy, busy_since) {
            (true, Some(since)) if since.elapsed() >= Duration::from_millis(300) => {
                let _ = agent.kill();
                let _ = agent.wait();
                kills.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
                match start() {
                    Ok(next) => agent = next,
                    Err(_) => return,
                }
                None
            }
            (true, since) => since.or_else(|| Some(Instant::now())),
            (false, _) => None,
        };
    }
    let _ = agent.kill();
    let _ = agent.wait();
}

/// Runs one phase's load; its window, as report bounds.
fn phase(server: &Server, tasks: u64) -> anyhow::Result<(String, String)> {
    let from = now_rfc3339();
    let before = server.finished()?;
    // All at once: the queue stays full, so a requeued task takes the first slot that
    // frees, the flaky host's too when nothing keeps it out.
    let batch: Vec<Value> = (0..tasks)
        .map(|_| json!({"argv": ["sleep", "0.4"], "maxAttempts": 5}))
        .collect();
    server.client.submit_batch(&batch)?;
    server.wait(Duration::from_secs(300), |_| {
        Ok(server.finished()? >= before + tasks)
    })?;
    // The last task's end is inside the window.
    std::thread::sleep(Duration::from_millis(50));
    Ok((from, now_rfc3339()))
}

fn report(server: &Server, kind: &str, window: Option<&(String, String)>) -> anyhow::Result<Value> {
    let path = match window {
        Some((from, to)) => format!("/admin/reports/{kind}?from={from}&to={to}"),
        None => format!("/admin/reports/{kind}"),
    };
    Ok(server.client.admin("POST", &path, None)?)
}

/// What a report measured, briefly.
fn brief(r: &Value) -> Value {
    let m = &r["measures"];
    json!({
        "finished": m["tasks"]["finished"],
        "completion_rate": m["tasks"]["completionRate"],
        "incidents": m["mttr"]["incidents"],
        "unrepaired": m["mttr"]["unrepaired"],
        "mttr_mean_ms": m["mttr"]["meanMs"].as_f64().map(round),
        "mttr_p50_ms": m["mttr"]["p50Ms"],
        "mttr_p90_ms": m["mttr"]["p90Ms"],
        "pass": r["verdict"]["pass"],
        "reasons": r["verdict"]["reasons"],
    })
}

/// The cooldown's phase now.
fn cooldown_phase(server: &Server) -> anyhow::Result<Value> {
    Ok(
        server.client.admin("GET", "/admin/rollout", None)?["components"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["component"] == "cooldown")
            .map(|c| c["phase"].clone())
            .unwrap_or(Value::Null),
    )
}

/// An advance through the API: the change, or the refusal with its failed gates.
fn advance(server: &Server, reason: &str) -> Value {
    let body = json!({"by": "erin", "reason": reason});
    match server
        .client
        .admin("POST", "/admin/rollout/cooldown/advance", Some(&body))
    {
        Ok(change) => {
            json!({"advanced": true, "from": change["from"], "to": change["to"], "gates": change["gates"]})
        }
        Err(flotilla::client::ClientError::Api { problem, .. }) => {
            json!({"advanced": false, "refused": problem["detail"], "failed": problem["errors"]})
        }
        Err(e) => json!({"advanced": false, "error": e.to_string()}),
    }
}

pub fn rollout(exe: &PathBuf, tasks: u64) -> anyhow::Result<Value> {
    let server = Server::start(exe, 3, CONFIG)?;
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let chaos_thread = {
        let (base, stop, kills) = (server.client.base().to_owned(), stop.clone(), kills.clone());
        let exe = exe.clone();
        std::thread::spawn(move || chaos(exe, base, stop, kills))
    };
    server.wait(Duration::from_secs(30), |c| {
        Ok(c.instances()?["instances"].as_array().map_or(0, Vec::len) == 4)
    })?;
    let started = Instant::now();

    let baseline_window = phase(&server, tasks)?;
    let baseline = report(&server, "baseline", Some(&baseline_window))?;
    let kills_baseline = kills.load(Ordering::Relaxed);

    let ask = json!({
        "kind": "sponsor-signoff", "reason": "autonomy upgrade: recovery features", "requestedBy": "dana",
        "signoff": {"objectives": ["a fleet that heals itself without manual restarts"],
                    "successMetrics": ["completion of at least 95 % without manual intervention", "MTTR at least 40 % below the baseline"]},
    });
    let signoff = server
        .client
        .admin("POST", "/admin/guard/approvals", Some(&ask))?;
    let id = signoff["id"].as_str().context("no approval id")?;
    server.client.admin(
        "POST",
        &format!("/admin/guard/approvals/{id}/approve"),
        Some(&json!({"by": "erin"})),
    )?;
    let to_limited = advance(&server, "baseline taken; signed off");

    let second_phase = cooldown_phase(&server)?;
    let limited_window = phase(&server, tasks)?;
    let kills_limited = kills.load(Ordering::Relaxed) - kills_baseline;
    let limited = report(&server, "post-rollout", Some(&limited_window))?;
    let to_full = advance(&server, "limited phase held");

    let third_phase = cooldown_phase(&server)?;
    let full_window = phase(&server, tasks)?;
    let kills_full = kills.load(Ordering::Relaxed) - kills_baseline - kills_limited;
    // The full phase alone, then (written last, so that the MTTR delta reads it) the
    // whole time after the rollout began: the limited and the full phase together.
    let full = report(&server, "post-rollout", Some(&full_window))?;
    let after = (limited_window.0.clone(), full_window.1.clone());
    let post = report(&server, "post-rollout", Some(&after))?;
    let delta = report(&server, "mttr-delta", None)?;
    let completeness = report(&server, "completeness", None)?;
    let review = server.client.admin(
        "POST",
        "/admin/rollout/review",
        Some(&json!({"by": "dana", "summary": "cooldown rolled out under a flaky host"})),
    )?;
    stop.store(true, Ordering::Relaxed);
    let _ = chaos_thread.join();
    let phase_now = cooldown_phase(&server)?;

    Ok(json!({
        "scenario": "rollout",
        "tasks_per_phase": tasks,
        "seconds": round(started.elapsed().as_secs_f64()),
        "baseline": brief(&baseline),
        "kills": {"baseline": kills_baseline, "second": kills_limited, "third": kills_full},
        "to_limited": to_limited,
        "second": {"cooldown": second_phase, "measured": brief(&limited)},
        "to_full": to_full,
        "third": {"cooldown": third_phase, "measured": brief(&full)},
        "post_rollout": brief(&post),
        "mttr_delta": {
            "reduction": delta["measures"]["reduction"],
            "baseline_mean_ms": delta["measures"]["baselineMeanMs"],
            "post_rollout_mean_ms": delta["measures"]["postRolloutMeanMs"],
            "pass": delta["verdict"]["pass"],
            "reasons": delta["verdict"]["reasons"],
        },
        "completeness": {
            "missing_share": completeness["measures"]["missingShare"],
            "files": completeness["measures"]["files"],
            "pass": completeness["verdict"]["pass"],
        },
        "review_pass": review["pass"],
        "cooldown_phase_at_end": phase_now,
    }))
}
