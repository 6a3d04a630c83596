//! What the engine measures for the alerts, and their evaluation.

use super::{AlertView, Sample, Transition};
use crate::dispatcher::messages::fleet_load;
use crate::domain::now_ms;
use crate::engine::{Engine, Stopped};
use crate::events::{AlertChanged, Event};

impl Engine {
    /// Reads the fleet, the queue and the counters the rules watch.
    pub async fn alert_sample(&self) -> Result<Sample, Stopped> {
        let instances = self.instances().await?;
        let queue = self.queue().await?;
        let (_, _, utilization) = fleet_load(&instances);
        // Only work some instance could run counts as waiting on a busy fleet: a task
        // that needs a capability nobody offers waits whatever the utilization.
        let working: Vec<_> = instances.iter().filter(|i| i.state != "failed").collect();
        let queued = queue
            .iter()
            .filter(|q| {
                working
                    .iter()
                    .any(|i| q.capabilities.iter().all(|c| i.capabilities.contains(c)))
            })
            .map(|q| q.depth as u64)
            .sum();
        let mut sample = Sample {
            at_ms: now_ms(),
            utilization,
            queued,
            ..Sample::default()
        };
        crate::events::fill_sample(&mut sample);
        (sample.violations, sample.checked, sample.broke_schema) =
            crate::events::guard_and_validation_totals();
        Ok(sample)
    }

    /// Takes a sample and moves the alerts on; each change is logged and counted, and
    /// returned for delivery.
    pub async fn evaluate_alerts(&self) -> Result<Vec<Transition>, Stopped> {
        let sample = self.alert_sample().await?;
        let changes = self
            .alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .evaluate(sample);
        for transition in &changes {
            AlertChanged { transition }.emit();
        }
        Ok(changes)
    }

    /// Every alert as it stands.
    pub fn alerts(&self) -> Vec<AlertView> {
        self.alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .views()
            .to_vec()
    }

    /// The alert settings in force.
    pub fn alert_settings(&self) -> super::AlertSettings {
        self.alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .settings()
            .clone()
    }
}
