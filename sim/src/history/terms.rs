//! Each raft master's term over time, and the elections it started: what `terms_agree`,
//! `term_unchanged` and `no_election` read. A crash or restart forgets the term (0) until the
//! node reports one again (`state_restored` when its term is on disk).

use crate::history::{Entry, Happening};
use fleet_core::timeline::{Event, RaftEvent};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct Terms {
    /// By node: (moment, term) each time it reported a term, in time order.
    reports: BTreeMap<String, Vec<(u64, u64)>>,
    /// (moment, node, term) of every `election_started`.
    pub elections: Vec<(u64, String, u64)>,
}

/// The term a raft event says its node is in; `None` for the events that name a term the node
/// only asked about (a pre-vote) or was asked for (a denied vote: the candidate's term).
pub(crate) fn raft_term(event: &RaftEvent) -> Option<u64> {
    match event {
        RaftEvent::PreVoteStarted { .. }
        | RaftEvent::VoteDenied { .. }
        | RaftEvent::Recovering {}
        | RaftEvent::Recovered { .. } => None,
        RaftEvent::ElectionStarted { term }
        | RaftEvent::VoteGranted { term, .. }
        | RaftEvent::BecameLeader { term, .. }
        | RaftEvent::BecameFollower { term, .. }
        | RaftEvent::SteppedDown { term, .. }
        | RaftEvent::TransferSent { term, .. }
        | RaftEvent::TransferReceived { term, .. }
        | RaftEvent::StateRestored { term, .. } => Some(*term),
    }
}

impl Terms {
    pub(crate) fn from_entries(entries: &[Entry]) -> Terms {
        let mut terms = Terms::default();
        for entry in entries {
            match &entry.event {
                Happening::System(Event::Raft(event)) => {
                    if let RaftEvent::ElectionStarted { term } = event {
                        let started = (entry.t_ms, entry.node.clone(), *term);
                        terms.elections.push(started);
                    }
                    if let Some(term) = raft_term(event) {
                        terms.report(&entry.node, entry.t_ms, term);
                    }
                }
                Happening::System(_) => {}
                Happening::Fault(fault) => {
                    for node in fault.processes_ended().unwrap_or_default() {
                        terms.report(node, entry.t_ms, 0);
                    }
                }
            }
        }
        terms
    }

    fn report(&mut self, node: &str, t_ms: u64, term: u64) {
        self.reports
            .entry(node.to_string())
            .or_default()
            .push((t_ms, term));
    }

    /// `node`'s term at `t_ms`: the last it reported, 0 before any.
    pub fn at(&self, node: &str, t_ms: u64) -> u64 {
        (self.reports.get(node).into_iter().flatten())
            .take_while(|(at, _)| *at <= t_ms)
            .last()
            .map_or(0, |(_, term)| *term)
    }

    /// The terms `node` reported in `[from, to]`.
    pub(crate) fn reported_in(&self, node: &str, from: u64, to: u64) -> Vec<(u64, u64)> {
        (self.reports.get(node).into_iter().flatten())
            .filter(|(at, _)| (from..=to).contains(at))
            .copied()
            .collect()
    }
}
