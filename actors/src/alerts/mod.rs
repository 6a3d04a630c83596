//! Alerts: rules over what the server measures, each with a threshold and a `for`
//! duration, moving through `inactive → pending → firing → resolved`.
//!
//! The evaluator ([`Alerts::evaluate`]) is pure: it is given a [`Sample`] of cumulative
//! counters and current gauges at each tick, keeps the samples of its window, and turns
//! each rule's value over the window into a state. Reading the sample and delivering
//! the transitions (log line, metrics, webhook) is the caller's (`src/alerts.rs`).
//! Thresholds, defaults and their reasons: `docs/TECH_SPEC_AUTONOMY_UPGRADE.md`.

mod sample;

use std::collections::VecDeque;

use serde::Serialize;

use crate::domain::rfc3339_ms;

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleKind {
    /// Fleet utilization (running over slots) while tasks wait.
    UtilizationLow,
    /// Mean time to repair over the window.
    MttrHigh,
    /// Guard findings (redacted or blocked values) per minute over the window.
    GuardViolations,
    /// Share of checked requests that broke their schema over the window.
    ValidationRejections,
    /// Share of finished tasks that succeeded over the window.
    CompletionLow,
    /// Local agents restarted over the window.
    InstanceRestarts,
}

impl RuleKind {
    pub const ALL: [RuleKind; 6] = [
        RuleKind::UtilizationLow,
        RuleKind::MttrHigh,
        RuleKind::GuardViolations,
        RuleKind::ValidationRejections,
        RuleKind::CompletionLow,
        RuleKind::InstanceRestarts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::UtilizationLow => "utilization-low",
            RuleKind::MttrHigh => "mttr-high",
            RuleKind::GuardViolations => "guard-violations",
            RuleKind::ValidationRejections => "validation-rejections",
            RuleKind::CompletionLow => "completion-low",
            RuleKind::InstanceRestarts => "instance-restarts",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the rule fires below its threshold (otherwise above it).
    fn fires_below(self) -> bool {
        matches!(self, RuleKind::UtilizationLow | RuleKind::CompletionLow)
    }

    /// The documented default: threshold, `for` (ms) and the least evidence a value
    /// needs (finished tasks, checked requests); see the tech spec for the reasons.
    fn default_rule(self) -> Rule {
        let (threshold, for_ms, min_count) = match self {
            RuleKind::UtilizationLow => (0.5, 60_000, 0),
            RuleKind::MttrHigh => (30.0, 0, 1),
            RuleKind::GuardViolations => (10.0, 60_000, 0),
            RuleKind::ValidationRejections => (0.05, 60_000, 20),
            RuleKind::CompletionLow => (0.95, 0, 20),
            RuleKind::InstanceRestarts => (3.0, 0, 0),
        };
        Rule {
            kind: self,
            threshold,
            for_ms,
            min_count,
            enabled: true,
        }
    }
}

/// One rule as configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub kind: RuleKind,
    pub threshold: f64,
    /// How long the condition must hold before the alert fires.
    pub for_ms: u64,
    /// The least count (of repairs, checked requests or finished tasks) the window must
    /// hold for a value; below it the rule has no data and does not fire.
    pub min_count: u64,
    pub enabled: bool,
}

/// `[alerts]` of `flotilla.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// How often the rules are evaluated.
    pub every_ms: u64,
    /// What the rates and means are taken over.
    pub window_ms: u64,
    pub rules: Vec<Rule>,
    /// Where transitions to firing and resolved are POSTed, if anywhere.
    pub webhook: Option<String>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            every_ms: 5_000,
            window_ms: 300_000,
            rules: RuleKind::ALL.iter().map(|k| k.default_rule()).collect(),
            webhook: None,
        }
    }
}

