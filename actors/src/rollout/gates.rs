//! The rollout operations on the engine: where each component stands, the gates of a
//! step, advance, rollback, the automatic rollback check, the review, and the reports
//! the gates read.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{json, Value};

use super::{Component, GateResult, Phase, PhaseChange, RolloutError};
use crate::control_plane::ValidationMode;
use crate::domain::{now_ms, rfc3339_ms};
use crate::engine::Engine;
use crate::events::{Event, RolloutChanged};
use crate::guard::{InForce, ModeChange};
use crate::reports::{self, ReportError, ReportKind, Window};

const RUN_REQUEST: &str = "flotilla.run-request";
const AGENT_MESSAGE: &str = "flotilla.agent-message";
const DAY_MS: i64 = 86_400_000;
/// How old a completeness report the rollout view may show rather than compute again.
const VIEW_REUSE_MS: i64 = 60_000;

/// Every component as `GET /admin/rollout` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutView {
    pub components: Vec<ComponentView>,
    /// The last post-rollout review, if any.
    pub review: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentView {
    pub component: Component,
    pub phase: Phase,
    pub limited_means: &'static str,
    pub run_id: Option<String>,
    /// The next phase, if any, and its gates as they stand now.
    pub next: Option<Phase>,
    pub gates: Vec<GateResult>,
    /// The last changes (up to 20), oldest first.
    pub changes: Vec<PhaseChange>,
}

fn gate(name: &str, pass: bool, detail: String, evidence: Option<String>) -> GateResult {
    GateResult {
        gate: name.to_owned(),
        pass,
        detail,
        evidence,
    }
}

fn report_gate(name: &str, doc: &Value, path: Option<PathBuf>) -> GateResult {
    let pass = doc["verdict"]["pass"].as_bool() == Some(true);
    let reasons: Vec<&str> = doc["verdict"]["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    gate(
        name,
        pass,
        reasons.join("; "),
        path.map(|p| p.display().to_string()),
    )
}

impl Engine {
    /// Where `component` stands, read from the switch that makes it work.
    pub fn rollout_phase(&self, component: Component) -> Phase {
        match component {
            Component::Validation => {
                let modes = self.control.modes();
                let mode = |id: &str| modes.iter().find(|m| m.schema == id).map(|m| m.mode);
                match (mode(RUN_REQUEST), mode(AGENT_MESSAGE)) {
                    (Some(ValidationMode::Enforce), Some(ValidationMode::Enforce)) => Phase::Full,
                    (Some(ValidationMode::Enforce), _) => Phase::Limited,
                    _ => Phase::Shadow,
                }
            }
            Component::Guard => {
                let view = self.guard.view();
                if view.mode != "enforce" {
                    Phase::Shadow
                } else {
                    Phase::parse(view.phase).unwrap_or(Phase::Full)
                }
            }
            Component::Cooldown => self.rollouts().cooldown.get(),
        }
    }

