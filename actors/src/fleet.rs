//! FleetSettings: how the server keeps track of its instances — heartbeats, leases, the
//! re-attach grace after a restart, and how often a local agent may be restarted.
//!
//! Set in `[fleet]` of `flotilla.toml`; the defaults are the documented ones
//! (`docs/scheduling.md`).

/// How often agents heartbeat by default.
pub const DEFAULT_HEARTBEAT_MS: u64 = 1_000;
/// Silence after which an instance is suspect and its leases run out, by default.
pub const DEFAULT_LEASE_TIMEOUT_MS: u64 = 3_000;
/// How long a restarted server waits for agents to re-attach their attempts, by default.
pub const DEFAULT_REATTACH_GRACE_MS: u64 = 30_000;
/// Local agent restarts allowed within [`DEFAULT_RESTART_WINDOW_MS`] before the
/// instance is marked failed.
pub const DEFAULT_RESTART_LIMIT: u32 = 5;
pub const DEFAULT_RESTART_WINDOW_MS: u64 = 60_000;
/// Attempts of one task lost in a row, on distinct instances, after which it is poisoned.
pub const DEFAULT_POISON_AFTER: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSettings {
    /// How often each agent sends a heartbeat (it renews the leases of what it runs).
    pub heartbeat_ms: u64,
    /// A connection silent this long is closed; an attempt not renewed this long is
    /// fenced and rescheduled (a task may ask for longer, up to the re-attach grace).
    pub lease_timeout_ms: u64,
    /// After a restart, attempts that were running wait this long for their agent to
    /// re-attach before they count as lost; an agent without a server for this long
    /// kills what it runs.
    pub reattach_grace_ms: u64,
    /// At most this many restarts of one local agent within `restart_window_ms`.
    pub restart_limit: u32,
    pub restart_window_ms: u64,
    /// A task whose attempts were lost this many times in a row, each on another
    /// instance, stops as poisoned (a task may ask for another count).
    pub poison_after: u32,
}

impl Default for FleetSettings {
    fn default() -> Self {
        Self {
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            lease_timeout_ms: DEFAULT_LEASE_TIMEOUT_MS,
            reattach_grace_ms: DEFAULT_REATTACH_GRACE_MS,
            restart_limit: DEFAULT_RESTART_LIMIT,
            restart_window_ms: DEFAULT_RESTART_WINDOW_MS,
            poison_after: DEFAULT_POISON_AFTER,
        }
    }
}

impl FleetSettings {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(100..=60_000).contains(&self.heartbeat_ms) {
            return Err(format!(
                "fleet.heartbeat-ms must be between 100 and 60000, got {}",
                self.heartbeat_ms
            ));
        }
        if self.lease_timeout_ms < 2 * self.heartbeat_ms || self.lease_timeout_ms > 600_000 {
            return Err(format!(
                "fleet.lease-timeout-ms must be at least twice heartbeat-ms ({}) and at most 600000, got {}",
                2 * self.heartbeat_ms,
                self.lease_timeout_ms
            ));
        }
        if self.reattach_grace_ms < self.lease_timeout_ms || self.reattach_grace_ms > 3_600_000 {
            return Err(format!(
                "fleet.reattach-grace-ms must be between lease-timeout-ms ({}) and 3600000, got {}",
                self.lease_timeout_ms, self.reattach_grace_ms
            ));
        }
        if self.restart_limit == 0 || self.restart_window_ms == 0 {
            return Err("fleet.restart-limit and restart-window-seconds must be at least 1".into());
        }
        if !(2..=20).contains(&self.poison_after) {
            return Err(format!(
                "fleet.poison-after must be between 2 and 20, got {}",
                self.poison_after
            ));
        }
        Ok(())
    }
}
