//! Many seeds from one command: `--seeds 1..32` (inclusive) or `--seeds 1,5,9`, run side by
//! side on every core; which seeds a command runs ([`Choice`]); and what `sim run --seeds`
//! makes of them ([`ManyRuns`]).

use crate::judge::Verdict;
use crate::run::SIM;
use crate::scenario::overrides::Override;
use crate::scenario::Scenario;
use crate::{report, Loaded};
use fleet_node::sync::lock;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many seeds in one `--seeds`.
pub(crate) const MAX_SEEDS: u64 = 1_000_000;

/// The seeds a `--seeds` flag names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedList(pub Vec<u64>);

/// [`parse_seeds`] for clap.
pub fn seed_list(text: &str) -> Result<SeedList, String> {
    parse_seeds(text).map(SeedList)
}

/// Parses `A..B` (both included) or a comma-separated list.
pub(crate) fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("--seeds takes a range like 1..32 or a list like 1,5,9; got {text:?}");
    if let Some((low, high)) = text.split_once("..") {
        let low: u64 = low.trim().parse().map_err(|_| bad())?;
        let high: u64 = high.trim().parse().map_err(|_| bad())?;
        if low > high {
            return Err(format!("--seeds {text}: the range ends before it starts"));
        }
        if high - low >= MAX_SEEDS {
            return Err(format!("--seeds {text}: at most {MAX_SEEDS} seeds at once"));
        }
        return Ok((low..=high).collect());
    }
    let seeds: Vec<u64> = (text.split(','))
        .map(|seed| seed.trim().parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if seeds.is_empty() {
        return Err(bad());
    }
    Ok(seeds)
}

