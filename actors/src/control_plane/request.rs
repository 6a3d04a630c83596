//! RunRequest, versions 1 and 2, and the adapter from 1 to 2.
//!
//! Inside flotilla every request is a [`RunRequest`] (version 2). A version 1 document is
//! parsed as [`RunRequestV1`] and upgraded by `From<RunRequestV1>`:
//!
//! | v1 | v2 |
//! |---|---|
//! | `argv`, `env`, `secretEnv`, `cwd`, `timeoutSeconds`, `capabilities`, `labels`, `id` | the same fields |
//! | `maxAttempts: n` | `schedule.recovery.maxRetries: n - 1` |
//! | `constraints.privacy` | `constraints.privacy` |
//! | — | `schema: "flotilla.run-request/2.2.0"`; no schedule, streaming, metrics, requester or idempotency key |
//!
//! The store keeps the upgraded (v2) form; rows written before v2 existed hold v1
//! documents, which [`RunRequest::from_stored`] upgrades as it reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{Capability, TaskId};
use crate::seal::{SealError, Sealer};

/// `$id` of RunRequest v2.
pub const RUN_REQUEST_V2_ID: &str = "flotilla.run-request/2.2.0";
/// Default number of attempts when the request does not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// A RunRequest v1 document (`schemas/run-request.v1.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequestV1 {
    /// `flotilla.run-request/1.2.0` when the document names its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,
}

/// A validated request to run a command (RunRequest v2, `schemas/run-request.v2.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequest {
    pub schema: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<TaskId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Variables of `env` whose values the guard masks, besides those named like secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<Streaming>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
}

/// Where and how often the task runs. What the scheduler cannot honour of it is refused
/// at submission (`dispatcher::honoured`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// fan-out and first-wins: how many shards (replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Higher runs first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_instances: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fan_out: Vec<FanOut>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FanOut {
    pub capability: Capability,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recovery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_heartbeat_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Which endings are retried (`lost` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<RetryOn>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poison_after: Option<u32>,
}

/// An ending of an attempt that `recovery.retryOn` may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// Its instance died, hung or dropped.
    Lost,
    /// It ran past `timeoutSeconds`.
    Timeout,
    /// It exited with a non-zero status or was killed by a signal.
    NonzeroExit,
}

/// How the shards of a fanned-out task decide its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanMode {
    /// Every shard must succeed.
    All,
    /// The first shard to succeed wins; the rest are cancelled.
    FirstWins,
}

impl FanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FanMode::All => "fan-out",
            FanMode::FirstWins => "first-wins",
        }
    }
}

/// The default first wait before retrying a timeout or a non-zero exit.
pub const DEFAULT_BACKOFF_MS: u64 = 1_000;
/// The longest wait between retries.
pub const MAX_BACKOFF_MS: u64 = 60_000;

/// The task's output streams and their observers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Streaming {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observers: Option<Observers>,
    /// Most output bytes one attempt may write before it is stopped (2.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Observers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_subscribers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backpressure: Option<String>,
}

/// Policy the task runs under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Constraints {
    /// `standard` (the default), `restricted` or `sensitive`: what the guard does with
    /// the secrets and personal data in the task's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

/// Per-run metrics the requester wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emit_interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_dimensions: Vec<String>,
}

impl From<RunRequestV1> for RunRequest {
    fn from(v1: RunRequestV1) -> Self {
        let schedule = v1.max_attempts.map(|n| Schedule {
            recovery: Some(Recovery {
                max_retries: Some(n.saturating_sub(1)),
                ..Recovery::default()
            }),
            ..Schedule::default()
        });
        Self {
            schema: RUN_REQUEST_V2_ID.to_owned(),
            id: v1.id,
            idempotency_key: None,
            requested_by: None,
            argv: v1.argv,
            env: v1.env,
            secret_env: v1.secret_env,
            cwd: v1.cwd,
            timeout_seconds: v1.timeout_seconds,
            capabilities: v1.capabilities,
            labels: v1.labels,
            schedule,
            streaming: None,
            constraints: v1.constraints,
            metrics: None,
        }
    }
}

impl RunRequest {
    /// A request as the store holds it: v2, or v1 from before v2 existed.
    pub fn from_stored(text: &str) -> Result<Self, serde_json::Error> {
        Self::from_document(&serde_json::from_str(text)?)
    }

    /// A stored request already parsed as JSON: v2 if it names a schema, else v1.
    pub fn from_document(doc: &serde_json::Value) -> Result<Self, serde_json::Error> {
        if doc.get("schema").is_some() {
            Self::deserialize(doc)
        } else {
            RunRequestV1::deserialize(doc).map(Self::from)
        }
    }

    /// How many times the task may start: retries of lost attempts plus one.
    pub fn max_attempts(&self) -> u32 {
        self.schedule
            .as_ref()
            .and_then(|s| s.recovery.as_ref())
            .and_then(|r| r.max_retries)
            .map_or(DEFAULT_MAX_ATTEMPTS, |n| n.saturating_add(1))
    }

    fn recovery(&self) -> Option<&Recovery> {
        self.schedule.as_ref().and_then(|s| s.recovery.as_ref())
    }

    /// Whether an attempt that ended so is retried (while attempts remain).
    pub fn retries(&self, ending: RetryOn) -> bool {
        match self.recovery().and_then(|r| r.retry_on.as_ref()) {
            Some(list) => list.contains(&ending),
            None => ending == RetryOn::Lost,
        }
    }

