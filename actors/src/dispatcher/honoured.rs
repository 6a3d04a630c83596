//! What the scheduler honours of a request's `schedule`, and the refusal of the rest.
//!
//! A request that asks for what the scheduler cannot do is refused at submission (422,
//! naming the field and the rule `unsupported`), never accepted and ignored.

use crate::control_plane::{FieldError, RunRequest};
use crate::fleet::FleetSettings;

use super::placement::SchedulerSettings;

/// The most shards one task fans out to.
pub const MAX_SHARDS: u64 = 64;

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
    let fan = request.fan_mode();
    match schedule.strategy.as_deref() {
        None | Some("single") | Some("least-loaded") | Some("fan-out") | Some("first-wins") => {}
        Some("weighted-fair") if scheduler.fair_label.is_some() => {}
        Some("weighted-fair") => out.push(unsupported(
            "/schedule/strategy",
            "weighted-fair needs [scheduler] fair-label on this fleet, which has none".into(),
        )),
        Some(other) => out.push(unsupported(
            "/schedule/strategy",
            format!("strategy {other:?} is not run by this scheduler"),
        )),
    }
    // The shards of a fanned-out task, counted without building them.
    let shards: u64 = if schedule.fan_out.is_empty() {
        u64::from(schedule.shards.unwrap_or(1))
    } else {
        schedule
            .fan_out
            .iter()
            .map(|e| u64::from(e.weight.unwrap_or(1)))
            .sum()
    };
    if fan.is_none() {
        for (field, given) in [
            ("fanOut", !schedule.fan_out.is_empty()),
            ("shards", schedule.shards.is_some()),
        ] {
            if given {
                out.push(unsupported(
                    &format!("/schedule/{field}"),
                    format!("{field} is read only with strategy fan-out or first-wins; this task runs on one instance"),
                ));
            }
        }
    } else if schedule.shards.is_some() && !schedule.fan_out.is_empty() {
        out.push(unsupported(
            "/schedule/shards",
            "give shards or fanOut (whose weights count the shards), not both".into(),
        ));
    } else if shards > MAX_SHARDS {
        out.push(unsupported(
            "/schedule/fanOut",
            format!("the fanOut weights ask for {shards} shards; at most {MAX_SHARDS} run"),
        ));
    }
    for (i, entry) in schedule.fan_out.iter().enumerate() {
        if entry.max_concurrency.is_some() {
            out.push(unsupported(
                &format!("/schedule/fanOut/{i}/maxConcurrency"),
                "the shards of a task run on distinct instances, all at once; a per-entry concurrency limit is not run by this scheduler".into(),
            ));
        }
    }
    // How many distinct instances the task runs on.
    let spread = if fan.is_some() { shards } else { 1 };
    if let Some(n) = schedule.min_instances.filter(|n| u64::from(*n) > spread) {
        out.push(unsupported(
            "/schedule/minInstances",
            format!(
                "this task runs on {spread} instance(s) at a time; minInstances {n} cannot be met"
            ),
        ));
    }
    if let Some(n) = schedule.max_instances.filter(|n| u64::from(*n) < spread) {
        out.push(unsupported(
            "/schedule/maxInstances",
            format!(
                "its {spread} shards run on distinct instances; maxInstances {n} cannot be met"
            ),
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
            "schema": "flotilla.run-request/2.1.0", "argv": ["true"], "schedule": schedule
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
            (serde_json::json!({"strategy": "fan-out", "shards": 4}), &[]),
            (
                serde_json::json!({"strategy": "first-wins", "fanOut": [{"capability": "gpu", "weight": 2}, {"capability": "cpu"}], "minInstances": 3, "maxInstances": 3}),
                &[],
            ),
            (
                serde_json::json!({"strategy": "fan-out", "shards": 4, "maxInstances": 3}),
                &["/schedule/maxInstances"],
            ),
            (
                serde_json::json!({"strategy": "fan-out", "shards": 2, "fanOut": [{"capability": "gpu"}]}),
                &["/schedule/shards"],
            ),
            (
                serde_json::json!({"strategy": "fan-out", "fanOut": [{"capability": "gpu", "weight": 65}]}),
                &["/schedule/fanOut"],
            ),
            (
                serde_json::json!({"strategy": "fan-out", "fanOut": [{"capability": "gpu", "maxConcurrency": 1}]}),
                &["/schedule/fanOut/0/maxConcurrency"],
            ),
            (serde_json::json!({"shards": 2}), &["/schedule/shards"]),
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
                &["/schedule/minInstances"],
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
