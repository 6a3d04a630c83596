use super::*;

fn settings(kind: RuleKind, threshold: f64, for_ms: u64, min_count: u64) -> AlertSettings {
    AlertSettings {
        every_ms: 1_000,
        window_ms: 10_000,
        rules: vec![Rule {
            kind,
            threshold,
            for_ms,
            min_count,
            enabled: true,
        }],
        webhook: None,
    }
}

fn states(changes: &[Transition]) -> Vec<(AlertState, AlertState)> {
    changes.iter().map(|t| (t.from, t.alert.state)).collect()
}

#[test]
fn low_utilization_while_work_waits_goes_pending_then_fires_then_resolves() {
    let mut a = Alerts::new(settings(RuleKind::UtilizationLow, 0.5, 3_000, 0), 0);
    let idle = |at_ms, queued| Sample {
        at_ms,
        utilization: 0.1,
        queued,
        ..Sample::default()
    };
    // Low, but nothing waits: no alert.
    assert!(a.evaluate(idle(0, 0)).is_empty());
    assert_eq!(a.views()[0].state, AlertState::Inactive);
    assert_eq!(
        states(&a.evaluate(idle(1_000, 4))),
        [(AlertState::Inactive, AlertState::Pending)]
    );
    assert!(a.evaluate(idle(3_000, 4)).is_empty(), "not for 3 s yet");
    let fired = a.evaluate(idle(4_000, 4));
    assert_eq!(states(&fired), [(AlertState::Pending, AlertState::Firing)]);
    let view = &fired[0].alert;
    assert_eq!(view.value, Some(0.1));
    assert!(view.reason.contains("4 task(s) waiting"), "{}", view.reason);
    assert!(view.fired_at.is_some());
    let resolved = a.evaluate(Sample {
        utilization: 0.9,
        ..idle(5_000, 4)
    });
    assert_eq!(
        states(&resolved),
        [(AlertState::Firing, AlertState::Resolved)]
    );
    // Back again: pending first, not straight to firing.
    assert_eq!(
        states(&a.evaluate(idle(6_000, 4))),
        [(AlertState::Resolved, AlertState::Pending)]
    );
}

#[test]
fn a_condition_that_passes_before_its_for_duration_never_fires() {
    let mut a = Alerts::new(settings(RuleKind::UtilizationLow, 0.5, 5_000, 0), 0);
    let at = |at_ms, utilization| Sample {
        at_ms,
        utilization,
        queued: 2,
        ..Sample::default()
    };
    assert_eq!(
        states(&a.evaluate(at(0, 0.2))),
        [(AlertState::Inactive, AlertState::Pending)]
    );
    assert!(a.evaluate(at(4_000, 0.2)).is_empty());
    assert_eq!(
        states(&a.evaluate(at(4_500, 0.8))),
        [(AlertState::Pending, AlertState::Inactive)]
    );
    assert!(a.views()[0].fired_at.is_none());
}

#[test]
fn counts_leave_the_window_as_it_slides() {
    let mut a = Alerts::new(settings(RuleKind::InstanceRestarts, 1.0, 5_000, 0), 0);
    let at = |at_ms, restarts| Sample {
        at_ms,
        restarts,
        ..Sample::default()
    };
    assert!(a.evaluate(at(0, 0)).is_empty());
    assert_eq!(
        states(&a.evaluate(at(1_000, 3))),
        [(AlertState::Inactive, AlertState::Pending)]
    );
    assert!(a.evaluate(at(4_000, 3)).is_empty());
    assert_eq!(
        states(&a.evaluate(at(7_000, 3))),
        [(AlertState::Pending, AlertState::Firing)],
        "3 restarts in the window for 6 s"
    );
    assert_eq!(a.views()[0].value, Some(3.0));
    assert_eq!(
        states(&a.evaluate(at(22_000, 3))),
        [(AlertState::Firing, AlertState::Resolved)],
        "the window no longer holds them"
    );
    assert_eq!(a.views()[0].value, Some(0.0));
}

#[test]
fn rates_without_enough_evidence_say_no_data_and_do_not_fire() {
    let mut a = Alerts::new(settings(RuleKind::CompletionLow, 0.95, 0, 20), 0);
    let at = |at_ms, finished, succeeded| Sample {
        at_ms,
        finished,
        succeeded,
        ..Sample::default()
    };
    a.evaluate(at(0, 0, 0));
    assert!(a.evaluate(at(1_000, 5, 0)).is_empty());
    let v = &a.views()[0];
    assert_eq!(v.value, None);
    assert!(
        v.reason.starts_with("no data: 5 task(s) finished"),
        "{}",
        v.reason
    );
    let fired = a.evaluate(at(2_000, 40, 30));
    assert_eq!(states(&fired), [(AlertState::Inactive, AlertState::Firing)]);
    assert_eq!(fired[0].alert.value, Some(0.75));
    assert!(
        fired[0].alert.reason.contains("30 of 40"),
        "{}",
        fired[0].alert.reason
    );
}

#[test]
fn mttr_is_the_mean_repair_over_the_window() {
    let mut a = Alerts::new(settings(RuleKind::MttrHigh, 30.0, 0, 1), 0);
    let at = |at_ms, repairs, repair_seconds| Sample {
        at_ms,
        repairs,
        repair_seconds,
        ..Sample::default()
    };
    a.evaluate(at(0, 10, 1_000.0));
    // Before the window: 10 slow repairs. In it: 2 of 5 s and 15 s.
    assert!(a.evaluate(at(1_000, 12, 1_020.0)).is_empty());
    assert_eq!(a.views()[0].value, Some(10.0));
    let fired = a.evaluate(at(2_000, 13, 1_120.0));
    assert_eq!(states(&fired), [(AlertState::Inactive, AlertState::Firing)]);
    assert!((fired[0].alert.value.unwrap() - 40.0).abs() < 1e-9);
}

#[test]
fn a_disabled_rule_is_shown_but_never_fires() {
    let mut s = settings(RuleKind::GuardViolations, 1.0, 0, 0);
    s.rules[0].enabled = false;
    let mut a = Alerts::new(s, 0);
    a.evaluate(Sample::default());
    let changes = a.evaluate(Sample {
        at_ms: 60_000,
        violations: 500,
        ..Sample::default()
    });
    assert!(changes.is_empty());
    assert!(
        a.views()[0].reason.starts_with("disabled"),
        "{}",
        a.views()[0].reason
    );
    assert_eq!(a.views()[0].value, Some(500.0));
}

#[test]
fn settings_name_what_is_wrong() {
    let mut s = AlertSettings::default();
    assert_eq!(s.check(), Ok(()));
    s.rule_mut(RuleKind::MttrHigh).threshold = f64::NAN;
    assert!(s
        .check()
        .unwrap_err()
        .contains("alerts.mttr-high.threshold"));
    let s = AlertSettings {
        webhook: Some("ftp://x".into()),
        ..AlertSettings::default()
    };
    assert!(s.check().unwrap_err().contains("alerts.webhook"));
}
