//! Mode `single`: this node is the leader from the start and never stops. For development and
//! one-master deployments.

use super::{ClusterEvent, Membership, Output, Role, Snapshot, Version};
use crate::timeline::{Event, Events, SingleEvent};
use std::collections::VecDeque;
use std::time::Instant;

pub struct SingleNode {
    me: String,
    changes: VecDeque<ClusterEvent>,
    closed: bool,
    /// A proposal to write to its disk; committed once written.
    persist: Option<Snapshot>,
    /// The newest index on its disk.
    commit: u64,
    /// What it reports, until the shell takes it.
    events: Events,
}

impl SingleNode {
    pub fn new(me: &str) -> Self {
        let mut events = Events::default();
        events.push(SingleEvent::LeadingAlone {});
        SingleNode {
            me: me.to_string(),
            events,
            changes: VecDeque::from([
                ClusterEvent::StartUp,
                ClusterEvent::ElectionFinish,
                ClusterEvent::SignMaster,
            ]),
            closed: false,
            persist: None,
            commit: 0,
        }
    }
}

impl Membership for SingleNode {
    fn me(&self) -> &str {
        &self.me
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    /// A single node has nobody to hand over to.
    fn release(&mut self, _now: Instant) -> Option<String> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// A proposal, to write to its disk: that is all "committed" means for one master.
    fn poll_output(&mut self) -> Option<Output> {
        self.persist.take().map(Output::Persist)
    }

    fn restore_state(&mut self, snapshot: Snapshot) {
        self.commit = snapshot.version.index;
    }

    fn propose(&mut self, _now: Instant, index: u64, state: Vec<u8>) {
        if self.closed {
            return;
        }
        let version = Version { term: 1, index };
        self.persist = Some(Snapshot { version, state });
        self.commit = index;
    }

    fn committed(&self) -> Option<u64> {
        (!self.closed).then_some(self.commit)
    }

    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.changes.push_back(ClusterEvent::StopMaster);
            self.changes.push_back(ClusterEvent::Close);
        }
    }

    fn poll_cluster_event(&mut self) -> Option<ClusterEvent> {
        self.changes.pop_front()
    }

    /// The next event for the timeline, in the order they happened.
    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    fn role(&self) -> Role {
        if self.closed {
            Role::Follower
        } else {
            Role::Leader
        }
    }

    fn leader(&self) -> Option<&str> {
        (!self.closed).then_some(self.me.as_str())
    }

    fn term(&self) -> u64 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_leads_until_closed() {
        let mut node = SingleNode::new("master-1");
        let reported: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
        assert_eq!(reported, [SingleEvent::LeadingAlone {}.into()]);
        assert_eq!(
            (node.role(), node.leader()),
            (Role::Leader, Some("master-1"))
        );
        node.close();
        let events: Vec<_> = std::iter::from_fn(|| node.poll_cluster_event()).collect();
        assert_eq!(events.first(), Some(&ClusterEvent::StartUp));
        assert_eq!(events.last(), Some(&ClusterEvent::Close));
        assert_eq!(node.leader(), None);
    }
}
