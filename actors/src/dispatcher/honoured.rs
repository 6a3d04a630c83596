//! What the scheduler honours of a request's `schedule`, and the refusal of the rest.
//!
//! A request that asks for what the scheduler cannot do is refused at submission (422,
//! naming the field and the rule `unsupported`), never accepted and ignored.

use crate::control_plane::{FieldError, RunRequest};
use crate::fleet::FleetSettings;

use super::placement::SchedulerSettings;

/// The fields of `request` the scheduler cannot honour on a fleet run with `fleet`.
pub fn refusals(
    request: &RunRequest,
    fleet: &FleetSettings,
    scheduler: &SchedulerSettings,
) -> Vec<FieldError> {
    let mut out = Vec::new();
    let Some(schedule) = &request.schedule else {
        return out;
    };
    let unsupported =
        |pointer: &str, message: String| FieldError::new(pointer, "unsupported", message);
    match schedule.strategy.as_deref() {
        None | Some("single") | Some("least-loaded") => {}
        Some("weighted-fair") if scheduler.fair_label.is_some() => {}
        Some("weighted-fair") => out.push(unsupported(
            "/schedule/strategy",
            "weighted-fair needs [scheduler] fair-label on this fleet, which has none".into(),
        )),
        Some(other) => out.push(unsupported(
            "/schedule/strategy",
            format!(
                "strategy {other:?} is not run by this scheduler yet; use single or least-loaded"
            ),
        )),
    }
    if !schedule.fan_out.is_empty() {
        out.push(unsupported(
            "/schedule/fanOut",
            "fan-out is not run by this scheduler yet: a task runs on one instance".into(),
        ));
    }
    if let Some(n) = schedule.min_instances.filter(|n| *n > 1) {
        out.push(unsupported(
            "/schedule/minInstances",
            format!("a task runs on one instance at a time; minInstances {n} cannot be met"),
        ));
    }
    if let Some(recovery) = &schedule.recovery {
        if let Some(ms) = recovery
            .heartbeat_interval_ms
            .filter(|ms| *ms < fleet.heartbeat_ms)
        {
            out.push(unsupported(
                "/schedule/recovery/heartbeatIntervalMs",
                format!(
                    "agents heartbeat every {} ms on this fleet; {ms} ms cannot be met",
                    fleet.heartbeat_ms
                ),
            ));
        }
        if let Some(ms) = recovery.missing_heartbeat_timeout_ms {
            let (min, max) = (2 * fleet.heartbeat_ms, fleet.lease_timeout_ms);
            if !(min..=max).contains(&ms) {
                out.push(unsupported(
                    "/schedule/recovery/missingHeartbeatTimeoutMs",
                    format!(
                        "on this fleet a lease timeout must be between {min} ms (two heartbeats) and {max} ms (the fleet's lease timeout, after which a silent instance is dropped); got {ms}"
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(schedule: serde_json::Value) -> RunRequest {
        serde_json::from_value(serde_json::json!({
            "schema": "flotilla.run-request/2.0.0", "argv": ["true"], "schedule": schedule
        }))
        .unwrap()
    }

    #[test]
    fn what_cannot_be_honoured_is_named_and_the_rest_passes() {
        let fleet = FleetSettings::default();
        let scheduler = SchedulerSettings::default();
        let cases: &[(serde_json::Value, &[&str])] = &[
            (serde_json::json!({}), &[]),
            (serde_json::json!({"strategy": "single"}), &[]),
            (
                serde_json::json!({"strategy": "least-loaded", "maxInstances": 4}),
                &[],
            ),
            (
                serde_json::json!({"strategy": "fan-out"}),
                &["/schedule/strategy"],
            ),
            (
                serde_json::json!({"strategy": "weighted-fair"}),
                &["/schedule/strategy"],
            ),
            (
                serde_json::json!({"fanOut": [{"capability": "gpu"}]}),
                &["/schedule/fanOut"],
            ),
            (serde_json::json!({"minInstances": 1}), &[]),
            (
                serde_json::json!({"minInstances": 2}),
                &["/schedule/minInstances"],
            ),
            (
                serde_json::json!({"recovery": {"heartbeatIntervalMs": 1000, "missingHeartbeatTimeoutMs": 3000}}),
                &[],
            ),
            (
                serde_json::json!({"recovery": {"heartbeatIntervalMs": 5000, "missingHeartbeatTimeoutMs": 2000}}),
                &[],
            ),
            (
                serde_json::json!({"recovery": {"heartbeatIntervalMs": 500}}),
                &["/schedule/recovery/heartbeatIntervalMs"],
            ),
            (
                serde_json::json!({"recovery": {"missingHeartbeatTimeoutMs": 1500}}),
                &["/schedule/recovery/missingHeartbeatTimeoutMs"],
            ),
            (
                serde_json::json!({"recovery": {"missingHeartbeatTimeoutMs": 10000}}),
                &["/schedule/recovery/missingHeartbeatTimeoutMs"],
            ),
            (
                serde_json::json!({"strategy": "fan-out", "minInstances": 3}),
                &["/schedule/strategy", "/schedule/minInstances"],
            ),
        ];
        for (schedule, want) in cases {
            let got: Vec<String> = refusals(&request(schedule.clone()), &fleet, &scheduler)
                .into_iter()
                .map(|e| {
                    assert_eq!(e.rule, "unsupported");
                    e.pointer
                })
                .collect();
            assert_eq!(got, *want, "{schedule}");
        }
    }
}
