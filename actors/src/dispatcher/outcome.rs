//! How attempts and tasks end: the agent's outcome mapped to the attempt's and the task's
//! state, the guard's stop, and the final record that seals the handle once committed.

use super::*;

impl Dispatcher {
    /// The guard blocked an attempt's output: the agent kills it, and the task fails
    /// with the guard's reason rather than as cancelled. No retry: it would print the same.
    /// Stops a running attempt (the guard blocked its output, or it wrote past its output
    /// cap): its task fails with `reason`.
    pub(super) fn stop_attempt(&mut self, attempt: AttemptKey, reason: String) {
        let Some(a) = self.attempts.get(&attempt) else {
            return;
        };
        let Some(live) = self.tasks.get_mut(&a.task) else {
            return;
        };
        tracing::warn!(task = %a.task, attempt, reason = %reason, "stopping a task");
        live.cancelled.get_or_insert_with(|| reason.clone());
        live.failure.get_or_insert(reason);
        if let Some(inst) = self.instances.get(&a.instance) {
            send_in_order(&self.writer, &inst.session, ServerMsg::Cancel { attempt });
        }
    }

    pub(super) fn exited(&mut self, instance: &InstanceId, attempt: AttemptKey, outcome: Outcome) {
        let Some(session) = self.instances.get(instance).map(|i| i.session.clone()) else {
            return;
        };
        // The agent keeps an outcome until it hears the server recorded it (or that the
        // attempt is not its own): a crash before the commit must not lose it.
        let done = move || {
            let _ = session.send(ServerMsg::Done { attempt });
        };
        if self.attempts.get(&attempt).map(|a| &a.instance) != Some(instance) {
            AttemptLost {
                attempt,
                instance,
                kind: LossKind::Fenced,
                reason: "exit reported by an instance that does not run it; ignored",
            }
            .emit();
            send_in_order(
                &self.writer,
                &self.instances[instance].session,
                ServerMsg::Done { attempt },
            );
            return;
        }
        let Some(a) = self.attempts.remove(&attempt) else {
            return;
        };
        if let Some(inst) = self.instances.get_mut(instance) {
            inst.running.remove(&attempt);
            if let Some(spawned) = a.spawned_ms {
                let ran = (now_ms() - spawned) as f64;
                inst.recent_run_ms = Some(match inst.recent_run_ms {
                    Some(avg) => 0.8 * avg + 0.2 * ran,
                    None => ran,
                });
            }
        }
        let Some(mut live) = self.tasks.remove(&a.task) else {
            return;
        };
        self.release(&live.lane.caps, &live.lane.group);
        if matches!(outcome, Outcome::Exited { code: Some(0), .. })
            && self.losses.remove(instance).is_some()
        {
            tracing::info!(instance = %instance, "instance succeeded again; its cooldown ends");
        }
        let mut end: AttemptEnd = match outcome {
            // A process that ended on its own before a cancel reached it keeps its outcome:
            // the agent reports `Cancelled` only when it did the killing.
            Outcome::Exited { code, signal } => End {
                state: AttemptState::Exited,
                exit_code: code,
                signal,
                reason: match (code, signal) {
                    (Some(0), _) => None,
                    (_, Some(s)) => Some(format!("killed by signal {s}")),
                    (Some(c), None) => Some(format!("exited with status {c}")),
                    (None, None) => Some("ended without a status".to_owned()),
                },
            },
            Outcome::TimedOut => End::because(
                AttemptState::TimedOut,
                "timeout expired; process group killed",
            ),
            Outcome::Cancelled => End::because(
                AttemptState::Cancelled,
                live.cancelled.as_deref().unwrap_or("cancelled"),
            ),
            Outcome::SpawnFailed { message } => End::because(
                AttemptState::SpawnFailed,
                format!("could not start: {message}"),
            ),
        };
        let mut state = match end.state {
            AttemptState::Exited if end.exit_code == Some(0) && end.signal.is_none() => {
                TaskState::Succeeded
            }
            AttemptState::TimedOut => TaskState::TimedOut,
            AttemptState::Cancelled => TaskState::Cancelled,
            _ => TaskState::Failed,
        };
        if let Some(why) = live.failure.take() {
            state = TaskState::Failed;
            end.reason = Some(why);
        }
        let retry_on = match state {
            TaskState::TimedOut => Some(RetryOn::Timeout),
            TaskState::Failed if end.state == AttemptState::Exited => Some(RetryOn::NonzeroExit),
            _ => None,
        };
        let retried = retry_on.is_some_and(|on| live.request.retries(on))
            && live.cancelled.is_none()
            && live.row.attempts < live.row.max_attempts;
        if retried {
            let why = end.reason.clone().unwrap_or_default();
            self.retry(live, instance, (attempt, end), why, Box::new(done));
            return;
        }
        let task_end = End {
            state,
            exit_code: end.exit_code,
            signal: end.signal,
            reason: end.reason.clone(),
        };
        self.finish(
            &mut live.row,
            task_end,
            Some((attempt, end)),
            Some(Box::new(done)),
        );
    }

