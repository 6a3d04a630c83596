//! Typed configuration of `flotilla serve`: flags > environment > `flotilla.toml` > defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use flotilla_actors::alerts::{AlertSettings, RuleKind};
use flotilla_actors::auth::TokenSettings;
use flotilla_actors::control_plane::{ControlPlaneConfig, RollbackPolicy, ValidationMode};
use flotilla_actors::dispatcher::placement::{Policy, SchedulerSettings};
use flotilla_actors::domain::{Capability, Scope};
use flotilla_actors::exec_handle::RetentionSettings;
use flotilla_actors::fleet::FleetSettings;
use flotilla_actors::guard::approvals::Approvers;
use flotilla_actors::guard::{GuardSettings, Level, Mode, Phase};
use flotilla_actors::rollout::RolloutSettings;
use flotilla_actors::subscriber::registry::StreamingSettings;
use serde::Deserialize;

/// Default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:7070";
/// Default state directory (database, frame log, tokens).
pub const DEFAULT_STATE_DIR: &str = ".flotilla";
/// Default number of local agent processes.
pub const DEFAULT_LOCAL_INSTANCES: u32 = 2;
/// Default slots per local agent.
pub const DEFAULT_LOCAL_SLOTS: u32 = 1;
/// Default capabilities of local agents.
pub const DEFAULT_LOCAL_CAPABILITIES: &str = "os:linux,local";
/// Largest request body accepted.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Largest batch body by default: a thousand ordinary requests with room to spare.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 16 << 20;
/// Most tasks in one batch by default.
pub const DEFAULT_MAX_BATCH_ITEMS: usize = 1_000;

/// `flotilla.toml`: every key optional; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Address to listen on.
    pub bind: Option<String>,
    /// Where the database, frame log and tokens live.
    pub state_dir: Option<PathBuf>,
    /// Root of the `.runs/` and `out/` artifact folders.
    pub artifacts_dir: Option<PathBuf>,
    /// Number of local agent processes to supervise.
    pub local_instances: Option<u32>,
    /// Capabilities the local agents offer.
    pub local_capabilities: Option<Vec<String>>,
    /// Slots per local agent.
    pub local_slots: Option<u32>,
    /// The user local agents run tasks as; required when the server runs as root
    /// (`"root"` runs them as root).
    pub local_run_as: Option<String>,
    /// Largest request body, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Largest body of `POST /v1/tasks/batch`, in bytes.
    pub max_batch_bytes: Option<usize>,
    /// Most tasks in one batch.
    pub max_batch_items: Option<usize>,
    /// Folder of the deployment's own evidence: `.runs/<scope>/…`, `out/<scope>/…`.
    pub scope: Option<String>,
    /// The privacy guard.
    pub guard: Option<GuardFile>,
    /// Request validation: modes per schema and when enforcement rolls back.
    pub control_plane: Option<ControlPlaneFile>,
    /// Heartbeats, leases, re-attach after a restart, local restart limits.
    pub fleet: Option<FleetFile>,
    /// Placement: policy, per-capability limits, cooldown after lost attempts.
    pub scheduler: Option<SchedulerFile>,
    /// Observers: caps, lag limit, write timeout, pings.
    pub streaming: Option<StreamingFile>,
    /// How long minted tokens are valid.
    pub tokens: Option<TokensFile>,
    /// What the frame log keeps: per-handle bytes, age, a global budget.
    pub retention: Option<RetentionFile>,
    /// Alert rules, their thresholds, and a webhook.
    pub alerts: Option<AlertsFile>,
    /// Gated rollouts: the cooldown's first phase, the evidence gates need.
    pub rollout: Option<RolloutFile>,
}

/// `[rollout]` in flotilla.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RolloutFile {
    /// The cooldown's phase at the first start: shadow, limited or full (default full;
    /// later starts keep the phase the rollout recorded).
    pub cooldown: Option<String>,
    /// Finished tasks a completion rate needs before a gate reads it (default 20).
    pub min_tasks: Option<u64>,
    /// How often the gates of advanced components are checked again (default 30000).
    pub check_every_ms: Option<u64>,
}

