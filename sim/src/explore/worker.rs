//! The work of one worker process: run seeds, or shrink one failing run. Each prints one JSON
//! [`WorkerLine`] per result on stdout for the parent to read.
//!
//! Workers are processes, not threads: a run that aborts takes only its worker down, and
//! memory stays bounded whatever a run leaves behind. The runner frees each run's tasks, so a
//! worker's memory stays flat; should anything grow it anyway, the worker leaves past its
//! memory budget and the parent starts a fresh one for the seeds it did not get to.

use crate::explore::coverage;
use crate::explore::mutate::Recipe;
use crate::explore::plan::Schedule;
use crate::explore::summary::{Broken, WorkerLine};
use crate::explore::Template;
use crate::history::Entry;
use crate::run::SIM;
use crate::scenario::sometimes::Sometimes;
use crate::scenario::ConfigError;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// At most this many runs go into shrinking one failure.
pub(crate) const SHRINK_BUDGET: usize = 400;

/// What one run of a template came to.
pub(crate) struct Outcome {
    /// Every rule it broke.
    pub broken: Vec<Broken>,
    /// The template's `[[sometimes]]` entries it reached, by index.
    pub reached: Vec<usize>,
    /// The abstract states it reached (see [`coverage`]), when asked for.
    pub states: Vec<u64>,
}

/// One run for a worker: its seed, and the recipe of its schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    pub seed: u64,
    pub recipe: Recipe,
}

impl RunSpec {
    /// A fresh run: the schedule drawn from its own seed.
    pub fn drawn(seed: u64) -> RunSpec {
        RunSpec {
            seed,
            recipe: Recipe::drawn(seed),
        }
    }

    /// Reads `SEED` (a fresh run) or `SEED/RECIPE`, as [`Display`](std::fmt::Display) writes it.
    pub fn parse(text: &str) -> Result<RunSpec, String> {
        let bad = || format!("{text:?} is not a run like 7 or 7/3+912");
        let (seed, recipe) = match text.split_once('/') {
            Some((seed, recipe)) => (seed, Some(recipe)),
            None => (text, None),
        };
        let seed: u64 = seed.parse().map_err(|_| bad())?;
        let recipe = match recipe {
            Some(recipe) => Recipe::parse(recipe)?,
            None => Recipe::drawn(seed),
        };
        Ok(RunSpec { seed, recipe })
    }
}

impl std::fmt::Display for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.recipe == Recipe::drawn(self.seed) {
            write!(f, "{}", self.seed)
        } else {
            write!(f, "{}/{}", self.seed, self.recipe)
        }
    }
}

/// Runs `schedule` as run `seed` of `template`, and returns every rule it broke. A panic
/// anywhere in the run is a broken rule too, named `panic`.
pub(crate) fn judge_schedule(
    template: &Template,
    seed: u64,
    schedule: &Schedule,
) -> Result<Vec<Broken>, ConfigError> {
    Ok(run_schedule(template, seed, schedule, false)?.broken)
}

/// [`judge_schedule`], and which `[[sometimes]]` entries the run reached.
pub(crate) fn run_schedule(
    template: &Template,
    seed: u64,
    schedule: &Schedule,
    with_states: bool,
) -> Result<Outcome, ConfigError> {
    let loaded = template.loaded(seed, schedule)?;
    let ran = catch_unwind(AssertUnwindSafe(|| loaded.run(seed)));
    Ok(match ran {
        Ok(run) => {
            let entries = &run.output.timeline.entries;
            let reached = (loaded.scenario.sometimes.iter().enumerate())
                .filter(|(_, sometimes)| reached(sometimes, entries))
                .map(|(index, _)| index)
                .collect();
            // A drawn fault that happened to do nothing is no failure.
            let broken = (run.verdicts.into_iter())
                .filter(|verdict| !verdict.ok && verdict.check != crate::judge::IDLE_FAULTS)
                .map(|verdict| Broken {
                    check: verdict.check,
                    detail: verdict.detail,
                })
                .collect();
            let states = match with_states {
                true => coverage::states(entries),
                false => Vec::new(),
            };
            Outcome {
                broken,
                reached,
                states,
            }
        }
        Err(payload) => {
            let message = (payload.downcast_ref::<String>().cloned())
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            let broken = vec![Broken {
                check: "panic".into(),
                detail: message,
            }];
            Outcome {
                broken,
                reached: Vec::new(),
                states: Vec::new(),
            }
        }
    })
}

