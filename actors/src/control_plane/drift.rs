//! Drift and rollback: what shadow validation saw, and when enforcement gave way.
//!
//! Every violation is aggregated by schema version, pointer and rule with a count, first
//! and last seen, and at most [`SAMPLES`] samples. A sample is the offending value passed
//! through the privacy guard's redaction (secrets and personal data become markers) and
//! cut to [`SAMPLE_CHARS`] characters, with its JSON type.
//!
//! The rejection window of each enforced schema holds its last requests (at most
//! `window_requests`, none older than `window_seconds`). When at least `min_requests`
//! are in it and more than `max_rate` of them were rejected, enforcement rolls back to
//! shadow and a [`Rollback`] is recorded; an operator has to switch it on again.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use serde_json::Value;

use super::FieldError;
use crate::domain::{random_hex, rfc3339_ms};

/// Samples kept per (schema, pointer, rule).
pub const SAMPLES: usize = 3;
/// Characters kept of a sample.
pub const SAMPLE_CHARS: usize = 120;

/// When enforcement rolls back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollbackPolicy {
    /// Rejected share of the window above which enforcement rolls back (0.01 = 1%).
    pub max_rate: f64,
    pub window_requests: usize,
    pub window_seconds: u64,
    /// Fewer requests than this in the window never roll back.
    pub min_requests: usize,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        Self {
            max_rate: 0.01,
            window_requests: 1000,
            window_seconds: 300,
            min_requests: 100,
        }
    }
}

/// One value that broke a rule, as the report may show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub at: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Redacted and cut; absent for objects and arrays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Violations of one rule at one pointer of one schema version.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    pub schema: String,
    pub version: String,
    pub pointer: String,
    pub rule: String,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub samples: Vec<Sample>,
}

/// Enforcement of a schema gave way to shadow.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    pub id: String,
    pub at: String,
    pub schema: String,
    pub requests: usize,
    pub rejected: usize,
    pub rate: f64,
    pub threshold: f64,
    pub window_seconds: u64,
}

/// Recent requests of one enforced schema: (time, rejected).
#[derive(Debug, Default)]
pub struct Window {
    seen: VecDeque<(i64, bool)>,
    rejected: usize,
}

impl Window {
    /// Records one request; returns the rollback it triggers, if any.
    pub fn record(
        &mut self,
        policy: &RollbackPolicy,
        schema: &str,
        rejected: bool,
        now: i64,
    ) -> Option<Rollback> {
        self.seen.push_back((now, rejected));
        self.rejected += usize::from(rejected);
        let oldest = now - policy.window_seconds as i64 * 1000;
        while self
            .seen
            .front()
            .is_some_and(|(t, _)| *t < oldest || self.seen.len() > policy.window_requests)
        {
            if let Some((_, r)) = self.seen.pop_front() {
                self.rejected -= usize::from(r);
            }
        }
        let n = self.seen.len();
        let rate = self.rejected as f64 / n as f64;
        (n >= policy.min_requests && rate > policy.max_rate).then(|| Rollback {
            id: format!("rb-{}", random_hex(6)),
            at: rfc3339_ms(now),
            schema: schema.to_owned(),
            requests: n,
            rejected: self.rejected,
            rate: (rate * 10_000.0).round() / 10_000.0,
            threshold: policy.max_rate,
            window_seconds: policy.window_seconds,
        })
    }

    pub fn clear(&mut self) {
        self.seen.clear();
        self.rejected = 0;
    }

    /// (requests, rejected) in the window now.
    pub fn counts(&self) -> (usize, usize) {
        (self.seen.len(), self.rejected)
    }
}

/// The drift aggregate of a server's life.
#[derive(Debug, Default)]
pub struct Drift {
    by_rule: BTreeMap<(String, String, String, String), Violation>,
    pub rollbacks: Vec<Rollback>,
}

