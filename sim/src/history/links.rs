//! Which links are cut, held or slowed at a moment, as the faults so far left them. One model,
//! pure: the runner applies each fault to it and hands the engine the link operations it
//! returns, and the metrics replay the timeline's faults through it to know who could reach
//! whom.

use crate::history::Fired;
use crate::scenario::faults::FaultAction;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A link, one way: traffic from the first node to the second.
pub(crate) type Link = (String, String);

/// What a fault does to one link, for the engine to carry out, in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum LinkOp {
    Cut(Link),
    Mend(Link),
    /// Messages wait until the link is released (turmoil only).
    Hold(Link),
    Release(Link),
    Slow(Link, Duration, Duration),
    /// The second node reads nothing the first sends, though connections open.
    Stall(Link),
    Unstall(Link),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Links {
    /// Cut by a partition or an isolation, and not yet healed.
    cut: BTreeSet<Link>,
    /// Nodes cut off by `isolate`, and not yet healed.
    isolated: BTreeSet<String>,
    held: BTreeSet<Link>,
    slowed: BTreeMap<Link, (Duration, Duration)>,
    /// Stalled by `stall`, and not yet healed.
    stalled: BTreeSet<Link>,
}

impl Links {
    /// Applies a fault that fired; returns what the engine must do to the links. `everyone`
    /// is every node of the run. Faults that touch no link change nothing.
    pub(crate) fn apply(&mut self, fired: &Fired, everyone: &[String]) -> Vec<LinkOp> {
        match &fired.action {
            FaultAction::Partition { oneway, .. } => self.partition(&fired.groups(), *oneway),
            FaultAction::Isolate(_) => {
                for node in fired.nodes() {
                    self.isolated.insert(node.clone());
                    for other in everyone.iter().filter(|other| *other != node) {
                        self.cut.insert((node.clone(), other.clone()));
                        self.cut.insert((other.clone(), node.clone()));
                    }
                }
                self.cut_all()
            }
            FaultAction::Ring(_) => self.ring(fired.nodes()),
            FaultAction::Stall { from, .. } => {
                let groups = fired.groups();
                let others = match from {
                    Some(_) => groups.get(1).cloned().unwrap_or_default(),
                    None => everyone.to_vec(),
                };
                self.stall(&groups[0], &others)
            }
            FaultAction::Heal(None) => {
                self.isolated.clear();
                let healed = std::mem::take(&mut self.cut);
                let unstalled = std::mem::take(&mut self.stalled);
                (healed.into_iter().map(LinkOp::Mend))
                    .chain(unstalled.into_iter().map(LinkOp::Unstall))
                    .collect()
            }
            FaultAction::Heal(Some(_)) => self.heal(fired.nodes()),
            FaultAction::Hold(_) => self.each_link(fired, |links, link| {
                links.held.insert((link.1.clone(), link.0.clone()));
                links.held.insert(link.clone());
                LinkOp::Hold(link)
            }),
            FaultAction::Release(_) => self.each_link(fired, |links, link| {
                links.held.remove(&(link.1.clone(), link.0.clone()));
                links.held.remove(&link);
                LinkOp::Release(link)
            }),
            FaultAction::LinkLatency { low, high, .. } => self.each_link(fired, |links, link| {
                let back = (link.1.clone(), link.0.clone());
                links.slowed.insert(back, (*low, *high));
                links.slowed.insert(link.clone(), (*low, *high));
                LinkOp::Slow(link, *low, *high)
            }),
            FaultAction::Crash(_)
            | FaultAction::Restart(_)
            | FaultAction::Latency(..)
            | FaultAction::Loss(_)
            | FaultAction::Wipe(_)
            | FaultAction::Revoke(_)
            | FaultAction::Restore(_)
            | FaultAction::Stop(_)
            | FaultAction::Shutdown(_)
            | FaultAction::Admin(_)
            | FaultAction::Clock { .. }
            | FaultAction::Pause(_)
            | FaultAction::Resume(_)
            | FaultAction::PowerFail(_)
            | FaultAction::Corrupt(_) => Vec::new(),
        }
    }