impl RolloutFile {
    fn settings(self) -> Result<RolloutSettings, ConfigError> {
        let d = RolloutSettings::default();
        let cooldown = match self.cooldown.as_deref() {
            None => d.cooldown,
            Some(p) => flotilla_actors::rollout::Phase::parse(p).ok_or_else(|| {
                ConfigError::Rollout(format!(
                    "rollout.cooldown must be shadow, limited or full, got {p:?}"
                ))
            })?,
        };
        Ok(RolloutSettings {
            cooldown,
            min_tasks: self.min_tasks.unwrap_or(d.min_tasks),
            check_every_ms: self.check_every_ms.unwrap_or(d.check_every_ms),
        })
    }
}

/// `[alerts]` in flotilla.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AlertsFile {
    /// How often the rules are evaluated (default 5000).
    pub every_ms: Option<u64>,
    /// What rates and means are taken over (default 300).
    pub window_seconds: Option<u64>,
    /// Where changes to firing and resolved are POSTed (none by default).
    pub webhook: Option<String>,
    /// Per rule, by name (`utilization-low`, `mttr-high`, `guard-violations`,
    /// `validation-rejections`, `completion-low`, `instance-restarts`).
    #[serde(default)]
    pub rules: std::collections::BTreeMap<String, AlertRuleFile>,
}

/// `[alerts.rules.<name>]` in flotilla.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AlertRuleFile {
    pub threshold: Option<f64>,
    pub for_seconds: Option<u64>,
    pub min_count: Option<u64>,
    pub enabled: Option<bool>,
}

impl AlertsFile {
    fn settings(self) -> Result<AlertSettings, ConfigError> {
        let mut s = AlertSettings::default();
        if let Some(ms) = self.every_ms {
            s.every_ms = ms;
        }
        if let Some(secs) = self.window_seconds {
            s.window_ms = secs.saturating_mul(1000);
        }
        s.webhook = self.webhook;
        for (name, r) in self.rules {
            let kind = RuleKind::parse(&name).ok_or_else(|| {
                let known: Vec<&str> = RuleKind::ALL.iter().map(|k| k.as_str()).collect();
                ConfigError::Alerts(format!(
                    "alerts.rules.{name}: no such rule (known: {})",
                    known.join(", ")
                ))
            })?;
            let rule = s.rule_mut(kind);
            if let Some(t) = r.threshold {
                rule.threshold = t;
            }
            if let Some(secs) = r.for_seconds {
                rule.for_ms = secs.saturating_mul(1000);
            }
            if let Some(n) = r.min_count {
                rule.min_count = n;
            }
            if let Some(on) = r.enabled {
                rule.enabled = on;
            }
        }
        s.check().map_err(ConfigError::Alerts)?;
        Ok(s)
    }
}

/// `[retention]` in flotilla.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetentionFile {
    /// Most bytes of output one handle keeps; its oldest frames go first (default 1 GiB).
    pub handle_max_bytes: Option<u64>,
    /// Frames older than this go (default 604800, a week).
    pub max_age_seconds: Option<u64>,
    /// Most bytes the whole frame log keeps; its oldest segments go first (default 16 GiB).
    pub budget_bytes: Option<u64>,
    /// Size at which a segment of the log is closed (default 64 MiB).
    pub segment_bytes: Option<u64>,
    /// Age at which a segment is closed, however small (default 3600).
    pub segment_max_age_seconds: Option<u64>,
}

