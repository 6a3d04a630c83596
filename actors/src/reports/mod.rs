//! Success-metric reports, computed from what is recorded only (the store and the runs'
//! `metrics.json`), each with a verdict that says pass or fail and why:
//!
//! - `baseline` → `.runs/<scope>/metrics/baseline.json`: completion rate without manual
//!   intervention, MTTR and privacy incidents over a window;
//! - `post-rollout` → `.runs/<scope>/metrics/post-rollout.json`: the same, passing when
//!   the completion rate reaches 95 %;
//! - `mttr-delta` → `out/<scope>/metrics/mttr-delta.json`: the MTTR reduction of the
//!   post-rollout report against the baseline, passing at 40 %;
//! - `completeness` → `.runs/<scope>/metrics/completeness.json`: the share of expected
//!   fields missing across `.runs/*/metrics.json`, passing below 5 %.
//!
//! No data is never a pass: a report without enough evidence fails and says what is
//! missing. Definitions and thresholds: `docs/TECH_SPEC_AUTONOMY_UPGRADE.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::domain::{rfc3339_ms, Scope, TaskState};
use crate::store::reports::AttemptTrace;
use crate::store::{Store, StoreError};

pub const REPORT_SCHEMA: &str = "flotilla.report/1.0.0";

/// Finished tasks a completion rate needs, by default.
pub const MIN_TASKS: u64 = 20;
pub const COMPLETION_TARGET: f64 = 0.95;
pub const MTTR_REDUCTION_TARGET: f64 = 0.40;
pub const MAX_MISSING_SHARE: f64 = 0.05;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Baseline,
    PostRollout,
    MttrDelta,
    Completeness,
}

