//! Whether the state dir takes writes. The frame log's writer and the store's writer
//! report a failing write here (disk full, I/O error) while they retry it, and clear it
//! once a write goes through; readiness and admission read it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The parts of the state dir that can fail to take writes, and why they do now.
#[derive(Clone, Default)]
pub struct StorageHealth {
    failing: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

impl StorageHealth {
    /// `part` cannot write: `why`. Logged once per change of reason.
    pub fn failing(&self, part: &'static str, why: String) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.get(part) != Some(&why) {
            tracing::error!(part, reason = %why, "writes to the state dir fail; retrying");
            failing.insert(part, why);
        }
    }

    /// `part` writes again.
    pub fn ok(&self, part: &'static str) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.remove(part).is_some() {
            tracing::info!(part, "writes to the state dir go through again");
        }
    }

    /// Why writes fail now, one line per part; empty when they do not.
    pub fn problems(&self) -> Vec<String> {
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        failing
            .iter()
            .map(|(part, why)| format!("{part} cannot write, retrying: {why}"))
            .collect()
    }
}
