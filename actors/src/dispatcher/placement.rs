//! Placement: which free instance is offered work first, and which queued task may run
//! now. Pure functions of the state they are given, with their own table tests; the
//! dispatcher owns the state and acts on the answers.
//!
//! * `least-loaded` (the default): the instance with the lowest share of busy slots
//!   first, so work spreads over the fleet.
//! * `bin-pack`: the busiest instance that still has a free slot first, so work fills
//!   one instance before the next and idle instances stay idle (to be scaled away).
//! * Cooldown: an instance whose attempt was just lost (it died, hung or dropped — a
//!   failure the task did not cause) gets no new work for a while, twice as long after
//!   each further loss (1 s, 2 s, 4 s … up to a minute by default), until one of its
//!   attempts succeeds.
//! * Per-capability limits: at most N attempts at once of tasks that require a
//!   capability (`[scheduler.limits]`), whatever the slots offer.

use std::collections::BTreeMap;

use crate::domain::{Capability, InstanceId};

/// How free instances are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    LeastLoaded,
    BinPack,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "least-loaded" => Some(Policy::LeastLoaded),
            "bin-pack" => Some(Policy::BinPack),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::LeastLoaded => "least-loaded",
            Policy::BinPack => "bin-pack",
        }
    }
}

/// The scheduler's settings (`[scheduler]` in flotilla.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerSettings {
    pub policy: Policy,
    /// Most running attempts of tasks that require each capability.
    pub limits: BTreeMap<Capability, u32>,
    /// The first cooldown after a lost attempt; it doubles with each further loss.
    pub cooldown_ms: u64,
    pub cooldown_max_ms: u64,
    /// Weighted-fair sharing: the task label whose value names a task's group…
    pub fair_label: Option<String>,
    /// … and each group's weight (1 for a group not named). A group's share of the
    /// busy slots follows its weight; every group with waiting work gets slots.
    pub weights: BTreeMap<String, u32>,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            policy: Policy::LeastLoaded,
            limits: BTreeMap::new(),
            cooldown_ms: 1_000,
            cooldown_max_ms: 60_000,
            fair_label: None,
            weights: BTreeMap::new(),
        }
    }
}

impl SchedulerSettings {
    /// A task's fair-share group: its value of the fair label ("" without one).
    pub fn group_of(&self, labels: &BTreeMap<String, String>) -> String {
        self.fair_label
            .as_ref()
            .and_then(|l| labels.get(l))
            .cloned()
            .unwrap_or_default()
    }

    /// What one start costs a group's account: a million over its weight. The group
    /// whose account is lowest is offered the next free slot, so over time each group's
    /// share of the starts follows its weight, and none starves. Without a fair label
    /// every start is free and the oldest task goes first.
    pub fn charge(&self, group: &str) -> u64 {
        if self.fair_label.is_none() {
            return 0;
        }
        let weight = self.weights.get(group).copied().unwrap_or(1).max(1);
        1_000_000 / u64::from(weight)
    }
}

/// One instance as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load<'a> {
    pub id: &'a InstanceId,
    pub running: u32,
    pub slots: u32,
    /// It missed a heartbeat, is cordoned, or cools down after a loss: no new work.
    pub held_back: bool,
}

/// The instances that may take work now, best first.
pub fn rank<'a>(loads: &[Load<'a>], policy: Policy) -> Vec<&'a InstanceId> {
    let mut free: Vec<&Load<'a>> = loads
        .iter()
        .filter(|l| l.running < l.slots && !l.held_back)
        .collect();
    // Busy share as a fraction compared by cross-multiplication; then the id, so the
    // order is stable.
    free.sort_by(|a, b| {
        let share = (u64::from(a.running) * u64::from(b.slots))
            .cmp(&(u64::from(b.running) * u64::from(a.slots)));
        let share = match policy {
            Policy::LeastLoaded => share,
            Policy::BinPack => share.reverse(),
        };
        share.then_with(|| a.id.cmp(b.id))
    });
    free.into_iter().map(|l| l.id).collect()
}

/// How long an instance cools down after its `losses`-th lost attempt in a row.
pub fn cooldown_ms(settings: &SchedulerSettings, losses: u32) -> u64 {
    if losses == 0 {
        return 0;
    }
    let doublings = (losses - 1).min(20);
    (settings.cooldown_ms << doublings).min(settings.cooldown_max_ms)
}

