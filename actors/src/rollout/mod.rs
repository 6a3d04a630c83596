//! Gated rollouts: one model for every component that has phases.
//!
//! Each component moves `shadow → limited → full`. Where it stands is read from the
//! switch that makes it work, so there is one truth: the guard's mode and phase
//! (limited: `restricted` and `sensitive` tasks), the validation modes (limited: client
//! requests, `flotilla.run-request`; full: the agent protocol too), and the scheduler's
//! cooldown after a lost attempt (limited: half the fleet, by a stable hash of the
//! instance id). Advancing runs the gates of the step and is refused, naming each one
//! that fails, unless all pass; rolling back needs no gate. A gate that fails after an
//! advance (an approval revoked, the completion rate falling) rolls the component back
//! one phase on its own. Every change is recorded with its time, gate results and
//! approver in the component's rollout manifest, `.runs/<scope>/cli/<run-id>/manifest.json`.
//!
//! The gates themselves are computed by the engine (`gates.rs`): they read reports,
//! approvals and sign-offs.

mod gates;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{random_hex, rfc3339_ms, Scope};

pub const ROLLOUT_MANIFEST_SCHEMA: &str = "flotilla.rollout-manifest/1.0.0";
const STATE_SCHEMA: &str = "flotilla.rollout-state/1.0.0";

/// Something rolled out in phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// Request validation: enforce instead of shadow.
    Validation,
    /// The privacy guard: enforce instead of shadow.
    Guard,
    /// The scheduler's cooldown of an instance after a lost attempt.
    Cooldown,
}

impl Component {
    pub const ALL: [Component; 3] = [Component::Validation, Component::Guard, Component::Cooldown];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Validation => "validation",
            Component::Guard => "guard",
            Component::Cooldown => "cooldown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// What `limited` means for it.
    pub fn limited_means(self) -> &'static str {
        match self {
            Component::Validation => "client requests (flotilla.run-request) enforced; the agent protocol in shadow",
            Component::Guard => "enforced for restricted and sensitive tasks; standard tasks in shadow",
            Component::Cooldown => "applied to half the fleet (a stable hash of the instance id); the other half only logs it",
        }
    }
}

/// A rollout phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Computed and logged, not applied.
    Shadow,
    /// Applied to a cohort.
    Limited,
    #[default]
    Full,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Shadow, Phase::Limited, Phase::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Shadow => "shadow",
            Phase::Limited => "limited",
            Phase::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn next(self) -> Option<Phase> {
        match self {
            Phase::Shadow => Some(Phase::Limited),
            Phase::Limited => Some(Phase::Full),
            Phase::Full => None,
        }
    }

    pub fn previous(self) -> Option<Phase> {
        match self {
            Phase::Shadow => None,
            Phase::Limited => Some(Phase::Shadow),
            Phase::Full => Some(Phase::Limited),
        }
    }

    fn to_byte(self) -> u8 {
        self as u8
    }

    fn from_byte(b: u8) -> Phase {
        match b {
            0 => Phase::Shadow,
            1 => Phase::Limited,
            _ => Phase::Full,
        }
    }
}

/// A phase shared between whoever applies it and the rollouts that change it.
#[derive(Debug, Clone)]
pub struct PhaseCell(Arc<AtomicU8>);

impl Default for PhaseCell {
    fn default() -> Self {
        Self::new(Phase::default())
    }
}

impl PhaseCell {
    pub fn new(p: Phase) -> Self {
        Self(Arc::new(AtomicU8::new(p.to_byte())))
    }

    pub fn get(&self) -> Phase {
        Phase::from_byte(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, p: Phase) {
        self.0.store(p.to_byte(), Ordering::Relaxed);
    }
}

/// Whether the cooldown applies to `instance` in phase `p`: in `limited`, to the half of
/// the fleet whose id hashes even (FNV-1a), the same half every time.
pub fn cooldown_applies(p: Phase, instance: &str) -> bool {
    match p {
        Phase::Shadow => false,
        Phase::Limited => {
            let mut h: u32 = 0x811c_9dc5;
            for b in instance.bytes() {
                h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
            }
            h.is_multiple_of(2)
        }
        Phase::Full => true,
    }
}

/// One gate's result: whether it passed, what it measured, and from where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateResult {
    pub gate: String,
    pub pass: bool,
    pub detail: String,
    /// The report or approval it read, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// A change of a component's phase, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseChange {
    pub component: Component,
    pub from: Phase,
    pub to: Phase,
    pub at: String,
    #[serde(skip)]
    pub at_ms: i64,
    /// The approver, or `flotilla` for an automatic rollback.
    pub by: String,
    pub reason: String,
    pub automatic: bool,
    pub gates: Vec<GateResult>,
}

