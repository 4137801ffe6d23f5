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
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Links {
    /// Cut by a partition or an isolation, and not yet healed.
    cut: BTreeSet<Link>,
    /// Nodes cut off by `isolate`, and not yet healed.
    isolated: BTreeSet<String>,
    held: BTreeSet<Link>,
    slowed: BTreeMap<Link, (Duration, Duration)>,
}

impl Links {
    /// Applies a fault that fired; returns what the engine must do to the links. `everyone`
    /// is every node of the run. Faults that touch no link change nothing.
    pub(crate) fn apply(&mut self, fired: &Fired, everyone: &[String]) -> Vec<LinkOp> {
        match &fired.action {
            FaultAction::Partition { oneway, .. } => {
                let groups = fired.groups();
                for (i, from) in groups.iter().enumerate() {
                    for to in &groups[i + 1..] {
                        for (a, b) in pairs(from, to) {
                            // One way: only traffic from the earlier group is cut.
                            if !oneway {
                                self.cut.insert((b.clone(), a.clone()));
                            }
                            self.cut.insert((a, b));
                        }
                    }
                }
                self.cut_all()
            }
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
            FaultAction::Heal(None) => {
                self.isolated.clear();
                let healed = std::mem::take(&mut self.cut);
                healed.into_iter().map(LinkOp::Mend).collect()
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
            | FaultAction::Admin(_) => Vec::new(),
        }
    }

    /// Whether `a` and `b` cannot hear each other (in either direction) now.
    pub(crate) fn apart(&self, a: &str, b: &str) -> bool {
        let (there, back) = (
            (a.to_string(), b.to_string()),
            (b.to_string(), a.to_string()),
        );
        [&there, &back]
            .iter()
            .any(|link| self.cut.contains(*link) || self.held.contains(*link))
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
        healed.into_iter().map(LinkOp::Mend).collect()
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

/// Every `(a, b)` with `a` from `from` and `b` from `to`, `a != b`, in order.
fn pairs<'a>(from: &'a [String], to: &'a [String]) -> impl Iterator<Item = Link> + 'a {
    from.iter().flat_map(move |a| {
        (to.iter())
            .filter(move |b| *b != a)
            .map(move |b| (a.clone(), b.clone()))
    })
}
