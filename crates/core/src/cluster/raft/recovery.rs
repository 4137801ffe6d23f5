//! A node that lost its disk rejoins without breaking a rule it may have taken part in.
//!
//! It may have voted in any term up to the one it was in, and acknowledged states it no longer
//! holds; it knows neither. So until it is safe it grants no vote and runs in no election:
//! - it learns a term at or above any it could have voted in: the highest term reported by
//!   enough peers that every majority it could have been part of includes one of them (all
//!   but a majority less one: both others of three, three of the other four of five);
//! - it holds a leader's state again, installed since it came back, so its acknowledgements
//!   are true and its vote cannot elect a candidate that lacks something committed.
//!
//! From then on it votes only in terms above that floor, and once its own term is past it, it
//! is an ordinary member again. A leader counts a follower's latest acknowledgement, not its
//! highest, so one that came back empty stops counting toward states it no longer holds.

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// The highest term each peer has reported since this node came back.
    heard: BTreeMap<String, u64>,
    /// Every term it may have voted in is at or below this, once enough peers reported.
    floor: Option<u64>,
    /// It installed a leader's state since it came back.
    pub(super) caught_up: bool,
}

impl Recovery {
    /// Peer `from` reported `term`; `needed` is how many peers must report before the floor
    /// is known (see the module's doc).
    pub(super) fn hear(&mut self, from: &str, term: u64, needed: usize) {
        let heard = self.heard.entry(from.to_string()).or_default();
        *heard = (*heard).max(term);
        if self.floor.is_none() && self.heard.len() >= needed {
            self.floor = self.heard.values().copied().max();
        }
    }

    /// Whether it may grant a vote (or a pre-vote) in `term`, or run for it.
    pub(super) fn may_vote(&self, term: u64) -> bool {
        self.caught_up && self.floor.is_some_and(|floor| term > floor)
    }

    pub(super) fn floor(&self) -> Option<u64> {
        self.floor
    }

    /// Why it refuses a vote in `term`.
    pub(super) fn refusal(&self, term: u64) -> String {
        match self.floor {
            _ if !self.caught_up => "lost its disk; no leader has brought it up to date".into(),
            None => "lost its disk; too few peers heard to know which terms it voted in".into(),
            Some(floor) => format!("lost its disk; may have voted in term {floor} (asked {term})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_votes_only_once_caught_up_and_past_every_term_it_may_have_voted_in() {
        let mut recovery = Recovery::default();
        assert!(!recovery.may_vote(10));
        recovery.hear("b", 4, 2);
        assert_eq!(recovery.floor(), None, "one of the two it needs");
        recovery.hear("c", 6, 2);
        assert_eq!(recovery.floor(), Some(6));
        assert!(!recovery.may_vote(7), "not caught up");
        recovery.caught_up = true;
        assert!(!recovery.may_vote(6));
        assert!(recovery.may_vote(7));
        recovery.hear("b", 9, 2);
        assert_eq!(recovery.floor(), Some(6), "fixed once known");
        assert!(recovery.refusal(6).contains("term 6"));
    }
}
