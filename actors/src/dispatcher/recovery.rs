//! Recovery: rebuilding the queue from the store at start, attempts waiting for their
//! agent to re-attach, leases that run out, and what a lost attempt does to its task.

use super::outcome::{back_in_line, lost};
use super::*;
use crate::events::{AttemptLost, Event, LossKind, TaskRequeued};
use crate::exec_handle::Lost;

impl Dispatcher {
    /// Rebuilds the queue from the store after a start. Local agents outlive a crash of
    /// the server, so each attempt that was running waits up to the re-attach grace for
    /// its agent to offer it back; one that is not re-attached by then is lost, and its
    /// task is queued again (or fails if out of attempts). Queued tasks queue again.
    pub(crate) async fn recover(&mut self) -> Result<usize, StoreError> {
        let now = now_ms();
        let open: HashMap<TaskId, crate::store::OpenAttempt> = self
            .store
            .open_attempts()
            .await?
            .into_iter()
            .map(|a| (a.task.clone(), a))
            .collect();
        self.next_key = self.store.max_attempt_key().await? + 1;
        self.store.close_open_sessions().await?;
        for (instance, control) in self.store.instance_controls().await? {
            self.cordoned.insert(instance, control == "drain");
        }
        self.record_lost_output().await?;
        self.seal_finished().await?;
        let live = self.store.live_tasks().await?;
        let count = live.len();
        // Fanned-out tasks first: their shards, recovered below, report to them.
        let (parents, live): (Vec<TaskRow>, Vec<TaskRow>) = live.into_iter().partition(|row| {
            row.parent.is_none()
                && RunRequest::from_stored(&row.request).is_ok_and(|r| r.fan_mode().is_some())
        });
        for row in parents {
            let shards = self.store.shards_of(&row.id).await?;
            self.recover_family(row, &shards);
        }
        let deadline = now + self.fleet.reattach_grace_ms as i64;
        let mut awaited = HashSet::new();
        let mut rest = Vec::with_capacity(live.len());
        for row in live {
            let orphan = open
                .get(&row.id)
                .filter(|a| row.state == TaskState::Running && a.attempt_no == row.attempts);
            let request = orphan.and_then(|_| RunRequest::from_stored(&row.request).ok());
            // An unreadable row fails below, with its attempt lost, like any other.
            if let (Some(a), Some(request)) = (orphan, request) {
                self.log.create_handle(&row.handle);
                tracing::info!(task = %row.id, attempt = a.key, instance = %a.instance, grace_ms = self.fleet.reattach_grace_ms, "waiting for the agent to re-attach a running attempt");
                awaited.insert(a.key);
                self.manifests.touch(&row.id);
                self.attempts.insert(
                    a.key,
                    LiveAttempt {
                        task: row.id.clone(),
                        instance: a.instance.clone(),
                        lease_until_ms: deadline,
                        lease_ms: lease_ms(&request, &self.fleet),
                        orphan: true,
                        dispatched_ms: now,
                        spawned_ms: Some(now),
                        ahead: false,
                    },
                );
                self.orphans += 1;
                let lane = self.lane(&row, &request);
                // It runs: it holds its share and its limited capabilities.
                self.hold(&lane.caps, &lane.group);
                let seq = self.queue.reserve();
                let mut live = Self::live(row, request, lane, seq);
                live.attempt = Some(a.key);
                self.tasks.insert(live.row.id.clone(), live);
            } else {
                rest.push(row);
            }
        }
        // Every other open attempt belongs to no live task any more.
        for a in open.values().filter(|a| !awaited.contains(&a.key)) {
            let end = lost("the orchestrator restarted and its task is no longer live".into());
            self.store.end_attempt(a.key, &end, now).await?;
        }
        for mut row in rest {
            self.log.create_handle(&row.handle);
            let request = RunRequest::from_stored(&row.request)
                .map_err(|e| format!("stored request unreadable: {e}"))
                .and_then(|r| match r.open_secrets(&self.sealer) {
                    Ok(()) => Ok(r),
                    Err(e) => Err(format!("its secret env values do not open: {e}")),
                });
            let request = match request {
                Ok(r) => r,
                Err(reason) => {
                    tracing::error!(task = %row.id, reason = %reason, "task failed at recovery");
                    self.finish(
                        &mut row,
                        End::because(TaskState::Failed, reason),
                        None,
                        None,
                    );
                    continue;
                }
            };
            if row.state == TaskState::Running && row.attempts >= row.max_attempts {
                let reason = format!(
                    "attempt {} lost when the orchestrator restarted; no attempts left",
                    row.attempts
                );
                self.finish(
                    &mut row,
                    End::because(TaskState::Failed, reason),
                    None,
                    None,
                );
                continue;
            }
            if row.state == TaskState::Running {
                let update = queued(format!(
                    "attempt {} lost when the orchestrator restarted; requeued",
                    row.attempts
                ));
                self.store.update_task(&row.id, &update, now).await?;
                row.state = TaskState::Queued;
                row.reason = update.reason;
            }
            self.manifests.touch(&row.id);
            self.enqueue(row, request);
        }
        self.settle_families();
        Ok(count)
    }