impl AlertSettings {
    /// The rule of `kind`, to change its settings.
    pub fn rule_mut(&mut self, kind: RuleKind) -> &mut Rule {
        let at = self
            .rules
            .iter()
            .position(|r| r.kind == kind)
            .unwrap_or_else(|| {
                self.rules.push(kind.default_rule());
                self.rules.len() - 1
            });
        &mut self.rules[at]
    }

    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(100..=3_600_000).contains(&self.every_ms) {
            return Err(format!(
                "alerts.every-ms must be between 100 and 3600000, got {}",
                self.every_ms
            ));
        }
        if self.window_ms < self.every_ms || self.window_ms > 86_400_000 {
            return Err(format!(
                "alerts.window-seconds must be at least the evaluation interval and at most a day, got {} ms",
                self.window_ms
            ));
        }
        for r in &self.rules {
            if !r.threshold.is_finite() || r.threshold < 0.0 {
                return Err(format!(
                    "alerts.{}.threshold must be a number of 0 or more, got {}",
                    r.kind.as_str(),
                    r.threshold
                ));
            }
        }
        if let Some(url) = &self.webhook {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(format!(
                    "alerts.webhook must be an http:// or https:// URL, got {url:?}"
                ));
            }
        }
        Ok(())
    }
}

/// What the server measured at one evaluation: counters are cumulative since start.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    /// Running over slots of the instances not failed (0 without slots).
    pub utilization: f64,
    /// Tasks waiting now that some instance not failed offers the capabilities for.
    pub queued: u64,
    pub repairs: u64,
    pub repair_seconds: f64,
    /// Guard decisions that redacted or blocked a value.
    pub violations: u64,
    /// Requests checked against their schema, and those that broke it.
    pub checked: u64,
    pub broke_schema: u64,
    pub finished: u64,
    pub succeeded: u64,
    pub restarts: u64,
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertState {
    Inactive,
    /// The condition holds, not yet for its `for` duration.
    Pending,
    Firing,
    /// It fired, and the condition no longer holds.
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    pub alert: RuleKind,
    pub state: AlertState,
    /// The measured value over the window; `None` when there is no data for it.
    pub value: Option<f64>,
    pub threshold: f64,
    /// `below` or `above`: which side of the threshold fires.
    pub fires: &'static str,
    pub for_ms: u64,
    /// What was measured and what it was compared with, in words.
    pub reason: String,
    /// When the current state began.
    pub since: String,
    #[serde(skip)]
    since_ms: i64,
    /// When it last fired.
    pub fired_at: Option<String>,
    pub resolved_at: Option<String>,
    pub enabled: bool,
}

/// A change of an alert's state, to log and deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: AlertState,
    pub alert: AlertView,
}

/// The rules' states and the samples of the window.
pub struct Alerts {
    settings: AlertSettings,
    samples: VecDeque<Sample>,
    views: Vec<AlertView>,
}

impl Alerts {
    pub fn new(settings: AlertSettings, now_ms: i64) -> Self {
        let views = settings
            .rules
            .iter()
            .map(|r| AlertView {
                alert: r.kind,
                state: AlertState::Inactive,
                value: None,
                threshold: r.threshold,
                fires: if r.kind.fires_below() {
                    "below"
                } else {
                    "above"
                },
                for_ms: r.for_ms,
                reason: "not evaluated yet".into(),
                since: rfc3339_ms(now_ms),
                since_ms: now_ms,
                fired_at: None,
                resolved_at: None,
                enabled: r.enabled,
            })
            .collect();
        Self {
            settings,
            samples: VecDeque::new(),
            views,
        }
    }

    pub fn settings(&self) -> &AlertSettings {
        &self.settings
    }

    pub fn views(&self) -> &[AlertView] {
        &self.views
    }

