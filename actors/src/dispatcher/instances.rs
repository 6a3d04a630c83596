//! The connected instances: hello (with re-attach and unique ids), heartbeats, departure,
//! cooldown, operator controls, and how the API shows them.

use super::*;

/// An idle instance's heartbeats are recorded once in this many.
const HEARD_EVERY: i64 = 5;

impl Dispatcher {
    /// Registers a new connection. An id that is connected already is refused (the
    /// agent retries: a connection that died without a word keeps its id until its
    /// lease runs out). Attempts the agent holds from before a restart are taken back
    /// if they were recovered for this instance, and fenced otherwise.
    pub(super) fn connect(&mut self, m: Connect) {
        if let Some(inst) = self.instances.get(&m.instance) {
            tracing::warn!(instance = %m.instance, pid = m.pid, holder = inst.pid, "hello refused: instance id in use");
            let _ = m.reply.send(Err(ConnectError::InUse {
                instance: m.instance.clone(),
                pid: inst.pid,
            }));
            return;
        }
        self.failed.remove(&m.instance);
        self.last_seen.remove(&m.instance);
        self.next_conn += 1;
        let conn = self.next_conn;
        let now = now_ms();
        let mut resumed = Vec::new();
        let mut fenced = Vec::new();
        let mut running = HashSet::new();
        for HeldAttempt { attempt, .. } in &m.held {
            let ours = self
                .attempts
                .get(attempt)
                .is_some_and(|a| a.orphan && a.instance == m.instance);
            let assignment = ours.then(|| self.assignment(*attempt)).flatten();
            let Some(assignment) = assignment else {
                AttemptLost {
                    attempt: *attempt,
                    instance: &m.instance,
                    kind: LossKind::Fenced,
                    reason: "held by an instance it is not assigned to any more",
                }
                .emit();
                fenced.push(*attempt);
                let fence = Write::FenceHeld {
                    key: *attempt,
                    instance: m.instance.clone(),
                    reason: format!(
                        "instance {} came back still running an attempt that was lost meanwhile; told to kill it",
                        m.instance
                    ),
                    now_ms: now,
                };
                self.writer.send(vec![fence], Then::default());
                continue;
            };
            if let Some(a) = self.attempts.get_mut(attempt) {
                a.orphan = false;
                a.lease_until_ms = now + a.lease_ms;
            }
            self.orphans -= 1;
            running.insert(*attempt);
            tracing::info!(instance = %m.instance, attempt, task = %assignment.task, "attempt re-attached");
            let mark = checkpoint(
                &assignment.task,
                CheckpointAction::Reattach,
                "the orchestrator restarted; the agent offered its running attempt back".into(),
                Some(m.instance.clone()),
                Some(m.instance.clone()),
                assignment.attempt_no,
                *attempt,
            );
            self.writer.send(vec![mark], Then::default());
            let after = self.log.recovered_seq(*attempt);
            resumed.push((assignment, after));
        }
        // Recovered for this instance but not offered back: the agent lost them.
        let missing: Vec<AttemptKey> = self
            .attempts
            .iter()
            .filter(|(_, a)| a.orphan && a.instance == m.instance)
            .map(|(k, _)| *k)
            .collect();
        InstanceConnected {
            instance: &m.instance,
            slots: m.slots,
            pid: m.pid,
            reattached: resumed.len(),
        }
        .emit();
        self.offers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(m.instance.clone(), m.capabilities.clone());
        let session = crate::store::SessionStart {
            instance: m.instance.clone(),
            conn,
            pid: m.pid,
            slots: m.slots,
            capabilities: m
                .capabilities
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            now_ms: now,
        };
        self.writer
            .send(vec![Write::SessionStart(session)], Then::default());
        self.instances.insert(
            m.instance.clone(),
            Instance {
                caps: m.capabilities,
                slots: m.slots,
                running,
                session: m.session,
                conn,
                pid: m.pid,
                connected_ms: now,
                last_heard_ms: now,
                heard_written_ms: now,
                recent_run_ms: None,
                holds_ahead: m.holds_ahead,
            },
        );
        for attempt in missing {
            self.orphans -= 1;
            let detail = format!(
                "instance {} came back after the restart without this attempt",
                m.instance
            );
            self.lose_as(attempt, detail, recovery::Loss::Restart);
        }
        self.forget_recovered_seqs();
        let _ = m.reply.send(Ok(Welcomed {
            conn,
            resumed,
            fenced,
        }));
        self.refresh_reasons();
    }