/// `work` on every seed, `jobs` at a time on threads; results in the order of `seeds`.
pub fn parallel<T: Send>(seeds: &[u64], jobs: usize, work: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, T)>> = Mutex::new(Vec::with_capacity(seeds.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, seeds.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(index) else { break };
                let result = work(seed);
                lock(&results).push((index, result));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// `runs` seeds from `first` fit where a scenario file writes a seed: a TOML integer, at most
/// `i64::MAX`.
pub fn check_range(first: u64, runs: u64) -> Result<(), String> {
    match first.checked_add(runs) {
        Some(end) if end <= i64::MAX as u64 => Ok(()),
        _ => Err(format!(
            "seeds {first} onward for {runs} runs pass {}",
            i64::MAX
        )),
    }
}

/// The threads to run seeds on: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Which seeds a command runs, from `--seed`, `--seeds` and madsim's own variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The scenario's own `seed`.
    Scenario,
    One(u64),
    Many(Vec<u64>),
}

impl Choice {
    /// `--seeds` wins; else `MADSIM_TEST_NUM=K` means K seeds from `--seed`, `MADSIM_TEST_SEED`
    /// or 1; else `--seed`, else `MADSIM_TEST_SEED`, else the scenario's. `var` reads a
    /// variable of the environment.
    pub fn new(
        seed: Option<u64>,
        seeds: Option<SeedList>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Choice {
        let number = |name: &str| var(name)?.trim().parse::<u64>().ok();
        if let Some(SeedList(seeds)) = seeds {
            return Choice::Many(seeds);
        }
        if let Some(count) = number("MADSIM_TEST_NUM") {
            let first = seed.or_else(|| number("MADSIM_TEST_SEED")).unwrap_or(1);
            let count = count.clamp(1, MAX_SEEDS);
            return Choice::Many((first..first.saturating_add(count)).collect());
        }
        match seed.or_else(|| number("MADSIM_TEST_SEED")) {
            Some(seed) => Choice::One(seed),
            None => Choice::Scenario,
        }
    }

    /// [`Choice::new`] with this process's environment.
    pub fn from_env(seed: Option<u64>, seeds: Option<SeedList>) -> Choice {
        Choice::new(seed, seeds, |name| std::env::var(name).ok())
    }

    /// The seeds to run `scenario` on: many only for [`Choice::Many`], and then the scenario's
    /// own if it pins them (`seeds = [...]`), with a line that says so.
    pub fn seeds(&self, scenario: &Scenario) -> (Vec<u64>, Option<String>) {
        match self {
            Choice::Scenario => (vec![scenario.seed], None),
            Choice::One(seed) => (vec![*seed], None),
            Choice::Many(asked) => match &scenario.seeds {
                None => (asked.clone(), None),
                Some(pinned) => (
                    pinned.clone(),
                    Some(format!(
                        "{}: pins its seeds to {pinned:?} (see its opening comment); running those",
                        scenario.path
                    )),
                ),
            },
        }
    }
}

/// The command that runs one seed again, with the same overrides.
pub fn reproduce(file: &Path, overrides: &[Override], seed: u64) -> String {
    let flags: String = overrides
        .iter()
        .map(|one| format!(" {}", one.flag()))
        .collect();
    format!("{SIM} run {}{flags} --seed {seed}", file.display())
}

/// One seed's run: its verdicts and, with `--json`, its document on one line.
#[derive(Clone, Debug)]
pub struct SeedRun {
    pub seed: u64,
    pub verdicts: Vec<Verdict>,
    pub json: Option<String>,
}

impl SeedRun {
    pub fn failures(&self) -> Vec<&Verdict> {
        self.verdicts.iter().filter(|verdict| !verdict.ok).collect()
    }
}

/// `sim run --seeds`: one scenario on many seeds, side by side on every core.
#[derive(Clone, Debug)]
pub struct ManyRuns {
    /// In the order of the seeds.
    pub runs: Vec<SeedRun>,
    /// Each run kept its JSON document.
    pub json: bool,
    pub wall: Duration,
}

impl ManyRuns {
    /// Runs and judges `loaded` on every seed; with `json`, keeps each run's document.
    pub fn run(loaded: &Loaded, seeds: &[u64], json: bool) -> ManyRuns {
        let start = Instant::now();
        let runs = parallel(seeds, cores(), |seed| {
            let crate::Judged { output, verdicts } = loaded.run(seed);
            let json = json.then(|| {
                let entries = &output.timeline.entries;
                let scenario = &loaded.scenario;
                let text = report::json::json(scenario, seed, entries, &verdicts, output.wall);
                // One line per seed.
                serde_json::from_str::<serde_json::Value>(&text)
                    .map(|value| value.to_string())
                    .unwrap_or(text)
            });
            SeedRun {
                seed,
                verdicts,
                json,
            }
        });
        ManyRuns {
            runs,
            json,
            wall: start.elapsed(),
        }
    }

    /// The seeds with a failed verdict, in order.
    pub fn failed(&self) -> Vec<u64> {
        (self.runs.iter())
            .filter(|run| !run.failures().is_empty())
            .map(|run| run.seed)
            .collect()
    }

    /// What `sim run --seeds` prints on stdout: each seed's JSON document, a line each; or, as
    /// text, each failing seed (its first failure, detail and reproduce command), what the
    /// checks measured over the seeds, and the [`summary`](ManyRuns::summary).
    pub fn text(&self, file: &Path, overrides: &[Override]) -> String {
        let mut out = String::new();
        for run in &self.runs {
            if let Some(document) = &run.json {
                out.push_str(document);
                out.push('\n');
                continue;
            }
            let broken = run.failures();
            let Some(first) = broken.first() else {
                continue;
            };
            let more = match broken.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            out.push_str(&format!(
                "FAIL seed {}: {}{more}\n  {}\n  reproduce: {}\n",
                run.seed,
                first.check,
                first.detail,
                reproduce(file, overrides, run.seed)
            ));
        }
        if !self.json {
            let verdicts: Vec<&[Verdict]> = (self.runs.iter())
                .map(|run| run.verdicts.as_slice())
                .collect();
            out.push_str(&report::spread::spread(&verdicts));
            out.push_str(&self.summary(file));
            out.push('\n');
        }
        out
    }

    /// `FILE: 2 of 100 seeds failed: [17, 40] (3.1 s)`.
    pub fn summary(&self, file: &Path) -> String {
        let failed = self.failed();
        let listed = match failed.len() {
            0 => String::new(),
            1..=20 => format!(": {failed:?}"),
            n => format!(": {:?} and {} more", &failed[..20], n - 20),
        };
        format!(
            "{}: {} of {} seeds failed{listed} ({:.1} s)",
            file.display(),
            failed.len(),
            self.runs.len(),
            self.wall.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_include_both_ends_and_lists_keep_their_order() {
        assert_eq!(parse_seeds("1..4"), Ok(vec![1, 2, 3, 4]));
        assert_eq!(parse_seeds("9,2,5"), Ok(vec![9, 2, 5]));
        assert_eq!(parse_seeds("7"), Ok(vec![7]));
        for bad in ["4..1", "a..b", "", "1,,2", "0..18446744073709551615"] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parallel_work_comes_back_in_seed_order() {
        let seeds: Vec<u64> = (0..50).collect();
        assert_eq!(
            parallel(&seeds, 4, |seed| seed * 2),
            (0..50).map(|s| s * 2).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_seed_choice_reads_flags_first_then_madsims_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                (pairs.iter())
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            }
        };
        let list = Some(SeedList(vec![4, 5]));
        let none: &[(&str, &str)] = &[];
        assert_eq!(Choice::new(None, None, env(none)), Choice::Scenario);
        assert_eq!(Choice::new(Some(7), None, env(none)), Choice::One(7));
        assert_eq!(
            Choice::new(None, list.clone(), env(&[("MADSIM_TEST_NUM", "3")])),
            Choice::Many(vec![4, 5])
        );
        let seed = &[("MADSIM_TEST_SEED", " 31 ")];
        assert_eq!(Choice::new(None, None, env(seed)), Choice::One(31));
        assert_eq!(Choice::new(Some(2), None, env(seed)), Choice::One(2));
        let many = &[("MADSIM_TEST_SEED", "31"), ("MADSIM_TEST_NUM", "3")];
        assert_eq!(
            Choice::new(None, None, env(many)),
            Choice::Many(vec![31, 32, 33])
        );
        let count_only = &[("MADSIM_TEST_NUM", "0")];
        assert_eq!(
            Choice::new(None, None, env(count_only)),
            Choice::Many(vec![1])
        );
    }
}
