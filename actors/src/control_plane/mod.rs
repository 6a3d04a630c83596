//! ControlPlane: turns request bytes into a validated [`RunRequest`], or a list of
//! precise errors (JSON pointer, rule, message).
//!
//! Owns the compiled validators, built once at start from the schemas in `schemas/`
//! (compiled into the binary, so the server and the files never disagree). Stateless
//! otherwise: nothing to supervise, nothing lost on restart.

use std::collections::BTreeMap;

use jsonschema::error::ValidationErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{Capability, TaskId};

/// The RunRequest v1 schema text.
pub const RUN_REQUEST_V1: &str = include_str!("../../../schemas/run-request.v1.json");
/// The run manifest schema text.
pub const MANIFEST_V1: &str = include_str!("../../../schemas/manifest.v1.json");

pub const RUN_REQUEST_ID: &str = "flotilla.run-request";
pub const RUN_REQUEST_VERSION: &str = "1.1.0";

/// Default number of attempts when the request does not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// A validated request to run a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<TaskId>,
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Variables of `env` whose values the guard masks, besides those named like secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,
}

/// Policy the task runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Constraints {
    /// `standard` (the default), `restricted` or `sensitive`: what the guard does with
    /// the secrets and personal data in the task's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<String>,
}

impl RunRequest {
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }

    /// The privacy level (the schema admits only the three names).
    pub fn privacy(&self) -> flotilla_guard::policy::Level {
        self.constraints
            .as_ref()
            .and_then(|c| c.privacy.as_deref())
            .and_then(flotilla_guard::policy::Level::parse)
            .unwrap_or_default()
    }

    /// Whether the value of `name` is a secret: named like one, or marked.
    pub fn is_secret_env(&self, name: &str) -> bool {
        flotilla_guard::env::is_secret_name(name) || self.secret_env.iter().any(|s| s == name)
    }
}

/// One thing wrong with a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON pointer to the offending value (`""` is the whole document).
    pub pointer: String,
    /// The rule that failed: a JSON Schema keyword (`required`, `type`, `maximum`, …),
    /// `json` for unparsable input or `additionalProperties` for an unknown field.
    pub rule: String,
    pub message: String,
}

/// The validation outcome recorded in the run manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationReport {
    pub schema: String,
    pub version: String,
    pub mode: String,
    pub outcome: String,
    pub errors: Vec<FieldError>,
}

impl ValidationReport {
    pub fn accepted() -> Self {
        Self {
            schema: RUN_REQUEST_ID.into(),
            version: RUN_REQUEST_VERSION.into(),
            mode: "enforce".into(),
            outcome: "accepted".into(),
            errors: Vec::new(),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("the body is not valid JSON")]
    Malformed(FieldError),
    #[error("the body does not match schema {RUN_REQUEST_ID} {RUN_REQUEST_VERSION}")]
    Invalid(Vec<FieldError>),
}

impl Rejection {
    pub fn errors(&self) -> &[FieldError] {
        match self {
            Rejection::Malformed(e) => std::slice::from_ref(e),
            Rejection::Invalid(v) => v,
        }
    }
}

/// Errors building the control plane (a schema that does not compile is a build bug).
#[derive(Debug, thiserror::Error)]
#[error("schema {name} does not compile: {detail}")]
pub struct SchemaError {
    pub name: &'static str,
    pub detail: String,
}

/// Compiled validators.
pub struct ControlPlane {
    run_request: jsonschema::Validator,
}

/// Compiles one embedded schema.
pub fn compile(name: &'static str, text: &str) -> Result<jsonschema::Validator, SchemaError> {
    let schema: Value = serde_json::from_str(text).map_err(|e| SchemaError {
        name,
        detail: e.to_string(),
    })?;
    jsonschema::validator_for(&schema).map_err(|e| SchemaError {
        name,
        detail: e.to_string(),
    })
}

/// Escapes one JSON pointer segment (RFC 6901).
fn escape_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Every violation of `doc` against `validator`, as field errors.
pub fn field_errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    for e in validator.iter_errors(doc) {
        let pointer = e.instance_path.to_string();
        let rule = e
            .schema_path
            .to_string()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        match &e.kind {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    out.push(FieldError {
                        pointer: format!("{pointer}/{}", escape_segment(name)),
                        rule: "additionalProperties".into(),
                        message: format!("unknown field {name:?}"),
                    });
                }
            }
            _ => out.push(FieldError {
                pointer,
                rule,
                message: e.to_string(),
            }),
        }
    }
    out
}

impl ControlPlane {
    pub fn new() -> Result<Self, SchemaError> {
        Ok(Self {
            run_request: compile("run-request.v1", RUN_REQUEST_V1)?,
        })
    }

    /// Parses and validates a RunRequest body.
    pub fn parse_run_request(&self, body: &[u8]) -> Result<RunRequest, Rejection> {
        let doc: Value = serde_json::from_slice(body).map_err(|e| {
            Rejection::Malformed(FieldError {
                pointer: String::new(),
                rule: "json".into(),
                message: format!(
                    "invalid JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            })
        })?;
        let errors = field_errors(&self.run_request, &doc);
        if !errors.is_empty() {
            return Err(Rejection::Invalid(errors));
        }
        // The schema and the type agree; this only fails if they drift apart.
        serde_json::from_value(doc).map_err(|e| {
            Rejection::Invalid(vec![FieldError {
                pointer: String::new(),
                rule: "type".into(),
                message: e.to_string(),
            }])
        })
    }
}

#[cfg(test)]
mod tests;