/// Why a phase change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("{component} is already {phase}: nothing to {verb}")]
    AtEnd {
        component: &'static str,
        phase: &'static str,
        verb: &'static str,
    },
    #[error("advancing {component} from {from} to {to} refused: {}", failed.join("; "))]
    GatesFailed {
        component: &'static str,
        from: &'static str,
        to: &'static str,
        failed: Vec<String>,
        gates: Vec<GateResult>,
    },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Apply(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Report(#[from] crate::reports::ReportError),
    #[error("the engine stopped")]
    Stopped,
}

/// `[rollout]` of `flotilla.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSettings {
    /// The cooldown's phase at the first start (later, the recorded one).
    pub cooldown: Phase,
    /// Finished tasks a post-rollout completion rate needs.
    pub min_tasks: u64,
    /// How often the gates of advanced components are checked again.
    pub check_every_ms: u64,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        Self {
            cooldown: Phase::Full,
            min_tasks: crate::reports::MIN_TASKS,
            check_every_ms: 30_000,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    #[serde(default)]
    cooldown: Option<Phase>,
    /// Each component's rollout run and its changes.
    #[serde(default)]
    runs: BTreeMap<Component, Run>,
    #[serde(default)]
    review: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    run_id: String,
    started_at: String,
    changes: Vec<PhaseChange>,
}

/// The rollouts' record: the runs and their changes, the cooldown phase, the review.
pub struct Rollouts {
    artifacts: PathBuf,
    scope: Scope,
    saved: Saved,
    pub settings: RolloutSettings,
    /// The cooldown's phase, shared with the dispatcher.
    pub cooldown: PhaseCell,
}

impl Rollouts {
    /// Reads the record from `.runs/<scope>/rollout/state.json` (absent: a first start).
    pub fn load(
        artifacts: &Path,
        scope: &Scope,
        settings: RolloutSettings,
    ) -> Result<Self, RolloutError> {
        let path = state_path(artifacts, scope);
        let saved: Saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RolloutError::Invalid {
                field: "rollout state",
                message: format!("{}: {e}", path.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(source) => return Err(RolloutError::Io { path, source }),
        };
        let cooldown = PhaseCell::new(saved.cooldown.unwrap_or(settings.cooldown));
        let mut r = Self {
            artifacts: artifacts.to_path_buf(),
            scope: scope.clone(),
            saved,
            settings,
            cooldown,
        };
        // The changes' times in ms, for windows (they are saved as text).
        for run in r.saved.runs.values_mut() {
            for c in &mut run.changes {
                c.at_ms = crate::domain::parse_rfc3339_ms(&c.at).unwrap_or(0);
            }
        }
        Ok(r)
    }

    /// When `component` last changed phase through a rollout, and to what.
    pub fn last_change(&self, component: Component) -> Option<&PhaseChange> {
        self.saved.runs.get(&component)?.changes.last()
    }

    pub fn run_id(&self, component: Component) -> Option<&str> {
        self.saved.runs.get(&component).map(|r| r.run_id.as_str())
    }

    pub fn changes(&self, component: Component) -> &[PhaseChange] {
        self.saved
            .runs
            .get(&component)
            .map_or(&[], |r| r.changes.as_slice())
    }

    pub fn review(&self) -> Option<&Value> {
        self.saved.review.as_ref()
    }

    /// Records a change: in the component's run manifest and the state file.
    pub fn record(&mut self, change: PhaseChange) -> Result<(), RolloutError> {
        let component = change.component;
        if component == Component::Cooldown {
            self.saved.cooldown = Some(change.to);
        }
        let run = self.saved.runs.entry(component).or_insert_with(|| Run {
            run_id: format!("ro-{}-{}", component.as_str(), random_hex(6)),
            started_at: change.at.clone(),
            changes: Vec::new(),
        });
        run.changes.push(change);
        let run = run.clone();
        let manifest = serde_json::json!({
            "schema": ROLLOUT_MANIFEST_SCHEMA,
            "runId": run.run_id,
            "scope": self.scope.as_str(),
            "component": component,
            "limitedMeans": component.limited_means(),
            "phase": run.changes.last().map(|c| c.to),
            "startedAt": run.started_at,
            "updatedAt": run.changes.last().map(|c| c.at.clone()),
            "changes": run.changes,
        });
        let path = self
            .artifacts
            .join(".runs")
            .join(self.scope.as_str())
            .join("cli")
            .join(&run.run_id)
            .join("manifest.json");
        write_json(&path, &manifest)?;
        self.save()
    }

    /// Keeps a post-rollout review (it also goes to `out/<scope>/state.json`).
    pub fn set_review(&mut self, review: Value) -> Result<(), RolloutError> {
        self.saved.review = Some(review);
        self.save()
    }

    fn save(&self) -> Result<(), RolloutError> {
        let mut doc = serde_json::to_value(&self.saved).unwrap_or(Value::Null);
        doc["schema"] = STATE_SCHEMA.into();
        write_json(&state_path(&self.artifacts, &self.scope), &doc)
    }
}

fn state_path(artifacts: &Path, scope: &Scope) -> PathBuf {
    artifacts
        .join(".runs")
        .join(scope.as_str())
        .join("rollout")
        .join("state.json")
}

fn write_json(path: &Path, doc: &Value) -> Result<(), RolloutError> {
    // unwrap: a serde_json::Value always serialises.
    let bytes = serde_json::to_vec_pretty(doc).unwrap();
    crate::files::write_atomic(path, &bytes).map_err(|source| RolloutError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A change from `.0` to `.1` at `now_ms`.
pub fn change(
    component: Component,
    (from, to): (Phase, Phase),
    by: &str,
    reason: &str,
    automatic: bool,
    gates: Vec<GateResult>,
    now_ms: i64,
) -> PhaseChange {
    PhaseChange {
        component,
        from,
        to,
        at: rfc3339_ms(now_ms),
        at_ms: now_ms,
        by: by.to_owned(),
        reason: reason.to_owned(),
        automatic,
        gates,
    }
}

pub use gates::RolloutView;

#[cfg(test)]
mod tests;