/// Whether a run whose timeline is `entries` reached `sometimes`: an event of its kind, on its
/// nodes.
fn reached(sometimes: &Sometimes, entries: &[Entry]) -> bool {
    entries.iter().any(|entry| {
        let node = (sometimes.node.as_ref()).is_none_or(|node| node.contains(&entry.node));
        node && entry
            .system()
            .is_some_and(|event| event.kind() == sometimes.kind)
    })
}

/// Where run `seed`'s file goes: `{out}/{stem}-seed-{seed}{suffix}.toml`.
pub(crate) fn file_for(template: &Template, out: &Path, seed: u64, suffix: &str) -> PathBuf {
    out.join(format!("{}-seed-{seed}{suffix}.toml", template.stem()))
}

fn say(line: &WorkerLine) {
    let mut stdout = std::io::stdout().lock();
    let json = serde_json::to_string(line).expect("worker lines serialize");
    // The parent reads until the pipe closes; a write that fails means it is gone.
    let _ = writeln!(stdout, "{json}").and_then(|_| stdout.flush());
}

/// The worker's resident memory, from /proc (Linux); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Runs each run and reports it, with the states it reached if `with_states`; writes a failing
/// run's scenario file into `out`. Stops early once the process holds more than `max_rss`
/// bytes.
pub fn run_seeds(
    template: &Template,
    runs: &[RunSpec],
    out: &Path,
    max_rss: u64,
    with_states: bool,
) -> Result<(), ConfigError> {
    for run in runs {
        let seed = run.recipe.sim_seed(run.seed);
        let schedule = run.recipe.schedule(template)?;
        let outcome = run_schedule(template, seed, &schedule, with_states)?;
        let Outcome {
            broken,
            reached,
            states,
        } = outcome;
        let first = broken.into_iter().next();
        let file = match &first {
            None => None,
            Some(broken) => {
                let header = [
                    drawn_by(template, run),
                    format!("Breaks: {}", broken.check),
                    format!("  {}", broken.detail),
                ];
                Some(write(
                    &file_for(template, out, run.seed, ""),
                    &template.render(seed, &schedule, &header),
                )?)
            }
        };
        say(&WorkerLine::Ran {
            seed: run.seed,
            broken: first,
            file,
            reached,
            states,
        });
        if resident_bytes().is_some_and(|bytes| bytes > max_rss) {
            break;
        }
    }
    Ok(())
}

/// The header line that says where a run's schedule came from.
fn drawn_by(template: &Template, run: &RunSpec) -> String {
    match run.recipe.mutations.is_empty() {
        true => format!("Drawn by `sim explore {}` for seed {}.", template.path, run.seed),
        false => format!(
            "Drawn by `sim explore --guided {}` (run {}): seed {}'s schedule mutated {} times ({}), run with seed {}.",
            template.path,
            run.seed,
            run.recipe.base,
            run.recipe.mutations.len(),
            run.recipe,
            run.recipe.sim_seed(run.seed)
        ),
    }
}

fn write(path: &Path, text: &str) -> Result<String, ConfigError> {
    let shown = path.display().to_string();
    let failed = |error: std::io::Error| {
        crate::scenario::source::error_at(
            &shown,
            Default::default(),
            format!("cannot write: {error}"),
        )
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    std::fs::write(path, text).map_err(failed)?;
    Ok(shown)
}

/// Shrinks run `seed`'s schedule while `check` still breaks: the first simpler schedule that
/// breaks it replaces the schedule, until none does or the budget is spent. Returns the
/// schedule and the runs it took.
pub fn shrink(
    start: Schedule,
    budget: usize,
    simpler: impl Fn(&Schedule) -> Vec<Schedule>,
    mut breaks: impl FnMut(&Schedule) -> Result<bool, ConfigError>,
) -> Result<(Schedule, usize), ConfigError> {
    let mut current = start;
    let mut runs = 0;
    'simpler: while runs < budget {
        for candidate in simpler(&current) {
            if runs == budget {
                break 'simpler;
            }
            runs += 1;
            if breaks(&candidate)? {
                current = candidate;
                continue 'simpler;
            }
        }
        break;
    }
    Ok((current, runs))
}

