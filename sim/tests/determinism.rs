//! The same seed gives the same timeline; another seed gives other jitter.
#![cfg(madsim)]

use sim::runner;
use sim::scenario::Scenario;

fn master_restart() -> Scenario {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/master-restart.toml"
    );
    Scenario::load(std::path::Path::new(path)).unwrap()
}

/// Every backoff delay the agents waited, in timeline order.
fn delays(events: &[sim::trace::Event]) -> Vec<u64> {
    events
        .iter()
        .filter(|event| event.kind == "connect_attempt")
        .filter_map(|event| event.u64_field("delay_ms"))
        .filter(|&delay| delay > 0)
        .collect()
}

#[test]
fn the_same_seed_replays_the_same_timeline() {
    let scenario = master_restart();
    let first = runner::run(&scenario, 42);
    let second = runner::run(&scenario, 42);
    assert!(first.events.len() > 100, "the scenario does something");
    assert_eq!(first.events, second.events);
}

#[test]
fn different_seeds_give_different_jitter() {
    let scenario = master_restart();
    let a = delays(&runner::run(&scenario, 1).events);
    let b = delays(&runner::run(&scenario, 2).events);
    assert!(a.len() > 50 && b.len() > 50, "both runs retried");
    assert_ne!(a, b);
}

#[test]
fn node_seeds_differ_by_node_and_incarnation() {
    let seeds = [
        runner::node_seed(1, "agent-1", 1),
        runner::node_seed(1, "agent-2", 1),
        runner::node_seed(1, "agent-1", 2),
        runner::node_seed(2, "agent-1", 1),
    ];
    for (i, a) in seeds.iter().enumerate() {
        for b in &seeds[i + 1..] {
            assert_ne!(a, b);
        }
    }
}