    /// Cuts every link between two groups; `oneway`, only from earlier groups to later ones.
    fn partition(&mut self, groups: &[Vec<String>], oneway: bool) -> Vec<LinkOp> {
        for (i, from) in groups.iter().enumerate() {
            for to in &groups[i + 1..] {
                for (a, b) in pairs(from, to) {
                    if !oneway {
                        self.cut.insert((b.clone(), a.clone()));
                    }
                    self.cut.insert((a, b));
                }
            }
        }
        self.cut_all()
    }

    /// Cuts each node of `ring` from every node further around it than [`ring_reach`].
    fn ring(&mut self, ring: &[String]) -> Vec<LinkOp> {
        let reach = ring_reach(ring.len());
        for (i, a) in ring.iter().enumerate() {
            for (j, b) in ring.iter().enumerate() {
                let apart = i.abs_diff(j).min(ring.len() - i.abs_diff(j));
                if apart > reach {
                    self.cut.insert((a.clone(), b.clone()));
                }
            }
        }
        self.cut_all()
    }

    /// Stalls the links between `nodes` and `others`, both ways; returns the newly stalled.
    fn stall(&mut self, nodes: &[String], others: &[String]) -> Vec<LinkOp> {
        let mut ops = Vec::new();
        for (a, b) in pairs(nodes, others) {
            for link in [(a.clone(), b.clone()), (b, a)] {
                if self.stalled.insert(link.clone()) {
                    ops.push(LinkOp::Stall(link));
                }
            }
        }
        ops
    }

    /// Whether `a` and `b` cannot hear each other (in either direction) now.
    pub(crate) fn apart(&self, a: &str, b: &str) -> bool {
        let (there, back) = (
            (a.to_string(), b.to_string()),
            (b.to_string(), a.to_string()),
        );
        [&there, &back].iter().any(|link| {
            self.cut.contains(*link) || self.held.contains(*link) || self.stalled.contains(*link)
        })
    }

    /// The latency of link `a → b` set by a fault, if one set it.
    pub fn slowed(&self, a: &str, b: &str) -> Option<(Duration, Duration)> {
        self.slowed.get(&(a.to_string(), b.to_string())).copied()
    }

    /// Every cut link, cut again: cutting is idempotent, and the engine holds them all.
    fn cut_all(&self) -> Vec<LinkOp> {
        self.cut.iter().cloned().map(LinkOp::Cut).collect()
    }

    /// Reconnects `nodes` to every node that is not itself isolated.
    fn heal(&mut self, nodes: &[String]) -> Vec<LinkOp> {
        for node in nodes {
            self.isolated.remove(node);
        }
        let touched: BTreeSet<&String> = nodes.iter().collect();
        let still = &self.isolated;
        let healed: Vec<Link> = (self.cut.iter())
            .filter(|(a, b)| {
                (touched.contains(a) && !still.contains(b))
                    || (touched.contains(b) && !still.contains(a))
            })
            .cloned()
            .collect();
        for link in &healed {
            self.cut.remove(link);
        }
        let unstalled: Vec<Link> = (self.stalled.iter())
            .filter(|(a, b)| touched.contains(a) || touched.contains(b))
            .cloned()
            .collect();
        for link in &unstalled {
            self.stalled.remove(link);
        }
        (healed.into_iter().map(LinkOp::Mend))
            .chain(unstalled.into_iter().map(LinkOp::Unstall))
            .collect()
    }

    /// Each link between a link fault's two ends (as each end resolved), a node never with
    /// itself.
    fn each_link(
        &mut self,
        fired: &Fired,
        mut op: impl FnMut(&mut Links, Link) -> LinkOp,
    ) -> Vec<LinkOp> {
        let (Some(a), Some(b)) = (fired.resolved.first(), fired.resolved.get(1)) else {
            return Vec::new();
        };
        pairs(a, b).map(|link| op(self, link)).collect()
    }
}

/// How far around a majorities ring of `n` nodes each one reaches: far enough that it and its
/// neighbours make a majority, and no further (Jepsen's `majorities-ring`).
pub(crate) fn ring_reach(n: usize) -> usize {
    let majority = n / 2 + 1;
    (majority - 1).div_ceil(2)
}