    /// Records a task's final state (with the end of its last attempt, in one
    /// transaction); once committed, its status frame seals the handle.
    pub(super) fn finish(
        &mut self,
        row: &mut TaskRow,
        end: TaskUpdate,
        attempt: Option<(AttemptKey, AttemptEnd)>,
        after: Option<Box<dyn FnOnce() + Send>>,
    ) {
        let now = now_ms();
        let mut writes = Vec::with_capacity(2);
        if let Some((key, end)) = attempt {
            writes.push(Write::EndAttempt {
                key,
                end,
                now_ms: now,
            });
        }
        writes.push(Write::UpdateTask {
            task: row.id.clone(),
            update: end.clone(),
            now_ms: now,
        });
        TaskFinished {
            task: &row.id,
            state: end.state,
            exit_code: end.exit_code,
            total_ms: now - row.created_ms,
        }
        .emit();
        row.state = end.state;
        let (state, reason) = (end.state, end.reason.clone());
        let seal = status_frame(
            row,
            FinalStatus {
                end,
                attempts: row.attempts,
            },
        );
        self.writer.send(
            writes,
            Then {
                seal: Some(seal),
                touch: Some(row.id.clone()),
                after,
            },
        );
        if let (Some(parent), Some(index)) = (row.parent.clone(), row.shard) {
            self.shard_ended(&parent, index, state, reason);
        }
    }

    /// An attempt ended in a way the task's `recovery.retryOn` retries: it queues again
    /// after its backoff (doubled each retry), and says why it waits.
    fn retry(
        &mut self,
        mut live: LiveTask,
        instance: &InstanceId,
        (attempt, end): (AttemptKey, AttemptEnd),
        why: String,
        done: Box<dyn FnOnce() + Send>,
    ) {
        live.retries += 1;
        let wait = live.request.backoff_ms(live.retries);
        let n = live.row.attempts;
        let reason = format!("attempt {n} {why}; retry {} in {wait} ms", live.retries);
        let from = instance.clone();
        let now = now_ms();
        let writes = back_in_line(
            &live.row,
            (attempt, end),
            CheckpointAction::Retry,
            &reason,
            from,
            reason.clone(),
        );
        self.writer.send(
            writes,
            Then {
                touch: Some(live.row.id.clone()),
                after: Some(done),
                ..Then::default()
            },
        );
        live.row.state = TaskState::Queued;
        live.attempt = None;
        live.lost_on.clear();
        live.moved_from = Some((instance.clone(), format!("retry after attempt {n} {why}")));
        self.delayed
            .insert((now + wait as i64, live.row.id.clone()));
        self.tasks.insert(live.row.id.clone(), live);
    }

    /// Tasks whose backoff is over queue again at their old place in line.
    pub(super) fn release_delayed(&mut self) {
        let now = now_ms();
        while let Some((due, task)) = self.delayed.first().cloned() {
            if due > now {
                return;
            }
            self.delayed.pop_first();
            if let Some(live) = self.tasks.get(&task) {
                self.queue.requeue(task.clone(), &live.lane, live.seq);
            }
        }
    }
}

/// The frame that ends a task's handle.
pub(super) fn status_frame(row: &TaskRow, status: FinalStatus) -> Append {
    Append {
        handle: row.handle.clone(),
        attempt: row.attempts,
        kind: StreamKind::Status,
        // unwrap: FinalStatus is plain data and always serialises.
        data: serde_json::to_vec(&status).unwrap(),
        ack: None,
    }
}

/// A queued task's state with the reason it waits.
pub(super) fn queued(reason: String) -> TaskUpdate {
    End::because(TaskState::Queued, reason)
}

/// What sends a task whose attempt ended back to wait: the attempt's end, the checkpoint
/// of what recovery did (`action`, because of `why`, from `instance`), and the task
/// queued with the reason it now waits.
pub(super) fn back_in_line(
    row: &TaskRow,
    (attempt, end): (AttemptKey, AttemptEnd),
    action: CheckpointAction,
    why: &str,
    instance: InstanceId,
    waiting: String,
) -> Vec<Write> {
    let now = now_ms();
    vec![
        Write::EndAttempt {
            key: attempt,
            end,
            now_ms: now,
        },
        checkpoint(
            &row.id,
            action,
            why.to_owned(),
            Some(instance),
            None,
            row.attempts,
            attempt,
        ),
        Write::UpdateTask {
            task: row.id.clone(),
            update: queued(waiting),
            now_ms: now,
        },
    ]
}

/// A lost attempt's end.
pub(super) fn lost(detail: String) -> AttemptEnd {
    End::because(AttemptState::Lost, detail)
}