/// The shortest prefix of `start`'s faults that still breaks, found by bisection, and the runs
/// it took. A failure at some moment needs nothing drawn after it, and most runs fail well
/// before their faults stop: cutting the tail first leaves the slower one-by-one shrinking
/// only the faults that came before.
pub fn shortest_prefix(
    start: Schedule,
    mut breaks: impl FnMut(&Schedule) -> Result<bool, ConfigError>,
) -> Result<(Schedule, usize), ConfigError> {
    let prefix = |length: usize| Schedule {
        steps: start.steps[..length].to_vec(),
        ..start.clone()
    };
    // `high` breaks (the whole schedule does); every length below `low` was found not to.
    let (mut low, mut high, mut runs) = (0, start.steps.len(), 0);
    while low < high {
        let middle = (low + high) / 2;
        runs += 1;
        match breaks(&prefix(middle))? {
            true => high = middle,
            false => low = middle + 1,
        }
    }
    Ok((prefix(high), runs))
}

/// What a failure's detail says, without its numbers: "term 2 has two leaders: master-5 took
/// office at 0:00:12.587" reads "term # has two leaders: master-# took office at #". A number
/// takes its unit and separators with it (`2s500ms`, `15/23`, `0..0ms`).
pub(crate) fn reason(detail: &str) -> String {
    const UNITS: [&str; 6] = ["ms", "µs", "ns", "s", "m", "h"];
    let mut out = String::new();
    let mut rest = detail;
    while let Some(c) = rest.chars().next() {
        if !c.is_ascii_digit() {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        out.push('#');
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_ascii_digit() || ".:/".contains(c));
            let unit = UNITS.iter().find(|unit| {
                rest.strip_prefix(**unit).is_some_and(|after| {
                    !after.starts_with(|c: char| c.is_alphabetic())
                        || after.starts_with(|c: char| c.is_ascii_digit())
                })
            });
            match unit {
                Some(unit) => rest = &rest[unit.len()..],
                None => break,
            }
            if !rest.starts_with(|c: char| c.is_ascii_digit()) {
                break;
            }
        }
    }
    out
}

