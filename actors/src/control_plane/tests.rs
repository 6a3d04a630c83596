use super::*;

/// Asserts `body` is rejected with an error at `pointer` for `rule`.
fn check_rejected(body: &str, pointer: &str, rule: &str) {
    let cp = ControlPlane::new().unwrap();
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
    let cp = ControlPlane::new().unwrap();
    let req = cp
        .parse_run_request(
            br#"{"id": "build-1", "argv": ["sh", "-c", "echo hi"], "env": {"A": "b"},
                "cwd": "/tmp", "timeoutSeconds": 30, "capabilities": ["os:linux"],
                "maxAttempts": 2, "labels": {"team": "infra"}}"#,
        )
        .unwrap();
    assert_eq!(req.id.as_ref().map(|i| i.as_str()), Some("build-1"));
    assert_eq!(req.max_attempts(), 2);
    assert_eq!(req.capabilities[0].as_str(), "os:linux");
    let minimal = cp.parse_run_request(br#"{"argv": ["true"]}"#).unwrap();
    assert_eq!(minimal.max_attempts(), DEFAULT_MAX_ATTEMPTS);
}