    /// An instance disconnected: each attempt it ran is lost; its task is requeued at its
    /// old place in line, or fails once it has used all its attempts.
    pub(super) fn gone(&mut self, instance: &InstanceId) {
        let Some(inst) = self.instances.remove(instance) else {
            return;
        };
        self.offers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(instance);
        InstanceGone {
            instance,
            running: inst.running.len(),
        }
        .emit();
        let left = Write::Session {
            instance: instance.clone(),
            conn: inst.conn,
            now_ms: now_ms(),
            left: true,
        };
        self.writer.send(vec![left], Then::default());
        let view = InstanceView {
            id: instance.clone(),
            capabilities: inst.caps.iter().cloned().collect(),
            slots: inst.slots,
            running: Vec::new(),
            pid: inst.pid,
            connected_at: rfc3339_ms(inst.connected_ms),
            state: "failed",
            reason: None,
        };
        // The supervisor may have given up on it before its connection was seen to end.
        if let Some((shown, why)) = self.failed.get_mut(instance) {
            *shown = InstanceView {
                reason: Some(why.clone()),
                ..view.clone()
            };
        }
        self.last_seen.insert(instance.clone(), view);
        for attempt in inst.running {
            self.lose(attempt, format!("instance {instance} disconnected"));
        }
        self.refresh_reasons();
    }

    /// A heartbeat renews the lease of every attempt it lists that the server gave this
    /// instance; anything else it lists is fenced, so the agent kills it.
    pub(super) fn heartbeat(&mut self, instance: &InstanceId, running: &[AttemptKey]) {
        let now = now_ms();
        let mut strangers = Vec::new();
        let mut leases = Vec::with_capacity(running.len());
        let Some(inst) = self.instances.get_mut(instance) else {
            return;
        };
        // Recorded with every lease renewal, and at most every few heartbeats while the
        // instance runs nothing.
        let record_heard = !running.is_empty()
            || now - inst.heard_written_ms >= HEARD_EVERY * self.fleet.heartbeat_ms as i64;
        if record_heard {
            inst.heard_written_ms = now;
        }
        let inst = &self.instances[instance];
        for key in running {
            match self.attempts.get_mut(key) {
                Some(a) if inst.running.contains(key) => {
                    a.lease_until_ms = now + a.lease_ms;
                    leases.push((*key, a.lease_until_ms));
                }
                _ => strangers.push(*key),
            }
        }
        let mut writes = Vec::with_capacity(2);
        if !leases.is_empty() {
            writes.push(Write::RenewLeases { leases });
        }
        if record_heard {
            writes.push(Write::Session {
                instance: instance.clone(),
                conn: inst.conn,
                now_ms: now,
                left: false,
            });
        }
        if !writes.is_empty() {
            self.writer.send(writes, Then::default());
        }
        if !strangers.is_empty() {
            for attempt in &strangers {
                AttemptLost {
                    attempt: *attempt,
                    instance,
                    kind: LossKind::Fenced,
                    reason: "reported by an instance the server did not give it to",
                }
                .emit();
            }
            let msg = ServerMsg::Fence {
                attempts: strangers,
                reason: format!("not assigned to {instance}, or no longer"),
            };
            send_in_order(&self.writer, &inst.session, msg);
        }
    }

    /// An attempt on `instance` was lost: it gets no new work for a while, twice as long
    /// as last time, until one of its attempts succeeds.
    pub(super) fn cool_down(&mut self, instance: &InstanceId) {
        let entry = self.losses.entry(instance.clone()).or_insert((0, 0));
        entry.0 = entry.0.saturating_add(1);
        let ms = cooldown_ms(&self.scheduler, entry.0);
        let phase = self.cooldown_phase.get();
        if !crate::rollout::cooldown_applies(phase, instance.as_str()) {
            tracing::info!(instance = %instance, losses = entry.0, cooldown_ms = ms, phase = phase.as_str(), "instance would cool down after a lost attempt (cooldown rollout: not applied to it)");
            entry.1 = 0;
            return;
        }
        entry.1 = now_ms() + ms as i64;
        tracing::info!(instance = %instance, losses = entry.0, cooldown_ms = ms, "instance cools down after a lost attempt");
    }