impl RetentionFile {
    fn settings(self) -> RetentionSettings {
        let d = RetentionSettings::default();
        RetentionSettings {
            segment_bytes: self.segment_bytes.unwrap_or(d.segment_bytes),
            segment_max_age_ms: self
                .segment_max_age_seconds
                .map_or(d.segment_max_age_ms, |s| s.saturating_mul(1000)),
            handle_max_bytes: self.handle_max_bytes.unwrap_or(d.handle_max_bytes),
            max_age_ms: self
                .max_age_seconds
                .map_or(d.max_age_ms, |s| s.saturating_mul(1000)),
            budget_bytes: self.budget_bytes.unwrap_or(d.budget_bytes),
        }
    }
}

/// `[tokens]` in flotilla.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TokensFile {
    /// Observer tokens given with an accepted task; 0 for no expiry (default 604800).
    pub observer_ttl_seconds: Option<u64>,
    /// Agent tokens minted for remote agents; 0 for no expiry (default 2592000).
    pub agent_ttl_seconds: Option<u64>,
}

/// `[streaming]` in flotilla.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StreamingFile {
    /// Observers connected at once over all handles (default 10000).
    pub max_observers: Option<usize>,
    /// Observers of one handle at once, unless its request sets fewer (default 1024).
    pub max_observers_per_handle: Option<u32>,
    /// Frames behind the live end at which an observer lags (default 4096).
    pub lag_limit_frames: Option<u64>,
    /// How long a frame may wait on an observer's socket (default 30000).
    pub write_timeout_ms: Option<u64>,
    /// Ping after this long without a frame; two unanswered close (default 15000).
    pub ping_interval_ms: Option<u64>,
    /// Most output bytes one attempt may write (default 1 GiB).
    pub max_output_bytes: Option<u64>,
}

impl StreamingFile {
    fn settings(self) -> StreamingSettings {
        let d = StreamingSettings::default();
        StreamingSettings {
            max_observers: self.max_observers.unwrap_or(d.max_observers),
            max_per_handle: self.max_observers_per_handle.unwrap_or(d.max_per_handle),
            lag_limit: self.lag_limit_frames.unwrap_or(d.lag_limit),
            write_timeout_ms: self.write_timeout_ms.unwrap_or(d.write_timeout_ms),
            ping_interval_ms: self.ping_interval_ms.unwrap_or(d.ping_interval_ms),
            max_output_bytes: self.max_output_bytes.unwrap_or(d.max_output_bytes),
        }
    }
}

/// `[scheduler]` in flotilla.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SchedulerFile {
    /// `least-loaded` (default) or `bin-pack`.
    pub policy: Option<String>,
    /// Most running attempts at once of tasks requiring a capability: `gpu = 2`.
    pub limits: Option<BTreeMap<String, u32>>,
    /// First cooldown of an instance after a lost attempt, doubling per loss (default 1000).
    pub cooldown_ms: Option<u64>,
    /// Longest cooldown (default 60000).
    pub cooldown_max_ms: Option<u64>,
    /// Weighted-fair sharing: the task label whose value names a task's group.
    pub fair_label: Option<String>,
    /// Each group's weight (groups not named weigh 1): `team-a = 3`.
    pub weights: Option<BTreeMap<String, u32>>,
}

impl SchedulerFile {
    fn settings(self) -> Result<SchedulerSettings, ConfigError> {
        let bad = |m: String| ConfigError::Scheduler(m);
        let d = SchedulerSettings::default();
        let policy = match &self.policy {
            None => d.policy,
            Some(p) => Policy::parse(p).ok_or_else(|| {
                bad(format!(
                    "scheduler.policy: {p:?} is not least-loaded or bin-pack"
                ))
            })?,
        };
        let mut limits = BTreeMap::new();
        for (cap, n) in self.limits.unwrap_or_default() {
            let c = Capability::parse(&cap)
                .map_err(|e| bad(format!("scheduler.limits.{cap:?}: {e}")))?;
            if n == 0 {
                return Err(bad(format!("scheduler.limits.{cap}: must be at least 1")));
            }
            limits.insert(c, n);
        }
        let weights = self.weights.unwrap_or_default();
        if let Some((group, _)) = weights.iter().find(|(_, w)| **w == 0 || **w > 1000) {
            return Err(bad(format!(
                "scheduler.weights.{group}: must be between 1 and 1000"
            )));
        }
        if !weights.is_empty() && self.fair_label.is_none() {
            return Err(bad("scheduler.weights needs scheduler.fair-label".into()));
        }
        let s = SchedulerSettings {
            policy,
            limits,
            cooldown_ms: self.cooldown_ms.unwrap_or(d.cooldown_ms),
            cooldown_max_ms: self.cooldown_max_ms.unwrap_or(d.cooldown_max_ms),
            fair_label: self.fair_label,
            weights,
        };
        if s.cooldown_ms == 0 || s.cooldown_max_ms < s.cooldown_ms {
            return Err(bad(
                "scheduler.cooldown-ms must be at least 1 and at most cooldown-max-ms".into(),
            ));
        }
        Ok(s)
    }
}

