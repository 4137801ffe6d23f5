//! Reconnection as the reconnection design describes it, run for real in the simulator.
#![cfg(madsim)]

use fleet_core::timeline::{AgentEvent, Event};
use sim::history::Entry;

fn run(text: &str, seed: u64) -> Vec<Entry> {
    let loaded = sim::parse("t.toml", text).unwrap_or_else(|error| panic!("{error}"));
    sim::run::run(&loaded.scenario, seed).timeline.entries
}

/// `max_retries` counts retries: with 10, an agent makes its first attempt and 10 more (the
/// design's ConnectWithRetry), then gives up, and `gave_up` says how many it made.
#[test]
fn max_retries_counts_retries_after_the_first_attempt() {
    let text = r#"
name = "t"
duration = "10m"
[topology]
agents = 1
[params.backoff]
max_retries = 10
[[faults]]
at = "5s"
crash = "master-1"
"#;
    for seed in 1..=3 {
        let entries = run(text, seed);
        let after_crash = |entry: &&Entry| entry.t_ms >= 5_000;
        let attempts = (entries.iter().filter(after_crash))
            .filter(|entry| {
                matches!(
                    entry.system(),
                    Some(Event::Agent(AgentEvent::ConnectAttempt { .. }))
                )
            })
            .count();
        let gave_up = entries.iter().find_map(|entry| match entry.system() {
            Some(Event::Agent(AgentEvent::GaveUp { attempts })) => Some(*attempts),
            _ => None,
        });
        assert_eq!(attempts, 11, "seed {seed}");
        assert_eq!(gave_up, Some(11), "seed {seed}");
    }
}
