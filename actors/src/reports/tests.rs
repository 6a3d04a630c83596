use super::*;
use crate::domain::TaskId;

fn trace(task: &str, no: u32, state: &str, started: i64, ended: Option<i64>) -> AttemptTrace {
    AttemptTrace {
        task: TaskId::parse(task).unwrap(),
        attempt_no: no,
        state: state.into(),
        started_ms: started,
        ended_ms: ended,
    }
}

const ALL_TIME: Window = Window {
    from_ms: 0,
    to_ms: i64::MAX,
};

#[test]
fn a_loss_is_repaired_when_an_attempt_that_is_not_lost_starts() {
    let traces = [
        // Lost at 100, ran again at 400: 300 ms.
        trace("t-a", 1, "lost", 0, Some(100)),
        trace("t-a", 2, "exited", 400, Some(900)),
        // Flapping: lost at 1000, again at 1500, then runs at 3000: one incident of 2 s.
        trace("t-b", 1, "lost", 0, Some(1_000)),
        trace("t-b", 2, "fenced", 1_200, Some(1_500)),
        trace("t-b", 3, "running", 3_000, None),
        // Lost and never run again.
        trace("t-c", 1, "lost", 0, Some(50)),
    ];
    let m = mttr(&traces, ALL_TIME);
    assert_eq!(m["incidents"], 3);
    assert_eq!(m["repaired"], 2);
    assert_eq!(m["unrepaired"], 1);
    assert_eq!(m["meanMs"], 1_150.0);
    assert_eq!(m["maxMs"], 2_000);
}

#[test]
fn only_losses_inside_the_window_count() {
    let traces = [
        trace("t-a", 1, "lost", 0, Some(100)),
        trace("t-a", 2, "exited", 400, Some(900)),
        trace("t-b", 1, "lost", 0, Some(5_000)),
        trace("t-b", 2, "exited", 5_100, Some(6_000)),
    ];
    let m = mttr(
        &traces,
        Window {
            from_ms: 1_000,
            to_ms: 10_000,
        },
    );
    assert_eq!(
        (m["incidents"].clone(), m["meanMs"].clone()),
        (json!(1), json!(100.0))
    );
    let none = mttr(&[], ALL_TIME);
    assert_eq!(none["meanMs"], Value::Null);
    assert_eq!(none["incidents"], 0);
}

#[test]
fn mttr_delta_passes_at_forty_percent_and_says_what_is_missing() {
    let scope = Scope::default();
    let report = |mean: Option<f64>| json!({"generatedAt": "2026-12-01T20:00:00.000Z", "measures": {"mttr": {"meanMs": mean}}});
    let pass = mttr_delta(
        &scope,
        Some(&report(Some(1_000.0))),
        Some(&report(Some(600.0))),
        0,
    );
    assert_eq!(pass["verdict"]["pass"], true, "{pass}");
    assert!((pass["measures"]["reduction"].as_f64().unwrap() - 0.4).abs() < 1e-9);
    let short = mttr_delta(
        &scope,
        Some(&report(Some(1_000.0))),
        Some(&report(Some(700.0))),
        0,
    );
    assert_eq!(short["verdict"]["pass"], false);
    assert!(short["verdict"]["reasons"][0]
        .as_str()
        .unwrap()
        .starts_with("not met: MTTR 1000 ms → 700 ms: 30.0 % less"));
    let worse = mttr_delta(
        &scope,
        Some(&report(Some(50.0))),
        Some(&report(Some(75.0))),
        0,
    );
    assert_eq!(
        worse["verdict"]["reasons"][0],
        "not met: MTTR 50 ms → 75 ms: 50.0 % more (target at least 40 % less)"
    );
    let nothing = mttr_delta(&scope, None, Some(&report(None)), 0);
    assert_eq!(nothing["verdict"]["pass"], false);
    let reasons = nothing["verdict"]["reasons"].to_string();
    assert!(reasons.contains("no baseline report"), "{reasons}");
    assert!(
        reasons.contains("post-rollout report timed no repair"),
        "{reasons}"
    );
}

#[test]
fn completeness_counts_missing_dimensions_and_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join(".runs");
    let put = |task: &str, doc: &str| {
        std::fs::create_dir_all(runs.join(task)).unwrap();
        std::fs::write(runs.join(task).join("metrics.json"), doc).unwrap();
    };
    let all = r#"["task","instance","capability","attempt","privacy"]"#;
    put(
        "t-full",
        &format!(r#"{{"attempts":{{"total":1}},"dimensions":{{"present":{all}}}}}"#),
    );
    put(
        "t-noguard",
        r#"{"attempts":{"total":1},"dimensions":{"present":["task","instance","capability","attempt"]}}"#,
    );
    put(
        "t-queued",
        r#"{"attempts":{"total":0},"dimensions":{"present":["task"]}}"#,
    );
    put("t-broken", "{not json");
    std::fs::create_dir_all(runs.join("flotilla").join("approvals")).unwrap();
    let doc = completeness(dir.path(), &Scope::default(), |_| Vec::new(), 0);
    let m = &doc["measures"];
    assert_eq!(m["files"], 4);
    assert_eq!(m["invalid"], 1);
    // 5 + 5 + 1 + 5 expected (a broken file is taken to have run); 0 + 1 + 0 + 5 missing.
    assert_eq!(
        (m["expectedFields"].clone(), m["missingFields"].clone()),
        (json!(16), json!(6))
    );
    assert_eq!(doc["verdict"]["pass"], false);
    let empty = tempfile::tempdir().unwrap();
    let none = completeness(empty.path(), &Scope::default(), |_| Vec::new(), 0);
    assert_eq!(none["verdict"]["pass"], false);
    assert!(none["verdict"]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("no .runs/*/metrics.json"));
}