/// Every `(a, b)` with `a` from `from` and `b` from `to`, `a != b`, in order.
fn pairs<'a>(from: &'a [String], to: &'a [String]) -> impl Iterator<Item = Link> + 'a {
    from.iter().flat_map(move |a| {
        (to.iter())
            .filter(move |b| *b != a)
            .map(move |b| (a.clone(), b.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::fired;
    use crate::history::FaultEvent;

    fn apply(links: &mut Links, action: &str, resolved: &[&[&str]]) -> Vec<LinkOp> {
        let FaultEvent::Fired(fired) = fired(action, resolved) else {
            unreachable!("a fault fires")
        };
        let everyone: Vec<String> = ["master-1", "master-2", "master-3", "agent-1"]
            .map(String::from)
            .to_vec();
        links.apply(&fired, &everyone)
    }

    fn link(a: &str, b: &str) -> Link {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn a_partition_cuts_both_ways_and_a_heal_of_one_node_mends_only_its_links() {
        let mut links = Links::default();
        let ops = apply(
            &mut links,
            r#"partition = [["master-1"], ["master-2", "master-3"]]"#,
            &[],
        );
        assert_eq!(ops.len(), 4, "{ops:?}");
        assert!(links.apart("master-1", "master-2") && links.apart("master-3", "master-1"));
        assert!(!links.apart("master-2", "master-3"));
        let mended = apply(&mut links, r#"heal = "master-2""#, &[]);
        assert_eq!(
            mended,
            [
                LinkOp::Mend(link("master-1", "master-2")),
                LinkOp::Mend(link("master-2", "master-1"))
            ]
        );
        assert!(links.apart("master-1", "master-3") && !links.apart("master-1", "master-2"));
    }

    #[test]
    fn a_one_way_partition_cuts_only_the_first_groups_traffic() {
        let mut links = Links::default();
        let ops = apply(
            &mut links,
            r#"partition = [["master-1"], ["master-2"]]
oneway = true"#,
            &[],
        );
        assert_eq!(ops, [LinkOp::Cut(link("master-1", "master-2"))]);
        assert!(
            links.apart("master-2", "master-1"),
            "apart in either direction"
        );
    }

    #[test]
    fn an_isolated_node_stays_cut_from_a_healed_one_until_healed_itself() {
        let mut links = Links::default();
        apply(&mut links, r#"isolate = "master-1""#, &[]);
        apply(&mut links, r#"isolate = "master-2""#, &[]);
        apply(&mut links, r#"heal = "master-1""#, &[]);
        assert!(!links.apart("master-1", "master-3"));
        assert!(
            links.apart("master-1", "master-2"),
            "master-2 is still isolated"
        );
        let all = apply(&mut links, r#"heal = "all""#, &[]);
        assert!(all.iter().all(|op| matches!(op, LinkOp::Mend(_))));
        assert_eq!(links, Links::default());
    }

    #[test]
    fn held_and_slowed_links_are_their_own_and_a_release_lets_go_of_a_hold_only() {
        let mut links = Links::default();
        apply(
            &mut links,
            r#"partition = [["master-1"], ["master-2"]]"#,
            &[],
        );
        // Holds and one link's latency are turmoil's: built here, not read from a file.
        let topology = crate::scenario::selector::Topology {
            masters: 3,
            agents: 1,
            store: false,
            broker: false,
        };
        let ends = || ["master-2", "master-3"].map(|node| topology.select(node).unwrap());
        let direct = |links: &mut Links, action: FaultAction| {
            let everyone = topology.nodes();
            links.apply(&Fired::fixed(action), &everyone)
        };
        let held = direct(&mut links, FaultAction::Hold(ends()));
        assert_eq!(held, [LinkOp::Hold(link("master-2", "master-3"))]);
        assert!(links.apart("master-3", "master-2"));
        apply(&mut links, r#"heal = "all""#, &[]);
        assert!(
            links.apart("master-2", "master-3"),
            "a heal does not release a hold"
        );
        direct(&mut links, FaultAction::Release(ends()));
        assert!(!links.apart("master-2", "master-3"));
        let slow = std::time::Duration::from_secs(1);
        let between = ["master-1", "agent-1"].map(|node| topology.select(node).unwrap());
        let (low, high) = (slow, slow);
        direct(&mut links, FaultAction::LinkLatency { between, low, high });
        assert_eq!(links.slowed("agent-1", "master-1"), Some((slow, slow)));
        assert_eq!(links.slowed("master-1", "master-2"), None);
    }
}