/// `[fleet]` in flotilla.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FleetFile {
    /// How often agents heartbeat (default 1000).
    pub heartbeat_ms: Option<u64>,
    /// Silence after which an instance is suspect and its attempts are rescheduled
    /// (default 3000; at least twice heartbeat-ms).
    pub lease_timeout_ms: Option<u64>,
    /// After a restart, how long running attempts wait for their agent to re-attach;
    /// also how long an agent without a server keeps its attempts (default 30000).
    pub reattach_grace_ms: Option<u64>,
    /// Restarts of one local agent allowed within restart-window-seconds before it is
    /// marked failed (default 5).
    pub restart_limit: Option<u32>,
    /// The window of restart-limit, in seconds (default 60).
    pub restart_window_seconds: Option<u64>,
    /// Attempts of a task lost in a row on distinct instances before it stops as
    /// poisoned (default 3).
    pub poison_after: Option<u32>,
}

impl FleetFile {
    fn settings(self) -> Result<FleetSettings, ConfigError> {
        let d = FleetSettings::default();
        let s = FleetSettings {
            heartbeat_ms: self.heartbeat_ms.unwrap_or(d.heartbeat_ms),
            lease_timeout_ms: self.lease_timeout_ms.unwrap_or(d.lease_timeout_ms),
            reattach_grace_ms: self.reattach_grace_ms.unwrap_or(d.reattach_grace_ms),
            restart_limit: self.restart_limit.unwrap_or(d.restart_limit),
            restart_window_ms: self
                .restart_window_seconds
                .map_or(d.restart_window_ms, |s| s.saturating_mul(1000)),
            poison_after: self.poison_after.unwrap_or(d.poison_after),
        };
        s.check().map_err(ConfigError::Fleet)?;
        Ok(s)
    }
}

/// `[control-plane]` in flotilla.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ControlPlaneFile {
    /// Mode per schema id (`"flotilla.run-request" = "shadow"`); default enforce.
    pub modes: Option<BTreeMap<String, String>>,
    /// Rejected share above which enforcement rolls back to shadow (default 0.01).
    pub rollback_max_rate: Option<f64>,
    /// Requests in the rollback window (default 1000).
    pub rollback_window_requests: Option<usize>,
    /// Age limit of the window, in seconds (default 300).
    pub rollback_window_seconds: Option<u64>,
    /// Fewest requests in the window before it can roll back (default 100).
    pub rollback_min_requests: Option<usize>,
}

