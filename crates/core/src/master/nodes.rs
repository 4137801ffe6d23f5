//! The agents a leader serves: its node table, and which session speaks for which node.

use super::{Liveness, SessionId};
use crate::wire::{ConfigId, NodeStatus, Register};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct NodeEntry {
    pub info: Register,
    /// The session the newest registration came on; `None` once that session closed.
    pub session: Option<SessionId>,
    pub liveness: Liveness,
    pub status: NodeStatus,
    /// The metrics of its latest heartbeat.
    pub metrics: BTreeMap<String, f64>,
    /// The config the agent last acknowledged.
    pub config: ConfigId,
    pub last_heard: Instant,
}

/// The registered nodes in slots, indexed by instance id. Sessions name slots, so a heartbeat
/// finds its node without comparing strings; every iteration follows instance-id order.
#[derive(Debug, Default)]
pub(super) struct NodeTable {
    slots: Vec<Option<NodeEntry>>,
    free: Vec<usize>,
    by_id: BTreeMap<String, usize>,
    /// Each agent's newest instance: one agent has one entry.
    by_name: BTreeMap<String, usize>,
}

impl NodeTable {
    pub(super) fn slot(&self, instance_id: &str) -> Option<usize> {
        self.by_id.get(instance_id).copied()
    }

    /// The slot of `agent`'s registered instance, whichever it is.
    pub(super) fn slot_of_agent(&self, agent: &str) -> Option<usize> {
        self.by_name.get(agent).copied()
    }

    pub(super) fn get(&self, slot: usize) -> Option<&NodeEntry> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    pub(super) fn get_mut(&mut self, slot: usize) -> Option<&mut NodeEntry> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    pub(super) fn insert(&mut self, entry: NodeEntry) -> usize {
        let id = entry.info.instance_id.clone();
        let name = entry.info.node_name.clone();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        self.by_id.insert(id, slot);
        self.by_name.insert(name, slot);
        slot
    }

    pub(super) fn remove(&mut self, slot: usize) -> Option<NodeEntry> {
        let entry = self.slots.get_mut(slot)?.take()?;
        self.by_id.remove(&entry.info.instance_id);
        if self.by_name.get(&entry.info.node_name) == Some(&slot) {
            self.by_name.remove(&entry.info.node_name);
        }
        self.free.push(slot);
        Some(entry)
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &NodeEntry)> {
        self.by_id.iter().filter_map(|(id, &slot)| {
            let entry = self.slots[slot].as_ref()?;
            Some((id.as_str(), entry))
        })
    }

    pub(super) fn for_each_mut(&mut self, mut f: impl FnMut(&mut NodeEntry)) {
        for &slot in self.by_id.values() {
            if let Some(entry) = self.slots[slot].as_mut() {
                f(entry);
            }
        }
    }
}

/// The agents a leader serves. A follower holds none: a leader that stops leading forgets
/// them all, and the next leader rebuilds its own from the agents' re-registrations.
#[derive(Debug, Default)]
pub(super) struct Agents {
    pub(super) nodes: NodeTable,
    /// Which node's slot each registered session speaks for.
    pub(super) sessions: BTreeMap<SessionId, usize>,
    /// No online node can go silent before this; a lower bound, refreshed by each sweep.
    pub(super) next_sweep: Option<Instant>,
    /// The online nodes' slots by when each was last heard from, as of when it was queued. A
    /// heartbeat moves `last_heard` later without touching the queue, so each key is a lower
    /// bound, made exact when it comes up ([`Agents::silent`]). A sweep takes the nodes that
    /// went silent without visiting the others.
    silence: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Whether a slot has its one place in `silence`. A slot that changes hands keeps it: the
    /// new node registered later than its key, which stays a lower bound.
    queued: Vec<bool>,
}

impl Agents {
    /// The node `session` speaks for, if it registered.
    pub(super) fn entry_for(&mut self, session: SessionId) -> Option<&mut NodeEntry> {
        let slot = *self.sessions.get(&session)?;
        self.nodes.get_mut(slot)
    }

    /// The session `agent`'s registered instance speaks on, if it has one.
    pub(super) fn session_of(&self, agent: &str) -> Option<SessionId> {
        (self.nodes.slot_of_agent(agent))
            .and_then(|slot| self.nodes.get(slot))
            .and_then(|entry| entry.session)
    }

    /// Every registered session, in session order.
    pub(super) fn session_ids(&self) -> Vec<SessionId> {
        self.sessions.keys().copied().collect()
    }

    /// Watches the node in `slot`, just online, for silence from its `last_heard` on.
    pub(super) fn watch(&mut self, slot: usize) {
        let Some(heard) = self.nodes.get(slot).map(|entry| entry.last_heard) else {
            return;
        };
        if self.queued.len() <= slot {
            self.queued.resize(slot + 1, false);
        }
        if !self.queued[slot] {
            self.queued[slot] = true;
            self.silence.push(Reverse((heard, slot)));
        }
    }

    /// The slots of the online nodes silent for `offline_after` by `now`, in instance-id
    /// order (as a walk of the table would find them), taken off the queue. The others stay,
    /// and the queue's head is left exact: with it, [`Agents::earliest_heard`] is the earliest
    /// `last_heard` of any online node that is not silent.
    pub(super) fn silent(&mut self, now: Instant, offline_after: Duration) -> Vec<usize> {
        let mut silent = Vec::new();
        while let Some(&Reverse((key, slot))) = self.silence.peek() {
            let entry = self.nodes.get(slot);
            let heard = entry
                .filter(|entry| entry.liveness == Liveness::Online)
                .map(|entry| entry.last_heard);
            if heard == Some(key) && now < key + offline_after {
                break;
            }
            self.silence.pop();
            self.queued[slot] = false;
            match heard {
                None => {}
                Some(heard) if now >= heard + offline_after => silent.push(slot),
                Some(_) => self.watch(slot),
            }
        }
        let id = |slot: usize| self.nodes.get(slot).map(|entry| &entry.info.instance_id);
        silent.sort_by(|&a, &b| id(a).cmp(&id(b)));
        silent
    }

    /// The earliest `last_heard` of an online node, once [`Agents::silent`] has made the
    /// queue's head exact.
    pub(super) fn earliest_heard(&self) -> Option<Instant> {
        self.silence.peek().map(|&Reverse((heard, _))| heard)
    }

    /// Forgets every node and session, and with them any sweep.
    pub(super) fn clear(&mut self) {
        *self = Agents::default();
    }
}
