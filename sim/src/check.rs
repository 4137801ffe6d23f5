//! `sim check`: each seed of a scenario run twice, side by side on every core, and the two
//! timelines compared event by event. One seed or many, one code path.

use crate::history::{fmt_time, Entry};
use crate::run;
use crate::scenario::Scenario;
use crate::seeds::{cores, parallel};
use std::path::Path;

/// One seed, run twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub seed: u64,
    /// Events in the first run.
    pub events: usize,
    /// Where the second run first differs, if it does.
    pub difference: Option<String>,
}

/// Runs `scenario` twice on each seed and compares the timelines.
pub fn check(scenario: &Scenario, seeds: &[u64]) -> Vec<Checked> {
    parallel(seeds, cores(), |seed| {
        let first = run::run(scenario, seed).timeline.entries;
        let second = run::run(scenario, seed).timeline.entries;
        Checked {
            seed,
            events: first.len(),
            difference: first_difference(&first, &second),
        }
    })
}

/// Every seed's two runs were identical.
pub fn deterministic(checked: &[Checked]) -> bool {
    checked.iter().all(|one| one.difference.is_none())
}

/// What `sim check` prints for one file: a line for each seed whose runs differ, with the
/// first difference; or one line saying every seed's were identical (for one seed, how many
/// events).
pub fn text(file: &Path, checked: &[Checked]) -> String {
    let file = file.display();
    let differ: String = (checked.iter())
        .filter_map(|one| {
            let difference = one.difference.as_ref()?;
            Some(format!(
                "NONDETERMINISTIC  {file}  seed {}: {difference}\n",
                one.seed
            ))
        })
        .collect();
    match checked {
        _ if !differ.is_empty() => differ,
        [one] => format!(
            "deterministic  {file}  seed {}: {} events identical in two runs\n",
            one.seed, one.events
        ),
        many => format!(
            "deterministic  {file}  {} seeds, each identical in two runs\n",
            many.len()
        ),
    }
}

/// Where two timelines of one seed first differ, if they do.
pub(crate) fn first_difference(first: &[Entry], second: &[Entry]) -> Option<String> {
    let length = first.len().max(second.len());
    let index = (0..length).find(|&i| first.get(i) != second.get(i))?;
    let show = |entries: &[Entry]| {
        entries
            .get(index)
            .map_or("(no event)".to_string(), |entry| {
                let (kind, fields) = entry.parts();
                format!("{} {} {kind} {fields}", fmt_time(entry.t_ms), entry.node)
            })
    };
    Some(format!(
        "runs differ at event {index}\n  first:  {}\n  second: {}",
        show(first),
        show(second)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(seed: u64, difference: Option<&str>) -> Checked {
        Checked {
            seed,
            events: 120,
            difference: difference.map(str::to_string),
        }
    }

    #[test]
    fn one_seed_counts_its_events_many_count_seeds_and_a_difference_names_its_seed() {
        let file = Path::new("f.toml");
        assert_eq!(
            text(file, &[checked(8, None)]),
            "deterministic  f.toml  seed 8: 120 events identical in two runs\n"
        );
        assert_eq!(
            text(file, &[checked(1, None), checked(2, None)]),
            "deterministic  f.toml  2 seeds, each identical in two runs\n"
        );
        let differ = [checked(1, None), checked(2, Some("runs differ at event 3"))];
        assert_eq!(
            text(file, &differ),
            "NONDETERMINISTIC  f.toml  seed 2: runs differ at event 3\n"
        );
        assert!(!deterministic(&differ));
    }
}
