//! `sim run --json`: one document with the scenario, seed, timeline, verdicts and stats.

use crate::history::Entry;
use crate::judge::Verdict;
use crate::scenario::Scenario;
use serde::Serialize;
use std::time::Duration;

#[derive(Serialize)]
struct JsonStats {
    sim_ms: u64,
    wall_ms: u64,
    events: usize,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    scenario: &'a str,
    seed: u64,
    events: &'a [Entry],
    expectations: &'a [Verdict],
    stats: JsonStats,
}

pub fn json(
    scenario: &Scenario,
    seed: u64,
    entries: &[Entry],
    results: &[Verdict],
    wall: Duration,
) -> String {
    let report = JsonReport {
        scenario: &scenario.name,
        seed,
        events: entries,
        expectations: results,
        stats: JsonStats {
            sim_ms: scenario.duration.as_millis() as u64,
            wall_ms: wall.as_millis() as u64,
            events: entries.len(),
        },
    };
    serde_json::to_string_pretty(&report).expect("the report serializes")
}
