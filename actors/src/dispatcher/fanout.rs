//! Fan-out: a task whose `schedule.strategy` is `fan-out` or `first-wins` runs as K
//! shards. Each shard is a task of its own (its own handle, attempts, leases, manifest),
//! naming its parent and index; the edge stores parent and shards in one transaction.
//! Shards of one task wait in one lane, which an instance already running a sibling
//! may not take from, so they run on distinct instances. The parent never runs: its
//! state is derived from its shards'.
//!
//! * `fan-out`: all must succeed. The first shard to end otherwise decides: the rest are
//!   cancelled, and the parent ends as that shard did.
//! * `first-wins`: the first shard to succeed wins, the rest are cancelled, and the
//!   parent succeeds; if none succeeds, it ends as the first to end did.
//!
//! The parent is final only once every shard is, so its sealed status is the last word.

use super::*;

/// A fanned-out task whose shards are not all final.
pub(super) struct Family {
    row: TaskRow,
    mode: FanMode,
    /// Shard ids, by index.
    shards: Vec<TaskId>,
    /// How the ended shards ended, in the order they did: index, state, reason.
    ends: Vec<(u32, TaskState, Option<String>)>,
    /// The outcome is decided and the remaining shards were told to stop.
    decided: bool,
}

impl Dispatcher {
    /// A fanned-out task the edge has just committed, with its shards.
    pub(super) fn fan_out(
        &mut self,
        row: TaskRow,
        request: RunRequest,
        shards: Vec<(TaskRow, RunRequest)>,
    ) {
        let Some(mode) = request.fan_mode() else {
            return self.enqueue_new(row, request);
        };
        let why = format!(
            "{}: waiting for its {} shards, each on its own instance",
            mode.as_str(),
            shards.len()
        );
        self.writer.send(
            vec![Write::UpdateTask {
                task: row.id.clone(),
                update: queued(why),
                now_ms: now_ms(),
            }],
            Then {
                touch: Some(row.id.clone()),
                ..Then::default()
            },
        );
        self.families.insert(
            row.id.clone(),
            Family {
                row,
                mode,
                shards: shards.iter().map(|(r, _)| r.id.clone()).collect(),
                ends: Vec::new(),
                decided: false,
            },
        );
        for (shard, request) in shards {
            self.enqueue_new(shard, request);
        }
    }

    /// A fanned-out task found live at start, with its shards as stored.
    pub(super) fn recover_family(&mut self, row: TaskRow, shards: &[TaskRow]) {
        let Some(mode) = RunRequest::from_stored(&row.request)
            .ok()
            .and_then(|r| r.fan_mode())
        else {
            return;
        };
        let mut ended: Vec<&TaskRow> = shards.iter().filter(|s| s.state.is_final()).collect();
        ended.sort_by_key(|s| s.finished_ms);
        let ends = ended
            .into_iter()
            .map(|s| (s.shard.unwrap_or(0), s.state, s.reason.clone()))
            .collect();
        self.families.insert(
            row.id.clone(),
            Family {
                row,
                mode,
                shards: shards.iter().map(|s| s.id.clone()).collect(),
                ends,
                decided: false,
            },
        );
    }

    /// After recovery: decides what the shards that ended while the server was down
    /// decided, and ends the tasks whose shards all ended.
    pub(super) fn settle_families(&mut self) {
        let parents: Vec<TaskId> = self.families.keys().cloned().collect();
        for parent in parents {
            self.settle(&parent);
        }
    }

    /// A shard of `parent` starts: the parent runs from its first shard's start.
    pub(super) fn shard_started(&mut self, parent: &TaskId, writes: &mut Vec<Write>) {
        let Some(f) = self.families.get_mut(parent) else {
            return;
        };
        if f.row.state == TaskState::Queued {
            f.row.state = TaskState::Running;
            writes.push(Write::UpdateTask {
                task: parent.clone(),
                update: End {
                    state: TaskState::Running,
                    exit_code: None,
                    signal: None,
                    reason: None,
                },
                now_ms: now_ms(),
            });
        }
    }