/// Shrinks run `seed` of `template` while `check` breaks, writes the result into `out` and
/// reports it.
pub fn shrink_seed(
    template: &Template,
    run: &RunSpec,
    check: &str,
    out: &Path,
) -> Result<(), ConfigError> {
    let seed = run.recipe.sim_seed(run.seed);
    let drawn = run.recipe.schedule(template)?;
    let ground = template.ground_at(&drawn.vary)?;
    let from = drawn.steps.len();
    // The same rule, for the same reason: a simpler schedule that breaks it some other way
    // (a partition never healed where a vote was counted twice) is another failure.
    let first = judge_schedule(template, seed, &drawn)?;
    let why = (first.iter().find(|broken| broken.check == check)).map(|b| reason(&b.detail));
    // Only an invariant holds at every moment. Any other check judges how the run recovered,
    // and without the liveness phase that undoes the faults, a fault that lasts (a revoked
    // agent, a node left down) breaks it trivially: a different failure, not a simpler one.
    let needs_liveness = !check.starts_with("invariant");
    let simpler = |schedule: &Schedule| {
        let mut simpler = ground.simpler(schedule);
        simpler.retain(|candidate| candidate.liveness || !needs_liveness);
        simpler
    };
    let mut breaks = |candidate: &Schedule| -> Result<bool, ConfigError> {
        let broken = judge_schedule(template, seed, candidate)?;
        Ok((broken.iter()).any(|broken| {
            broken.check == check
                && why
                    .as_ref()
                    .is_none_or(|why| *why == reason(&broken.detail))
        }))
    };
    let (prefix, cut) = shortest_prefix(drawn, &mut breaks)?;
    let (schedule, runs) = shrink(prefix, SHRINK_BUDGET - cut, simpler, breaks)?;
    let runs = runs + cut;
    let broken = judge_schedule(template, seed, &schedule)?;
    let detail = (broken.iter().find(|broken| broken.check == check))
        .map_or("(no longer breaks: the shrinker's last run differs)", |b| {
            b.detail.as_str()
        });
    let path = file_for(template, out, run.seed, "-shrunk");
    let faults = schedule.steps.len();
    let header = [
        format!("Breaks: {check}"),
        format!("  {detail}"),
        format!(
            "Found by `sim explore {}` (seed {seed}), shrunk from {from} faults to {faults} in {runs} runs.",
            template.path
        ),
        format!(
            "Replay: {SIM} run {}",
            path.display()
        ),
    ];
    let file = write(&path, &template.render(seed, &schedule, &header))?;
    say(&WorkerLine::Shrunk {
        seed: run.seed,
        check: check.to_string(),
        file,
        faults,
        from,
        runs,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_reaches_an_entry_by_its_kind_on_its_nodes() {
        use crate::history::tests::{fault, fired};
        use crate::history::Happening;
        use fleet_core::timeline::{Event, RaftEvent};
        let text = "name = \"t\"\nduration = \"1m\"\n[topology]\nmasters = 3\nagents = 2\n\
                    [[sometimes]]\nkind = \"stepped_down\"\n\
                    [[sometimes]]\nkind = \"stepped_down\"\nnode = \"master-3\"\n";
        let entries = crate::scenario::Scenario::parse("t.toml", text)
            .unwrap()
            .sometimes;
        let stepped = Entry {
            t_ms: 5,
            node: "master-1".into(),
            clock_ms: 0,
            event: Happening::System(Event::Raft(RaftEvent::SteppedDown {
                term: 2,
                reason: "lost quorum".into(),
            })),
        };
        let timeline = [fault(1, fired("crash = \"master-3\"", &[])), stepped];
        assert!(reached(&entries[0], &timeline));
        assert!(!reached(&entries[1], &timeline), "not on master-3");
    }
    use crate::explore::plan::{Ground, Step};
    use crate::scenario::faults::FaultAction;
    use crate::scenario::Scenario;
    use std::time::Duration;

    fn template() -> Scenario {
        Scenario::parse(
            "t.toml",
            "name = \"t\"\nduration = \"30s\"\n[topology]\nmasters = 3\nagents = 2\n\
             [explore]\nfaults = [\"crash\"]\ntargets = \"all\"\nmean_gap = \"2s\"\n\
             until = \"20s\"\nliveness = \"10s\"\n",
        )
        .unwrap()
    }

    #[test]
    fn a_reason_is_the_detail_without_its_numbers() {
        let reason = super::reason;
        assert_eq!(
            reason("term 2 has two leaders: master-5 took office at 0:00:12.587"),
            "term # has two leaders: master-# took office at #"
        );
        assert_eq!(
            reason("agent-4 attempt 1 waited 2s500ms; the policy allows 0..0ms"),
            reason("agent-1 attempt 12 waited 349ms; the policy allows 0..0ms"),
        );
        assert_eq!(reason("15/23 completed, 1st"), "# completed, #st");
        assert_ne!(
            reason("master-1-3 to agent-2: accepted, never sent, never reported lost"),
            reason("master-1-3 to agent-2: completed twice"),
        );
    }

    #[test]
    fn shrinking_keeps_only_what_the_failure_needs() {
        let scenario = template();
        let ground = Ground::of(&scenario);
        let crash = |node: &str| FaultAction::Crash(scenario.topology.select(node).unwrap());
        let step = |at: u64, node: &str| Step {
            at: Duration::from_secs(at),
            action: crash(node),
        };
        let start = Schedule {
            steps: vec![
                step(1, "master-1"),
                step(2, "master-2"),
                step(3, "agent-1"),
                step(4, "master-3"),
                step(5, "agent-2"),
            ],
            liveness: true,
            gone: Vec::new(),
            vary: Vec::new(),
        };
        // Breaks whenever master-2 and master-3 both crash.
        let needs = |schedule: &Schedule| {
            let crashed = |node: &str| (schedule.steps.iter()).any(|s| s.action == crash(node));
            Ok(crashed("master-2") && crashed("master-3"))
        };
        let simpler = |schedule: &Schedule| ground.simpler(schedule);
        let (shrunk, runs) = shrink(start.clone(), 100, simpler, needs).unwrap();
        assert_eq!(shrunk.steps, vec![step(2, "master-2"), step(4, "master-3")]);
        assert!(!shrunk.liveness);
        assert!(runs < 30, "{runs}");
        let (_, capped) = shrink(start.clone(), 3, simpler, needs).unwrap();
        assert_eq!(capped, 3);
        // The tail after the last fault it needs goes first, in a logarithm of runs.
        let (prefix, runs) = shortest_prefix(start.clone(), needs).unwrap();
        assert_eq!(prefix.steps, start.steps[..4]);
        assert_eq!(runs, 3);
        let (none, _) = shortest_prefix(start, |_| Ok(true)).unwrap();
        assert!(none.steps.is_empty());
    }
}
