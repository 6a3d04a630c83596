//! Runs the alert rules on their interval and delivers their changes to a webhook.
//!
//! The rules and their state machine are `flotilla_actors::alerts`; here is the clock
//! that drives them and the delivery: a change to `firing` or `resolved` is POSTed as a
//! `flotilla.alert-notification/1.0.0` body, retried with a doubling backoff (1 s to
//! 60 s, at most [`TRIES`] tries) on a thread of its own, so a slow receiver never holds
//! up the evaluation. A full delivery queue drops the new change's delivery, with a log
//! line and a count.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use flotilla_actors::alerts::{AlertState, Transition};
use flotilla_actors::domain::{now_ms, rfc3339_ms};
use flotilla_actors::engine::Engine;
use flotilla_actors::events::{registry, Metric};
use serde_json::{json, Value};

pub const NOTIFICATION_SCHEMA: &str = "flotilla.alert-notification/1.0.0";

/// Tries of one delivery before it is given up.
pub const TRIES: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Deliveries that may wait behind a slow receiver.
const QUEUE: usize = 256;

const DELIVERIES: Metric = Metric::counter(
    "flotilla_alert_deliveries_total",
    "Webhook deliveries of alert changes, by outcome: delivered, retried (a failed try), dropped (out of tries or queue).",
);

/// Evaluates the alerts every `alerts.every-ms` until the engine stops.
pub async fn run(engine: Engine) {
    let settings = engine.alert_settings();
    let webhook = settings.webhook.clone().map(Webhook::start);
    let mut tick = tokio::time::interval(Duration::from_millis(settings.every_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The tests' way to see a panic here survived: once per process.
        static FAULT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if flotilla_actors::lifeline::fault_injected("alerts")
            && !FAULT.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            panic!("injected fault in the alerts task");
        }
        let Ok(changes) = engine.evaluate_alerts().await else {
            return;
        };
        let Some(hook) = &webhook else {
            continue;
        };
        for t in changes {
            if matches!(t.alert.state, AlertState::Firing | AlertState::Resolved) {
                hook.send(notification(&t));
            }
        }
    }
}

/// The body a webhook receives for a change.
pub fn notification(t: &Transition) -> Value {
    json!({
        "schema": NOTIFICATION_SCHEMA,
        "from": t.from,
        "alert": t.alert,
        "sentAt": rfc3339_ms(now_ms()),
    })
}

struct Webhook {
    tx: SyncSender<Value>,
}

impl Webhook {
    fn start(url: String) -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("alert-webhook".into())
            .spawn(move || deliver_all(&url, rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "alert webhook thread did not start; alerts are not delivered");
        }
        Self { tx }
    }

    fn send(&self, body: Value) {
        match self.tx.try_send(body) {
            Ok(()) => {}
            Err(TrySendError::Full(body)) => {
                tracing::error!(alert = %body["alert"]["alert"], "alert webhook queue full: this change is not delivered");
                count("dropped");
            }
            Err(TrySendError::Disconnected(_)) => count("dropped"),
        }
    }
}

fn count(outcome: &str) {
    registry().add(&DELIVERIES, vec![("outcome", outcome.to_owned())], 1.0);
}

fn deliver_all(url: &str, rx: Receiver<Value>) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    for body in rx {
        let mut wait = FIRST_BACKOFF;
        for attempt in 1..=TRIES {
            match agent.post(url).send_json(&body) {
                Ok(_) => {
                    tracing::info!(alert = %body["alert"]["alert"], state = %body["alert"]["state"], attempt, "alert delivered");
                    count("delivered");
                    break;
                }
                Err(e) if attempt < TRIES => {
                    tracing::warn!(alert = %body["alert"]["alert"], attempt, error = %e, retry_in_ms = wait.as_millis() as u64, "alert delivery failed; retrying");
                    count("retried");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::error!(alert = %body["alert"]["alert"], attempt, error = %e, "alert delivery failed; giving up");
                    count("dropped");
                }
            }
        }
    }
}