    /// Takes a sample and moves each alert on; returns the changes of state.
    pub fn evaluate(&mut self, sample: Sample) -> Vec<Transition> {
        let now = sample.at_ms;
        self.samples.push_back(sample);
        // Keep the newest sample at or before the window's start as its base.
        while self.samples.len() > 2
            && self.samples[1].at_ms <= now - self.settings.window_ms as i64
        {
            self.samples.pop_front();
        }
        let base = self.samples[0];
        let mut changes = Vec::new();
        for (rule, view) in self.settings.rules.iter().zip(self.views.iter_mut()) {
            let (value, reason) = measure(rule, &base, &sample, self.settings.window_ms);
            let holds = rule.enabled
                && value.is_some_and(|v| {
                    if rule.kind.fires_below() {
                        v < rule.threshold
                    } else {
                        v > rule.threshold
                    }
                })
                && !(rule.kind == RuleKind::UtilizationLow && sample.queued == 0);
            let from = view.state;
            let to = match (from, holds) {
                (AlertState::Inactive | AlertState::Resolved, true) if rule.for_ms == 0 => {
                    AlertState::Firing
                }
                (AlertState::Inactive | AlertState::Resolved, true) => AlertState::Pending,
                (AlertState::Pending, true) if now - view.since_ms >= rule.for_ms as i64 => {
                    AlertState::Firing
                }
                (AlertState::Pending, false) => AlertState::Inactive,
                (AlertState::Firing, false) => AlertState::Resolved,
                (state, _) => state,
            };
            view.value = value;
            view.reason = if rule.enabled {
                reason
            } else {
                format!("disabled in the configuration; {reason}")
            };
            if to != from {
                view.state = to;
                view.since = rfc3339_ms(now);
                view.since_ms = now;
                match to {
                    AlertState::Firing => view.fired_at = Some(view.since.clone()),
                    AlertState::Resolved => view.resolved_at = Some(view.since.clone()),
                    _ => {}
                }
                changes.push(Transition {
                    from,
                    alert: view.clone(),
                });
            }
        }
        changes
    }
}

/// A rule's value over the window from `base` to `now`, and what it says in words.
fn measure(rule: &Rule, base: &Sample, now: &Sample, window_ms: u64) -> (Option<f64>, String) {
    let d = |f: fn(&Sample) -> u64| f(now).saturating_sub(f(base));
    let minutes = ((now.at_ms - base.at_ms).max(1) as f64 / 60_000.0).max(1e-9);
    let window = format!("over the last {} s", window_ms / 1000);
    let cmp = |v: f64| {
        let side = if rule.kind.fires_below() { "<" } else { ">" };
        let holds = if rule.kind.fires_below() {
            v < rule.threshold
        } else {
            v > rule.threshold
        };
        if holds {
            format!("{side} {}", rule.threshold)
        } else {
            format!("within {}", rule.threshold)
        }
    };
    // `part` of `whole`, once the window holds enough of `whole`.
    let share = |whole: u64, part: u64, counted: &str, said: &str| {
        let need = rule.min_count.max(1);
        if whole < need {
            return (
                None,
                format!("no data: {whole} {counted} {window}, {need} needed"),
            );
        }
        let v = part as f64 / whole as f64;
        let why = format!("{part} of {whole} {said} {window}: {v:.3} ({})", cmp(v));
        (Some(v), why)
    };
    match rule.kind {
        RuleKind::UtilizationLow => {
            let v = now.utilization;
            let why = format!(
                "utilization {v:.2} ({}) with {} task(s) waiting that an instance could run",
                cmp(v),
                now.queued
            );
            (Some(v), why)
        }
        RuleKind::MttrHigh => {
            let n = d(|s| s.repairs);
            if n < rule.min_count.max(1) {
                return (None, format!("no data: no repair {window}"));
            }
            let v = (now.repair_seconds - base.repair_seconds).max(0.0) / n as f64;
            (
                Some(v),
                format!("MTTR {v:.2} s over {n} repair(s) {window} ({})", cmp(v)),
            )
        }
        RuleKind::GuardViolations => {
            let n = d(|s| s.violations);
            let v = n as f64 / minutes;
            (
                Some(v),
                format!("{n} guard finding(s) {window}: {v:.2}/min ({})", cmp(v)),
            )
        }
        RuleKind::ValidationRejections => {
            let (n, bad) = (d(|s| s.checked), d(|s| s.broke_schema));
            share(
                n,
                bad,
                "request(s) checked",
                "request(s) broke their schema",
            )
        }
        RuleKind::CompletionLow => {
            let (n, ok) = (d(|s| s.finished), d(|s| s.succeeded));
            share(n, ok, "task(s) finished", "finished task(s) succeeded")
        }
        RuleKind::InstanceRestarts => {
            let n = d(|s| s.restarts);
            let v = n as f64;
            (
                Some(v),
                format!("{n} restart(s) of local agents {window} ({})", cmp(v)),
            )
        }
    }
}

#[cfg(test)]
mod tests;
