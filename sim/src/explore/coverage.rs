//! The abstract states a run reached, for guided exploration to steer by and `--coverage` to
//! count. A state is a small fact about a moment of the run, hashed:
//!
//! - each node's step from one event kind to the next (`master: vote_granted → became_leader`):
//!   the edges of the control plane's state machines that the run walked;
//! - how often each node did each kind, in powers of two (1, 2, 3–4, 5–8, ...): a run that
//!   retries eight times reaches somewhere a run that retries once does not;
//! - each fault with what happened just before it (the last event's kind);
//! - raft: a vote granted in the very term a restarted node restored (a vote it may already
//!   have given), and how far a new leader's term jumped past the highest seen before.
//!
//! Pure: the same timeline always gives the same states, in order.

use crate::history::{Entry, Happening};
use fleet_core::timeline::{Event, RaftEvent};
use std::collections::{BTreeMap, BTreeSet};

/// The states a timeline reached, sorted.
pub fn states(entries: &[Entry]) -> Vec<u64> {
    let mut states = BTreeSet::new();
    let mut last_kind: BTreeMap<&str, &str> = BTreeMap::new();
    let mut counts: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    let mut restored: BTreeMap<&str, u64> = BTreeMap::new();
    let mut highest_term = 0;
    let mut previous_kind = "";
    for entry in entries {
        let class = class_of(&entry.node);
        let event = match &entry.event {
            Happening::Fault(fault) => {
                states.insert(hash(&["fault", fault.fields().0, previous_kind]));
                continue;
            }
            Happening::System(event) => event,
        };
        let kind = event.kind();
        let before = last_kind.insert(&entry.node, kind).unwrap_or_default();
        states.insert(hash(&["step", class, before, kind]));
        *counts.entry((class, kind)).or_default() += 1;
        if let Event::Raft(event) = event {
            raft_states(
                event,
                &entry.node,
                &mut restored,
                &mut highest_term,
                &mut states,
            );
        }
        previous_kind = kind;
    }
    for ((class, kind), count) in counts {
        let bucket = (u32::BITS - (count.max(1) - 1).leading_zeros()).to_string();
        states.insert(hash(&["count", class, kind, &bucket]));
    }
    states.into_iter().collect()
}

fn raft_states<'a>(
    event: &RaftEvent,
    node: &'a str,
    restored: &mut BTreeMap<&'a str, u64>,
    highest_term: &mut u64,
    states: &mut BTreeSet<u64>,
) {
    match event {
        RaftEvent::StateRestored { term, .. } => {
            restored.insert(node, *term);
        }
        RaftEvent::VoteGranted { term, .. } if restored.get(node) == Some(term) => {
            states.insert(hash(&["raft", "vote in the restored term"]));
        }
        RaftEvent::BecameLeader { term, votes } => {
            let jump = term.saturating_sub(*highest_term).min(4).to_string();
            states.insert(hash(&[
                "raft",
                "leader term jump",
                &jump,
                &votes.to_string(),
            ]));
            *highest_term = (*highest_term).max(*term);
        }
        _ => {}
    }
}

/// A node's kind, as its name starts: `master`, `agent`, `store`, or `sim` (the harness).
fn class_of(node: &str) -> &'static str {
    match node.split('-').next() {
        Some("master") => "master",
        Some("agent") => "agent",
        Some("store") => "store",
        _ => "sim",
    }
}

/// FNV-1a over the parts, each ended by a zero byte: the same on every machine and build.
fn hash(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{attempt, became_leader, entry};

    #[test]
    fn a_timeline_always_reaches_the_same_states_and_more_events_reach_more() {
        let short = [attempt(0, 1, 0), attempt(10, 2, 1000)];
        assert_eq!(states(&short), states(&short));
        let mut long = short.to_vec();
        long.extend([attempt(20, 3, 2000), attempt(30, 4, 4000)]);
        let (few, many) = (states(&short), states(&long));
        assert_ne!(few, many, "four attempts count apart from two");
        let count = |n: &str| hash(&["count", "agent", "connect_attempt", n]);
        assert!(few.contains(&count("1")) && many.contains(&count("2")));
    }

    #[test]
    fn a_vote_in_the_term_a_node_restored_is_a_state_of_its_own() {
        let restored = entry(
            0,
            "master-2",
            RaftEvent::StateRestored {
                term: 3,
                voted_for: Some("master-1".into()),
            },
        );
        let vote = |term| {
            entry(
                5,
                "master-2",
                RaftEvent::VoteGranted {
                    term,
                    candidate: "master-3".into(),
                },
            )
        };
        let again = states(&[restored.clone(), vote(3)]);
        let later = states(&[restored, vote(4)]);
        let marker = hash(&["raft", "vote in the restored term"]);
        assert!(again.contains(&marker));
        assert!(!later.contains(&marker));
        assert_ne!(states(&[became_leader(1, "master-1", 2)]), later);
    }
}
