//! `/metrics` through a real Prometheus text-format parser (the official Python client's,
//! in a venv of the test's own): after tasks that succeed and fail and an agent killed
//! under a running task, every family parses with its declared type, histograms are
//! whole, and the counts are what happened.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{output_with_input, schema_errors, signal, wait_for, App};

/// The parser's version, pinned.
const CLIENT: &str = "prometheus_client==0.26.0";

/// Parses the text on stdin; prints {family: {type, samples: [[name, labels, value]]}}.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;

/// A Python with the client installed: `target/prom-venv`, made on first use.
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/prom-venv");
        let python = format!("{venv}/bin/python");
        let ready = || {
            Command::new(&python)
                .args(["-c", "import prometheus_client"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ready() {
            let made = Command::new("python3")
                .args(["-m", "venv", venv])
                .status()
                .expect("python3 -m venv");
            assert!(made.success(), "could not make {venv}");
            let pip = Command::new(format!("{venv}/bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", CLIENT])
                .status()
                .expect("pip");
            assert!(pip.success(), "could not install {CLIENT}");
        }
        python
    })
}

/// `/metrics` parsed by the client: the families by name.
fn parsed(app: &App) -> Value {
    let text = app.prometheus();
    let out = output_with_input(Command::new(python()).args(["-c", PARSE]), text.as_bytes());
    assert!(
        out.status.success(),
        "the parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(families: &Value, family: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    families[family]["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no family {family}"))
        .iter()
        .find(|s| s[0] == name && labels.iter().all(|(k, v)| s[1][k].as_str() == Some(v)))
        .and_then(|s| s[2].as_f64())
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {}", families[family]))
}

#[test]
fn metrics_parse_and_count_tasks_losses_and_instances() {
    let app = App::start(2);
    app.wait_instances(2);
    let ok = app.submit(json!({"argv": ["true"]}));
    let bad = app.submit(json!({"argv": ["sh", "-c", "exit 3"]}));
    for (task, state) in [(&ok, "succeeded"), (&bad, "failed")] {
        app.wait_state(task["id"].as_str().unwrap(), state, Duration::from_secs(30));
    }
    // An agent killed under a running task: the attempt is lost, the task requeued and
    // run again on the other instance.
    let slow = app.submit(json!({"argv": ["sleep", "2"]}));
    let id = slow["id"].as_str().unwrap();
    let on = app.wait_state(id, "running", Duration::from_secs(30));
    let instance = on["instance"].as_str().unwrap().to_owned();
    signal(app.instance_pid(&instance).unwrap(), libc::SIGKILL);
    app.wait_state(id, "succeeded", Duration::from_secs(60));

    let families = wait_for("a loss counted", Duration::from_secs(10), || {
        let f = parsed(&app);
        (f["flotilla_recovery_seconds"]["type"] == "histogram").then_some(f)
    });
    for (family, kind) in [
        ("flotilla_tasks_accepted", "counter"),
        ("flotilla_tasks_finished", "counter"),
        ("flotilla_attempts_started", "counter"),
        ("flotilla_attempts_lost", "counter"),
        ("flotilla_tasks_requeued", "counter"),
        ("flotilla_task_queue_wait_seconds", "histogram"),
        ("flotilla_task_total_seconds", "histogram"),
        ("flotilla_recovery_seconds", "histogram"),
        ("flotilla_dispatch_latency_seconds", "histogram"),
        ("flotilla_observer_latency_seconds", "histogram"),
        ("flotilla_alert_state", "gauge"),
        ("flotilla_validation_requests", "counter"),
        ("flotilla_instances", "gauge"),
        ("flotilla_instance_utilization", "gauge"),
        ("flotilla_observers", "gauge"),
        ("flotilla_guard_decisions", "counter"),
        ("flotilla_log_bytes", "gauge"),
    ] {
        assert_eq!(
            families[family]["type"], kind,
            "{family}: {}",
            families[family]
        );
    }
    let accepted = "flotilla_tasks_accepted_total";
    assert_eq!(
        sample(&families, "flotilla_tasks_accepted", accepted, &[]),
        3.0
    );
    let finished = "flotilla_tasks_finished_total";
    let of = |outcome| {
        sample(
            &families,
            "flotilla_tasks_finished",
            finished,
            &[("outcome", outcome)],
        )
    };
    assert_eq!((of("succeeded"), of("failed")), (2.0, 1.0));
    let lost = "flotilla_attempts_lost_total";
    assert_eq!(
        sample(
            &families,
            "flotilla_attempts_lost",
            lost,
            &[("instance", &instance)]
        ),
        1.0
    );
    let requeued = "flotilla_tasks_requeued_total";
    assert_eq!(
        sample(&families, "flotilla_tasks_requeued", requeued, &[]),
        1.0
    );
    // Histograms: one repair observed; buckets cumulative up to +Inf = count.
    let count = "flotilla_recovery_seconds_count";
    assert_eq!(
        sample(&families, "flotilla_recovery_seconds", count, &[]),
        1.0
    );
    let waits = &families["flotilla_task_queue_wait_seconds"]["samples"];
    let buckets: Vec<f64> = waits
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[0] == "flotilla_task_queue_wait_seconds_bucket")
        .map(|s| s[2].as_f64().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&3.0), "three first attempts waited");
    // Every attempt's start after its dispatch: the three first ones and the rerun.
    let started = "flotilla_dispatch_latency_seconds_count";
    assert!(
        sample(&families, "flotilla_dispatch_latency_seconds", started, &[]) >= 3.0,
        "{}",
        families["flotilla_dispatch_latency_seconds"]
    );
    // Each request was checked against its schema, and counted once.
    let checked = &families["flotilla_validation_requests"]["samples"];
    let submits: f64 = checked
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[1]["schema"] == "flotilla.run-request")
        .map(|s| s[2].as_f64().unwrap())
        .sum();
    assert_eq!(submits, 3.0, "{checked}");
    // The killed instance's restart is counted; the fleet gauges show both instances.
    let restarts = wait_for("the restart counted", Duration::from_secs(20), || {
        let f = parsed(&app);
        let n = f["flotilla_instance_restarts"]["samples"]
            .as_array()
            .map_or(0, |s| s.len());
        (n > 0).then_some(f)
    });
    let restarted = "flotilla_instance_restarts_total";
    assert_eq!(
        sample(
            &restarts,
            "flotilla_instance_restarts",
            restarted,
            &[("instance", &instance)]
        ),
        1.0
    );
    let ready = wait_for("both instances ready", Duration::from_secs(20), || {
        let f = parsed(&app);
        let n = f["flotilla_instances"]["samples"]
            .as_array()?
            .iter()
            .find(|s| s[1]["state"] == "ready")?[2]
            .as_f64()?;
        (n == 2.0).then_some(f)
    });
    let util = "flotilla_instance_utilization";
    assert_eq!(sample(&ready, util, util, &[("instance", &instance)]), 0.0);

    // Observers joined and left are counted, by policy and by why they left.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = crate::observers::observe(&app, ok["handle"].as_str().unwrap(), "from=0")
            .await
            .unwrap();
        crate::observers::drain(&mut ws).await
    });
    let seen = wait_for(
        "the observer's leaving counted",
        Duration::from_secs(10),
        || {
            let f = parsed(&app);
            let left = f["flotilla_observer_leaves"]["samples"].as_array()?.len();
            (left > 0).then_some(f)
        },
    );
    let joins = "flotilla_observer_joins";
    let joined = sample(
        &seen,
        joins,
        "flotilla_observer_joins_total",
        &[("policy", "catch-up")],
    );
    assert_eq!(joined, 1.0);
    let leaves = "flotilla_observer_leaves";
    let ended = sample(
        &seen,
        leaves,
        "flotilla_observer_leaves_total",
        &[("why", "ended")],
    );
    assert_eq!(ended, 1.0);

    // A task no instance can take waits in the queue of its capabilities.
    app.submit(json!({"argv": ["true"], "capabilities": ["gpu"]}));
    let waiting = wait_for("the queue gauges", Duration::from_secs(10), || {
        let f = parsed(&app);
        let depth = "flotilla_queue_depth";
        let gpu = [("capabilities", "gpu")];
        let ready = f[depth]["samples"]
            .as_array()?
            .iter()
            .any(|s| s[1]["capabilities"] == "gpu");
        (ready && sample(&f, depth, depth, &gpu) == 1.0).then_some(f)
    });
    let oldest = "flotilla_queue_oldest_wait_seconds";
    assert!(sample(&waiting, oldest, oldest, &[("capabilities", "gpu")]) >= 0.0);
    // The same from the admin API.
    let queue = app.admin_get("/admin/queue");
    let errors = schema_errors(include_str!("../../schemas/queue-view.v1.json"), &queue);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(queue["total"], 1, "{queue}");
    assert_eq!(
        queue["queues"][0]["capabilities"],
        json!(["gpu"]),
        "{queue}"
    );
    assert!(
        queue["queues"][0]["oldestWaitMs"].as_i64() >= Some(0),
        "{queue}"
    );
    // And at a glance.
    let fleet = app.admin_get("/admin/fleet");
    let errors = schema_errors(include_str!("../../schemas/fleet-view.v1.json"), &fleet);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(fleet["instances"]["byState"]["ready"], 2, "{fleet}");
    assert_eq!(fleet["instances"]["slots"], 2, "{fleet}");
    assert_eq!(fleet["queue"]["total"], 1, "{fleet}");

    // Every series the Grafana dashboard queries is one the server declares.
    let dashboard = include_str!("../../docs/grafana-dashboard.json");
    let text = app.prometheus();
    for name in dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("flotilla_"))
    {
        let family = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "the dashboard queries {name}, which /metrics lacks"
        );
    }
}

