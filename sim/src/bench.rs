//! `sim bench`: one scenario run several times on its own seed, for its wall time.

use crate::report::wall_line;
use crate::run;
use crate::scenario::Scenario;
use std::time::Duration;

/// Runs `scenario` `runs` times (at least once) on its seed; after each, `each(number, wall)`
/// (numbered from 1). Returns the wall times, sorted.
pub fn bench(
    scenario: &Scenario,
    runs: usize,
    mut each: impl FnMut(usize, Duration),
) -> Vec<Duration> {
    let mut walls: Vec<Duration> = (1..=runs.max(1))
        .map(|number| {
            let wall = run::run(scenario, scenario.seed).wall;
            each(number, wall);
            wall
        })
        .collect();
    walls.sort();
    walls
}

/// `run 3: wall 0.41s · speed-up 1463×`.
pub fn run_line(scenario: &Scenario, number: usize, wall: Duration) -> String {
    format!("run {number}: {}", wall_line(scenario, wall))
}

/// `NAME: median wall 0.41s · speed-up 1463× over 5 runs`, from sorted wall times.
pub fn median_line(scenario: &Scenario, walls: &[Duration]) -> String {
    let median = walls.get(walls.len() / 2).copied().unwrap_or_default();
    format!(
        "{}: median {} over {} runs",
        scenario.name,
        wall_line(scenario, median),
        walls.len()
    )
}
