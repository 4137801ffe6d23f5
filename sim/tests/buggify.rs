//! The shell's fault points reorder messages across terms on the fast engine: a vote granted
//! in one election, its reply held back by a delayed send, reaches the candidate only after
//! it started a later election. Nothing else madsim does delays one message that long.
#![cfg(madsim)]

use fleet_core::timeline::{Event, RaftEvent, ShellEvent};

const ELECTIONS: &str = r#"
name = "elections"
duration = "1m"
buggify = true
[topology]
masters = 3
agents = 1
# Elections that time out well within the longest held send (3s).
[cluster]
election_timeout = "300ms..600ms"
heartbeat_interval = "100ms"
[[faults]]
at = "5s"
isolate = "leader"
every = "8s"
until = "50s"
[[faults]]
at = "9s"
heal = "all"
every = "8s"
until = "50s"
"#;

/// Whether some node granted a vote in term T while its sends were held back (a delayed send
/// fired on it at the grant or before, and lasts past it: the reply waits behind it), and the
/// candidate started a later election before the hold ended.
fn late_vote_across_terms(run: &sim::Judged) -> bool {
    let events: Vec<(u64, &str, &Event)> = run.events().collect();
    events.iter().enumerate().any(|(i, (t, voter, event))| {
        let Event::Raft(RaftEvent::VoteGranted { term, candidate }) = event else {
            return false;
        };
        let same_moment = (events[i + 1..].iter()).take_while(|(later, _, _)| later == t);
        let held_until = (events[..i].iter().chain(same_moment))
            .filter_map(|(at, node, event)| match event {
                Event::Shell(ShellEvent::FaultPoint {
                    point,
                    delay_ms: Some(ms),
                }) if node == voter && point == "delayed_send" && at + ms > *t => Some(at + ms),
                _ => None,
            })
            .max();
        let Some(until) = held_until else {
            return false;
        };
        events[i..].iter().any(|(later, node, event)| {
            *later < until
                && node == candidate
                && matches!(event, Event::Raft(RaftEvent::ElectionStarted { term: next }) if next > term)
        })
    })
}

#[test]
fn a_vote_reply_can_arrive_after_the_next_election_started() {
    let loaded = sim::parse("elections.toml", ELECTIONS).unwrap();
    let found = (1..=200).find(|&seed| late_vote_across_terms(&loaded.run(seed)));
    assert!(
        found.is_some(),
        "no seed of 200 held a vote reply past the next election"
    );
}
