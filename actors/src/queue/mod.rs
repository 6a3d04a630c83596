//! Queue: the tasks waiting for an instance, indexed by the capabilities they require.
//!
//! Tasks with the same required set and the same fair-share group share one FIFO lane; an
//! instance takes, among the lanes its capabilities cover, the head of the lane whose
//! group is furthest below its share (all groups are equal without fair sharing), the
//! oldest head first among equals. The number of distinct capability sets is small,
//! so a pick costs a scan of lanes, not of tasks. Owned by the dispatcher (no locking); the
//! store is the durable copy, rebuilt into a queue at start.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::domain::{Capability, TaskId};

/// A required capability set, sorted and deduplicated.
pub type CapSet = Vec<Capability>;

/// Normalises a list of capabilities into a [`CapSet`].
pub fn cap_set(caps: &[Capability]) -> CapSet {
    caps.iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Why a task requiring `caps` waits when no connected instance offers them.
pub fn unsatisfiable_reason(caps: &CapSet) -> String {
    if caps.is_empty() {
        return "waiting: no instance is connected".to_owned();
    }
    let names: Vec<&str> = caps.iter().map(|c| c.as_str()).collect();
    format!(
        "waiting: no connected instance offers all of [{}]",
        names.join(", ")
    )
}

/// A lane: tasks that wait together, in order. Tasks share one when they require the
/// same capabilities, belong to the same fair-share group ("" for none) and the same
/// fanned-out task (its shards must run on distinct instances), and have the same priority.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lane {
    pub caps: CapSet,
    pub group: String,
    pub family: Option<TaskId>,
    pub priority: i32,
}

