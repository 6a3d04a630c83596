//! Alerts against a real server: a completion rate that drops fires, is shown in the API
//! and `/metrics`, reaches a webhook that refuses the first try, and resolves when the
//! window no longer holds the failures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{schema_errors, wait_for, App};

/// A webhook receiver on a free port: answers 500 to the first request and 200 to the
/// rest, keeping each request's body with the status it got.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<(u16, Value)>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let mut seen = seen.lock().unwrap();
                let status = if seen.is_empty() { 500 } else { 200 };
                seen.push((status, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Self { url, got }
    }

    fn bodies(&self) -> Vec<(u16, Value)> {
        self.got.lock().unwrap().clone()
    }
}

fn alert(app: &App, name: &str) -> Value {
    let list = app.admin_get("/admin/alerts");
    assert_eq!(
        schema_errors(include_str!("../../schemas/alert-list.v1.json"), &list),
        Vec::<String>::new()
    );
    list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"] == name)
        .cloned()
        .unwrap()
}

#[test]
fn a_falling_completion_rate_fires_reaches_the_webhook_and_resolves() {
    let hook = Receiver::start();
    let config = format!(
        "[alerts]\nevery-ms = 200\nwindow-seconds = 4\nwebhook = \"{}\"\n\
         [alerts.rules.completion-low]\nmin-count = 3\n",
        hook.url
    );
    let app = App::start_with_config(2, &config);
    let quiet = alert(&app, "completion-low");
    assert_eq!(quiet["state"], "inactive");
    assert_eq!(quiet["value"], Value::Null, "no task finished: no data");

    for argv in [json!(["false"]), json!(["false"]), json!(["true"])] {
        let t = app.submit(json!({ "argv": argv }));
        let id = t["id"].as_str().unwrap().to_owned();
        wait_for("the task ends", Duration::from_secs(20), || {
            let s = app.task(&id)["state"].clone();
            (s == "succeeded" || s == "failed").then_some(())
        });
    }
    let firing = wait_for("completion-low fires", Duration::from_secs(10), || {
        Some(alert(&app, "completion-low")).filter(|a| a["state"] == "firing")
    });
    let value = firing["value"].as_f64().unwrap();
    assert!((value - 1.0 / 3.0).abs() < 1e-9, "{firing}");
    assert!(
        firing["reason"].as_str().unwrap().contains("1 of 3"),
        "{firing}"
    );
    let prom = app.prometheus();
    assert!(
        prom.contains("flotilla_alert_state{alert=\"completion-low\",state=\"firing\"} 1"),
        "{prom}"
    );
    assert!(
        prom.contains("flotilla_alert_transitions_total{alert=\"completion-low\",to=\"firing\"} 1"),
        "{prom}"
    );

    // The webhook refused the first try; the retry a second later got through.
    let delivered = wait_for("the retried delivery", Duration::from_secs(10), || {
        let got = hook.bodies();
        (got.len() >= 2).then_some(got)
    });
    assert_eq!(delivered[0].0, 500);
    assert_eq!(
        delivered[0].1, delivered[1].1,
        "the same change, sent again"
    );
    let note = &delivered[1].1;
    let errors = schema_errors(
        include_str!("../../schemas/alert-notification.v1.json"),
        note,
    );
    assert_eq!(errors, Vec::<String>::new(), "{note}");
    assert_eq!(note["alert"]["alert"], "completion-low");
    assert_eq!(note["alert"]["state"], "firing");
    assert_eq!(note["from"], "inactive");

    // Once the failures leave the 4 s window, it resolves, and says so to the webhook.
    let resolved = wait_for("completion-low resolves", Duration::from_secs(15), || {
        Some(alert(&app, "completion-low")).filter(|a| a["state"] == "resolved")
    });
    assert!(resolved["resolvedAt"].is_string(), "{resolved}");
    assert!(
        resolved["reason"].as_str().unwrap().starts_with("no data"),
        "{resolved}"
    );
    let last = wait_for("the resolution delivered", Duration::from_secs(10), || {
        hook.bodies()
            .into_iter()
            .map(|(_, b)| b)
            .find(|b| b["alert"]["state"] == "resolved")
    });
    assert_eq!(last["from"], "firing");
    let log = app.log();
    assert!(log.contains("alert firing"), "no log line for the alert");
}

#[test]
fn an_unknown_alert_rule_in_the_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flotilla.toml"),
        "[alerts.rules.disk-full]\nthreshold = 1\n",
    )
    .unwrap();
    let out = crate::support::flotilla_cmd()
        .args(["serve", "--bind", "127.0.0.1:0", "--local-instances", "0"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alerts.rules.disk-full: no such rule (known: utilization-low"),
        "{err}"
    );
}

#[test]
fn an_alerts_task_that_panics_is_started_again_and_goes_on_evaluating() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flotilla.toml"),
        "[alerts]\nevery-ms = 200\nwindow-seconds = 4\n",
    )
    .unwrap();
    let fault = [("FLOTILLA_TEST_FAULT", "alerts")];
    let app = App::start_with_env(dir, 1, "127.0.0.1:0", &fault);
    wait_for(
        "the panic logged and survived",
        Duration::from_secs(10),
        || {
            app.log()
                .contains("background task panicked; starting it again")
                .then_some(())
        },
    );
    // Evaluated after the restart: a measured reason, not the one it starts with.
    let evaluated = wait_for("an evaluation", Duration::from_secs(10), || {
        Some(alert(&app, "instance-restarts")).filter(|a| a["reason"] != "not evaluated yet")
    });
    assert!(
        evaluated["reason"]
            .as_str()
            .unwrap()
            .contains("restart(s) of local agents"),
        "{evaluated}"
    );
    assert_eq!(
        app.client.summary().unwrap()["queued"],
        0,
        "the server still answers"
    );
}
