//! The fixtures of every schema: enough of them, each accepted or refused as it says, and
//! the valid ones readable by the code.

use serde_json::Value;

use flotilla_actors::control_plane::{RunRequest, RunRequestV1};
use flotilla_actors::guard::approvals::ApprovalRequest;
use flotilla_actors::guard::ModeChange;
use flotilla_actors::protocol::{AgentMsg, ObserverFrame, ServerMsg};

use crate::schemas::{file_name, files_in, list, read_json, root, schemas, to_json, violations};

/// Fewest fixtures a schema may have.
const MIN_VALID: usize = 2;
const MIN_INVALID: usize = 3;

#[test]
fn fixtures_pin_what_every_schema_accepts_and_refuses() {
    let dir = root().join("schemas/fixtures");
    let mut wrong = Vec::new();
    for stem in schemas().keys() {
        let valid_dir = dir.join(stem).join("valid");
        let invalid_dir = dir.join(stem).join("invalid");
        if !valid_dir.is_dir() || !invalid_dir.is_dir() {
            wrong.push(format!(
                "{stem}: no schemas/fixtures/{stem}/valid/ and invalid/ folders"
            ));
            continue;
        }
        let valid = files_in(&valid_dir, "json");
        let invalid = files_in(&invalid_dir, "json");
        if valid.len() < MIN_VALID {
            wrong.push(format!(
                "{stem}: {} valid fixtures, want at least {MIN_VALID} (a minimal and a full one)",
                valid.len()
            ));
        }
        if invalid.len() < MIN_INVALID {
            wrong.push(format!(
                "{stem}: {} invalid fixtures, want at least {MIN_INVALID}",
                invalid.len()
            ));
        }
        for path in &valid {
            let v = violations(stem, &read_json(path));
            if !v.is_empty() {
                wrong.push(format!(
                    "{stem}/valid/{}: refused:{}",
                    file_name(path),
                    list(&v)
                ));
            }
        }
        let mut rules = Vec::new();
        for path in &invalid {
            let case = read_json(path);
            let name = format!("{stem}/invalid/{}", file_name(path));
            let (Some(pointer), Some(rule), Some(doc)) = (
                case.get("pointer").and_then(Value::as_str),
                case.get("rule").and_then(Value::as_str),
                case.get("document"),
            ) else {
                wrong.push(format!("{name}: not {{pointer, rule, document}}"));
                continue;
            };
            if case.as_object().map_or(0, |o| o.len()) != 3 {
                wrong.push(format!(
                    "{name}: keys other than pointer, rule and document"
                ));
            }
            rules.push(rule.to_owned());
            let v = violations(stem, doc);
            if !v.iter().any(|v| v.pointer == pointer && v.rule == rule) {
                wrong.push(format!(
                    "{name}: want a violation {pointer:?} ({rule}), got:{}",
                    if v.is_empty() {
                        " none".into()
                    } else {
                        list(&v)
                    }
                ));
            }
        }
        // An unknown field, a wrong type, and at least one rule more specific than those.
        for needed in ["additionalProperties", "type"] {
            if !rules.iter().any(|r| r == needed) {
                wrong.push(format!("{stem}: no invalid fixture for rule {needed}"));
            }
        }
        if !rules
            .iter()
            .any(|r| r != "additionalProperties" && r != "type")
        {
            wrong.push(format!(
                "{stem}: no invalid fixture for a rule other than additionalProperties and type"
            ));
        }
    }
    // And no fixtures for a schema that is gone.
    for folder in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        if !schemas().contains_key(&name) {
            wrong.push(format!(
                "schemas/fixtures/{name}/: no schema schemas/{name}.json"
            ));
        }
    }
    assert!(wrong.is_empty(), "fixtures:\n  {}", wrong.join("\n  "));
}

/// Valid fixtures of the wire and request schemas parse as their Rust type and serialise
/// back unchanged: the schema admits nothing the code would refuse or rewrite. Bodies the
/// code only reads must at least parse.
#[test]
fn valid_fixtures_round_trip_through_their_rust_types() {
    /// `dropped`: top-level fields the code removes before it reads a document.
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(stem: &str, dropped: &[&str]) {
        let dir = root().join("schemas/fixtures").join(stem).join("valid");
        for path in files_in(&dir, "json") {
            let mut doc = read_json(&path);
            if let Some(o) = doc.as_object_mut() {
                o.retain(|k, _| !dropped.contains(&k.as_str()));
            }
            let value: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| {
                panic!("{stem}/valid/{} does not parse: {e}", file_name(&path))
            });
            assert_eq!(
                to_json(&value),
                doc,
                "{stem}/valid/{} changes in a round trip",
                file_name(&path)
            );
        }
    }
    round_trip::<AgentMsg>("agent-message.v2", &[]);
    round_trip::<ServerMsg>("server-message.v2", &[]);
    round_trip::<ObserverFrame>("observer-frame.v1", &[]);
    // The control plane drops a v1 body's `schema` (it only picks the version) and reads
    // the rest as RunRequestV1.
    round_trip::<RunRequestV1>("run-request.v1", &["schema"]);
    round_trip::<RunRequest>("run-request.v2", &[]);

    // Request bodies the code only reads: each valid fixture must parse.
    fn parses<T: serde::de::DeserializeOwned>(stem: &str) {
        let dir = root().join("schemas/fixtures").join(stem).join("valid");
        for path in files_in(&dir, "json") {
            if let Err(e) = serde_json::from_value::<T>(read_json(&path)) {
                panic!("{stem}/valid/{} does not parse: {e}", file_name(&path));
            }
        }
    }
    parses::<ApprovalRequest>("approval-request.v1");
    parses::<ModeChange>("guard-mode-change.v1");
}
