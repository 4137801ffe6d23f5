//! A healed partition is visible within about one raft heartbeat interval plus latency: a
//! stalled peer connection is dropped and redialed, instead of waiting out the simulated TCP's
//! doubling retransmission backoff (which took 3 to 8 seconds).
#![cfg(madsim)]

use fleet_core::timeline::{Event, RaftEvent};
use sim::history::{FaultEvent, Happening};
use sim::scenario::faults::FaultAction;

const ISOLATED_LEADER: &str = r#"
name = "heal"
duration = "30s"
[topology]
masters = 3
agents = 1
[cluster]
mode = "raft"
heartbeat_interval = "500ms"
[[faults]]
at = "10s"
partition = [["leader"], ["followers"]]
[[faults]]
at = "20s"
heal = "all"
"#;

/// Milliseconds from the heal until the isolated old leader follows the new one.
fn rejoin_ms(seed: u64) -> u64 {
    let loaded = sim::parse("heal.toml", ISOLATED_LEADER).unwrap();
    let entries = sim::run::run(&loaded.scenario, seed).timeline.entries;
    let old_leader = entries
        .iter()
        .find_map(|entry| match &entry.event {
            Happening::Fault(FaultEvent::Fired(fired))
                if matches!(fired.action, FaultAction::Partition { .. }) =>
            {
                // The first group is the leader it cut off.
                fired.groups().first()?.first().cloned()
            }
            _ => None,
        })
        .expect("the partition names the leader it cut off");
    let healed = entries
        .iter()
        .find(|entry| {
            let fired = entry.fault().and_then(FaultEvent::fired);
            fired.is_some_and(|fired| matches!(fired.action, FaultAction::Heal(_)))
        })
        .expect("the partition heals")
        .t_ms;
    let rejoined = entries
        .iter()
        .find(|entry| {
            entry.t_ms >= healed
                && entry.node == old_leader
                && matches!(
                    entry.system(),
                    Some(Event::Raft(RaftEvent::BecameFollower { .. }))
                )
        })
        .unwrap_or_else(|| panic!("seed {seed}: {old_leader} never rejoined"))
        .t_ms;
    rejoined - healed
}

#[test]
fn the_old_leader_follows_within_a_heartbeat_of_the_heal() {
    for seed in 1..=20 {
        let waited = rejoin_ms(seed);
        assert!(
            waited < 1000,
            "seed {seed}: rejoined {waited}ms after the heal"
        );
    }
}
