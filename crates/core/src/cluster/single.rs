//! Mode `single`: this node is the leader from the start and never stops. For development and
//! one-master deployments.

use super::{ClusterEvent, Role};
use crate::timeline::{emit, SingleEvent};
use std::collections::VecDeque;

pub struct SingleNode {
    me: String,
    events: VecDeque<ClusterEvent>,
    closed: bool,
}

impl SingleNode {
    pub fn new(me: &str) -> Self {
        emit(SingleEvent::LeadingAlone {});
        SingleNode {
            me: me.to_string(),
            events: VecDeque::from([
                ClusterEvent::StartUp,
                ClusterEvent::ElectionFinish,
                ClusterEvent::SignMaster,
            ]),
            closed: false,
        }
    }

    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.events.push_back(ClusterEvent::StopMaster);
            self.events.push_back(ClusterEvent::Close);
        }
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClusterEvent> {
        self.events.pop_front()
    }

    pub fn role(&self) -> Role {
        if self.closed {
            Role::Follower
        } else {
            Role::Leader
        }
    }

    pub fn leader(&self) -> Option<&str> {
        (!self.closed).then_some(self.me.as_str())
    }

    pub fn term(&self) -> u64 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_leads_until_closed() {
        let mut node = SingleNode::new("master-1");
        assert_eq!(
            (node.role(), node.leader()),
            (Role::Leader, Some("master-1"))
        );
        node.close();
        let events: Vec<_> = std::iter::from_fn(|| node.poll_event()).collect();
        assert_eq!(events.first(), Some(&ClusterEvent::StartUp));
        assert_eq!(events.last(), Some(&ClusterEvent::Close));
        assert_eq!(node.leader(), None);
    }
}