    /// An operator's cordon, uncordon or drain (restart is the supervisor's).
    pub(super) fn control(
        &mut self,
        instance: InstanceId,
        action: InstanceAction,
    ) -> Result<(), ControlError> {
        if !self.instances.contains_key(&instance) {
            return Err(ControlError::NotFound(instance));
        }
        tracing::info!(instance = %instance, action = ?action, "instance control");
        let control = match action {
            InstanceAction::Cordon => {
                self.cordoned.insert(instance.clone(), false);
                Some("cordon")
            }
            InstanceAction::Drain => {
                self.cordoned.insert(instance.clone(), true);
                Some("drain")
            }
            InstanceAction::Uncordon => {
                self.cordoned.remove(&instance);
                None
            }
            InstanceAction::Restart => {
                let _ = self.suspects.send(instance);
                return Ok(());
            }
        };
        // Kept in the store: a cordon outlives a restart of the server.
        let write = Write::Control {
            instance,
            control,
            now_ms: now_ms(),
        };
        self.writer.send(vec![write], Then::default());
        Ok(())
    }

    /// What an instance takes, as the API shows it.
    pub(super) fn instance_state(&self, id: &InstanceId, i: &Instance) -> &'static str {
        let now = now_ms();
        match self.cordoned.get(id) {
            Some(true) if i.running.is_empty() => "drained",
            Some(true) => "draining",
            Some(false) => "cordoned",
            None if i.last_heard_ms < now - 2 * self.fleet.heartbeat_ms as i64 => "quiet",
            None if self.losses.get(id).is_some_and(|(_, until)| *until > now) => "cooling",
            None => "ready",
        }
    }

    pub(super) fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        if self.instances.is_empty() {
            reasons.push("no executor instance is connected: tasks wait".to_owned());
        }
        for (id, (_, why)) in &self.failed {
            reasons.push(format!("instance {id} failed: {why}"));
        }
        if self.orphans > 0 {
            reasons.push(format!(
                "{} running attempts wait for their agents to re-attach after a restart",
                self.orphans
            ));
        }
        Readiness {
            status: if reasons.is_empty() {
                ReadyState::Ready
            } else {
                ReadyState::Degraded
            },
            reasons,
        }
    }

    /// The queue by required capabilities, with the oldest waiting of each.
    pub(super) fn queue_views(&self) -> Vec<QueueView> {
        self.queue
            .by_caps()
            .into_iter()
            .map(|(caps, (depth, fronts))| QueueView {
                capabilities: caps.clone(),
                depth,
                oldest_ms: fronts
                    .iter()
                    .filter_map(|t| self.tasks.get(*t).map(|l| l.row.created_ms))
                    .min(),
            })
            .collect()
    }

    pub(super) fn instance_views(&self) -> Vec<InstanceView> {
        let mut views: Vec<InstanceView> = self
            .instances
            .iter()
            .map(|(id, i)| InstanceView {
                id: id.clone(),
                capabilities: i.caps.iter().cloned().collect(),
                slots: i.slots,
                running: i
                    .running
                    .iter()
                    .filter_map(|k| self.attempts.get(k).map(|a| a.task.clone()))
                    .collect(),
                pid: i.pid,
                connected_at: rfc3339_ms(i.connected_ms),
                state: self.instance_state(id, i),
                reason: None,
            })
            .chain(
                self.failed
                    .iter()
                    .filter(|(id, _)| !self.instances.contains_key(*id))
                    .map(|(_, (view, _))| view.clone()),
            )
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }

    /// A local instance will not be restarted again: it stays listed as `failed`, as it
    /// was last seen, and readiness says so, until it connects again.
    pub(super) fn instance_failed(&mut self, instance: InstanceId, reason: String) {
        let view = self.last_seen.remove(&instance).unwrap_or(InstanceView {
            id: instance.clone(),
            capabilities: Vec::new(),
            slots: 1,
            running: Vec::new(),
            pid: 0,
            connected_at: rfc3339_ms(now_ms()),
            state: "failed",
            reason: None,
        });
        let view = InstanceView {
            state: "failed",
            running: Vec::new(),
            reason: Some(reason.clone()),
            ..view
        };
        self.failed.insert(instance, (view, reason));
    }
}