    /// Writes what damage to the frame log cost into the recovery record of each task
    /// concerned (once: the same damage is found again at every start).
    async fn record_lost_output(&mut self) -> Result<(), StoreError> {
        for lost in self.log.damage() {
            record_output_lost(&self.store, &self.manifests, lost).await?;
        }
        Ok(())
    }

    /// Appends the status frame of every finished task whose handle lacks one, and
    /// rewrites every manifest older than its task: a crash between committing a final
    /// state and sealing its handle (or writing its manifest) must not leave observers
    /// waiting forever, nor evidence behind the store.
    pub(super) async fn seal_finished(&mut self) -> Result<(), StoreError> {
        for row in self.store.finished_tasks().await? {
            self.manifests.touch_if_stale(&row);
            let index = self.log.create_handle(&row.handle);
            if index.watermark().sealed {
                continue;
            }
            tracing::warn!(task = %row.id, "finished task's handle was not sealed; sealing it");
            let seal = status_frame(
                &row,
                FinalStatus {
                    end: row.end(),
                    attempts: row.attempts,
                },
            );
            if let Err(e) = self.log.append(seal).await {
                tracing::error!(task = %row.id, error = %e, "could not seal a handle");
            }
        }
        Ok(())
    }

    /// Attempts whose lease ran out are lost (and fenced on their agent, should it still
    /// run them); recovered attempts whose agent did not come back within the grace too.
    pub(super) fn expire_leases(&mut self) {
        let now = now_ms();
        let expired: Vec<(AttemptKey, bool)> = self
            .attempts
            .iter()
            .filter(|(_, a)| a.lease_until_ms < now)
            .map(|(k, a)| (*k, a.orphan))
            .collect();
        for (key, orphan) in expired {
            let Some(a) = self.attempts.get(&key) else {
                continue;
            };
            let instance = a.instance.clone();
            let detail = if orphan {
                self.orphans -= 1;
                format!(
                    "not re-attached by instance {instance} within {} ms of the restart",
                    self.fleet.reattach_grace_ms
                )
            } else {
                format!(
                    "lease expired: instance {instance} did not report it for {} ms",
                    a.lease_ms
                )
            };
            let task = a.task.clone();
            if let Some(inst) = self.instances.get_mut(&instance) {
                inst.running.remove(&key);
                let attempt_no = self.tasks.get(&task).map_or(0, |t| t.row.attempts);
                let mark = checkpoint(
                    &task,
                    CheckpointAction::Fence,
                    detail.clone(),
                    Some(instance.clone()),
                    None,
                    attempt_no,
                    key,
                );
                self.writer.send(vec![mark], Then::default());
                let msg = ServerMsg::Fence {
                    attempts: vec![key],
                    reason: detail.clone(),
                };
                send_in_order(&self.writer, &inst.session, msg);
            }
            let loss = if orphan { Loss::Restart } else { Loss::Fenced };
            self.lose_as(key, detail, loss);
        }
        self.forget_recovered_seqs();
    }

    /// Once no recovered attempt waits any more, the log's recovered seqs are not needed.
    pub(super) fn forget_recovered_seqs(&mut self) {
        if self.orphans == 0 {
            self.log.forget_recovered();
        }
    }

    /// One attempt is lost (`detail` says why): its task is requeued at its old place in
    /// line, or fails once it has used all its attempts, or ends cancelled if a cancel
    /// was asked for meanwhile, or stops as poisoned once it was lost on `poison-after`
    /// instances in a row.
    pub(super) fn lose(&mut self, attempt: AttemptKey, detail: String) {
        self.lose_as(attempt, detail, Loss::Instance)
    }