impl Lane {
    /// A lane of plain tasks: no family, priority 0.
    pub fn of(caps: CapSet, group: &str) -> Self {
        Self {
            caps,
            group: group.to_owned(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Default)]
pub struct Queue {
    lanes: BTreeMap<Lane, VecDeque<(u64, TaskId)>>,
    next_seq: u64,
    len: usize,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a task; returns its place in line, to requeue it there later.
    pub fn push(&mut self, task: TaskId, lane: &Lane) -> u64 {
        let seq = self.reserve();
        self.lanes
            .entry(lane.clone())
            .or_default()
            .push_back((seq, task));
        self.len += 1;
        seq
    }

    /// A place in line for a task that is not queued now (one recovered running), to
    /// requeue it there should its attempt be lost.
    pub fn reserve(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Puts a task back at its original place in line (a lost attempt keeps its turn).
    pub fn requeue(&mut self, task: TaskId, lane: &Lane, seq: u64) {
        let lane = self.lanes.entry(lane.clone()).or_default();
        let at = lane.partition_point(|(s, _)| *s < seq);
        lane.insert(at, (seq, task));
        self.len += 1;
    }

    /// Takes the oldest task that an instance offering `offered` can run.
    pub fn pop_for(&mut self, offered: &BTreeSet<Capability>) -> Option<(TaskId, u64)> {
        self.pop_for_where(offered, |_| true, |_| 0)
    }

    /// [`pop_for`](Self::pop_for), among the lanes `allowed` lets run now, preferring
    /// the group with the lowest `usage` (a share's fill, scaled to an integer), then
    /// the highest priority, then the oldest.
    pub fn pop_for_where(
        &mut self,
        offered: &BTreeSet<Capability>,
        allowed: impl Fn(&Lane) -> bool,
        usage: impl Fn(&str) -> u64,
    ) -> Option<(TaskId, u64)> {
        let key = self
            .lanes
            .iter()
            .filter(|(lane, tasks)| {
                !tasks.is_empty() && lane.caps.iter().all(|c| offered.contains(c)) && allowed(lane)
            })
            .min_by_key(|(lane, tasks)| {
                (
                    usage(&lane.group),
                    std::cmp::Reverse(lane.priority),
                    tasks.front().map(|(s, _)| *s),
                )
            })
            .map(|(key, _)| key.clone())?;
        let lane = self.lanes.get_mut(&key)?;
        let (seq, task) = lane.pop_front()?;
        if lane.is_empty() {
            self.lanes.remove(&key);
        }
        self.len -= 1;
        Some((task, seq))
    }

    /// Removes a queued task (cancel); false if it was not queued.
    pub fn remove(&mut self, task: &TaskId, lane: &Lane) -> bool {
        let Some(tasks) = self.lanes.get_mut(lane) else {
            return false;
        };
        let Some(at) = tasks.iter().position(|(_, t)| t == task) else {
            return false;
        };
        tasks.remove(at);
        if tasks.is_empty() {
            self.lanes.remove(lane);
        }
        self.len -= 1;
        true
    }

    /// The required sets no instance offering any of `offers` could ever run.
    pub fn unsatisfiable<'a>(
        &'a self,
        offers: &'a [BTreeSet<Capability>],
    ) -> impl Iterator<Item = &'a CapSet> + 'a {
        let mut sets: Vec<&'a CapSet> = self.lanes.keys().map(|l| &l.caps).collect();
        sets.dedup();
        sets.into_iter()
            .filter(move |caps| !offers.iter().any(|o| caps.iter().all(|c| o.contains(c))))
    }

    /// True if a task of `group` is queued.
    pub fn has_group(&self, group: &str) -> bool {
        self.lanes.keys().any(|l| l.group == group)
    }

    /// The groups with queued tasks (one entry per lane).
    pub fn groups(&self) -> impl Iterator<Item = &str> + '_ {
        self.lanes.keys().map(|l| l.group.as_str())
    }

    /// Per required capability set: how many tasks wait, and the first in line of each
    /// of its lanes (the oldest waiting is among them).
    pub fn by_caps(&self) -> BTreeMap<&CapSet, (usize, Vec<&TaskId>)> {
        let mut out: BTreeMap<&CapSet, (usize, Vec<&TaskId>)> = BTreeMap::new();
        for (lane, tasks) in &self.lanes {
            let entry = out.entry(&lane.caps).or_default();
            entry.0 += tasks.len();
            entry.1.extend(tasks.front().map(|(_, t)| t));
        }
        out
    }

    /// The queued tasks of one capability set.
    pub fn tasks_in<'a>(&'a self, caps: &CapSet) -> impl Iterator<Item = &'a TaskId> + 'a {
        let caps = caps.clone();
        self.lanes
            .iter()
            .filter(move |(l, _)| l.caps == caps)
            .flat_map(|(_, l)| l.iter().map(|(_, t)| t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &str) -> CapSet {
        cap_set(&Capability::parse_list(list).unwrap())
    }

    fn offer(list: &str) -> BTreeSet<Capability> {
        caps(list).into_iter().collect()
    }

    fn t(s: &str) -> TaskId {
        TaskId::parse(s).unwrap()
    }

    fn lane(list: &str, group: &str) -> Lane {
        Lane::of(caps(list), group)
    }

    #[test]
    fn an_instance_takes_the_oldest_task_it_can_run() {
        let mut q = Queue::default();
        q.push(t("gpu-1"), &lane("gpu", ""));
        q.push(t("plain-1"), &lane("", ""));
        q.push(t("both-1"), &lane("gpu,sandbox", ""));
        q.push(t("plain-2"), &lane("", ""));
        let cpu = offer("sandbox");
        assert_eq!(q.pop_for(&cpu).map(|x| x.0), Some(t("plain-1")));
        assert_eq!(q.pop_for(&cpu).map(|x| x.0), Some(t("plain-2")));
        assert_eq!(q.pop_for(&cpu), None);
        let gpu = offer("gpu,sandbox");
        assert_eq!(q.pop_for(&gpu).map(|x| x.0), Some(t("gpu-1")));
        assert_eq!(q.pop_for(&gpu).map(|x| x.0), Some(t("both-1")));
        assert!(q.is_empty());
    }

    #[test]
    fn a_requeued_task_keeps_its_turn_and_cancel_removes() {
        let mut q = Queue::default();
        let s1 = q.push(t("a"), &lane("", ""));
        q.push(t("b"), &lane("", ""));
        let any = offer("");
        assert_eq!(q.pop_for(&any), Some((t("a"), s1)));
        q.requeue(t("a"), &lane("", ""), s1);
        assert_eq!(q.pop_for(&any).map(|x| x.0), Some(t("a")));
        assert!(q.remove(&t("b"), &lane("", "")));
        assert!(!q.remove(&t("b"), &lane("", "")));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn the_group_furthest_below_its_share_goes_first_then_the_oldest() {
        let mut q = Queue::default();
        q.push(t("a-1"), &lane("", "alpha"));
        q.push(t("a-2"), &lane("", "alpha"));
        q.push(t("b-1"), &lane("", "beta"));
        let any = offer("");
        // beta uses less of its share: its head goes first though it is younger.
        let usage = |g: &str| if g == "alpha" { 500 } else { 100 };
        let first = q.pop_for_where(&any, |_| true, usage).map(|x| x.0);
        assert_eq!(first, Some(t("b-1")));
        let next = q.pop_for_where(&any, |_| true, usage).map(|x| x.0);
        assert_eq!(next, Some(t("a-1")));
        assert!(q.remove(&t("a-2"), &lane("", "alpha")));
        assert!(q.is_empty());
    }

    #[test]
    fn unsatisfiable_sets_are_those_no_offer_covers() {
        let mut q = Queue::default();
        q.push(t("a"), &lane("gpu", ""));
        q.push(t("b"), &lane("os:linux", ""));
        let offers = vec![offer("os:linux,local")];
        let bad: Vec<_> = q.unsatisfiable(&offers).cloned().collect();
        assert_eq!(bad, vec![caps("gpu")]);
    }

    #[test]
    fn higher_priority_goes_first_and_a_family_is_held_back_as_one() {
        let mut q = Queue::default();
        q.push(t("old"), &lane("", ""));
        let urgent = Lane {
            priority: 5,
            ..lane("", "")
        };
        q.push(t("urgent"), &urgent);
        let shards = Lane {
            family: Some(t("fan")),
            ..lane("", "")
        };
        q.push(t("fan.s0"), &shards);
        let any = offer("");
        assert_eq!(q.pop_for(&any).map(|x| x.0), Some(t("urgent")));
        // The family's lane is not allowed here (a sibling runs on this instance).
        let not_fan = |l: &Lane| l.family.is_none();
        let next = q.pop_for_where(&any, not_fan, |_| 0).map(|x| x.0);
        assert_eq!(next, Some(t("old")));
        assert_eq!(q.pop_for_where(&any, not_fan, |_| 0), None);
        assert_eq!(q.pop_for(&any).map(|x| x.0), Some(t("fan.s0")));
    }
}
