//! `sim zoo`: how fast the harness finds each planted bug (see `fleet_core::bugs`). For each
//! bug, the exploration templates that apply run with it switched on, in rounds of growing
//! size, until a run fails or the budget of runs is spent; the first failing run's rule and
//! its shrunk file's fault count go in the table. Runs to the first failure count every run
//! before it (over the templates tried before, too), so they do not depend on `--jobs`.

use crate::explore::pool::{self, Options, Seeds};
use crate::explore::summary::Failed;
use crate::explore::Template;
use crate::scenario::overrides::Override;
use fleet_core::bugs::Bug;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The templates a bug of `area` can show in, in the order they are tried.
pub fn templates(bug: Bug) -> &'static [&'static str] {
    match bug.area() {
        "raft" => &[
            "scenarios/explore/raft.toml",
            "scenarios/explore/raft-elections.toml",
        ],
        "lease" => &["scenarios/explore/lease.toml"],
        _ => &[
            "scenarios/explore/single.toml",
            "scenarios/explore/raft.toml",
            "scenarios/explore/lease.toml",
        ],
    }
}

/// What the zoo was asked.
pub struct Zoo {
    pub bugs: Vec<Bug>,
    /// Runs per template before a bug counts as not found.
    pub budget: u64,
    /// Each search starts at each of these seeds; the table gives the median.
    pub first_seeds: Vec<u64>,
    /// Search guided too, beside random.
    pub guided: bool,
    pub jobs: usize,
    pub out: PathBuf,
}

/// How one way of searching did on one bug, over the first seeds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Search {
    /// Found from every first seed within the budget.
    pub found: bool,
    /// The median over the first seeds of the runs up to and including the first that failed
    /// (all the runs made, when none did).
    pub runs: u64,
    /// The median wall time of those runs, shrinking left out (the last generation counts up
    /// to the failing run's share of it).
    pub wall_ms: u64,
    /// The runs from each first seed.
    pub per_seed: Vec<u64>,
}

/// One bug's line of the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Found {
    pub name: String,
    pub area: String,
    /// What a user would have seen.
    pub seen: String,
    /// Found by random search from every first seed.
    pub found: bool,
    /// The rule the first failing run broke (random, first seed), its template and seed, and
    /// the shrunk file with the faults it kept.
    pub rule: Option<String>,
    pub template: Option<String>,
    pub seed: Option<u64>,
    pub shrunk_faults: Option<usize>,
    pub shrunk: Option<String>,
    pub random: Search,
    pub guided: Option<Search>,
}

/// What `--json` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub bugs: Vec<Found>,
    pub budget: u64,
    pub first_seeds: Vec<u64>,
    pub found: usize,
    /// Guided runs to each bug over random runs, the median over the bugs (below 1: guided
    /// finds them in fewer runs).
    pub guided_over_random: Option<f64>,
}