    pub(super) fn lose_as(&mut self, attempt: AttemptKey, detail: String, loss: Loss) {
        let Some(a) = self.attempts.remove(&attempt) else {
            return;
        };
        AttemptLost {
            attempt,
            instance: &a.instance,
            kind: match loss {
                Loss::Fenced => LossKind::Fenced,
                Loss::Instance | Loss::Restart => LossKind::Lost,
            },
            reason: &detail,
        }
        .emit();
        if let Some(inst) = self.instances.get_mut(&a.instance) {
            inst.running.remove(&attempt);
        }
        let Some(mut live) = self.tasks.remove(&a.task) else {
            return;
        };
        self.release(&live.lane.caps, &live.lane.group);
        self.cool_down(&a.instance);
        live.attempt = None;
        // An attempt sent ahead that still waited on its agent for a slot took nothing down.
        let ran = !a.ahead || a.spawned_ms.is_some();
        if ran && loss != Loss::Restart && !live.lost_on.contains(&a.instance) {
            live.lost_on.push(a.instance.clone());
        }
        let mut end = lost(detail.clone());
        if loss == Loss::Fenced {
            end.state = AttemptState::Fenced;
        }
        let n = live.row.attempts;
        let poison_after = live
            .request
            .poison_after()
            .unwrap_or(self.fleet.poison_after) as usize;
        if let Some(why) = live.cancelled.clone() {
            let ended = End::because(
                TaskState::Cancelled,
                format!("{why}; attempt {n} lost: {detail}"),
            );
            self.finish(&mut live.row, ended, Some((attempt, end)), None);
        } else if live.lost_on.len() >= poison_after {
            let on: Vec<&str> = live.lost_on.iter().map(|i| i.as_str()).collect();
            let reason = format!(
                "poisoned: its attempts were lost on {} instances in a row ({}), the last one: {detail}; not retried, so it takes down no more",
                on.len(),
                on.join(", ")
            );
            let mark = checkpoint(
                &live.row.id,
                CheckpointAction::Poison,
                reason.clone(),
                Some(a.instance.clone()),
                None,
                n,
                attempt,
            );
            self.writer.send(vec![mark], Then::default());
            tracing::error!(task = %live.row.id, instances = ?on, "task poisoned");
            let ended = End::because(TaskState::Poisoned, reason);
            self.finish(&mut live.row, ended, Some((attempt, end)), None);
        } else if n >= live.row.max_attempts || !live.request.retries(RetryOn::Lost) {
            let reason = if n >= live.row.max_attempts {
                format!(
                    "attempt {n} lost ({detail}); no attempts left (max {})",
                    live.row.max_attempts
                )
            } else {
                format!(
                    "attempt {n} lost ({detail}); recovery.retryOn does not retry lost attempts"
                )
            };
            let ended = End::because(TaskState::Failed, reason);
            self.finish(&mut live.row, ended, Some((attempt, end)), None);
        } else {
            let waiting = format!("attempt {n} lost ({detail}); requeued");
            let from = a.instance.clone();
            let action = CheckpointAction::Requeue;
            self.writer.send(
                back_in_line(&live.row, (attempt, end), action, &detail, from, waiting),
                Then {
                    touch: Some(live.row.id.clone()),
                    ..Then::default()
                },
            );
            TaskRequeued {
                task: &live.row.id,
                attempt: n,
                reason: &detail,
            }
            .emit();
            live.lost_ms = Some(now_ms());
            live.row.state = TaskState::Queued;
            live.moved_from = Some((a.instance.clone(), format!("attempt {n} lost: {detail}")));
            self.queue
                .requeue(live.row.id.clone(), &live.lane, live.seq);
            self.tasks.insert(live.row.id.clone(), live);
        }
    }
}

/// How an attempt was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loss {
    /// Its instance disconnected (it died or dropped its connection).
    Instance,
    /// Its lease ran out while its instance was still connected: fenced there.
    Fenced,
    /// The orchestrator restarted and no agent took it back: not the instance's doing,
    /// so it does not count towards poison.
    Restart,
}

/// Records frames of a task's output lost to damage in the frame log, in its recovery
/// record and manifest; the same loss found again (at each start) is recorded once.
pub(crate) async fn record_output_lost(
    store: &Store,
    manifests: &ManifestWriter,
    lost: &Lost,
) -> Result<(), StoreError> {
    let Some(row) = store.task_by_handle(&lost.handle).await? else {
        return Ok(());
    };
    let reason = format!(
        "output frames {}..{} lost: the frame log's record at position {} failed its checksum",
        lost.first, lost.last, lost.pos
    );
    let known = store.checkpoints_of(&row.id).await?;
    if known.iter().any(|c| c.reason == reason) {
        return Ok(());
    }
    let checkpoint = Checkpoint {
        ts_ms: now_ms(),
        action: CheckpointAction::OutputLost,
        reason,
        from_instance: None,
        to_instance: None,
        attempt_no: row.attempts,
        epoch: 0,
    };
    store.insert_checkpoint(&row.id, &checkpoint).await?;
    tracing::warn!(task = %row.id, reason = %checkpoint.reason, "output loss recorded in the task's recovery record");
    manifests.touch(&row.id);
    Ok(())
}
