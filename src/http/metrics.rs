//! `GET /metrics`: the one metrics registry of the named events, and what is read at the
//! scrape — the guard's, validation's and frame log's counters, the fleet, the queue,
//! observers and the alerts — in the Prometheus text format (version 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use actix_web::HttpResponse;
use flotilla_actors::alerts::AlertState;
use flotilla_actors::dispatcher::messages::instances_by_state;
use flotilla_actors::protocol::TruncateReason;

use super::State;

/// `GET /metrics`: Prometheus text. Counts only, no values: open like `/healthz`.
pub async fn metrics(state: State) -> HttpResponse {
    let (engine, _) = &**state;
    let c = engine.guard.counters();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP flotilla_guard_decisions_total Decisions of the privacy guard about values in task output.\n\
         # TYPE flotilla_guard_decisions_total counter"
    );
    let decisions = c
        .decisions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for ((rule, kind, action, mode, applied), n) in decisions {
        let _ = writeln!(
            out,
            "flotilla_guard_decisions_total{{rule=\"{rule}\",kind=\"{kind}\",action=\"{action}\",mode=\"{mode}\",applied=\"{applied}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP flotilla_guard_scanned_bytes_total Bytes of task output that passed the guard.\n\
         # TYPE flotilla_guard_scanned_bytes_total counter\n\
         flotilla_guard_scanned_bytes_total {}\n\
         # HELP flotilla_guard_blocked_attempts_total Attempts stopped because the guard blocked their output.\n\
         # TYPE flotilla_guard_blocked_attempts_total counter\n\
         flotilla_guard_blocked_attempts_total {}\n\
         # HELP flotilla_guard_worker_restarts_total Guard workers that failed and were restarted in place.\n\
         # TYPE flotilla_guard_worker_restarts_total counter\n\
         flotilla_guard_worker_restarts_total {}",
        c.bytes.load(Ordering::Relaxed),
        c.blocked_attempts.load(Ordering::Relaxed),
        c.worker_restarts.load(Ordering::Relaxed)
    );
    let v = engine.control.counts();
    let _ = writeln!(
        out,
        "# HELP flotilla_validation_requests_total Requests checked against their schema.\n\
         # TYPE flotilla_validation_requests_total counter"
    );
    for ((schema, mode, outcome), n) in &v.requests {
        let _ = writeln!(
            out,
            "flotilla_validation_requests_total{{schema=\"{schema}\",mode=\"{mode}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP flotilla_validation_rollbacks_total Times enforcement rolled back to shadow.\n\
         # TYPE flotilla_validation_rollbacks_total counter\n\
         flotilla_validation_rollbacks_total {}",
        v.rollbacks
    );
    let log = engine.log.counters();
    let _ = writeln!(
        out,
        "# HELP flotilla_log_lost_frames_total Output frames lost to damaged records of the frame log.\n\
         # TYPE flotilla_log_lost_frames_total counter\n\
         flotilla_log_lost_frames_total {}\n\
         # HELP flotilla_log_corrupt_bytes_total Bytes of damaged records the frame log skipped at start.\n\
         # TYPE flotilla_log_corrupt_bytes_total counter\n\
         flotilla_log_corrupt_bytes_total {}\n\
         # HELP flotilla_log_torn_bytes_total Bytes of a torn tail (an interrupted write) cut from the frame log at start.\n\
         # TYPE flotilla_log_torn_bytes_total counter\n\
         flotilla_log_torn_bytes_total {}\n\
         # HELP flotilla_log_bytes Size of the frame log: all its segments together.\n\
         # TYPE flotilla_log_bytes gauge\n\
         flotilla_log_bytes {}\n\
         # HELP flotilla_log_segments Segment files of the frame log.\n\
         # TYPE flotilla_log_segments gauge\n\
         flotilla_log_segments {}\n\
         # HELP flotilla_log_deleted_segments_total Segment files retention deleted.\n\
         # TYPE flotilla_log_deleted_segments_total counter\n\
         flotilla_log_deleted_segments_total {}\n\
         # HELP flotilla_log_deleted_bytes_total Bytes of the segment files retention deleted.\n\
         # TYPE flotilla_log_deleted_bytes_total counter\n\
         flotilla_log_deleted_bytes_total {}\n\
         # HELP flotilla_log_write_failures_total Batches the frame log failed to write or sync, and retried.\n\
         # TYPE flotilla_log_write_failures_total counter\n\
         flotilla_log_write_failures_total {}",
        log.lost_frames.load(Ordering::Relaxed),
        log.corrupt_bytes.load(Ordering::Relaxed),
        log.torn_bytes.load(Ordering::Relaxed),
        log.size.load(Ordering::Relaxed),
        log.segments.load(Ordering::Relaxed),
        log.deleted_segments.load(Ordering::Relaxed),
        log.deleted_bytes.load(Ordering::Relaxed),
        log.write_failures.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP flotilla_log_removed_frames_total Output frames retention removed, by the limit that removed them.\n\
         # TYPE flotilla_log_removed_frames_total counter"
    );
    for reason in TruncateReason::ALL {
        let _ = writeln!(
            out,
            "flotilla_log_removed_frames_total{{limit=\"{}\"}} {}",
            reason.as_str(),
            log.removed_frames[reason.to_byte() as usize - 1].load(Ordering::Relaxed)
        );
    }
    fleet_gauges(engine, &mut out).await;
    alert_gauges(engine, &mut out);
    flotilla_actors::events::registry().render(&mut out);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

/// The gauges read from the fleet as it is at the scrape: instances by state, and each
/// connected instance's slots, running attempts and utilization (running over slots);
/// the queue's depth and oldest wait by required capabilities; observers connected.
async fn fleet_gauges(engine: &flotilla_actors::engine::Engine, out: &mut String) {
    let instances = engine.instances().await.unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP flotilla_instances Instances the server knows, by state.\n\
         # TYPE flotilla_instances gauge"
    );
    for (state, n) in instances_by_state(&instances) {
        let _ = writeln!(out, "flotilla_instances{{state=\"{state}\"}} {n}");
    }
    for (name, help) in [
        ("flotilla_instance_slots", "Slots of each instance."),
        (
            "flotilla_instance_running",
            "Attempts each instance runs now.",
        ),
        (
            "flotilla_instance_utilization",
            "Running attempts over slots, per instance (0 to 1).",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for i in &instances {
            let value = match name {
                "flotilla_instance_slots" => f64::from(i.slots),
                "flotilla_instance_running" => i.running.len() as f64,
                _ => i.running.len() as f64 / f64::from(i.slots.max(1)),
            };
            let _ = writeln!(out, "{name}{{instance=\"{}\"}} {value}", i.id);
        }
    }
    let queue = engine.queue().await.unwrap_or_default();
    let now = flotilla_actors::domain::now_ms();
    let _ = writeln!(
        out,
        "# HELP flotilla_queue_depth Tasks waiting, by the capabilities they require (\"\": any instance).\n\
         # TYPE flotilla_queue_depth gauge"
    );
    let caps = |q: &flotilla_actors::dispatcher::messages::QueueView| {
        let names: Vec<&str> = q.capabilities.iter().map(|c| c.as_str()).collect();
        names.join(",")
    };
    for q in &queue {
        let _ = writeln!(
            out,
            "flotilla_queue_depth{{capabilities=\"{}\"}} {}",
            caps(q),
            q.depth
        );
    }
    let _ = writeln!(
        out,
        "# HELP flotilla_queue_oldest_wait_seconds How long the task waiting longest has waited, by the capabilities it requires.\n\
         # TYPE flotilla_queue_oldest_wait_seconds gauge"
    );
    for q in &queue {
        if let Some(ms) = q.oldest_wait_ms(now) {
            let secs = ms as f64 / 1000.0;
            let _ = writeln!(
                out,
                "flotilla_queue_oldest_wait_seconds{{capabilities=\"{}\"}} {secs}",
                caps(q)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP flotilla_observers Observers connected now.\n\
         # TYPE flotilla_observers gauge\n\
         flotilla_observers {}",
        engine.observers.count()
    );
}

/// Each alert's state (1 for the state it is in, 0 for the others) and its measured
/// value, where it has one.
fn alert_gauges(engine: &flotilla_actors::engine::Engine, out: &mut String) {
    let alerts = engine.alerts();
    let _ = writeln!(
        out,
        "# HELP flotilla_alert_state Each alert's state: 1 for the one it is in.\n\
         # TYPE flotilla_alert_state gauge"
    );
    for a in &alerts {
        for state in [
            AlertState::Inactive,
            AlertState::Pending,
            AlertState::Firing,
            AlertState::Resolved,
        ] {
            let _ = writeln!(
                out,
                "flotilla_alert_state{{alert=\"{}\",state=\"{}\"}} {}",
                a.alert.as_str(),
                state.as_str(),
                u8::from(a.state == state)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP flotilla_alert_value What each alert measured over its window (absent without data).\n\
         # TYPE flotilla_alert_value gauge"
    );
    for a in &alerts {
        if let Some(v) = a.value {
            let _ = writeln!(
                out,
                "flotilla_alert_value{{alert=\"{}\"}} {v}",
                a.alert.as_str()
            );
        }
    }
}