impl ControlPlaneFile {
    fn config(self) -> Result<ControlPlaneConfig, ConfigError> {
        let bad = |m: String| ConfigError::ControlPlane(m);
        let mut c = ControlPlaneConfig::default();
        for (schema, mode) in self.modes.unwrap_or_default() {
            let m = ValidationMode::parse(&mode).ok_or_else(|| {
                bad(format!(
                    "control-plane.modes.{schema:?}: {mode:?} is not off, shadow or enforce"
                ))
            })?;
            c.modes.insert(schema, m);
        }
        let d = RollbackPolicy::default();
        c.rollback = RollbackPolicy {
            max_rate: self.rollback_max_rate.unwrap_or(d.max_rate),
            window_requests: self.rollback_window_requests.unwrap_or(d.window_requests),
            window_seconds: self.rollback_window_seconds.unwrap_or(d.window_seconds),
            min_requests: self.rollback_min_requests.unwrap_or(d.min_requests),
        };
        let r = &c.rollback;
        if !(0.0..=1.0).contains(&r.max_rate) {
            return Err(bad(format!(
                "control-plane.rollback-max-rate must be between 0 and 1, got {}",
                r.max_rate
            )));
        }
        if r.window_requests == 0 || r.window_seconds == 0 || r.min_requests == 0 {
            return Err(bad(
                "control-plane rollback window sizes must be at least 1".to_owned(),
            ));
        }
        Ok(c)
    }
}

/// `[guard]` in flotilla.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GuardFile {
    /// `off`, `shadow` (default) or `enforce`, for every level not under `[guard.levels]`.
    pub mode: Option<String>,
    /// Rollout phase: `shadow`, `limited` (enforce restricted and sensitive only) or `full`.
    pub phase: Option<String>,
    /// Mode per privacy level: `standard`, `restricted`, `sensitive`.
    pub levels: Option<BTreeMap<String, String>>,
    /// Who may approve policy approvals and overrides.
    pub approvers: Option<Vec<String>>,
    /// Who may approve out of hours (also an approver).
    pub after_hours_owner: Option<String>,
    /// A block stops the attempt and fails its task (default true).
    pub fail_on_block: Option<bool>,
    /// Guard worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Accept `restricted` tasks while their level is not enforced (default false:
    /// refused with 409).
    pub run_restricted_unenforced: Option<bool>,
}

impl GuardFile {
    fn settings(self) -> Result<GuardSettings, ConfigError> {
        let bad = |field: &str, got: &str, want: &str| {
            ConfigError::Guard(format!("guard.{field}: {got:?} is not {want}"))
        };
        let mode = |field: &str, m: &str| {
            Mode::parse(m).ok_or_else(|| bad(field, m, "off, shadow or enforce"))
        };
        let mut s = GuardSettings::default();
        if let Some(m) = &self.mode {
            s.mode = mode("mode", m)?;
        }
        if let Some(p) = &self.phase {
            s.phase = Phase::parse(p).ok_or_else(|| bad("phase", p, "shadow, limited or full"))?;
        }
        for (level, m) in self.levels.iter().flatten() {
            let l = Level::parse(level)
                .ok_or_else(|| bad("levels", level, "standard, restricted or sensitive"))?;
            s.levels.insert(l, mode(&format!("levels.{level}"), m)?);
        }
        s.approvers = Approvers {
            approvers: self.approvers.unwrap_or_default(),
            after_hours_owner: self.after_hours_owner,
        };
        s.fail_on_block = self.fail_on_block.unwrap_or(true);
        s.workers = self.workers.unwrap_or(0);
        s.run_restricted_unenforced = self.run_restricted_unenforced.unwrap_or(false);
        if s.workers > 64 {
            return Err(ConfigError::Guard(format!(
                "guard.workers must be between 0 and 64, got {}",
                s.workers
            )));
        }
        Ok(s)
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind: SocketAddr,
    pub state_dir: PathBuf,
    pub artifacts_dir: PathBuf,
    pub local_instances: u32,
    pub local_capabilities: Vec<Capability>,
    pub local_slots: u32,
    /// The user local agents run tasks as (`--run-as`), if given.
    pub local_run_as: Option<String>,
    pub max_body_bytes: usize,
    pub max_batch_bytes: usize,
    pub max_batch_items: usize,
    /// From `FLOTILLA_TOKEN`: replaces the stored admin token.
    pub admin_token: Option<String>,
    pub scope: Scope,
    pub guard: GuardSettings,
    pub control_plane: ControlPlaneConfig,
    pub fleet: FleetSettings,
    pub scheduler: SchedulerSettings,
    pub streaming: StreamingSettings,
    pub tokens: TokenSettings,
    pub retention: RetentionSettings,
    pub alerts: AlertSettings,
    pub rollout: RolloutSettings,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("bind address {0:?} is not host:port")]
    Bind(String),
    #[error("local capabilities: {0}")]
    Capability(#[from] flotilla_actors::domain::CapabilityError),
    #[error("{field} must be between {min} and {max}, got {got}")]
    Range {
        field: &'static str,
        min: u64,
        max: u64,
        got: u64,
    },
    #[error("FLOTILLA_TOKEN must be at least 16 characters")]
    WeakToken,
    #[error("{0}")]
    Guard(String),
    #[error("{0}")]
    ControlPlane(String),
    #[error("{0}")]
    Fleet(String),
    #[error("{0}")]
    Scheduler(String),
    #[error("{0}")]
    Alerts(String),
    #[error("{0}")]
    Rollout(String),
    #[error("scope {0:?}: {1}")]
    Scope(String, flotilla_actors::domain::IdError),
}

/// What flags and the environment gave (None = not given).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub bind: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub artifacts_dir: Option<PathBuf>,
    pub local_instances: Option<u32>,
    pub local_capabilities: Option<String>,
    pub local_slots: Option<u32>,
    pub local_run_as: Option<String>,
    pub admin_token: Option<String>,
}