/// The first capability of `caps` whose limit is reached, if any.
pub fn limited<'a>(
    caps: &'a [Capability],
    limits: &BTreeMap<Capability, u32>,
    running: &BTreeMap<Capability, u32>,
) -> Option<&'a Capability> {
    caps.iter().find(|c| {
        limits
            .get(*c)
            .is_some_and(|max| running.get(*c).copied().unwrap_or(0) >= *max)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> InstanceId {
        InstanceId::parse(s).unwrap()
    }

    #[test]
    fn policies_rank_free_instances() {
        let (a, b, c, d) = (id("a"), id("b"), id("c"), id("d"));
        let load = |id, running, slots, held_back| Load {
            id,
            running,
            slots,
            held_back,
        };
        // (instances, least-loaded order, bin-pack order)
        let cases: Vec<(Vec<Load>, Vec<&InstanceId>, Vec<&InstanceId>)> = vec![
            (vec![], vec![], vec![]),
            (
                vec![
                    load(&a, 0, 2, false),
                    load(&b, 1, 2, false),
                    load(&c, 2, 2, false),
                ],
                vec![&a, &b],
                vec![&b, &a],
            ),
            // Shares, not counts: 1 of 4 is less loaded than 1 of 2.
            (
                vec![load(&a, 1, 2, false), load(&b, 1, 4, false)],
                vec![&b, &a],
                vec![&a, &b],
            ),
            // Equal shares go by id.
            (
                vec![load(&b, 0, 1, false), load(&a, 0, 1, false)],
                vec![&a, &b],
                vec![&a, &b],
            ),
            // Held back (quiet, cordoned, cooling) and full instances get nothing.
            (
                vec![
                    load(&a, 0, 2, true),
                    load(&b, 3, 4, false),
                    load(&c, 1, 1, false),
                    load(&d, 0, 8, false),
                ],
                vec![&d, &b],
                vec![&b, &d],
            ),
        ];
        for (loads, least, bin) in cases {
            assert_eq!(rank(&loads, Policy::LeastLoaded), least, "{loads:?}");
            assert_eq!(rank(&loads, Policy::BinPack), bin, "{loads:?}");
        }
    }

    #[test]
    fn shares_follow_the_weights_and_none_starves() {
        let s = SchedulerSettings {
            fair_label: Some("tenant".into()),
            weights: BTreeMap::from([("a".into(), 3), ("b".into(), 1)]),
            ..SchedulerSettings::default()
        };
        // Hand out 500 starts one at a time to the group with the lowest account, as
        // the dispatcher does when all always have work waiting.
        let mut account = BTreeMap::from([("a", 0u64), ("b", 0), ("c", 0)]);
        let mut starts = BTreeMap::from([("a", 0u32), ("b", 0), ("c", 0)]);
        for _ in 0..500 {
            let next = *account.iter().min_by_key(|(g, n)| (**n, **g)).unwrap().0;
            *account.get_mut(next).unwrap() += s.charge(next);
            *starts.get_mut(next).unwrap() += 1;
        }
        // a : b : c = 3 : 1 : 1 (c has no weight, so 1).
        assert_eq!(
            starts.values().copied().collect::<Vec<_>>(),
            [300, 100, 100]
        );
        let labels = BTreeMap::from([("tenant".to_owned(), "a".to_owned())]);
        assert_eq!(s.group_of(&labels), "a");
        assert_eq!(s.group_of(&BTreeMap::new()), "");
        assert_eq!(
            SchedulerSettings::default().charge("a"),
            0,
            "no fair label: no preference"
        );
    }

    #[test]
    fn cooldown_doubles_per_loss_up_to_its_cap() {
        let s = SchedulerSettings::default();
        let got: Vec<u64> = (0..10).map(|n| cooldown_ms(&s, n)).collect();
        assert_eq!(
            got,
            [0, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]
        );
        assert_eq!(cooldown_ms(&s, u32::MAX), 60_000);
    }

    #[test]
    fn a_capability_at_its_limit_holds_its_tasks_back() {
        let cap = |s: &str| Capability::parse(s).unwrap();
        let limits = BTreeMap::from([(cap("gpu"), 2)]);
        let running = |n| BTreeMap::from([(cap("gpu"), n)]);
        let gpu_task = [cap("gpu"), cap("os:linux")];
        let plain = [cap("os:linux")];
        assert_eq!(limited(&gpu_task, &limits, &running(1)), None);
        assert_eq!(limited(&gpu_task, &limits, &running(2)), Some(&cap("gpu")));
        assert_eq!(limited(&plain, &limits, &running(5)), None);
        assert_eq!(limited(&gpu_task, &BTreeMap::new(), &running(9)), None);
    }
}
