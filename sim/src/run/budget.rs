//! A run's budget. A livelock (a node that renews, retries or redirects in a loop) is a bug the
//! harness reports, not one that takes the machine down: each node may record so many events,
//! and each machine's tasks be polled so many times, for the simulated time that has passed
//! (scaled by the fleet a master serves). A run that goes over stops recording there and fails
//! as `runaway`, naming what ran away: the event kinds and nodes most frequent in its last
//! stretch, or the machine that spun without a word (frozen, so the run still ends).
//!
//! The limits are far above what a correct run needs: the busiest shipped scenario needs a
//! seventh of a node's events budget, and a tenth of a percent of its polls.

use crate::history::{Entry, Runaway, Timeline};
use crate::scenario::Scenario;
use fleet_node::machine::{Machine, PollBudget};
use std::collections::BTreeMap;
use std::time::Instant;

/// Events any node may record before its time counts, and more for each agent of the fleet
/// (a master registers them all at once).
const EVENTS_BASE: u64 = 1_000;
const EVENTS_PER_AGENT: u64 = 10;
/// Events each node may add per simulated second.
const EVENTS_PER_SECOND: u64 = 40;
/// Polls of one machine's tasks before its time counts.
const POLLS_BASE: u64 = 200_000;
/// Polls of one machine's tasks per simulated second.
const POLLS_PER_SECOND: u64 = 50_000;
/// How many of the last events the report reads to say what ran away.
const LAST_STRETCH: usize = 2_000;

/// What each node of a run may spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Events a node may record before its time counts.
    base: u64,
}

impl Budget {
    pub fn of(scenario: &Scenario) -> Budget {
        let agents = u64::from(scenario.topology.agents);
        Budget {
            base: EVENTS_BASE + EVENTS_PER_AGENT * agents,
        }
    }

    /// No limit: for a capture outside a run.
    pub fn unlimited() -> Budget {
        Budget { base: u64::MAX }
    }

    /// The events one node may have recorded by `t_ms`.
    pub fn events_by(&self, t_ms: u64) -> u64 {
        let per_second = EVENTS_PER_SECOND.saturating_mul(t_ms / 1000);
        self.base.saturating_add(per_second)
    }

    /// Whether `node` recording its `spent`th event at `t_ms` goes over the budget: what ran
    /// away, then.
    pub(crate) fn check(
        &self,
        t_ms: u64,
        node: &str,
        spent: u64,
        entries: &[Entry],
    ) -> Option<Runaway> {
        let limit = self.events_by(t_ms);
        (spent > limit).then(|| runaway(t_ms, format!("events of {node}"), spent, limit, entries))
    }
}

/// A machine for a node, its tasks' polls limited.
pub(crate) fn machine() -> Machine {
    let machine = Machine::default();
    machine.limit_polls(PollBudget::new(POLLS_BASE, POLLS_PER_SECOND));
    machine
}

/// Records the first machine that went over its poll budget (in the order given), if any did
/// and nothing else had ran away first. `start` is the true time the run began.
pub(crate) fn record_overruns<'a>(
    timeline: &mut Timeline,
    machines: impl IntoIterator<Item = (&'a String, &'a Machine)>,
    start: Instant,
) {
    let overrun = (machines.into_iter())
        .filter_map(|(name, machine)| Some((name, machine.overrun()?)))
        .min_by_key(|(_, overrun)| overrun.at);
    if let Some((name, overrun)) = overrun {
        let t_ms = overrun.at.saturating_duration_since(start).as_millis() as u64;
        let what = format!("polls of {name}'s tasks");
        let found = runaway(t_ms, what, overrun.polls, overrun.limit, &timeline.entries);
        stop(timeline, found);
    }
}

/// The report of a run stopped at `t_ms`: what went over, and what the timeline's last stretch
/// was busy with.
pub(crate) fn runaway(
    t_ms: u64,
    what: String,
    spent: u64,
    limit: u64,
    entries: &[Entry],
) -> Runaway {
    let stretch = &entries[entries.len().saturating_sub(LAST_STRETCH)..];
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for entry in stretch {
        let kind = entry.parts().0;
        *counts.entry((entry.node.clone(), kind)).or_default() += 1;
    }
    let mut hottest: Vec<(String, String, u64)> = (counts.into_iter())
        .map(|((node, kind), count)| (node, kind, count))
        .collect();
    hottest.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    hottest.truncate(3);
    Runaway {
        t_ms,
        what,
        spent,
        limit,
        hottest,
    }
}

/// Marks `timeline` as stopped by `runaway`, unless it already is.
pub(crate) fn stop(timeline: &mut Timeline, runaway: Runaway) {
    timeline.runaway.get_or_insert(runaway);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::attempt;

    #[test]
    fn a_nodes_budget_grows_with_simulated_time_and_the_fleet() {
        let small = Budget { base: EVENTS_BASE };
        assert_eq!(small.events_by(0), EVENTS_BASE);
        assert_eq!(
            small.events_by(10_000),
            EVENTS_BASE + 10 * EVENTS_PER_SECOND
        );
        let scenario = crate::scenario::Scenario::parse(
            "t.toml",
            "name = \"t\"\nduration = \"1m\"\n[topology]\nagents = 100\n",
        )
        .unwrap();
        assert_eq!(Budget::of(&scenario).events_by(0), EVENTS_BASE + 1000);
    }

    #[test]
    fn a_run_over_its_budget_names_what_ran_away() {
        let small = Budget { base: 10 };
        let entries: Vec<Entry> = (0..10).map(|i| attempt(i, 1, 0)).collect();
        assert!(small.check(0, "agent-1", 10, &entries).is_none());
        let runaway = small.check(0, "agent-1", 11, &entries).unwrap();
        assert_eq!(runaway.what, "events of agent-1");
        assert_eq!(
            runaway.hottest,
            [("agent-1".into(), "connect_attempt".into(), 10)]
        );
        let detail = runaway.detail();
        assert!(
            detail.contains("connect_attempt on agent-1 ×10"),
            "{detail}"
        );
    }
}
