use super::*;

fn plane() -> ControlPlane {
    ControlPlane::new(ControlPlaneConfig::default()).unwrap()
}

/// Asserts `body` is rejected with an error at `pointer` for `rule`.
fn check_rejected(body: &str, pointer: &str, rule: &str) {
    let cp = plane();
    let err = cp.parse_run_request(body.as_bytes()).expect_err(body);
    assert!(
        err.errors()
            .iter()
            .any(|e| e.pointer == pointer && e.rule == rule),
        "{body}: want {pointer} {rule}, got {:?}",
        err.errors()
    );
}

#[test]
fn bad_requests_name_the_field_and_the_rule() {
    for (body, pointer, rule) in [
        ("{", "", "json"),
        ("[]", "", "type"),
        ("{}", "", "required"),
        (r#"{"argv": []}"#, "/argv", "minItems"),
        (r#"{"argv": "ls"}"#, "/argv", "type"),
        (r#"{"argv": [""]}"#, "/argv/0", "minLength"),
        (r#"{"argv": ["ls", 3]}"#, "/argv/1", "type"),
        (
            r#"{"argv": ["ls"], "colour": "red"}"#,
            "/colour",
            "additionalProperties",
        ),
        (r#"{"argv": ["ls"], "id": "../etc"}"#, "/id", "pattern"),
        (r#"{"argv": ["ls"], "id": "a..b"}"#, "/id", "not"),
        (
            r#"{"argv": ["ls"], "timeoutSeconds": 0}"#,
            "/timeoutSeconds",
            "minimum",
        ),
        (
            r#"{"argv": ["ls"], "timeoutSeconds": 1.5}"#,
            "/timeoutSeconds",
            "type",
        ),
        (
            r#"{"argv": ["ls"], "maxAttempts": 99}"#,
            "/maxAttempts",
            "maximum",
        ),
        (
            r#"{"argv": ["ls"], "capabilities": ["GPU"]}"#,
            "/capabilities/0",
            "pattern",
        ),
        (r#"{"argv": ["ls"], "env": {"A": 1}}"#, "/env/A", "type"),
        (r#"{"argv": ["ls"], "env": {"1A": "x"}}"#, "/env", "pattern"),
    ] {
        check_rejected(body, pointer, rule);
    }
}

#[test]
fn a_full_request_parses_into_domain_types() {
    let cp = plane();
    let accepted = cp
        .parse_run_request(
            br#"{"id": "build-1", "argv": ["sh", "-c", "echo hi"], "env": {"A": "b"},
                "cwd": "/tmp", "timeoutSeconds": 30, "capabilities": ["os:linux"],
                "maxAttempts": 2, "labels": {"team": "infra"}}"#,
        )
        .unwrap();
    let req = accepted.request;
    assert_eq!(accepted.report.version, "1.2.0");
    assert_eq!(req.id.as_ref().map(|i| i.as_str()), Some("build-1"));
    assert_eq!(req.max_attempts(), 2);
    assert_eq!(req.capabilities[0].as_str(), "os:linux");
    let minimal = cp.parse_run_request(br#"{"argv": ["true"]}"#).unwrap();
    assert_eq!(minimal.request.max_attempts(), DEFAULT_MAX_ATTEMPTS);
}

const V2: &str = r#"{
    "schema": "flotilla.run-request/2.0.0",
    "id": "build-2", "idempotencyKey": "ci-run-4411", "requestedBy": "ci@build",
    "argv": ["cargo", "test"], "env": {"RUST_LOG": "info"}, "timeoutSeconds": 900,
    "capabilities": ["os:linux"], "labels": {"team": "infra"},
    "schedule": {"strategy": "single", "minInstances": 1, "maxInstances": 1,
                 "fanOut": [{"capability": "os:linux", "weight": 2, "maxConcurrency": 4}],
                 "recovery": {"heartbeatIntervalMs": 2000, "missingHeartbeatTimeoutMs": 6000, "maxRetries": 4}},
    "streaming": {"handles": ["stdout", "stderr"], "resume": true,
                  "observers": {"maxSubscribers": 8, "backpressure": "catch-up"}},
    "constraints": {"privacy": "restricted", "policyVersion": "1.0.0"},
    "metrics": {"emitIntervalMs": 1000, "requiredDimensions": ["instance", "task"]}
}"#;

#[test]
fn a_v2_request_is_taken_by_its_schema_field() {
    let a = plane().parse_run_request(V2.as_bytes()).unwrap();
    assert_eq!(
        (a.report.schema.as_str(), a.report.version.as_str()),
        (RUN_REQUEST_ID, "2.2.0")
    );
    assert_eq!(
        (a.report.mode.as_str(), a.report.outcome.as_str()),
        ("enforce", "accepted")
    );
    assert_eq!(a.request.max_attempts(), 5);
    assert_eq!(a.request.idempotency_key.as_deref(), Some("ci-run-4411"));
    assert_eq!(
        a.request.privacy(),
        flotilla_guard::policy::Level::Restricted
    );
    for (body, pointer, rule) in [
        (
            r#"{"schema": "flotilla.run-request/2.0.0", "argv": ["ls"], "maxAttempts": 2}"#,
            "/maxAttempts",
            "additionalProperties",
        ),
        (
            r#"{"schema": "flotilla.run-request/2.0.0", "argv": ["ls"], "schedule": {"recovery": {"maxRetries": 99}}}"#,
            "/schedule/recovery/maxRetries",
            "maximum",
        ),
        (
            r#"{"schema": "flotilla.run-request/2.0.0", "argv": ["ls"], "streaming": {"observers": {"backpressure": "pause"}}}"#,
            "/streaming/observers/backpressure",
            "enum",
        ),
        (
            r#"{"schema": "flotilla.run-request/2.0.0"}"#,
            "",
            "required",
        ),
    ] {
        check_rejected(body, pointer, rule);
    }
}

#[test]
fn a_wrong_schema_id_or_version_is_named_with_what_is_supported() {
    let cp = plane();
    let refused = |body: &str| match cp.parse_run_request(body.as_bytes()) {
        Err(Rejection::Version(e)) => (e.pointer.clone(), e.message.clone()),
        other => panic!("{body}: {other:?}"),
    };
    let (pointer, msg) = refused(r#"{"schema": "flotilla.run-request/3.0.0", "argv": ["ls"]}"#);
    assert_eq!(pointer, "/schema");
    assert!(
        msg.contains("no version \"3.0.0\"") && msg.contains("supported: 1.2.0, 2.2.0"),
        "{msg}"
    );
    let (_, msg) = refused(r#"{"schema": "flotilla.manifest/1.1.0", "argv": ["ls"]}"#);
    assert!(
        msg.contains("this route takes flotilla.run-request"),
        "{msg}"
    );
    let (_, msg) = refused(r#"{"schema": 2, "argv": ["ls"]}"#);
    assert!(msg.contains("must be a string"), "{msg}");
    // v1 may name itself.
    let a = cp
        .parse_run_request(br#"{"schema": "flotilla.run-request/1.2.0", "argv": ["ls"]}"#)
        .unwrap();
    assert_eq!(a.report.version, "1.2.0");
}

#[test]
fn errors_say_what_the_rule_expected() {
    let err = plane()
        .parse_run_request(
            br#"{"argv": ["ls"], "timeoutSeconds": 0, "constraints": {"privacy": "secret"}}"#,
        )
        .unwrap_err();
    let e = err
        .errors()
        .iter()
        .find(|e| e.pointer == "/timeoutSeconds")
        .unwrap();
    assert_eq!(e.expected, Some(serde_json::json!(1)));
    let e = err
        .errors()
        .iter()
        .find(|e| e.pointer == "/constraints/privacy")
        .unwrap();
    assert_eq!(
        e.expected,
        Some(serde_json::json!(["standard", "restricted", "sensitive"]))
    );
}

#[test]
fn shadow_lets_violations_through_and_records_them_as_drift() {
    let cp = plane();
    cp.set_mode(RUN_REQUEST_ID, ValidationMode::Shadow, "alice", None)
        .unwrap();
    let a = cp
        .parse_run_request(
            br#"{"argv": ["ls"], "timeoutSeconds": 999999999, "cwd": "password=Tr0ub4dor&3xq!Vz"}"#,
        )
        .unwrap();
    assert_eq!(
        (a.report.mode.as_str(), a.report.outcome.as_str()),
        ("shadow", "accepted-with-violations")
    );
    assert_eq!(a.report.errors[0].pointer, "/timeoutSeconds");
    // What cannot be read is refused even in shadow.
    assert!(cp.parse_run_request(br#"{"argv": "ls"}"#).is_err());
    let drift = cp.drift_report();
    let v = drift["violations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["pointer"] == "/timeoutSeconds")
        .unwrap();
    assert_eq!(
        (
            v["pointer"].as_str(),
            v["rule"].as_str(),
            v["count"].as_u64()
        ),
        (Some("/timeoutSeconds"), Some("maximum"), Some(1))
    );
    assert_eq!(v["samples"][0]["value"], "999999999");
    // Off: not checked at all.
    cp.set_mode(RUN_REQUEST_ID, ValidationMode::Off, "alice", None)
        .unwrap();
    let a = cp
        .parse_run_request(br#"{"argv": ["ls"], "timeoutSeconds": 999999999}"#)
        .unwrap();
    assert_eq!(a.report.outcome, "unchecked");
    assert_eq!(cp.history().len(), 2);
}

#[test]
fn too_many_rejections_roll_enforcement_back_to_shadow_until_an_operator_says_so() {
    let cp = ControlPlane::new(ControlPlaneConfig {
        rollback: RollbackPolicy {
            max_rate: 0.01,
            window_requests: 1000,
            window_seconds: 300,
            min_requests: 100,
        },
        ..ControlPlaneConfig::default()
    })
    .unwrap();
    let bad = br#"{"argv": []}"#;
    for _ in 0..98 {
        cp.parse_run_request(br#"{"argv": ["ls"]}"#).unwrap();
    }
    assert!(cp.parse_run_request(bad).is_err());
    assert!(
        cp.parse_run_request(bad).is_err(),
        "still enforced: 99 requests are too few"
    );
    // The 101st request: 2 of 101 rejected is over 1%.
    cp.parse_run_request(br#"{"argv": ["ls"]}"#).unwrap();
    let modes = cp.modes();
    let m = modes.iter().find(|m| m.schema == RUN_REQUEST_ID).unwrap();
    assert_eq!(m.mode, ValidationMode::Shadow);
    let rb = m.rolled_back_by.clone().expect("rolled back");
    let a = cp
        .parse_run_request(bad)
        .expect("shadow lets it through? no: argv [] still parses");
    assert_eq!(a.report.rollback.as_deref(), Some(rb.as_str()));
    assert_eq!(cp.drift_report()["rollbacks"][0]["id"], rb.as_str());
    assert_eq!(cp.counts().rollbacks, 1);
    assert_eq!(cp.history().last().unwrap().by, "rollback");
    cp.set_mode(
        RUN_REQUEST_ID,
        ValidationMode::Enforce,
        "bob",
        Some("fixed the client".into()),
    )
    .unwrap();
    assert!(cp.parse_run_request(bad).is_err());
}

#[test]
fn a_whole_number_written_as_a_float_is_an_integer() {
    let a = plane()
        .parse_run_request(br#"{"argv": ["ls"], "timeoutSeconds": 60.0, "maxAttempts": 2.0}"#)
        .unwrap();
    assert_eq!(
        (a.request.timeout_seconds, a.request.max_attempts()),
        (Some(60), 2)
    );
    check_rejected(
        r#"{"argv": ["ls"], "timeoutSeconds": 1.5}"#,
        "/timeoutSeconds",
        "type",
    );
}

#[test]
fn other_messages_are_inspected_in_their_schemas_mode() {
    let cp = plane();
    let schema = "flotilla.agent-message/2.0.0";
    let good = serde_json::json!({"type": "heartbeat", "running": []});
    let bad = serde_json::json!({"type": "heartbeat", "running": [], "mood": "ok"});
    assert_eq!(cp.inspect(schema, &good), Ok(()));
    let errors = cp.inspect(schema, &bad).unwrap_err();
    assert_eq!(
        (errors[0].pointer.as_str(), errors[0].rule.as_str()),
        ("/mood", "additionalProperties")
    );
    cp.set_mode(
        "flotilla.agent-message",
        ValidationMode::Shadow,
        "alice",
        None,
    )
    .unwrap();
    assert_eq!(cp.inspect(schema, &bad), Ok(()), "shadow lets it through");
    let drift = cp.drift_report();
    assert_eq!(drift["violations"][0]["schema"], "flotilla.agent-message");
    assert_eq!(drift["violations"][0]["pointer"], "/mood");
}
