//! `page [INSTANCES] [TASKS]`: the admin page's cost in headless Chromium with INSTANCES
//! (default 200) agents connected and TASKS (default 10,000) tasks recorded.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla::webdriver::Browser;
use serde_json::{json, Value};

use super::{own_uid, round, Server, TOKEN};

/// The remote agents of the run, killed with it.
struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn percentile(xs: &mut [f64], q: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() {
        return f64::NAN;
    }
    xs[((xs.len() - 1) as f64 * q).round() as usize]
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn number(b: &Browser, script: &str) -> Option<f64> {
    b.run(script, json!([])).as_str()?.parse().ok()
}

pub fn page(exe: &PathBuf, instances: u64, tasks: u64) -> anyhow::Result<Value> {
    let server = Server::start(exe, 0, "[fleet]\nheartbeat-ms = 1000\n")?;
    let base = server.client.base().to_owned();
    let mut agents = Agents(Vec::new());
    for i in 0..instances {
        let child = Command::new(exe)
            .args(["agent", "--server", &base, "--id", &format!("agent-{i:03}")])
            .args(["--capabilities", "os:linux,local", "--slots", "1"])
            .args(["--run-as", &own_uid()])
            .env("FLOTILLA_AGENT_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting an agent")?;
        agents.0.push(child);
    }
    server.wait(Duration::from_secs(120), |c| {
        Ok(c.instances()?["instances"].as_array().map_or(0, Vec::len) == instances as usize)
    })?;
    let batch: Vec<Value> = (0..1000).map(|_| json!({"argv": ["true"]})).collect();
    for _ in 0..tasks.div_ceil(1000) {
        server.client.submit_batch(&batch)?;
    }
    let total = tasks.div_ceil(1000) * 1000;
    server.wait(
        Duration::from_secs(600),
        |_| Ok(server.finished()? >= total),
    )?;

    let browser = Browser::start();
    browser.goto(&format!("{base}/admin"));
    browser.run(
        "sessionStorage.setItem('flotilla-admin-token', arguments[0]);",
        json!([TOKEN]),
    );
    let shown = format!(
        "return document.getElementById('instances').dataset.count === '{instances}' \
         && document.getElementById('tasks').dataset.count === '100' || null;"
    );

    // Time to first render: from navigation to the fleet (and the first task page) shown,
    // over five fresh loads.
    let (mut first_fleet, mut first_tasks) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        browser.goto(&format!("{base}/admin"));
        browser.wait("the page shown", Duration::from_secs(60), &shown, json!([]));
        first_fleet.push(
            number(&browser, "return document.body.dataset.firstFleetMs;").unwrap_or(f64::NAN),
        );
        first_tasks.push(
            number(&browser, "return document.body.dataset.firstTasksMs;").unwrap_or(f64::NAN),
        );
    }

    // While it runs: each refresh's cost, and the main thread's long tasks (over 50 ms).
    browser.run(
        "window.__long = []; new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__long.push(e.duration))).observe({type: 'longtask'});",
        json!([]),
    );
    let (mut fleet_ms, mut tasks_ms, mut latency) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..10 {
        // Update latency: an operator's cordon through the API until the page shows it.
        let id = format!("agent-{:03}", i * 7 % instances);
        let asked = now_ms();
        server
            .client
            .admin("POST", &format!("/admin/instances/{id}/cordon"), None)?;
        let script = format!(
            "const c = document.querySelector('tr[data-id=\"{id}\"] td[data-state]'); \
             return c && c.dataset.state === 'cordoned' ? document.body.dataset.fleetUpdatedAt : null;"
        );
        let at = browser.wait(
            "the cordon shown",
            Duration::from_secs(20),
            &script,
            json!([]),
        );
        let shown_at: f64 = at.as_str().unwrap_or("0").parse()?;
        latency.push(shown_at - asked);
        server
            .client
            .admin("POST", &format!("/admin/instances/{id}/uncordon"), None)?;
        fleet_ms.extend(number(&browser, "return document.body.dataset.fleetMs;"));
        tasks_ms.extend(number(&browser, "return document.body.dataset.tasksMs;"));
        std::thread::sleep(Duration::from_millis(700));
    }
    let long: Vec<f64> = browser
        .run("return window.__long;", json!([]))
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let started = Instant::now();
    let page_bytes = ureq::get(&format!("{base}/admin/tasks?limit=100"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call()?
        .into_string()?
        .len();
    let task_page_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The rollout view computes the gates of every next step, the completeness report's
    // read of every run's metrics.json among them.
    let started = Instant::now();
    server.client.admin("GET", "/admin/rollout", None)?;
    let rollout_view_ms = started.elapsed().as_secs_f64() * 1000.0;
    let console: Vec<String> = browser
        .console()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .map(|(_, m)| m)
        .collect();
    Ok(json!({
        "scenario": "page",
        "instances": instances,
        "tasks": total,
        "first_render_ms": round(percentile(&mut first_fleet, 0.5)),
        "first_tasks_ms": round(percentile(&mut first_tasks, 0.5)),
        "fleet_refresh_ms_p50": round(percentile(&mut fleet_ms.clone(), 0.5)),
        "fleet_refresh_ms_max": round(percentile(&mut fleet_ms, 1.0)),
        "tasks_refresh_ms_p50": round(percentile(&mut tasks_ms, 0.5)),
        "update_latency_ms_p50": round(percentile(&mut latency.clone(), 0.5)),
        "update_latency_ms_max": round(percentile(&mut latency, 1.0)),
        "long_tasks": long.len(),
        "long_task_max_ms": round(long.iter().copied().fold(0.0, f64::max)),
        "task_page_bytes": page_bytes,
        "task_page_api_ms": round(task_page_ms),
        "rollout_view_api_ms": round(rollout_view_ms),
        "console_errors": console,
        "detail": {
            "first_render": "ms from navigation until the fleet table shows every instance (median of 5 loads)",
            "update_latency": "ms from an operator's cordon through the API until the page shows it (10 times; the fleet is polled every second)",
            "refresh": "ms one refresh takes in the page: its fetches and rendering",
        },
    }))
}