    /// The wait before retry number `retry` (1 for the first) of a timeout or a
    /// non-zero exit: `backoffMs` doubled per earlier retry, at most a minute.
    pub fn backoff_ms(&self, retry: u32) -> u64 {
        let first = self
            .recovery()
            .and_then(|r| r.backoff_ms)
            .unwrap_or(DEFAULT_BACKOFF_MS);
        let doublings = retry.saturating_sub(1).min(20);
        first
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF_MS.max(first))
    }

    /// The task's `recovery.poisonAfter`, if it sets one.
    pub fn poison_after(&self) -> Option<u32> {
        self.recovery().and_then(|r| r.poison_after)
    }

    /// Higher runs first.
    pub fn priority(&self) -> i32 {
        self.schedule.as_ref().and_then(|s| s.priority).unwrap_or(0)
    }

    /// How the task fans out, if it does.
    pub fn fan_mode(&self) -> Option<FanMode> {
        match self.schedule.as_ref()?.strategy.as_deref()? {
            "fan-out" => Some(FanMode::All),
            "first-wins" => Some(FanMode::FirstWins),
            _ => None,
        }
    }

    /// The capability each shard requires besides the task's, one entry per shard:
    /// `shards` entries of none, or each `fanOut` entry `weight` times.
    pub fn shard_capabilities(&self) -> Vec<Option<Capability>> {
        let Some(schedule) = &self.schedule else {
            return Vec::new();
        };
        if schedule.fan_out.is_empty() {
            return vec![None; schedule.shards.unwrap_or(1) as usize];
        }
        schedule
            .fan_out
            .iter()
            .flat_map(|e| (0..e.weight.unwrap_or(1)).map(|_| Some(e.capability.clone())))
            .collect()
    }

    /// The privacy level (the schemas admit only the three names).
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

    /// Seals every secret env value of a request as submitted, so that it can be
    /// stored (a value that merely looks sealed is sealed too: it is the user's text).
    pub fn seal_secrets(&mut self, sealer: &Sealer) -> Result<(), SealError> {
        self.each_secret(|name, value| sealer.seal(name, value))
    }

    /// Re-seals a stored request's secret values with the current key: those sealed with
    /// an older one, and those stored in plain text before sealing existed.
    pub fn reseal_secrets(&mut self, sealer: &Sealer) -> Result<(), SealError> {
        self.each_secret(|name, value| {
            if !crate::seal::is_sealed(value) {
                sealer.seal(name, value)
            } else if sealer.needs_reseal(value) {
                sealer.seal(name, &sealer.open(name, value)?)
            } else {
                Ok(value.to_owned())
            }
        })
    }

    fn each_secret(
        &mut self,
        mut f: impl FnMut(&str, &str) -> Result<String, SealError>,
    ) -> Result<(), SealError> {
        let names: Vec<String> = self
            .env
            .keys()
            .filter(|n| self.is_secret_env(n))
            .cloned()
            .collect();
        for name in names {
            if let Some(value) = self.env.get_mut(&name) {
                *value = f(&name, value)?;
            }
        }
        Ok(())
    }

    /// Checks that every secret env value opens with `sealer`'s keys.
    pub fn open_secrets(&self, sealer: &Sealer) -> Result<(), SealError> {
        self.env
            .iter()
            .filter(|(n, _)| self.is_secret_env(n))
            .try_for_each(|(n, v)| sealer.open(n, v).map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_request_upgrades_field_by_field() {
        let v1: RunRequestV1 = serde_json::from_str(
            r#"{"id": "b-1", "argv": ["make"], "env": {"A": "1"}, "cwd": "/src",
                "timeoutSeconds": 60, "capabilities": ["os:linux"], "maxAttempts": 5,
                "labels": {"team": "infra"}, "secretEnv": ["A"],
                "constraints": {"privacy": "restricted"}}"#,
        )
        .unwrap();
        let v2 = RunRequest::from(v1.clone());
        assert_eq!(v2.schema, RUN_REQUEST_V2_ID);
        assert_eq!((v2.id, v2.argv, v2.env), (v1.id, v1.argv, v1.env));
        assert_eq!((v2.cwd, v2.timeout_seconds), (v1.cwd, v1.timeout_seconds));
        assert_eq!((v2.capabilities, v2.labels), (v1.capabilities, v1.labels));
        assert_eq!(v2.secret_env, v1.secret_env);
        assert_eq!(v2.constraints, v1.constraints);
        assert_eq!(v2.schedule.unwrap().recovery.unwrap().max_retries, Some(4));
        let minimal = RunRequest::from(
            serde_json::from_str::<RunRequestV1>(r#"{"argv": ["true"]}"#).unwrap(),
        );
        assert_eq!(minimal.max_attempts(), DEFAULT_MAX_ATTEMPTS);
        assert_eq!(minimal.schedule, None);
    }

    #[test]
    fn stored_rows_of_either_version_read_back() {
        let v1 = r#"{"argv": ["true"], "maxAttempts": 2}"#;
        assert_eq!(RunRequest::from_stored(v1).unwrap().max_attempts(), 2);
        let v2 = serde_json::to_string(&RunRequest::from_stored(v1).unwrap()).unwrap();
        let again = RunRequest::from_stored(&v2).unwrap();
        assert_eq!(again.max_attempts(), 2);
        assert!(v2.contains(RUN_REQUEST_V2_ID));
    }
}