    fn rollouts(&self) -> std::sync::MutexGuard<'_, super::Rollouts> {
        self.rollouts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Computes a report over `window` (its kind's default when `None`) and writes it.
    pub async fn report(
        &self,
        kind: ReportKind,
        window: Option<Window>,
    ) -> Result<(Value, PathBuf), ReportError> {
        let now = now_ms();
        let (artifacts, scope) = (&self.config.artifacts_dir, &self.config.scope);
        let min_tasks = self.rollouts().settings.min_tasks;
        let mut doc = match kind {
            ReportKind::Baseline => {
                let w = window.unwrap_or(Window {
                    from_ms: now - DAY_MS,
                    to_ms: now,
                });
                reports::baseline(&self.store, scope, w, min_tasks, now).await?
            }
            ReportKind::PostRollout => {
                let w = window.unwrap_or_else(|| self.since_last_change(None, now));
                reports::post_rollout(&self.store, scope, w, min_tasks, now).await?
            }
            ReportKind::MttrDelta => {
                let baseline = reports::read(ReportKind::Baseline, artifacts, scope);
                let post = reports::read(ReportKind::PostRollout, artifacts, scope);
                reports::mttr_delta(scope, baseline.as_ref(), post.as_ref(), now)
            }
            ReportKind::Completeness => {
                // Every file is read and checked: off the runtime's threads. Each is checked
                // against the current schema, which reads its older versions too.
                let (control, artifacts, scope) =
                    (self.control.clone(), artifacts.clone(), scope.clone());
                let check = move |doc: &Value| -> Vec<String> {
                    control
                        .check(crate::manifest::RUN_METRICS_SCHEMA, doc)
                        .iter()
                        .map(|e| format!("{} ({}): {}", e.pointer, e.rule, e.message))
                        .collect()
                };
                tokio::task::spawn_blocking(move || {
                    reports::completeness(&artifacts, &scope, check, now)
                })
                .await
                .map_err(|e| ReportError::Failed(kind.as_str(), e.to_string()))?
            }
        };
        // A window that ends before it starts holds nothing: the report says so and fails.
        if let Some(w) = window.filter(|w| w.to_ms <= w.from_ms) {
            let why = format!(
                "not met: the window is empty: it ends ({}) before it starts ({})",
                rfc3339_ms(w.to_ms),
                rfc3339_ms(w.from_ms)
            );
            doc["verdict"]["pass"] = false.into();
            if let Some(reasons) = doc["verdict"]["reasons"].as_array_mut() {
                reasons.insert(0, why.into());
            }
        }
        let path = reports::write(kind, artifacts, scope, &doc)?;
        // Shown relative to the artifacts root, as the layout names it.
        let shown = path
            .strip_prefix(artifacts)
            .map(PathBuf::from)
            .unwrap_or(path);
        Ok((doc, shown))
    }

    /// From the last rollout change of `component` (of any, for `None`) to now; the last
    /// day when there was none.
    fn since_last_change(&self, component: Option<Component>, now: i64) -> Window {
        let r = self.rollouts();
        let last = match component {
            Some(c) => r.last_change(c).map(|c| c.at_ms),
            None => Component::ALL
                .into_iter()
                .filter_map(|c| r.last_change(c).map(|c| c.at_ms))
                .max(),
        };
        Window {
            from_ms: last.unwrap_or(now - DAY_MS).min(now - 1),
            to_ms: now,
        }
    }

    /// The gates of moving `component` from `from` to `to`, computed now (the reports
    /// they read are written). With `reuse_ms`, a completeness report written that
    /// recently is read rather than computed again: it reads every run's metrics.
    pub async fn rollout_gates(
        &self,
        component: Component,
        from: Phase,
        to: Phase,
        reuse_ms: Option<i64>,
    ) -> Result<Vec<GateResult>, RolloutError> {
        let now = now_ms();
        let approvals = self.guard.approvals_in_force(now);
        let mut gates = approval_gates(component, &approvals, false);
        if to > from {
            let (artifacts, scope) = (&self.config.artifacts_dir, &self.config.scope);
            let recent = reuse_ms.and_then(|ms| {
                let doc = reports::read(ReportKind::Completeness, artifacts, scope)?;
                let at = crate::domain::parse_rfc3339_ms(doc["generatedAt"].as_str()?)?;
                (now - at <= ms).then_some(doc)
            });
            let (doc, path) = match recent {
                Some(doc) => {
                    let path = ReportKind::Completeness.path(artifacts, scope);
                    let shown = path
                        .strip_prefix(artifacts)
                        .map(PathBuf::from)
                        .unwrap_or(path);
                    (doc, shown)
                }
                None => self.report(ReportKind::Completeness, None).await?,
            };
            gates.push(report_gate("completeness", &doc, Some(path)));
        }
        if to == Phase::Full && from == Phase::Limited {
            let window = self.since_last_change(Some(component), now);
            let (doc, path) = self.report(ReportKind::PostRollout, Some(window)).await?;
            gates.push(report_gate("post-rollout", &doc, Some(path)));
            if component == Component::Cooldown {
                let (doc, path) = self.report(ReportKind::MttrDelta, None).await?;
                gates.push(report_gate("mttr-delta", &doc, Some(path)));
            }
        }
        Ok(gates)
    }

    fn apply_phase(
        &self,
        component: Component,
        to: Phase,
        by: &str,
        reason: &str,
    ) -> Result<(), RolloutError> {
        let why = Some(format!(
            "rollout of {} to {}: {reason}",
            component.as_str(),
            to.as_str()
        ));
        match component {
            Component::Validation => {
                let mode = |on: bool| {
                    if on {
                        ValidationMode::Enforce
                    } else {
                        ValidationMode::Shadow
                    }
                };
                for (schema, on) in [
                    (RUN_REQUEST, to >= Phase::Limited),
                    (AGENT_MESSAGE, to == Phase::Full),
                ] {
                    self.control
                        .set_mode(schema, mode(on), by, why.clone())
                        .map_err(|e| RolloutError::Apply(e.to_string()))?;
                }
            }
            Component::Guard => {
                let change = ModeChange {
                    mode: Some(
                        if to == Phase::Shadow {
                            "shadow"
                        } else {
                            "enforce"
                        }
                        .into(),
                    ),
                    phase: Some(
                        if to == Phase::Shadow {
                            "full"
                        } else {
                            to.as_str()
                        }
                        .into(),
                    ),
                    levels: None,
                    by: by.to_owned(),
                    reason: why,
                };
                self.guard
                    .change(change)
                    .map_err(|e| RolloutError::Apply(e.to_string()))?;
            }
            Component::Cooldown => self.rollouts().cooldown.set(to),
        }
        Ok(())
    }

    /// Switches the component to the change's phase, then records and reports it.
    fn move_to(&self, change: PhaseChange) -> Result<PhaseChange, RolloutError> {
        self.apply_phase(change.component, change.to, &change.by, &change.reason)?;
        RolloutChanged { change: &change }.emit();
        self.rollouts().record(change.clone())?;
        Ok(change)
    }

    /// Moves `component` one phase on, if every gate of the step passes.
    pub async fn rollout_advance(
        &self,
        component: Component,
        by: &str,
        reason: &str,
    ) -> Result<PhaseChange, RolloutError> {
        check_words(by, reason)?;
        let from = self.rollout_phase(component);
        let to = from.next().ok_or(RolloutError::AtEnd {
            component: component.as_str(),
            phase: from.as_str(),
            verb: "advance",
        })?;
        let gates = self.rollout_gates(component, from, to, None).await?;
        let failed = failures(&gates);
        if !failed.is_empty() {
            tracing::warn!(component = component.as_str(), from = from.as_str(), to = to.as_str(), by, failed = ?failed, "rollout advance refused");
            return Err(RolloutError::GatesFailed {
                component: component.as_str(),
                from: from.as_str(),
                to: to.as_str(),
                failed,
                gates,
            });
        }
        self.move_to(super::change(
            component,
            (from, to),
            by,
            reason,
            false,
            gates,
            now_ms(),
        ))
    }

    /// Moves `component` one phase back (no gate: going back is always allowed).
    pub async fn rollout_rollback(
        &self,
        component: Component,
        by: &str,
        reason: &str,
    ) -> Result<PhaseChange, RolloutError> {
        check_words(by, reason)?;
        self.step_back(component, None, by, reason, false, Vec::new())
    }

    /// Moves `component` back one phase, or to `to`.
    fn step_back(
        &self,
        component: Component,
        to: Option<Phase>,
        by: &str,
        reason: &str,
        automatic: bool,
        gates: Vec<GateResult>,
    ) -> Result<PhaseChange, RolloutError> {
        let from = self.rollout_phase(component);
        let to = to.or(from.previous()).ok_or(RolloutError::AtEnd {
            component: component.as_str(),
            phase: from.as_str(),
            verb: "roll back",
        })?;
        self.move_to(super::change(
            component,
            (from, to),
            by,
            reason,
            automatic,
            gates,
            now_ms(),
        ))
    }

    /// Checks again the gates of every component a rollout advanced: a sign-off or
    /// privacy approval no longer in force, or a completion rate since the advance
    /// below target (once enough tasks finished), rolls it back one phase.
    pub async fn rollout_check(&self) -> Result<Vec<PhaseChange>, RolloutError> {
        let now = now_ms();
        let mut back = Vec::new();
        for component in Component::ALL {
            let phase = self.rollout_phase(component);
            let advanced = self
                .rollouts()
                .last_change(component)
                .filter(|c| c.to == phase && c.to > c.from && phase > Phase::Shadow)
                .map(|c| c.at_ms);
            let Some(since) = advanced else { continue };
            let approvals = self.guard.approvals_in_force(now);
            let mut gates = approval_gates(component, &approvals, true);
            let window = Window {
                from_ms: since,
                to_ms: now.max(since + 1),
            };
            let m = reports::measure(&self.store, window).await?;
            let finished = m["tasks"]["finished"].as_u64().unwrap_or(0);
            let min = self.rollouts().settings.min_tasks;
            if finished >= min {
                let rate = m["tasks"]["completionRate"].as_f64().unwrap_or(0.0);
                gates.push(gate(
                    "completion",
                    rate >= reports::COMPLETION_TARGET,
                    format!(
                        "completion rate {:.1} % over {finished} task(s) since the advance (target at least {:.0} %)",
                        rate * 100.0,
                        reports::COMPLETION_TARGET * 100.0
                    ),
                    None,
                ));
            }
            let failed = failures(&gates);
            if failed.is_empty() {
                continue;
            }
            let reason = format!("a gate failed after advancing: {}", failed.join("; "));
            tracing::warn!(component = component.as_str(), phase = phase.as_str(), reason = %reason, "rolling back on its own");
            // Without the privacy approval the guard may not enforce at all, limited
            // included: it goes back to shadow.
            let to = (component == Component::Guard && approvals.policy.is_none())
                .then_some(Phase::Shadow);
            match self.step_back(component, to, "flotilla", &reason, true, gates) {
                Ok(change) => back.push(change),
                Err(e) => {
                    tracing::error!(component = component.as_str(), error = %e, "automatic rollback failed; the component stays where it is")
                }
            }
        }
        Ok(back)
    }

    /// Every component with its phase, the gates of its next step as they stand, and
    /// its changes. Reading the gates writes the reports they read.
    pub async fn rollout_view(&self) -> Result<RolloutView, RolloutError> {
        let mut components = Vec::new();
        for component in Component::ALL {
            let phase = self.rollout_phase(component);
            let next = phase.next();
            let gates = match next {
                Some(to) => {
                    self.rollout_gates(component, phase, to, Some(VIEW_REUSE_MS))
                        .await?
                }
                None => Vec::new(),
            };
            let r = self.rollouts();
            let changes = r.changes(component);
            components.push(ComponentView {
                component,
                phase,
                limited_means: component.limited_means(),
                run_id: r.run_id(component).map(str::to_owned),
                next,
                gates,
                changes: changes[changes.len().saturating_sub(20)..].to_vec(),
            });
        }
        let review = self.rollouts().review().cloned();
        Ok(RolloutView { components, review })
    }

    /// The post-rollout review: the reports as they stand, each component's phase and
    /// history, and the reviewer's summary; kept in `out/<scope>/state.json`.
    pub async fn rollout_review(&self, by: &str, summary: &str) -> Result<Value, RolloutError> {
        check_words(by, summary)?;
        let now = now_ms();
        let mut verdicts = serde_json::Map::new();
        for kind in [
            ReportKind::PostRollout,
            ReportKind::MttrDelta,
            ReportKind::Completeness,
        ] {
            let (doc, path) = self.report(kind, None).await?;
            verdicts.insert(
                kind.as_str().to_owned(),
                json!({
                    "pass": doc["verdict"]["pass"],
                    "reasons": doc["verdict"]["reasons"],
                    "path": path,
                }),
            );
        }
        let pass = verdicts.values().all(|v| v["pass"] == true);
        let components: Vec<Value> = Component::ALL
            .into_iter()
            .map(|c| {
                // Read before the record is locked: the cooldown's phase is in it.
                let phase = self.rollout_phase(c);
                let r = self.rollouts();
                let changes = r.changes(c);
                json!({
                    "component": c,
                    "phase": phase,
                    "runId": r.run_id(c),
                    "changes": changes.len(),
                    "automaticRollbacks": changes.iter().filter(|x| x.automatic).count(),
                    "lastChange": changes.last(),
                })
            })
            .collect();
        let review = json!({
            "at": rfc3339_ms(now),
            "by": by,
            "summary": summary,
            "pass": pass,
            "reports": verdicts,
            "components": components,
        });
        self.rollouts().set_review(review.clone())?;
        tracing::info!(by, pass, "post-rollout review recorded");
        Ok(review)
    }
}

/// Each gate that failed, as `gate: what it found`.
fn failures(gates: &[GateResult]) -> Vec<String> {
    gates
        .iter()
        .filter(|g| !g.pass)
        .map(|g| format!("{}: {}", g.gate, g.detail))
        .collect()
}

/// The sponsor sign-off's gate, and for the guard the privacy approval's; `after`
/// words a failure as an approval lost since the advance.
fn approval_gates(component: Component, found: &InForce, after: bool) -> Vec<GateResult> {
    let one = |name: &str, id: &Option<String>, what: &str, ask: &str| match id {
        Some(id) => gate(
            name,
            true,
            format!("{what} {id} is in force"),
            Some(id.clone()),
        ),
        None if after => gate(
            name,
            false,
            format!("the {what} is no longer in force"),
            None,
        ),
        None => gate(name, false, format!("no {what} in force: {ask}"), None),
    };
    let mut gates = vec![one(
        "sponsor-signoff",
        &found.signoff,
        "sponsor sign-off",
        "request one (kind sponsor-signoff, with the programme's objectives and success metrics) and have a second person approve it",
    )];
    if component == Component::Guard {
        gates.push(one(
            "privacy-approval",
            &found.policy,
            "guard-policy approval",
            "the privacy owner must approve enforcement",
        ));
    }
    gates
}

fn check_words(by: &str, reason: &str) -> Result<(), RolloutError> {
    if !crate::guard::approvals::is_person_name(by) {
        return Err(RolloutError::Invalid {
            field: "by",
            message: "must name who decides (1 to 64 printable characters)".into(),
        });
    }
    if reason.trim().is_empty() || reason.len() > 2048 {
        return Err(RolloutError::Invalid {
            field: "reason",
            message: "must say why, in at most 2048 bytes".into(),
        });
    }
    Ok(())
}
