//! `failover_within {within, among}`: every time the leader is removed, a new leader is elected
//! within the bound. Its verdict carries every measured time (`value`, in ms) and their
//! distribution, beside an optional `reference` to compare against (a paper's figure).

use crate::history::{fmt_time, FaultEvent};
use crate::judge::{ms, Check, CheckSpec, Evidence};
use crate::scenario::faults::FaultAction;
use crate::scenario::selector::{Selector, Topology};
use fleet_core::fmt_duration as show;
use std::time::Duration;

pub(crate) const FAILOVER_WITHIN: CheckSpec = CheckSpec {
    name: "failover_within",
    fields: &["within", "among", "reference"],
    parse: |fields| {
        let (text, at) = (fields.text("within", r#"a duration like "1s""#)?)
            .ok_or_else(|| fields.missing("within"))?;
        let within =
            crate::scenario::duration::parse_duration(text).map_err(|why| fields.error(at, why))?;
        Ok(Box::new(FailoverWithin {
            within,
            among: fields.among()?,
            reference: fields.note("reference")?,
        }))
    },
};

#[derive(Debug)]
struct FailoverWithin {
    within: Duration,
    among: Selector,
    reference: Option<String>,
}

/// One removal of the leader, and how long the next election took (`None`: none came).
struct Failover {
    at: u64,
    leader: String,
    took: Option<u64>,
}

/// Whether `fault` removes `leader`: ends its process, isolates it, or leaves it in a
/// partition group without a majority of the masters.
fn removes(fault: &FaultEvent, leader: &str, topology: &Topology) -> bool {
    let Some(fired) = fault.fired() else {
        return false;
    };
    match &fired.action {
        FaultAction::Crash(_)
        | FaultAction::Restart(_)
        | FaultAction::Shutdown(_)
        | FaultAction::Isolate(_)
        | FaultAction::Pause(_)
        | FaultAction::PowerFail(_)
        | FaultAction::Stall { from: None, .. } => fired.nodes().iter().any(|node| node == leader),
        FaultAction::Partition { .. } => {
            let masters = topology.masters();
            fired.groups().iter().any(|group| {
                let with = group.iter().filter(|node| masters.contains(node)).count();
                group.iter().any(|node| node == leader) && with * 2 <= masters.len()
            })
        }
        FaultAction::Heal(_)
        | FaultAction::Latency(..)
        | FaultAction::LinkLatency { .. }
        | FaultAction::Loss(_)
        | FaultAction::Hold(_)
        | FaultAction::Release(_)
        | FaultAction::Wipe(_)
        | FaultAction::Stop(_)
        | FaultAction::Revoke(_)
        | FaultAction::Restore(_)
        | FaultAction::Admin(_)
        | FaultAction::Clock { .. }
        | FaultAction::Resume(_)
        | FaultAction::Corrupt(_)
        | FaultAction::Ring(_)
        | FaultAction::Stall { from: Some(_), .. } => false,
    }
}

impl FailoverWithin {
    fn failovers(&self, evidence: &Evidence) -> Vec<Failover> {
        let topology = &evidence.scenario.topology;
        let mut out = Vec::new();
        for entry in evidence.entries {
            let Some(fault) = entry.fault() else { continue };
            let t = entry.t_ms;
            let before = t.saturating_sub(1);
            let among = evidence.resolve(&self.among, before);
            let leader = (evidence.leaders.spans.iter())
                .filter(|span| span.from_ms <= before && span.to_ms.is_none_or(|to| before < to))
                .filter(|span| among.contains(&span.node))
                .max_by_key(|span| span.term);
            let Some(leader) = leader else { continue };
            if !removes(fault, &leader.node, topology) {
                continue;
            }
            let next = (evidence.leaders.spans.iter())
                .filter(|span| span.from_ms >= t && among.contains(&span.node))
                .filter(|span| span.from_ms > t || span.node != leader.node)
                .map(|span| span.from_ms)
                .min();
            out.push(Failover {
                at: t,
                leader: leader.node.clone(),
                took: next.map(|from| from - t),
            });
        }
        out
    }
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Check for FailoverWithin {
    fn title(&self) -> String {
        let among = match self.among.to_string().as_str() {
            "masters" => String::new(),
            text => format!(" among {text}"),
        };
        format!("failover_within {}{among}", show(self.within))
    }

    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        let times: Vec<u64> = self
            .failovers(evidence)
            .iter()
            .filter_map(|f| f.took)
            .collect();
        Some(times.into())
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let failovers = self.failovers(evidence);
        if failovers.is_empty() {
            return (false, "the leader was never removed".into());
        }
        if let Some(stuck) = failovers.iter().find(|f| f.took.is_none()) {
            let at = fmt_time(stuck.at);
            let leader = &stuck.leader;
            return (
                false,
                format!("no new leader after {leader} was removed at {at}"),
            );
        }
        let mut times: Vec<u64> = failovers.iter().filter_map(|f| f.took).collect();
        times.sort_unstable();
        let bound = ms(self.within);
        let late = times.iter().filter(|&&took| took > bound).count();
        let mean = times.iter().sum::<u64>() as f64 / times.len() as f64;
        let mut detail = format!(
            "{} failovers: median {}ms, mean {mean:.0}ms, p99 {}ms, max {}ms",
            times.len(),
            percentile(&times, 50.0),
            percentile(&times, 99.0),
            times[times.len() - 1]
        );
        if late > 0 {
            detail.push_str(&format!("; {late} over {}", show(self.within)));
        }
        if let Some(reference) = &self.reference {
            detail.push_str(&format!(" (reference: {reference})"));
        }
        (late == 0, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::fired;

    #[test]
    fn a_partition_removes_a_leader_it_leaves_without_a_majority() {
        let topology = Topology {
            masters: 3,
            agents: 2,
            store: false,
            broker: false,
        };
        let cut = fired(
            r#"partition = [["leader", "agent-1"], ["followers", "agent-2"]]"#,
            &[
                &["master-2"],
                &["agent-1"],
                &["master-1", "master-3"],
                &["agent-2"],
            ],
        );
        let FaultEvent::Fired(partition) = &cut else {
            unreachable!()
        };
        assert_eq!(
            partition.groups(),
            [
                vec!["master-2", "agent-1"],
                vec!["master-1", "master-3", "agent-2"]
            ]
        );
        assert_eq!(
            cut.fields().1[0].1,
            "leader(master-2),agent-1 | followers(master-1,master-3),agent-2"
        );
        assert!(removes(&cut, "master-2", &topology));
        assert!(!removes(&cut, "master-1", &topology));
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let times = [100, 150, 171, 200, 603];
        assert_eq!(percentile(&times, 50.0), 171);
        assert_eq!(percentile(&times, 99.0), 603);
    }
}
