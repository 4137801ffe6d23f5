//! Who led, mode by mode. A time in office opens on raft's `became_leader` (its term), lease
//! mode's `lease_acquired` (the grant's fencing token is its term) or single mode's
//! `leading_alone` (term 1). It closes when that master steps down, follows another, loses
//! its lease, sees another holder, crashes or is restarted.

use crate::history::{Entry, Happening};
use fleet_core::timeline::{Event, LeaseEvent, RaftEvent, SingleEvent};

/// One master's time in office.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderSpan {
    pub node: String,
    pub term: u64,
    pub from_ms: u64,
    pub to_ms: Option<u64>,
}

/// A term some master started or took: an election (raft), a grant (lease) or a start
/// (single).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermStarted {
    pub node: String,
    pub term: u64,
    pub t_ms: u64,
}

pub struct LeaderHistory {
    pub spans: Vec<LeaderSpan>,
    pub terms: Vec<TermStarted>,
}

/// What one entry means for leadership.
enum Change {
    Opens(u64),
    Closes,
    /// A term started without anyone leading yet (a raft election).
    Starts(u64),
    Nothing,
}

fn change(event: &Event) -> Change {
    match event {
        Event::Raft(event) => match event {
            RaftEvent::BecameLeader { term, .. } => Change::Opens(*term),
            RaftEvent::BecameFollower { .. } | RaftEvent::SteppedDown { .. } => Change::Closes,
            RaftEvent::ElectionStarted { term } => Change::Starts(*term),
            // A restored node boots as a follower; its crash already closed any time in office.
            RaftEvent::PreVoteStarted { .. }
            | RaftEvent::VoteGranted { .. }
            | RaftEvent::VoteDenied { .. }
            | RaftEvent::TransferSent { .. }
            | RaftEvent::TransferReceived { .. }
            | RaftEvent::Recovering {}
            | RaftEvent::Recovered { .. }
            | RaftEvent::StateRestored { .. } => Change::Nothing,
        },
        Event::Lease(event) => match event {
            LeaseEvent::LeaseAcquired { token } | LeaseEvent::LeaseResumed { token } => {
                Change::Opens(*token)
            }
            LeaseEvent::LeaseLost { .. } | LeaseEvent::LeaseHolderSeen { .. } => Change::Closes,
            LeaseEvent::LeaseRenewed { .. } => Change::Nothing,
        },
        Event::Single(SingleEvent::LeadingAlone {}) => Change::Opens(1),
        Event::Agent(_)
        | Event::Master(_)
        | Event::Call(_)
        | Event::Shell(_)
        | Event::Command(_) => Change::Nothing,
    }
}

impl LeaderHistory {
    pub(crate) fn from_entries(entries: &[Entry]) -> LeaderHistory {
        let mut history = LeaderHistory {
            spans: Vec::new(),
            terms: Vec::new(),
        };
        for entry in entries {
            match &entry.event {
                Happening::System(event) => match change(event) {
                    Change::Opens(term) => {
                        history.close(&entry.node, entry.t_ms);
                        history.start(&entry.node, term, entry.t_ms);
                        history.spans.push(LeaderSpan {
                            node: entry.node.clone(),
                            term,
                            from_ms: entry.t_ms,
                            to_ms: None,
                        });
                    }
                    Change::Closes => history.close(&entry.node, entry.t_ms),
                    Change::Starts(term) => history.start(&entry.node, term, entry.t_ms),
                    Change::Nothing => {}
                },
                Happening::Fault(fault) => {
                    for node in fault.processes_ended().unwrap_or_default() {
                        history.close(node, entry.t_ms);
                    }
                }
            }
        }
        history
    }

    fn close(&mut self, node: &str, t_ms: u64) {
        for span in &mut self.spans {
            if span.node == node && span.to_ms.is_none() {
                span.to_ms = Some(t_ms);
            }
        }
    }

    fn start(&mut self, node: &str, term: u64, t_ms: u64) {
        self.terms.push(TermStarted {
            node: node.to_string(),
            term,
            t_ms,
        });
    }

    /// Who leads at `t_ms`: of the masters that believe they lead, the one in the highest term.
    pub(crate) fn leader_at(&self, t_ms: u64) -> Option<&LeaderSpan> {
        self.spans
            .iter()
            .filter(|span| span.from_ms <= t_ms && span.to_ms.is_none_or(|to| t_ms < to))
            .max_by_key(|span| span.term)
    }

    /// The first time in office that overlaps `[from, to]`.
    pub fn first_in(&self, from: u64, to: u64) -> Option<&LeaderSpan> {
        self.spans
            .iter()
            .filter(|span| span.from_ms <= to && span.to_ms.is_none_or(|end| end > from))
            .min_by_key(|span| span.from_ms.max(from))
    }

    /// The first time in office that starts within `[from, to]`.
    pub fn first_elected_in(&self, from: u64, to: u64) -> Option<&LeaderSpan> {
        self.spans
            .iter()
            .find(|span| (from..=to).contains(&span.from_ms))
    }

    /// The highest term any master started or took.
    pub(crate) fn highest_term(&self) -> Option<&TermStarted> {
        self.terms.iter().max_by_key(|started| started.term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{became_leader, entry, fault, fired};

    #[test]
    fn leader_history_opens_and_closes_terms_of_office() {
        let entries = vec![
            became_leader(2000, "master-2", 1),
            fault(9000, fired(r#"crash = "leader""#, &[&["master-2"]])),
            became_leader(12_000, "master-3", 2),
            entry(
                20_000,
                "master-3",
                RaftEvent::SteppedDown {
                    term: 2,
                    reason: "lost quorum".into(),
                },
            ),
        ];
        let history = LeaderHistory::from_entries(&entries);
        assert_eq!(history.leader_at(1999), None);
        assert_eq!(history.leader_at(2000).unwrap().node, "master-2");
        assert_eq!(history.leader_at(9000), None, "crashed");
        assert_eq!(history.leader_at(15_000).unwrap().term, 2);
        assert_eq!(history.leader_at(20_000), None);
        assert_eq!(history.first_in(9000, 11_999), None);
        assert_eq!(history.first_in(9000, 12_000).unwrap().node, "master-3");
        assert_eq!(history.first_in(0, 5000).unwrap().node, "master-2");
        assert_eq!(history.highest_term().unwrap().term, 2);
    }

    #[test]
    fn a_lease_grant_opens_a_term_and_another_holder_closes_it() {
        let entries = vec![
            entry(100, "master-1", LeaseEvent::LeaseAcquired { token: 1 }),
            entry(
                5000,
                "master-1",
                LeaseEvent::LeaseLost {
                    token: 1,
                    reason: "expired".into(),
                },
            ),
            entry(7000, "master-2", LeaseEvent::LeaseAcquired { token: 2 }),
            entry(
                7000,
                "master-1",
                LeaseEvent::LeaseHolderSeen {
                    holder: "master-2".into(),
                    token: 2,
                },
            ),
        ];
        let history = LeaderHistory::from_entries(&entries);
        assert_eq!(history.leader_at(100).unwrap().term, 1);
        assert_eq!(history.leader_at(6000), None);
        assert_eq!(history.leader_at(8000).unwrap().node, "master-2");
        assert_eq!(history.first_elected_in(6000, 8000).unwrap().term, 2);
    }
}