impl ServeConfig {
    /// Merges flags/env over the file (explicit path, or `./flotilla.toml` if present).
    pub fn resolve(o: Overrides) -> Result<Self, ConfigError> {
        let file = match &o.config {
            Some(p) => read_file(p)?,
            None if Path::new("flotilla.toml").exists() => read_file(Path::new("flotilla.toml"))?,
            None => FileConfig::default(),
        };
        let bind_text = o
            .bind
            .or(file.bind)
            .unwrap_or_else(|| DEFAULT_BIND.to_owned());
        let bind = bind_text
            .parse()
            .map_err(|_| ConfigError::Bind(bind_text.clone()))?;
        let local_capabilities = match (o.local_capabilities, file.local_capabilities) {
            (Some(s), _) => Capability::parse_list(&s)?,
            (None, Some(v)) => v
                .iter()
                .map(|s| Capability::parse(s))
                .collect::<Result<_, _>>()?,
            (None, None) => Capability::parse_list(DEFAULT_LOCAL_CAPABILITIES)?,
        };
        let config = Self {
            bind,
            state_dir: o
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            artifacts_dir: o
                .artifacts_dir
                .or(file.artifacts_dir)
                .unwrap_or_else(|| ".".into()),
            local_instances: o
                .local_instances
                .or(file.local_instances)
                .unwrap_or(DEFAULT_LOCAL_INSTANCES),
            local_capabilities,
            local_slots: o
                .local_slots
                .or(file.local_slots)
                .unwrap_or(DEFAULT_LOCAL_SLOTS),
            local_run_as: o.local_run_as.or(file.local_run_as),
            max_body_bytes: file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            max_batch_bytes: file.max_batch_bytes.unwrap_or(DEFAULT_MAX_BATCH_BYTES),
            max_batch_items: file.max_batch_items.unwrap_or(DEFAULT_MAX_BATCH_ITEMS),
            admin_token: o.admin_token.filter(|t| !t.is_empty()),
            scope: match file.scope {
                Some(s) => Scope::parse(&s).map_err(|e| ConfigError::Scope(s.clone(), e))?,
                None => Scope::default(),
            },
            guard: file.guard.unwrap_or_default().settings()?,
            control_plane: file.control_plane.unwrap_or_default().config()?,
            fleet: file.fleet.unwrap_or_default().settings()?,
            scheduler: file.scheduler.unwrap_or_default().settings()?,
            streaming: file.streaming.unwrap_or_default().settings(),
            retention: file.retention.unwrap_or_default().settings(),
            alerts: file.alerts.unwrap_or_default().settings()?,
            rollout: file.rollout.unwrap_or_default().settings()?,
            tokens: {
                let t = file.tokens.unwrap_or_default();
                let d = TokenSettings::default();
                TokenSettings {
                    observer_ttl_s: t.observer_ttl_seconds.unwrap_or(d.observer_ttl_s),
                    agent_ttl_s: t.agent_ttl_seconds.unwrap_or(d.agent_ttl_s),
                }
            },
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = |field, got: u64, min, max| {
            if (min..=max).contains(&got) {
                Ok(())
            } else {
                Err(ConfigError::Range {
                    field,
                    min,
                    max,
                    got,
                })
            }
        };
        range("local-instances", self.local_instances.into(), 0, 64)?;
        range("local-slots", self.local_slots.into(), 1, 1024)?;
        range("max-body-bytes", self.max_body_bytes as u64, 1024, 64 << 20)?;
        range(
            "max-batch-bytes",
            self.max_batch_bytes as u64,
            1024,
            256 << 20,
        )?;
        range("max-batch-items", self.max_batch_items as u64, 1, 1_000)?;
        let st = &self.streaming;
        range(
            "streaming.max-observers",
            st.max_observers as u64,
            1,
            1_000_000,
        )?;
        range(
            "streaming.max-observers-per-handle",
            st.max_per_handle.into(),
            1,
            1_000_000,
        )?;
        range("streaming.lag-limit-frames", st.lag_limit, 1, 1 << 40)?;
        range(
            "streaming.max-output-bytes",
            st.max_output_bytes,
            1,
            1 << 50,
        )?;
        let ten_years = 315_360_000;
        range(
            "tokens.observer-ttl-seconds",
            self.tokens.observer_ttl_s,
            0,
            ten_years,
        )?;
        range(
            "tokens.agent-ttl-seconds",
            self.tokens.agent_ttl_s,
            0,
            ten_years,
        )?;
        range(
            "streaming.write-timeout-ms",
            st.write_timeout_ms,
            100,
            3_600_000,
        )?;
        range(
            "streaming.ping-interval-ms",
            st.ping_interval_ms,
            100,
            3_600_000,
        )?;
        let r = &self.retention;
        range(
            "retention.segment-bytes",
            r.segment_bytes,
            64 << 10,
            4 << 30,
        )?;
        range(
            "retention.segment-max-age-seconds",
            r.segment_max_age_ms / 1000,
            1,
            30 * 86_400,
        )?;
        range(
            "retention.handle-max-bytes",
            r.handle_max_bytes,
            64 << 10,
            1 << 50,
        )?;
        range(
            "retention.max-age-seconds",
            r.max_age_ms / 1000,
            1,
            ten_years,
        )?;
        range("retention.budget-bytes", r.budget_bytes, 256 << 10, 1 << 50)?;
        range("rollout.min-tasks", self.rollout.min_tasks, 1, 1_000_000)?;
        range(
            "rollout.check-every-ms",
            self.rollout.check_every_ms,
            100,
            3_600_000,
        )?;
        if self.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::WeakToken);
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("flotilla-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.toml");
        std::fs::write(&file, "bind = \"127.0.0.1:9000\"\nlocal-slots = 4\n").unwrap();
        let c = ServeConfig::resolve(Overrides {
            config: Some(file.clone()),
            local_slots: Some(2),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.local_slots, 2);
        assert_eq!(c.local_instances, DEFAULT_LOCAL_INSTANCES);
        std::fs::write(&file, "colour = 1\n").unwrap();
        let err = ServeConfig::resolve(Overrides {
            config: Some(file),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn out_of_range_values_are_named() {
        let err = ServeConfig::resolve(Overrides {
            local_slots: Some(0),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("local-slots"), "{err}");
        let err = ServeConfig::resolve(Overrides {
            admin_token: Some("short".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::WeakToken));
    }

    #[test]
    fn the_guard_section_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        let resolve = |text: &str| {
            std::fs::write(&file, text).unwrap();
            ServeConfig::resolve(Overrides {
                config: Some(file.clone()),
                ..Default::default()
            })
        };
        let c = resolve(
            "[guard]\nmode = \"shadow\"\nphase = \"limited\"\napprovers = [\"alice\"]\n\
             after-hours-owner = \"oncall\"\n[guard.levels]\nsensitive = \"enforce\"\n",
        )
        .unwrap();
        assert_eq!(c.guard.effective(Level::Sensitive), Mode::Enforce);
        assert_eq!(c.guard.effective(Level::Standard), Mode::Shadow);
        assert_eq!(
            c.guard.approvers.after_hours_owner.as_deref(),
            Some("oncall")
        );
        let err = resolve("[guard.levels]\nsecret = \"enforce\"\n").unwrap_err();
        assert!(err.to_string().contains("guard.levels"), "{err}");
        let err = resolve("[guard]\nmode = \"strict\"\n").unwrap_err();
        assert!(err.to_string().contains("guard.mode"), "{err}");
    }

    #[test]
    fn the_fleet_section_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        let resolve = |text: &str| {
            std::fs::write(&file, text).unwrap();
            ServeConfig::resolve(Overrides {
                config: Some(file.clone()),
                ..Default::default()
            })
        };
        let c = resolve("").unwrap();
        assert_eq!(c.fleet, FleetSettings::default());
        let c = resolve(
            "[fleet]\nheartbeat-ms = 200\nlease-timeout-ms = 600\nreattach-grace-ms = 2000\n",
        )
        .unwrap();
        assert_eq!(
            (
                c.fleet.heartbeat_ms,
                c.fleet.lease_timeout_ms,
                c.fleet.reattach_grace_ms
            ),
            (200, 600, 2000)
        );
        let err = resolve("[fleet]\nlease-timeout-ms = 1500\n").unwrap_err();
        assert!(err.to_string().contains("lease-timeout-ms"), "{err}");
        let err = resolve("[fleet]\nreattach-grace-ms = 100\n").unwrap_err();
        assert!(err.to_string().contains("reattach-grace-ms"), "{err}");
    }

    #[test]
    fn the_scheduler_section_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        let resolve = |text: &str| {
            std::fs::write(&file, text).unwrap();
            ServeConfig::resolve(Overrides {
                config: Some(file.clone()),
                ..Default::default()
            })
        };
        let c =
            resolve("[scheduler]\npolicy = \"bin-pack\"\n[scheduler.limits]\ngpu = 2\n").unwrap();
        assert_eq!(c.scheduler.policy, Policy::BinPack);
        assert_eq!(
            c.scheduler.limits.values().copied().collect::<Vec<_>>(),
            [2]
        );
        let err = resolve("[scheduler]\npolicy = \"random\"\n").unwrap_err();
        assert!(err.to_string().contains("scheduler.policy"), "{err}");
        let err = resolve("[scheduler.limits]\ngpu = 0\n").unwrap_err();
        assert!(err.to_string().contains("scheduler.limits.gpu"), "{err}");
        let c =
            resolve("[scheduler]\nfair-label = \"tenant\"\n[scheduler.weights]\na = 3\n").unwrap();
        assert_eq!(c.scheduler.fair_label.as_deref(), Some("tenant"));
        let err = resolve("[scheduler.weights]\na = 3\n").unwrap_err();
        assert!(err.to_string().contains("fair-label"), "{err}");
        let err =
            resolve("[scheduler]\nfair-label = \"t\"\n[scheduler.weights]\na = 0\n").unwrap_err();
        assert!(err.to_string().contains("scheduler.weights.a"), "{err}");
    }
}