impl ReportKind {
    pub const ALL: [ReportKind; 4] = [
        ReportKind::Baseline,
        ReportKind::PostRollout,
        ReportKind::MttrDelta,
        ReportKind::Completeness,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Baseline => "baseline",
            ReportKind::PostRollout => "post-rollout",
            ReportKind::MttrDelta => "mttr-delta",
            ReportKind::Completeness => "completeness",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Where the report is written under the artifacts root.
    pub fn path(self, artifacts: &Path, scope: &Scope) -> PathBuf {
        let root = match self {
            ReportKind::MttrDelta => "out",
            _ => ".runs",
        };
        artifacts
            .join(root)
            .join(scope.as_str())
            .join("metrics")
            .join(format!("{}.json", self.as_str()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("computing the {0} report failed: {1}")]
    Failed(&'static str, String),
}

/// The time a report covers: `[from_ms, to_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Window {
    fn view(self) -> Value {
        json!({ "from": rfc3339_ms(self.from_ms), "to": rfc3339_ms(self.to_ms) })
    }
}

/// A verdict: pass or fail, and every reason.
fn verdict(reasons: Vec<(bool, String)>) -> Value {
    let pass = !reasons.is_empty() && reasons.iter().all(|(ok, _)| *ok);
    let words: Vec<String> = reasons
        .into_iter()
        .map(|(ok, why)| format!("{}: {why}", if ok { "met" } else { "not met" }))
        .collect();
    json!({ "pass": pass, "reasons": words })
}

/// MTTR over the losses in a window. An incident is a task's first lost or fenced
/// attempt after one that was not lost; it is repaired when a later attempt starts that
/// is not lost or fenced in turn (flapping from one lost attempt to the next counts as
/// one long incident), and unrepaired if no such attempt started.
pub fn mttr(traces: &[AttemptTrace], window: Window) -> Value {
    let mut repairs: Vec<i64> = Vec::new();
    let mut unrepaired = 0u64;
    let by_task = traces.chunk_by(|a, b| a.task == b.task);
    for attempts in by_task {
        let lost = |a: &AttemptTrace| a.state == "lost" || a.state == "fenced";
        let mut open: Option<i64> = None;
        for a in attempts {
            match (open, lost(a)) {
                (None, true) => {
                    let at = a.ended_ms.unwrap_or(a.started_ms);
                    if at >= window.from_ms && at < window.to_ms {
                        open = Some(at);
                    }
                }
                (Some(since), false) => {
                    repairs.push((a.started_ms - since).max(0));
                    open = None;
                }
                _ => {}
            }
        }
        unrepaired += u64::from(open.is_some());
    }
    repairs.sort_unstable();
    let pick = |q: f64| -> Option<i64> {
        (!repairs.is_empty()).then(|| repairs[((repairs.len() - 1) as f64 * q).round() as usize])
    };
    let mean =
        (!repairs.is_empty()).then(|| repairs.iter().sum::<i64>() as f64 / repairs.len() as f64);
    json!({
        "incidents": repairs.len() as u64 + unrepaired,
        "repaired": repairs.len(),
        "unrepaired": unrepaired,
        "meanMs": mean,
        "p50Ms": pick(0.5),
        "p90Ms": pick(0.9),
        "maxMs": repairs.last(),
    })
}

/// What the window holds: tasks finished, MTTR and privacy incidents.
pub async fn measure(store: &Store, window: Window) -> Result<Value, ReportError> {
    let (from, to) = (window.from_ms, window.to_ms);
    let finished = store.finished_between(from, to).await?;
    let total: u64 = finished.iter().map(|(_, n)| n).sum();
    let count = |s: TaskState| {
        finished
            .iter()
            .find(|(st, _)| *st == s)
            .map_or(0, |(_, n)| *n)
    };
    let succeeded = count(TaskState::Succeeded);
    let by_state: BTreeMap<&str, u64> = finished.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    let traces = store.attempts_around_losses(from, to).await?;
    let decisions = store.decisions_between(from, to).await?;
    let mut by_rule = BTreeMap::<&str, u64>::new();
    let (mut incidents, mut redactions) = (0u64, 0u64);
    for d in &decisions {
        if d.action == "allow" {
            continue;
        }
        if d.applied {
            redactions += d.count;
        } else {
            incidents += d.count;
            *by_rule.entry(d.rule.as_str()).or_default() += d.count;
        }
    }
    Ok(json!({
        "tasks": {
            "finished": total,
            "succeeded": succeeded,
            "byState": by_state,
            "completionRate": (total > 0).then(|| succeeded as f64 / total as f64),
            "manualInterventions": count(TaskState::Cancelled),
        },
        "mttr": mttr(&traces, window),
        "privacy": {
            "incidents": incidents,
            "redactions": redactions,
            "incidentsByRule": by_rule,
        },
    }))
}

fn document(
    kind: ReportKind,
    scope: &Scope,
    window: Option<Window>,
    measures: Value,
    verdict: Value,
    inputs: Value,
    now_ms: i64,
) -> Value {
    json!({
        "schema": REPORT_SCHEMA,
        "kind": kind.as_str(),
        "scope": scope.as_str(),
        "generatedAt": rfc3339_ms(now_ms),
        "window": window.map(Window::view),
        "measures": measures,
        "verdict": verdict,
        "inputs": inputs,
    })
}

fn enough_tasks(m: &Value, min_tasks: u64) -> (bool, String) {
    let n = m["tasks"]["finished"].as_u64().unwrap_or(0);
    (
        n >= min_tasks,
        format!("{n} task(s) finished in the window, {min_tasks} needed to measure"),
    )
}

/// The baseline: what the window measured, passing when it holds enough to compare
/// against (tasks to rate, and at least one repair to time).
pub async fn baseline(
    store: &Store,
    scope: &Scope,
    window: Window,
    min_tasks: u64,
    now_ms: i64,
) -> Result<Value, ReportError> {
    let m = measure(store, window).await?;
    let repaired = m["mttr"]["repaired"].as_u64().unwrap_or(0);
    let reasons = vec![
        enough_tasks(&m, min_tasks),
        (
            repaired > 0,
            format!("{repaired} repair(s) timed in the window, 1 needed for an MTTR"),
        ),
    ];
    let inputs = json!({ "minTasks": min_tasks });
    Ok(document(
        ReportKind::Baseline,
        scope,
        Some(window),
        m,
        verdict(reasons),
        inputs,
        now_ms,
    ))
}

/// After a rollout: passing when at least `min_tasks` finished and the completion rate
/// without manual intervention reaches 95 %.
pub async fn post_rollout(
    store: &Store,
    scope: &Scope,
    window: Window,
    min_tasks: u64,
    now_ms: i64,
) -> Result<Value, ReportError> {
    let m = measure(store, window).await?;
    let mut reasons = vec![enough_tasks(&m, min_tasks)];
    match m["tasks"]["completionRate"].as_f64() {
        Some(rate) => reasons.push((
            rate >= COMPLETION_TARGET,
            format!(
                "completion rate {:.1} % (target at least {:.0} %)",
                rate * 100.0,
                COMPLETION_TARGET * 100.0
            ),
        )),
        None => reasons.push((false, "no task finished: no completion rate".into())),
    }
    let inputs = json!({ "minTasks": min_tasks, "completionTarget": COMPLETION_TARGET });
    Ok(document(
        ReportKind::PostRollout,
        scope,
        Some(window),
        m,
        verdict(reasons),
        inputs,
        now_ms,
    ))
}

/// The MTTR reduction from `baseline` to `post` (two reports as written), passing at
/// 40 % or more.
pub fn mttr_delta(
    scope: &Scope,
    baseline: Option<&Value>,
    post: Option<&Value>,
    now_ms: i64,
) -> Value {
    let mean = |r: Option<&Value>| r.and_then(|r| r["measures"]["mttr"]["meanMs"].as_f64());
    let (before, after) = (mean(baseline), mean(post));
    let mut reasons = Vec::new();
    if baseline.is_none() {
        reasons.push((
            false,
            "no baseline report: run `flotilla report baseline` first".to_owned(),
        ));
    }
    if post.is_none() {
        reasons.push((
            false,
            "no post-rollout report: run `flotilla report post-rollout` first".to_owned(),
        ));
    }
    let reduction = match (before, after) {
        (Some(b), Some(a)) if b > 0.0 => Some((b - a) / b),
        _ => None,
    };
    match (before, after, reduction) {
        (Some(b), Some(a), Some(r)) => reasons.push((
            r >= MTTR_REDUCTION_TARGET,
            format!(
                "MTTR {:.0} ms → {:.0} ms: {:.1} % {} (target at least {:.0} % less)",
                b,
                a,
                r.abs() * 100.0,
                if r < 0.0 { "more" } else { "less" },
                MTTR_REDUCTION_TARGET * 100.0
            ),
        )),
        _ => {
            if baseline.is_some() && before.is_none() {
                reasons.push((
                    false,
                    "the baseline timed no repair: no MTTR to compare".into(),
                ));
            }
            if post.is_some() && after.is_none() {
                reasons.push((
                    false,
                    "the post-rollout report timed no repair: no MTTR to compare".into(),
                ));
            }
            if before == Some(0.0) {
                reasons.push((false, "the baseline MTTR is 0 ms: nothing to reduce".into()));
            }
        }
    }
    let measures = json!({
        "baselineMeanMs": before,
        "postRolloutMeanMs": after,
        "reduction": reduction,
        "target": MTTR_REDUCTION_TARGET,
    });
    let generated = |r: Option<&Value>| r.map(|r| r["generatedAt"].clone());
    let inputs = json!({
        "baseline": generated(baseline),
        "postRollout": generated(post),
    });
    document(
        ReportKind::MttrDelta,
        scope,
        None,
        measures,
        verdict(reasons),
        inputs,
        now_ms,
    )
}

/// The share of expected fields missing across `.runs/*/metrics.json`. A run that
/// started an attempt is expected to carry all five dimensions (task, instance,
/// capability, attempt, privacy); one that never started, its task alone. A file that
/// does not parse or breaks its schema misses all it was expected to carry.
pub fn completeness(
    artifacts: &Path,
    scope: &Scope,
    check: impl Fn(&Value) -> Vec<String>,
    now_ms: i64,
) -> Value {
    const ALL: [&str; 5] = crate::manifest::DIMENSIONS;
    let runs = artifacts.join(".runs");
    let mut files = 0u64;
    let (mut expected, mut missing, mut invalid) = (0u64, 0u64, 0u64);
    let mut problems = Vec::new();
    let entries = std::fs::read_dir(&runs).into_iter().flatten().flatten();
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.path().join("metrics.json"))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    for path in paths {
        files += 1;
        let task = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let doc: Result<Value, String> = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
        let errors = match &doc {
            Ok(d) => check(d),
            Err(e) => vec![e.clone()],
        };
        let ran = doc
            .as_ref()
            .ok()
            .and_then(|d| d["attempts"]["total"].as_u64())
            .is_none_or(|n| n > 0);
        let want: &[&str] = if ran { &ALL } else { &ALL[..1] };
        expected += want.len() as u64;
        let gone: Vec<&str> = match (&doc, errors.is_empty()) {
            (Ok(d), true) => want
                .iter()
                .copied()
                .filter(|w| {
                    !d["dimensions"]["present"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|x| x == w))
                })
                .collect(),
            _ => {
                invalid += 1;
                want.to_vec()
            }
        };
        missing += gone.len() as u64;
        if (!gone.is_empty() || !errors.is_empty()) && problems.len() < 100 {
            problems.push(json!({ "task": task, "missing": gone, "errors": errors }));
        }
    }
    let share = (expected > 0).then(|| missing as f64 / expected as f64);
    let reasons = vec![match share {
        Some(s) => (
            s < MAX_MISSING_SHARE,
            format!(
                "{missing} of {expected} expected fields missing across {files} file(s): {:.2} % (target below {:.0} %)",
                s * 100.0,
                MAX_MISSING_SHARE * 100.0
            ),
        ),
        None => (false, "no .runs/*/metrics.json to check".to_owned()),
    }];
    let measures = json!({
        "files": files,
        "invalid": invalid,
        "expectedFields": expected,
        "missingFields": missing,
        "missingShare": share,
        "problems": problems,
    });
    let inputs = json!({ "maxMissingShare": MAX_MISSING_SHARE, "dimensions": ALL });
    document(
        ReportKind::Completeness,
        scope,
        None,
        measures,
        verdict(reasons),
        inputs,
        now_ms,
    )
}

/// Writes a report where its kind goes; returns the path.
pub fn write(
    kind: ReportKind,
    artifacts: &Path,
    scope: &Scope,
    doc: &Value,
) -> Result<PathBuf, ReportError> {
    let path = kind.path(artifacts, scope);
    // unwrap: a serde_json::Value always serialises.
    let bytes = serde_json::to_vec_pretty(doc).unwrap();
    crate::files::write_atomic(&path, &bytes).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// A report written earlier, if it is there and parses.
pub fn read(kind: ReportKind, artifacts: &Path, scope: &Scope) -> Option<Value> {
    let bytes = std::fs::read(kind.path(artifacts, scope)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests;
