//! What `/metrics` reads at each scrape into the one registry: the fleet, the queue and
//! observers as they are now, the alerts, and the counters that hot paths keep as plain
//! atomics (the guard's scanned bytes, the frame log's). Every family is replaced whole,
//! so a series that is gone (an instance, a capability set) goes too.

use std::sync::atomic::{AtomicU64, Ordering};

use super::registry::Labels;
use super::{registry, Metric};
use crate::alerts::AlertState;
use crate::dispatcher::messages::{instances_by_state, QueueView};
use crate::domain::now_ms;
use crate::engine::Engine;
use crate::protocol::TruncateReason;

const INSTANCES: Metric = Metric::gauge(
    "flotilla_instances",
    "Instances the server knows, by state.",
);
const SLOTS: Metric = Metric::gauge("flotilla_instance_slots", "Slots of each instance.");
const RUNNING: Metric = Metric::gauge(
    "flotilla_instance_running",
    "Attempts each instance runs now.",
);
const UTILIZATION: Metric = Metric::gauge(
    "flotilla_instance_utilization",
    "Running attempts over slots, per instance (0 to 1).",
);
const QUEUE_DEPTH: Metric = Metric::gauge(
    "flotilla_queue_depth",
    "Tasks waiting, by the capabilities they require (\"\": any instance).",
);
const QUEUE_OLDEST: Metric = Metric::gauge(
    "flotilla_queue_oldest_wait_seconds",
    "How long the task waiting longest has waited, by the capabilities it requires.",
);
const OBSERVERS: Metric = Metric::gauge("flotilla_observers", "Observers connected now.");
const ALERT_STATE: Metric = Metric::gauge(
    "flotilla_alert_state",
    "Each alert's state: 1 for the one it is in.",
);
const ALERT_VALUE: Metric = Metric::gauge(
    "flotilla_alert_value",
    "What each alert measured over its window (absent without data).",
);
const GUARD_BYTES: Metric = Metric::counter(
    "flotilla_guard_scanned_bytes_total",
    "Bytes of task output that passed the guard.",
);
const LOG_LOST: Metric = Metric::counter(
    "flotilla_log_lost_frames_total",
    "Output frames lost to damaged records of the frame log.",
);
const LOG_CORRUPT: Metric = Metric::counter(
    "flotilla_log_corrupt_bytes_total",
    "Bytes of damaged records the frame log skipped at start.",
);
const LOG_TORN: Metric = Metric::counter(
    "flotilla_log_torn_bytes_total",
    "Bytes of a torn tail (an interrupted write) cut from the frame log at start.",
);
const LOG_BYTES: Metric = Metric::gauge(
    "flotilla_log_bytes",
    "Size of the frame log: all its segments together.",
);
const LOG_SEGMENTS: Metric =
    Metric::gauge("flotilla_log_segments", "Segment files of the frame log.");
const LOG_DELETED_SEGMENTS: Metric = Metric::counter(
    "flotilla_log_deleted_segments_total",
    "Segment files retention deleted.",
);
const LOG_DELETED_BYTES: Metric = Metric::counter(
    "flotilla_log_deleted_bytes_total",
    "Bytes of the segment files retention deleted.",
);
const LOG_WRITE_FAILURES: Metric = Metric::counter(
    "flotilla_log_write_failures_total",
    "Batches the frame log failed to write or sync, and retried.",
);
const LOG_REMOVED: Metric = Metric::counter(
    "flotilla_log_removed_frames_total",
    "Output frames retention removed, by the limit that removed them.",
);

fn one(m: &Metric, labels: Labels, v: f64) {
    registry().replace(m, vec![(labels, v)]);
}

fn count(m: &Metric, n: &AtomicU64) {
    one(m, vec![], n.load(Ordering::Relaxed) as f64);
}

fn caps(q: &QueueView) -> String {
    let names: Vec<&str> = q.capabilities.iter().map(|c| c.as_str()).collect();
    names.join(",")
}

/// Reads everything that is read at the scrape into the registry.
pub async fn refresh(engine: &Engine) {
    let instances = engine.instances().await.unwrap_or_default();
    let by_state = instances_by_state(&instances)
        .into_iter()
        .map(|(state, n)| (vec![("state", state.to_owned())], n as f64))
        .collect();
    registry().replace(&INSTANCES, by_state);
    let per = |f: &dyn Fn(&crate::dispatcher::messages::InstanceView) -> f64| {
        instances
            .iter()
            .map(|i| (vec![("instance", i.id.to_string())], f(i)))
            .collect::<Vec<_>>()
    };
    registry().replace(&SLOTS, per(&|i| f64::from(i.slots)));
    registry().replace(&RUNNING, per(&|i| i.running.len() as f64));
    registry().replace(
        &UTILIZATION,
        per(&|i| i.running.len() as f64 / f64::from(i.slots.max(1))),
    );

    let queue = engine.queue().await.unwrap_or_default();
    let now = now_ms();
    registry().replace(
        &QUEUE_DEPTH,
        queue
            .iter()
            .map(|q| (vec![("capabilities", caps(q))], q.depth as f64))
            .collect(),
    );
    registry().replace(
        &QUEUE_OLDEST,
        queue
            .iter()
            .filter_map(|q| {
                let ms = q.oldest_wait_ms(now)?;
                Some((vec![("capabilities", caps(q))], ms as f64 / 1000.0))
            })
            .collect(),
    );
    one(&OBSERVERS, vec![], engine.observers.count() as f64);

    let alerts = engine.alerts();
    let states = [
        AlertState::Inactive,
        AlertState::Pending,
        AlertState::Firing,
        AlertState::Resolved,
    ];
    registry().replace(
        &ALERT_STATE,
        alerts
            .iter()
            .flat_map(|a| {
                states.iter().map(move |s| {
                    let labels = vec![
                        ("alert", a.alert.as_str().to_owned()),
                        ("state", s.as_str().to_owned()),
                    ];
                    (labels, f64::from(u8::from(a.state == *s)))
                })
            })
            .collect(),
    );
    registry().replace(
        &ALERT_VALUE,
        alerts
            .iter()
            .filter_map(|a| Some((vec![("alert", a.alert.as_str().to_owned())], a.value?)))
            .collect(),
    );

    count(&GUARD_BYTES, &engine.guard.counters().bytes);
    let log = engine.log.counters();
    count(&LOG_LOST, &log.lost_frames);
    count(&LOG_CORRUPT, &log.corrupt_bytes);
    count(&LOG_TORN, &log.torn_bytes);
    count(&LOG_BYTES, &log.size);
    count(&LOG_SEGMENTS, &log.segments);
    count(&LOG_DELETED_SEGMENTS, &log.deleted_segments);
    count(&LOG_DELETED_BYTES, &log.deleted_bytes);
    count(&LOG_WRITE_FAILURES, &log.write_failures);
    registry().replace(
        &LOG_REMOVED,
        TruncateReason::ALL
            .iter()
            .map(|r| {
                let n = log.removed_frames[r.to_byte() as usize - 1].load(Ordering::Relaxed);
                (vec![("limit", r.as_str().to_owned())], n as f64)
            })
            .collect(),
    );
}