const RUN_METRICS: &str = include_str!("../../schemas/run-metrics.v1.json");

fn run_metrics(app: &App, task: &str) -> Option<Value> {
    let path = app
        .artifacts()
        .join(".runs")
        .join(task)
        .join("metrics.json");
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[test]
fn run_metrics_are_rewritten_while_running_and_show_each_instance_a_task_ran_on() {
    let app = App::start(2);
    app.wait_instances(2);
    let submitted = app.submit(json!({
        "schema": "flotilla.run-request/2.2.0",
        "argv": ["sleep", "30"],
        "schedule": {"recovery": {"maxRetries": 2}},
        "metrics": {"emitIntervalMs": 200, "requiredDimensions": ["task", "instance", "capability", "attempt", "privacy"]}
    }));
    let id = submitted["id"].as_str().unwrap().to_owned();
    let running = app.wait_state(&id, "running", Duration::from_secs(20));
    let victim = running["instance"].as_str().unwrap().to_owned();

    // While it runs, the file is rewritten on the interval: its time and the instance's
    // busy time move on without any change to the task.
    let first = wait_for(
        "metrics of the running task",
        Duration::from_secs(10),
        || run_metrics(&app, &id).filter(|m| m["state"] == "running"),
    );
    let later = wait_for("a rewrite on the interval", Duration::from_secs(10), || {
        run_metrics(&app, &id).filter(|m| {
            m["writtenAt"].as_str() > first["writtenAt"].as_str()
                && m["instanceStats"][&victim]["busyMs"].as_u64()
                    > first["instanceStats"][&victim]["busyMs"].as_u64()
        })
    });
    assert_eq!(schema_errors(RUN_METRICS, &later), Vec::<String>::new());
    let stats = &later["instanceStats"][&victim];
    assert_eq!(stats["attempts"]["running"], 1, "{later}");
    assert_eq!(stats["slots"], 1, "{later}");
    assert!(stats["utilization"].as_f64().unwrap() > 0.0, "{later}");
    assert_eq!(later["dimensions"]["missing"], json!([]), "{later}");

    // The agent is killed: the attempt is rescheduled elsewhere, and the victim's figures
    // say so once its supervisor has started it again.
    let pid = app.instance_pid(&victim).unwrap();
    signal(pid, libc::SIGKILL);
    let moved = wait_for("the task runs elsewhere", Duration::from_secs(20), || {
        let t = app.task(&id);
        (t["state"] == "running" && t["instance"] != victim.as_str()).then_some(t)
    });
    let rescuer = moved["instance"].as_str().unwrap().to_owned();
    wait_for("the victim back", Duration::from_secs(20), || {
        app.instance_pid(&victim).filter(|p| *p != pid)
    });
    let after = wait_for(
        "both instances in the metrics",
        Duration::from_secs(20),
        || {
            run_metrics(&app, &id).filter(|m| {
                let v = &m["instanceStats"][&victim];
                v["restarts"] == 1
                    && v["leftAt"].is_null()
                    && m["instanceStats"][&rescuer].is_object()
            })
        },
    );
    assert_eq!(schema_errors(RUN_METRICS, &after), Vec::<String>::new());
    let v = &after["instanceStats"][&victim];
    assert_eq!(v["attempts"]["rescheduled"], 1, "{after}");
    assert_eq!(v["attempts"]["running"], 0, "{after}");
    assert_eq!(v["repairs"], 1, "{after}");
    assert!(v["mttrMs"].as_u64().is_some(), "{after}");
    assert_eq!(after["instanceStats"][&rescuer]["attempts"]["running"], 1);
    assert_eq!(
        after["attempts"]["byState"],
        json!({"lost": 1, "running": 1})
    );

    // At the end, a last write, and no more.
    app.client.cancel(&id).unwrap();
    let last = wait_for("the final metrics", Duration::from_secs(10), || {
        run_metrics(&app, &id).filter(|m| m["state"] == "cancelled")
    });
    std::thread::sleep(Duration::from_millis(600));
    let still = run_metrics(&app, &id).unwrap();
    assert_eq!(
        still["writtenAt"], last["writtenAt"],
        "rewritten after the end"
    );
}
