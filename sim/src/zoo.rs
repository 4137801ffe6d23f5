//! `sim zoo`: how fast the harness finds each planted bug (see `fleet_core::bugs`). For each
//! bug, the exploration templates that apply run with it switched on, in rounds of growing
//! size, until a run fails or the budget of runs is spent; the first failing run's rule and
//! its shrunk file's fault count go in the table. Runs to the first failure count every run
//! before it (over the templates tried before, too), so they do not depend on `--jobs`.

use crate::explore::pool::{self, Options, Seeds};
use crate::explore::summary::Summary;
use crate::explore::Template;
use crate::scenario::overrides::Override;
use fleet_core::bugs::Bug;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The templates a bug of `area` can show in, in the order they are tried.
pub fn templates(bug: Bug) -> &'static [&'static str] {
    match bug.area() {
        "raft" => &["scenarios/explore/raft.toml"],
        "lease" => &["scenarios/explore/lease.toml"],
        _ => &[
            "scenarios/explore/single.toml",
            "scenarios/explore/raft.toml",
            "scenarios/explore/lease.toml",
        ],
    }
}

/// The first round's runs; each round after runs twice as many, up to the budget.
const FIRST_ROUND: u64 = 100;

/// What the zoo was asked.
pub struct Zoo {
    pub bugs: Vec<Bug>,
    /// Runs per template before a bug counts as not found.
    pub budget: u64,
    pub first_seed: u64,
    pub jobs: usize,
    pub out: PathBuf,
}

/// How one search for a bug went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Search {
    /// Runs up to and including the first that failed (all runs made, when none did).
    pub runs: u64,
    /// Wall time of those runs, shrinking left out (the round that found the bug counts up to
    /// the failing run's share of it).
    pub wall_ms: u64,
}

/// One bug's line of the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Found {
    pub name: String,
    pub area: String,
    /// What a user would have seen.
    pub seen: String,
    pub found: bool,
    /// The rule the first failing run broke.
    pub rule: Option<String>,
    /// The template that found it.
    pub template: Option<String>,
    pub seed: Option<u64>,
    /// How many faults the shrunk file kept.
    pub shrunk_faults: Option<usize>,
    pub shrunk: Option<String>,
    pub random: Search,
}

/// What `--json` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub bugs: Vec<Found>,
    pub budget: u64,
    pub first_seed: u64,
    pub found: usize,
}

impl Zoo {
    /// Looks for every bug in turn; `said` gets each line as it is found.
    pub fn run(&self, mut said: impl FnMut(&Found)) -> Result<Report, String> {
        let mut bugs = Vec::new();
        for &bug in &self.bugs {
            let found = self.search(bug)?;
            said(&found);
            bugs.push(found);
        }
        let found = bugs.iter().filter(|bug| bug.found).count();
        Ok(Report {
            bugs,
            budget: self.budget,
            first_seed: self.first_seed,
            found,
        })
    }

    /// Random exploration of each template that applies, until a run fails.
    fn search(&self, bug: Bug) -> Result<Found, String> {
        let mut found = Found {
            name: bug.name().into(),
            area: bug.area().into(),
            seen: bug.seen().into(),
            found: false,
            rule: None,
            template: None,
            seed: None,
            shrunk_faults: None,
            shrunk: None,
            random: Search::default(),
        };
        for template in templates(bug) {
            if self.search_template(bug, Path::new(template), &mut found)? {
                break;
            }
        }
        Ok(found)
    }

    /// Explores `template` with `bug` in rounds; true once a run failed.
    fn search_template(
        &self,
        bug: Bug,
        template: &Path,
        found: &mut Found,
    ) -> Result<bool, String> {
        let planted = Override::parse(&format!("bugs=[\"{}\"]", bug.name()))?;
        // Checked once here, so a template the bug cannot load in is an error, not a failure.
        Template::load_with(template, std::slice::from_ref(&planted))
            .map_err(|error| error.to_string())?;
        let (mut done, mut round) = (0, FIRST_ROUND);
        while done < self.budget {
            let runs = round.min(self.budget - done);
            let options = Options {
                file: template.to_path_buf(),
                sometimes: Vec::new(),
                overrides: vec![planted.clone()],
                seeds: Seeds {
                    first: self.first_seed + done,
                    runs,
                    shard: (1, 1),
                },
                jobs: self.jobs,
                out: self.out.join(bug.name()),
            };
            let summary = pool::explore(&options)?;
            if let Some(first) = summary.failed.first() {
                let before = first.seed - options.seeds.first;
                found.random.runs += before + 1;
                found.random.wall_ms += share(&summary, before + 1);
                found.found = true;
                found.rule = Some(first.check.clone());
                found.template = Some(template.display().to_string());
                found.seed = Some(first.seed);
                found.shrunk_faults = first.shrunk_faults;
                found.shrunk = first.shrunk.clone();
                return Ok(true);
            }
            found.random.runs += runs;
            found.random.wall_ms += summary.wall_ms;
            done += runs;
            round *= 2;
        }
        Ok(false)
    }
}

/// The wall time of the first `runs` of a round, pro rata.
fn share(summary: &Summary, runs: u64) -> u64 {
    summary.wall_ms * runs / summary.runs.max(1)
}

/// The table: a line per bug.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{:34} {:13} {:>6} {:>8}  {:>6}  rule\n",
        "bug", "area", "found", "runs", "secs"
    );
    for bug in &report.bugs {
        let found = if bug.found { "yes" } else { "NO" };
        let rule = bug.rule.as_deref().unwrap_or("-");
        let faults = bug.shrunk_faults.map_or(String::new(), |faults| {
            format!(" (shrunk to {faults} faults)")
        });
        out.push_str(&format!(
            "{:34} {:13} {:>6} {:>8}  {:>6.1}  {rule}{faults}\n",
            bug.name,
            bug.area,
            found,
            bug.random.runs,
            bug.random.wall_ms as f64 / 1000.0
        ));
    }
    out.push_str(&format!(
        "found {} of {} bugs (budget {} runs per template, seeds from {})\n",
        report.found,
        report.bugs.len(),
        report.budget,
        report.first_seed
    ));
    out
}