    /// Shard `index` of `parent` reached its final state.
    pub(super) fn shard_ended(
        &mut self,
        parent: &TaskId,
        index: u32,
        state: TaskState,
        reason: Option<String>,
    ) {
        if let Some(f) = self.families.get_mut(parent) {
            f.ends.push((index, state, reason));
            self.settle(parent);
        }
    }

    /// Cancels every live shard of `parent`; it ends once they have.
    pub(super) fn cancel_family(&mut self, parent: &TaskId, why: &str) {
        let Some(f) = self.families.get_mut(parent) else {
            return;
        };
        f.decided = true;
        let shards = f.shards.clone();
        for shard in shards {
            self.cancel_live(&shard, why.to_owned(), None);
        }
    }

    /// Acts on what the ended shards decided: stops the rest once the outcome is known,
    /// and ends the parent once every shard has ended.
    fn settle(&mut self, parent: &TaskId) {
        let Some(f) = self.families.get_mut(parent) else {
            return;
        };
        if !f.decided {
            let decisive = match f.mode {
                FanMode::All => f.ends.iter().find(|e| e.1 != TaskState::Succeeded),
                FanMode::FirstWins => f.ends.iter().find(|e| e.1 == TaskState::Succeeded),
            };
            if let Some((index, state, _)) = decisive {
                let why = match f.mode {
                    FanMode::All => format!("cancelled: shard {index} of the fan-out {state}"),
                    FanMode::FirstWins => format!("cancelled: shard {index} won the race"),
                };
                tracing::info!(task = %parent, shard = index, state = %state, "fan-out decided; stopping the other shards");
                self.cancel_family(parent, &why);
            }
        }
        let Some(f) = self.families.get(parent) else {
            return;
        };
        if f.ends.len() < f.shards.len() {
            return;
        }
        let Some(mut f) = self.families.remove(parent) else {
            return;
        };
        let n = f.shards.len();
        let first = |pred: &dyn Fn(TaskState) -> bool| {
            f.ends
                .iter()
                .find(|e| pred(e.1))
                .map(|(i, st, why)| (*i, *st, why.clone().unwrap_or_default()))
        };
        let (state, reason) = match f.mode {
            FanMode::All => match first(&|st| st != TaskState::Succeeded) {
                None => (TaskState::Succeeded, format!("all {n} shards succeeded")),
                Some((i, st, why)) => (st, format!("shard {i} {st}: {why}")),
            },
            FanMode::FirstWins => match first(&|st| st == TaskState::Succeeded) {
                Some((i, ..)) => (
                    TaskState::Succeeded,
                    format!("shard {i} won; the other {} were stopped or ended", n - 1),
                ),
                None => {
                    let (i, st, why) =
                        first(&|_| true).unwrap_or((0, TaskState::Failed, String::new()));
                    let st = if st == TaskState::Succeeded {
                        TaskState::Failed
                    } else {
                        st
                    };
                    (
                        st,
                        format!("none of the {n} replicas succeeded; shard {i} {st}: {why}"),
                    )
                }
            },
        };
        tracing::info!(task = %parent, state = %state, "fanned-out task ended");
        self.finish(&mut f.row, End::because(state, reason), None, None);
    }
}

/// True if a shard of `parent` runs on `instance`.
pub(super) fn runs_on(
    families: &HashMap<TaskId, Family>,
    tasks: &HashMap<TaskId, LiveTask>,
    attempts: &HashMap<AttemptKey, LiveAttempt>,
    parent: &TaskId,
    instance: &InstanceId,
) -> bool {
    families.get(parent).is_some_and(|f| {
        f.shards.iter().any(|s| {
            tasks
                .get(s)
                .and_then(|t| t.attempt)
                .and_then(|k| attempts.get(&k))
                .is_some_and(|a| &a.instance == instance)
        })
    })
}
