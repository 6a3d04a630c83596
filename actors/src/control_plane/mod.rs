//! ControlPlane: turns request bytes into a validated [`RunRequest`] and a
//! [`ValidationReport`], or a list of precise errors (JSON pointer, rule, message,
//! expected).
//!
//! Owns the [`Registry`] of compiled schemas, the validation mode of each schema
//! (`off`, `shadow`, `enforce`), the drift aggregate of what shadow validation saw, and
//! each enforced schema's rejection window, which rolls enforcement back to shadow when
//! too many requests are rejected. State is in memory; the drift report and every switch
//! of modes are written under the artifacts folder.

pub mod drift;
pub mod registry;
mod request;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use jsonschema::error::ValidationErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{now_ms, rfc3339_ms};
use crate::files::write_atomic;
use drift::{Drift, Window};
pub use drift::{Rollback, RollbackPolicy};
pub use registry::{Lookup, Registry};
pub use request::*;

/// The run manifest schema texts: v1 (what `manifest::to_v1` produces) and v2 (written).
pub const MANIFEST_V1: &str = include_str!("../../../schemas/manifest.v1.json");
pub const MANIFEST_V2: &str = include_str!("../../../schemas/manifest.v2.json");
/// The RunRequest v1 schema text.
pub const RUN_REQUEST_V1: &str = include_str!("../../../schemas/run-request.v1.json");

pub const RUN_REQUEST_ID: &str = "flotilla.run-request";
/// The version a body without a `schema` field is taken as.
pub const RUN_REQUEST_LEGACY_VERSION: &str = "1.2.0";
pub const DRIFT_SCHEMA: &str = "flotilla.drift-report/1.0.0";

/// One thing wrong with a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON pointer to the offending value (`""` is the whole document).
    pub pointer: String,
    /// The rule that failed: a JSON Schema keyword (`required`, `type`, `maximum`, …),
    /// `json` for unparsable input or `additionalProperties` for an unknown field.
    pub rule: String,
    pub message: String,
    /// What the rule asked for (the schema's value at the failing keyword), when simple.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, rule: &str, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            rule: rule.to_owned(),
            message: message.into(),
            expected: None,
        }
    }
}

/// Whether and how a schema is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationMode {
    /// Not checked (the typed parser still refuses what it cannot read).
    Off,
    /// Checked and recorded as drift; never refused for it.
    Shadow,
    /// Checked; a violation is refused with 422.
    Enforce,
}

impl ValidationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationMode::Off => "off",
            ValidationMode::Shadow => "shadow",
            ValidationMode::Enforce => "enforce",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Off, Self::Shadow, Self::Enforce]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// The validation outcome recorded in the run manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationReport {
    pub schema: String,
    pub version: String,
    pub mode: String,
    /// `accepted`, `accepted-with-violations` (shadow) or `unchecked` (off).
    pub outcome: String,
    pub errors: Vec<FieldError>,
    /// The rollback that put this schema in shadow, when one is in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
}