impl Drift {
    /// Records the violations of one document.
    pub fn record(
        &mut self,
        schema: &str,
        version: &str,
        errors: &[FieldError],
        doc: &Value,
        now: i64,
    ) {
        let at = rfc3339_ms(now);
        for e in errors {
            let key = (
                schema.to_owned(),
                version.to_owned(),
                e.pointer.clone(),
                e.rule.clone(),
            );
            let v = self.by_rule.entry(key).or_insert_with(|| Violation {
                schema: schema.to_owned(),
                version: version.to_owned(),
                pointer: e.pointer.clone(),
                rule: e.rule.clone(),
                count: 0,
                first_seen: at.clone(),
                last_seen: at.clone(),
                samples: Vec::new(),
            });
            v.count += 1;
            v.last_seen = at.clone();
            if v.samples.len() < SAMPLES {
                v.samples.push(sample(doc.pointer(&e.pointer), &at));
            }
        }
    }

    pub fn violations(&self) -> Vec<Violation> {
        self.by_rule.values().cloned().collect()
    }
}

/// The value at a pointer, safe to keep: its type, and for scalars its text redacted.
fn sample(value: Option<&Value>, at: &str) -> Sample {
    let (kind, text) = match value {
        None => ("absent", None),
        Some(Value::Null) => ("null", None),
        Some(Value::Bool(b)) => ("boolean", Some(b.to_string())),
        Some(Value::Number(n)) => ("number", Some(n.to_string())),
        Some(Value::String(s)) => ("string", Some(s.clone())),
        Some(Value::Array(_)) => ("array", None),
        Some(Value::Object(_)) => ("object", None),
    };
    let value = text.map(|t| {
        let shown = crate::guard::redact_all(&t);
        let mut cut: String = shown.chars().take(SAMPLE_CHARS).collect();
        if cut.len() < shown.len() {
            cut.push('…');
        }
        cut
    });
    Sample {
        at: at.to_owned(),
        kind,
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_rolls_back_above_the_rate_and_not_before_enough_requests() {
        let policy = RollbackPolicy {
            max_rate: 0.01,
            window_requests: 1000,
            window_seconds: 300,
            min_requests: 100,
        };
        let mut w = Window::default();
        // Two rejections in the first 99 requests: too few requests to judge.
        for i in 0..99 {
            assert_eq!(w.record(&policy, "s", i < 2, i), None);
        }
        let rb = w
            .record(&policy, "s", false, 100)
            .expect("2 of 100 is over 1%");
        assert_eq!((rb.requests, rb.rejected, rb.rate), (100, 2, 0.02));
        // One in a hundred is not over 1%.
        let mut w = Window::default();
        for i in 0..200 {
            assert_eq!(w.record(&policy, "s", i % 100 == 99, i), None);
        }
        // Old requests leave the window.
        let mut w = Window::default();
        for i in 0..50 {
            w.record(&policy, "s", true, i);
        }
        for i in 0..150 {
            assert_eq!(w.record(&policy, "s", false, 400_000 + i), None);
        }
        assert_eq!(w.counts(), (150, 0));
    }

    #[test]
    fn drift_counts_by_rule_and_keeps_redacted_samples() {
        let mut d = Drift::default();
        let e = |p: &str, r: &str| FieldError {
            pointer: p.into(),
            rule: r.into(),
            message: String::new(),
            expected: None,
        };
        let doc = serde_json::json!({
            "timeoutSeconds": 99999999,
            "cwd": "token ghp_R4nd0mT0k3nV4lu3Xq8Lp2Zs9Wc7Vb3Nk1Hy",
            "env": {"A": 1}
        });
        for t in 0..5 {
            d.record(
                "flotilla.run-request",
                "2.0.0",
                &[e("/timeoutSeconds", "maximum"), e("/cwd", "pattern")],
                &doc,
                t,
            );
        }
        let v = d.violations();
        assert_eq!(v.len(), 2);
        let cwd = v.iter().find(|v| v.pointer == "/cwd").unwrap();
        assert_eq!((cwd.count, cwd.samples.len()), (5, SAMPLES));
        let shown = cwd.samples[0].value.as_deref().unwrap();
        assert!(
            shown.starts_with("token [REDACTED:github-pat:") && !shown.contains("ghp_"),
            "{shown}"
        );
        let t = v.iter().find(|v| v.pointer == "/timeoutSeconds").unwrap();
        assert_eq!(t.samples[0].value.as_deref(), Some("99999999"));
        assert_eq!(t.first_seen, rfc3339_ms(0));
        assert_eq!(t.last_seen, rfc3339_ms(4));
    }
}
