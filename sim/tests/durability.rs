//! A raft master's term and vote outlive its crashes on a disk the runner owns; `wipe` erases
//! that disk, and `persist = false` gives the master none.
#![cfg(madsim)]

use fleet_core::timeline::{Event, RaftEvent};
use sim::history::Entry;

const CLUSTER: &str = r#"
name = "durability"
seed = 3
duration = "20s"
[topology]
masters = 3
agents = 1
[cluster]
mode = "raft"
"#;

/// Which masters read a saved state back on boot, and the term each found.
fn restored(extra: &str) -> Vec<(String, u64)> {
    let text = format!("{CLUSTER}{extra}");
    let loaded = sim::parse("durability.toml", &text).unwrap();
    let entries: Vec<Entry> = sim::run::run(&loaded.scenario, 3).timeline.entries;
    entries
        .iter()
        .filter_map(|entry| match entry.system() {
            Some(Event::Raft(RaftEvent::StateRestored { term, .. })) => {
                Some((entry.node.clone(), *term))
            }
            _ => None,
        })
        .collect()
}

const RESTART_ALL: &str = "[[faults]]\nat = \"10s\"\nrestart = \"masters\"\n";

#[test]
fn restarted_masters_read_back_the_term_they_were_in() {
    let restored = restored(RESTART_ALL);
    assert_eq!(restored.len(), 3, "{restored:?}");
    assert!(restored.iter().all(|(_, term)| *term >= 1), "{restored:?}");
}

#[test]
fn a_wiped_disk_has_nothing_to_read_back() {
    let wiped = "[[faults]]\nat = \"9s\"\nwipe = \"master-2\"\n";
    let restored = restored(&format!("{wiped}{RESTART_ALL}"));
    let mut nodes: Vec<&str> = restored.iter().map(|(node, _)| node.as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, ["master-1", "master-3"], "{restored:?}");
}

#[test]
fn without_persistence_nothing_is_kept() {
    let forgetful = CLUSTER.replace("mode = \"raft\"", "mode = \"raft\"\npersist = false");
    let text = format!("{forgetful}{RESTART_ALL}");
    let loaded = sim::parse("durability.toml", &text).unwrap();
    let entries = sim::run::run(&loaded.scenario, 3).timeline.entries;
    let any_restored = entries.iter().any(|entry| {
        matches!(
            entry.system(),
            Some(Event::Raft(RaftEvent::StateRestored { .. }))
        )
    });
    assert!(!any_restored);
}