impl ValidationReport {
    /// What tasks stored before reports were kept are shown with.
    pub fn legacy() -> Self {
        Self {
            schema: RUN_REQUEST_ID.into(),
            version: RUN_REQUEST_LEGACY_VERSION.into(),
            mode: "enforce".into(),
            outcome: "accepted".into(),
            errors: Vec::new(),
            rollback: None,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("the body is not valid JSON")]
    Malformed(FieldError),
    /// The body names a schema or version this route does not take (400).
    #[error("{}", .0.message)]
    Version(FieldError),
    #[error("the body does not match schema {schema} {version}")]
    Invalid {
        schema: String,
        version: String,
        errors: Vec<FieldError>,
    },
}

impl Rejection {
    pub fn errors(&self) -> &[FieldError] {
        match self {
            Rejection::Malformed(e) | Rejection::Version(e) => std::slice::from_ref(e),
            Rejection::Invalid { errors, .. } => errors,
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

/// Where the control plane keeps its evidence, and its starting modes.
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneConfig {
    /// Mode per schema id; schemas not named are enforced.
    pub modes: BTreeMap<String, ValidationMode>,
    pub rollback: RollbackPolicy,
    /// `out/<scope>/control-plane/drift.json`; none: nothing is written (tests).
    pub drift_file: Option<PathBuf>,
    /// `.runs/<scope>/control-plane/modes.json`.
    pub modes_file: Option<PathBuf>,
}

/// A mode switch, as recorded.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Switch {
    pub at: String,
    pub schema: String,
    pub mode: ValidationMode,
    /// An operator's name, or `rollback` when enforcement gave way on its own.
    pub by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A schema's mode and window, as `GET /admin/control-plane` shows them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModeView {
    pub schema: String,
    pub mode: ValidationMode,
    pub rolled_back_by: Option<String>,
    pub window_requests: usize,
    pub window_rejected: usize,
}

/// Rollbacks so far (requests are counted by `events::ValidationChecked`).
#[derive(Debug, Default, Clone)]
pub struct ValidationCounts {
    pub rollbacks: u64,
}

struct SchemaState {
    mode: ValidationMode,
    rolled_back_by: Option<String>,
    window: Window,
}

#[derive(Default)]
struct State {
    schemas: BTreeMap<String, SchemaState>,
    drift: Drift,
    history: Vec<Switch>,
    counts: ValidationCounts,
    dirty: bool,
}

/// Compiled schemas, modes, drift and rollback windows. Shared by every request.
pub struct ControlPlane {
    pub registry: Registry,
    config: ControlPlaneConfig,
    state: Arc<Mutex<State>>,
}

/// What checking a document in its schema's mode found.
struct Verdict {
    mode: ValidationMode,
    errors: Vec<FieldError>,
    rollback: Option<String>,
}

/// A request that passed (or, in shadow, was let through).
#[derive(Debug, Clone)]
pub struct Accepted {
    pub request: RunRequest,
    pub report: ValidationReport,
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

/// `3.0` is an integer to JSON Schema but not to serde: make it `3` before parsing.
/// A body parsed as JSON, or what is wrong with it and where.
pub fn json_body(body: &[u8]) -> Result<Value, FieldError> {
    serde_json::from_slice(body).map_err(|e| {
        FieldError::new(
            "",
            "json",
            format!(
                "invalid JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

pub fn whole_numbers_as_integers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                let whole = f.fract() == 0.0;
                if whole && f >= 0.0 && f < u64::MAX as f64 {
                    *v = Value::from(f as u64);
                } else if whole && f < 0.0 && f >= i64::MIN as f64 {
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// Every violation of `doc` against `validator`, as field errors. `schema` (the schema
/// document) gives each error the value the rule asked for.
pub fn field_errors(
    validator: &jsonschema::Validator,
    schema: Option<&Value>,
    doc: &Value,
) -> Vec<FieldError> {
    let mut out = Vec::new();
    for e in validator.iter_errors(doc) {
        let pointer = e.instance_path.to_string();
        let at = e.schema_path.to_string();
        let rule = at.rsplit('/').next().unwrap_or_default().to_owned();
        match &e.kind {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    out.push(FieldError {
                        pointer: format!("{pointer}/{}", escape_segment(name)),
                        rule: "additionalProperties".into(),
                        message: format!("unknown field {name:?}"),
                        expected: None,
                    });
                }
            }
            _ => out.push(FieldError {
                pointer,
                rule,
                message: e.to_string(),
                expected: schema.and_then(|s| s.pointer(&at)).cloned(),
            }),
        }
    }
    out
}

impl ControlPlane {
    /// Compiles every schema and starts in the configured modes.
    pub fn new(config: ControlPlaneConfig) -> Result<Self, SchemaError> {
        let registry = Registry::new()?;
        let mut state = State::default();
        for s in registry.list() {
            let mode = config
                .modes
                .get(&s.id)
                .copied()
                .unwrap_or(ValidationMode::Enforce);
            state.schemas.insert(
                s.id,
                SchemaState {
                    mode,
                    rolled_back_by: None,
                    window: Window::default(),
                },
            );
        }
        let plane = Self {
            registry,
            config,
            state: Arc::new(Mutex::new(state)),
        };
        plane.start_drift_writer();
        Ok(plane)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parses and checks a RunRequest body (v1 or v2, by its `schema` field).
    pub fn parse_run_request(&self, body: &[u8]) -> Result<Accepted, Rejection> {
        let doc = json_body(body).map_err(Rejection::Malformed)?;
        self.check_run_request(doc)
    }

    /// Checks a RunRequest already parsed as JSON (one item of a batch).
    pub fn check_run_request(&self, mut doc: Value) -> Result<Accepted, Rejection> {
        whole_numbers_as_integers(&mut doc);
        let entry = self.run_request_version(&doc)?;
        let (id, version) = (entry.id.clone(), entry.version.clone());
        let v1 = version.starts_with("1.");
        let Verdict {
            mode,
            errors,
            rollback,
        } = self
            .apply_mode(entry, &doc)
            .map_err(|errors| Rejection::Invalid {
                schema: id.clone(),
                version: version.clone(),
                errors,
            })?;
        let parsed = if v1 {
            RunRequestV1::deserialize(&doc).map(RunRequest::from)
        } else {
            RunRequest::deserialize(&doc)
        };
        let request = parsed.map_err(|e| {
            // Shadow or off let it past the schema, but it cannot be read: refused anyway,
            // with the schema's precise errors where there are any.
            let errors = match field_errors(&entry.validator, Some(&entry.document), &doc) {
                errors if errors.is_empty() => vec![FieldError::new("", "type", e.to_string())],
                errors => errors,
            };
            self.count(&id, mode, "rejected");
            Rejection::Invalid {
                schema: id.clone(),
                version: version.clone(),
                errors,
            }
        })?;
        let outcome = match (mode, errors.is_empty()) {
            (ValidationMode::Off, _) => "unchecked",
            (_, true) => "accepted",
            (_, false) => "accepted-with-violations",
        };
        self.count(&id, mode, outcome);
        Ok(Accepted {
            request,
            report: ValidationReport {
                schema: id,
                version,
                mode: mode.as_str().to_owned(),
                outcome: outcome.to_owned(),
                errors,
                rollback,
            },
        })
    }

    /// The RunRequest version a document names (`schema`), or v1 when it names none.
    fn run_request_version(&self, doc: &Value) -> Result<&registry::Entry, Rejection> {
        let refuse =
            |message: String| Rejection::Version(FieldError::new("/schema", "schema", message));
        let supported = self.registry.supported(RUN_REQUEST_ID);
        let named = match doc.get("schema") {
            None => {
                return self
                    .registry
                    .get(RUN_REQUEST_ID, Some(RUN_REQUEST_LEGACY_VERSION))
                    .map_err(|e| refuse(e.to_string()))
            }
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(refuse(format!(
                    "schema must be a string like \"{RUN_REQUEST_ID}/2.0.0\", got {other}"
                )))
            }
        };
        let Some((id, version)) = named.split_once('/') else {
            return Err(refuse(format!(
                "schema {named:?} is not <id>/<version>, e.g. \"{RUN_REQUEST_ID}/2.0.0\""
            )));
        };
        if id != RUN_REQUEST_ID {
            return Err(refuse(format!(
                "this route takes {RUN_REQUEST_ID} (versions {supported}), not {id:?}"
            )));
        }
        self.registry
            .get(id, Some(version))
            .map_err(|e| refuse(e.to_string()))
    }

    /// Checks `doc` against `entry` in the mode of its schema: `Err` with the violations
    /// when it is enforced and violated (counted in its rollback window); otherwise the
    /// verdict, violations recorded as drift.
    fn apply_mode(&self, entry: &registry::Entry, doc: &Value) -> Result<Verdict, Vec<FieldError>> {
        let id = entry.id.as_str();
        let (mode, rollback) = {
            let st = self.state();
            st.schemas
                .get(id)
                .map_or((ValidationMode::Enforce, None), |s| {
                    (s.mode, s.rolled_back_by.clone())
                })
        };
        let errors = match mode {
            ValidationMode::Off => Vec::new(),
            _ => field_errors(&entry.validator, Some(&entry.document), doc),
        };
        let now = now_ms();
        if mode == ValidationMode::Enforce {
            self.record_window(id, !errors.is_empty(), now);
            if !errors.is_empty() {
                self.count(id, mode, "rejected");
                return Err(errors);
            }
        }
        if !errors.is_empty() {
            let mut st = self.state();
            st.drift.record(id, &entry.version, &errors, doc, now);
            st.dirty = true;
        }
        Ok(Verdict {
            mode,
            errors,
            rollback,
        })
    }

    /// Checks a message of schema `id/x.y.z` in that schema's mode (the agent protocol):
    /// `Err` with the violations only when the schema is enforced.
    pub fn inspect(&self, id_version: &str, doc: &Value) -> Result<(), Vec<FieldError>> {
        let (id, version) = id_version.split_once('/').unwrap_or((id_version, ""));
        let Ok(entry) = self.registry.get(id, Some(version)) else {
            tracing::error!(schema = id_version, "inspecting against an unknown schema");
            return Ok(());
        };
        let verdict = self.apply_mode(entry, doc)?;
        let outcome = match (verdict.mode, verdict.errors.is_empty()) {
            (ValidationMode::Off, _) => "unchecked",
            (_, true) => "accepted",
            (_, false) => "accepted-with-violations",
        };
        self.count(id, verdict.mode, outcome);
        Ok(())
    }

    /// Every violation of `doc` against the schema `id/x.y.z` (none for an unknown one:
    /// the caller names schemas from code, and the registry test covers them).
    pub fn check(&self, id_version: &str, doc: &Value) -> Vec<FieldError> {
        let (id, version) = id_version.split_once('/').unwrap_or((id_version, ""));
        match self.registry.get(id, Some(version)) {
            Ok(entry) => field_errors(&entry.validator, Some(&entry.document), doc),
            Err(e) => {
                tracing::error!(schema = id_version, error = %e, "checking against an unknown schema");
                Vec::new()
            }
        }
    }

    fn count(&self, schema: &str, mode: ValidationMode, outcome: &'static str) {
        use crate::events::Event;
        crate::events::ValidationChecked {
            schema,
            mode: mode.as_str(),
            outcome,
        }
        .emit();
    }

    /// Records an enforced request; rolls back to shadow if the window says so.
    fn record_window(&self, schema: &str, rejected: bool, now: i64) {
        let mut st = self.state();
        let Some(s) = st.schemas.get_mut(schema) else {
            return;
        };
        let Some(rb) = s
            .window
            .record(&self.config.rollback, schema, rejected, now)
        else {
            return;
        };
        s.mode = ValidationMode::Shadow;
        s.rolled_back_by = Some(rb.id.clone());
        s.window.clear();
        use crate::events::Event;
        crate::events::ValidationRolledBack {
            schema,
            rollback: &rb.id,
            rejected: rb.rejected,
            requests: rb.requests,
        }
        .emit();
        st.history.push(Switch {
            at: rb.at.clone(),
            schema: schema.to_owned(),
            mode: ValidationMode::Shadow,
            by: "rollback".to_owned(),
            reason: Some(format!(
                "{} of the last {} requests rejected ({:.2}% > {:.2}%); {}",
                rb.rejected,
                rb.requests,
                rb.rate * 100.0,
                rb.threshold * 100.0,
                rb.id
            )),
        });
        st.counts.rollbacks += 1;
        st.drift.rollbacks.push(rb);
        st.dirty = true;
        drop(st);
        self.write_modes();
        self.write_drift();
    }

    /// Switches a schema's mode (an operator re-enabling enforcement after a rollback,
    /// say). Recorded with who and why.
    pub fn set_mode(
        &self,
        schema: &str,
        mode: ValidationMode,
        by: &str,
        reason: Option<String>,
    ) -> Result<Vec<ModeView>, Lookup> {
        self.registry.get(schema, None)?;
        {
            let mut st = self.state();
            if let Some(s) = st.schemas.get_mut(schema) {
                s.mode = mode;
                s.rolled_back_by = None;
                s.window.clear();
            }
            st.history.push(Switch {
                at: rfc3339_ms(now_ms()),
                schema: schema.to_owned(),
                mode,
                by: by.to_owned(),
                reason,
            });
        }
        tracing::info!(schema, mode = mode.as_str(), by, "validation mode switched");
        self.write_modes();
        Ok(self.modes())
    }

    pub fn modes(&self) -> Vec<ModeView> {
        self.state()
            .schemas
            .iter()
            .map(|(id, s)| {
                let (n, r) = s.window.counts();
                ModeView {
                    schema: id.clone(),
                    mode: s.mode,
                    rolled_back_by: s.rolled_back_by.clone(),
                    window_requests: n,
                    window_rejected: r,
                }
            })
            .collect()
    }

    pub fn history(&self) -> Vec<Switch> {
        self.state().history.clone()
    }

    pub fn counts(&self) -> ValidationCounts {
        self.state().counts.clone()
    }

    /// The drift report (`schemas/drift-report.v1.json`).
    pub fn drift_report(&self) -> Value {
        let st = self.state();
        drift_document(&st)
    }

    fn write_modes(&self) {
        let Some(path) = &self.config.modes_file else {
            return;
        };
        let doc = serde_json::json!({ "switches": self.history() });
        // unwrap: plain data always serialises.
        let bytes = serde_json::to_vec_pretty(&doc).unwrap();
        if let Err(e) = write_atomic(path, &bytes) {
            tracing::error!(path = %path.display(), error = %e, "validation mode switch not recorded on disk");
        }
    }

    fn write_drift(&self) {
        write_drift_file(&self.state, self.config.drift_file.as_ref());
    }

    /// Rewrites the drift report at most once a second while it changes.
    fn start_drift_writer(&self) {
        let Some(path) = self.config.drift_file.clone() else {
            return;
        };
        let state = Arc::downgrade(&self.state);
        let spawned = std::thread::Builder::new()
            .name("drift-writer".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let Some(state) = state.upgrade() else {
                    return;
                };
                let dirty = state.lock().map(|s| s.dirty).unwrap_or(false);
                if dirty {
                    write_drift_file(&state, Some(&path));
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "drift writer did not start; drift.json is written on rollbacks only");
        }
    }
}

fn drift_document(st: &State) -> Value {
    let modes: BTreeMap<&str, &str> = st
        .schemas
        .iter()
        .map(|(id, s)| (id.as_str(), s.mode.as_str()))
        .collect();
    serde_json::json!({
        "schema": DRIFT_SCHEMA,
        "updatedAt": rfc3339_ms(now_ms()),
        "modes": modes,
        "violations": st.drift.violations(),
        "rollbacks": st.drift.rollbacks,
    })
}

fn write_drift_file(state: &Mutex<State>, path: Option<&PathBuf>) {
    let Some(path) = path else {
        return;
    };
    let doc = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.dirty = false;
        drift_document(&st)
    };
    // unwrap: plain data always serialises.
    let bytes = serde_json::to_vec_pretty(&doc).unwrap();
    if let Err(e) = write_atomic(path, &bytes) {
        tracing::error!(path = %path.display(), error = %e, "drift report not written");
    }
}

#[cfg(test)]
mod tests;