/// What one search (one bug, one way, one first seed) came to.
#[derive(Clone, Debug, Default)]
struct Trial {
    runs: u64,
    wall_ms: u64,
    first: Option<(String, Failed)>,
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
        let ratios: Vec<f64> = (bugs.iter())
            .filter_map(|bug| {
                let guided = bug.guided.as_ref()?;
                Some(guided.runs as f64 / bug.random.runs.max(1) as f64)
            })
            .collect();
        Ok(Report {
            bugs,
            budget: self.budget,
            first_seeds: self.first_seeds.clone(),
            found,
            guided_over_random: median_f64(ratios),
        })
    }

    fn search(&self, bug: Bug) -> Result<Found, String> {
        let random: Vec<Trial> = (self.first_seeds.iter())
            .map(|&seed| self.trial(bug, seed, false))
            .collect::<Result<_, _>>()?;
        let guided = match self.guided {
            true => Some(
                (self.first_seeds.iter())
                    .map(|&seed| self.trial(bug, seed, true))
                    .collect::<Result<Vec<Trial>, _>>()?,
            ),
            false => None,
        };
        let first = random.first().and_then(|trial| trial.first.clone());
        Ok(Found {
            name: bug.name().into(),
            area: bug.area().into(),
            seen: bug.seen().into(),
            found: random.iter().all(|trial| trial.first.is_some()),
            rule: first.as_ref().map(|(_, failed)| failed.check.clone()),
            template: first.as_ref().map(|(template, _)| template.clone()),
            seed: first.as_ref().map(|(_, failed)| failed.seed),
            shrunk_faults: first.as_ref().and_then(|(_, failed)| failed.shrunk_faults),
            shrunk: first.as_ref().and_then(|(_, failed)| failed.shrunk.clone()),
            random: summed(&random),
            guided: guided.as_deref().map(summed),
        })
    }

    /// Explores the templates that apply to `bug` in turn from `first_seed`, until a run
    /// fails or each has had the budget.
    fn trial(&self, bug: Bug, first_seed: u64, guided: bool) -> Result<Trial, String> {
        let planted = Override::parse(&format!("bugs=[\"{}\"]", bug.name()))?;
        let mut trial = Trial::default();
        for template in templates(bug) {
            let template = Path::new(template);
            // Checked once here, so a template the bug cannot load in is an error, not a
            // failure.
            Template::load_with(template, std::slice::from_ref(&planted))
                .map_err(|error| error.to_string())?;
            let options = Options {
                file: template.to_path_buf(),
                sometimes: Vec::new(),
                overrides: vec![planted.clone()],
                seeds: Seeds {
                    first: first_seed,
                    runs: self.budget,
                    shard: (1, 1),
                },
                jobs: self.jobs,
                out: self.out.join(bug.name()),
                guided,
                coverage: false,
                stop_early: true,
            };
            let summary = pool::explore(&options)?;
            let Some(first) = summary.failed.first() else {
                trial.runs += summary.runs;
                trial.wall_ms += summary.wall_ms;
                continue;
            };
            let upto = first.seed - first_seed + 1;
            trial.runs += upto;
            trial.wall_ms += summary.wall_ms * upto / summary.runs.max(1);
            trial.first = Some((template.display().to_string(), first.clone()));
            break;
        }
        Ok(trial)
    }
}

/// The median of the trials.
fn summed(trials: &[Trial]) -> Search {
    let per_seed: Vec<u64> = trials.iter().map(|trial| trial.runs).collect();
    let walls: Vec<u64> = trials.iter().map(|trial| trial.wall_ms).collect();
    Search {
        found: trials.iter().all(|trial| trial.first.is_some()),
        runs: median(per_seed.clone()),
        wall_ms: median(walls),
        per_seed,
    }
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn median_f64(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// The table: a line per bug.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{:30} {:12} {:>5} {:>7} {:>6} {:>7} {:>6}  rule (shrunk faults)\n",
        "bug", "area", "found", "random", "secs", "guided", "secs"
    );
    for bug in &report.bugs {
        let found = if bug.found { "yes" } else { "NO" };
        let rule = bug.rule.as_deref().unwrap_or("-");
        let faults = bug
            .shrunk_faults
            .map_or(String::new(), |faults| format!(" ({faults})"));
        let (guided, guided_secs) = match &bug.guided {
            Some(search) => (
                format!("{}{}", search.runs, if search.found { "" } else { "+" }),
                format!("{:.1}", search.wall_ms as f64 / 1000.0),
            ),
            None => ("-".into(), "-".into()),
        };
        let random = format!(
            "{}{}",
            bug.random.runs,
            if bug.random.found { "" } else { "+" }
        );
        out.push_str(&format!(
            "{:30} {:12} {:>5} {:>7} {:>6.1} {:>7} {:>6}  {rule}{faults}\n",
            bug.name,
            bug.area,
            found,
            random,
            bug.random.wall_ms as f64 / 1000.0,
            guided,
            guided_secs,
        ));
    }
    let seeds: Vec<String> = report.first_seeds.iter().map(u64::to_string).collect();
    out.push_str(&format!(
        "found {} of {} bugs (median runs over first seeds {}; budget {} runs a template; + not found)\n",
        report.found,
        report.bugs.len(),
        seeds.join(","),
        report.budget,
    ));
    if let Some(ratio) = report.guided_over_random {
        out.push_str(&format!(
            "guided runs to bug / random, median over bugs: {ratio:.2}\n"
        ));
    }
    out
}
