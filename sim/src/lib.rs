//! The simulation harness: scenario files in, a deterministic timeline and verdicts out. Each
//! stage is a folder, and each imports only the stages above it in this list:
//!
//! - [`scenario`] reads and checks a scenario file (limits, nodes, faults, located errors);
//! - [`history`] holds a run's timeline and what it says: who was online, who led, what the
//!   faults hit;
//! - [`run`] runs a scenario on madsim (the simulation build) or turmoil (the native build),
//!   injects its faults and captures the timeline; it reads who leads from the history so far;
//! - [`judge`] compiles the `[[expect]]` checks and judges a timeline, invariants included;
//! - [`report`] prints it all, as text or JSON;
//! - [`seeds`] chooses the seeds a command runs and runs one scenario on many of them side by
//!   side (`--seeds`); [`check`] runs each seed twice and compares the timelines; [`bench`]
//!   times runs; [`progress`] draws bars on stderr while they go;
//! - [`sweep`] runs it over a grid of parameter values × seeds and tabulates what it measured;
//! - [`explore`] runs a template under fault schedules drawn from each seed, judges every run
//!   and shrinks the failures into scenario files;
//! - [`builder`] builds a scenario in code for a test of your own (`Scenario::builder`), as
//!   the TOML a file would hold, read by the same parser.
//!
//! The `sim` command (`src/main.rs`) only reads flags, calls these and prints what they return;
//! [`exit`] holds its exit codes and the one error it ends with.
//!
//! The public surface, for a test of your own: load a scenario ([`load`], [`parse`], or
//! [`Scenario::builder`]), run and judge it ([`Loaded::run`]), and read the [`Judged`] result:
//! its verdicts, its typed events and faults. The stages stay public so a test can look deeper
//! (the history of a run, a check's verdict, the JSON report), but what only serves another
//! stage (the runner's machinery, the judges' parsers, exploration's schedules) is
//! `pub(crate)`.

/// Every program that links the harness (the `sim` command, its tests, the `raw_heartbeats`
/// example it is compared with) allocates through mimalloc. A run allocates and frees
/// constantly (frames, events, tasks), and with exploration's workers on every core glibc's
/// malloc cost a quarter of the time: `sim explore` went from 135 to 166 runs/s on `raft`,
/// 190 to 285 on `lease`, 193 to 336 on `single` (README, "Speed"). No run's outcome depends
/// on where memory lands: the determinism checks compare whole timelines.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod bench;
pub mod builder;
pub mod check;
pub mod exit;
pub mod explore;
pub mod history;
pub mod judge;
pub mod progress;
pub mod report;
pub mod run;
pub mod scenario;
pub mod seeds;
pub mod sweep;
pub mod zoo;

pub use builder::ScenarioBuilder;
pub use scenario::Scenario;

use judge::Expectation;
use scenario::overrides::Override;
use scenario::ConfigError;
use std::path::Path;

/// A scenario ready to run: its file checked and its expectations compiled.
#[derive(Debug)]
pub struct Loaded {
    pub scenario: Scenario,
    pub expectations: Vec<Expectation>,
}

/// Reads, checks and compiles a scenario file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_with(path, &[])
}

/// [`load`], with `--set` overrides applied to the file's text first; an override the checks
/// refuse is named in the error.
pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Loaded, ConfigError> {
    let text = scenario::source::read(path)?;
    parse_with(&path.display().to_string(), &text, overrides).map(|(_, loaded)| loaded)
}

/// [`load`] for text in hand; `path` only labels errors.
pub fn parse(path: &str, text: &str) -> Result<Loaded, ConfigError> {
    let scenario = Scenario::parse(path, text)?;
    let expectations = judge::compile(&scenario)?;
    Ok(Loaded {
        scenario,
        expectations,
    })
}

/// [`parse`] with overrides; also returns the text they made.
pub(crate) fn parse_with(
    path: &str,
    text: &str,
    overrides: &[Override],
) -> Result<(String, Loaded), ConfigError> {
    let (text, mut loaded) =
        scenario::overrides::apply(path, text, overrides, |text| parse(path, text))?;
    loaded.scenario.overrides = overrides.iter().map(Override::flag).collect();
    Ok((text, loaded))
}

/// One run of a scenario: what happened, and what the checks made of it.
///
/// The library's entry point for a test of your own (on either engine):
///
/// ```ignore
/// let loaded = sim::parse("mine.toml", r#"
///     name = "mine"
///     duration = "30s"
///     [topology]
///     agents = 3
///     [[faults]]
///     at = "10s"
///     crash = "agent-2"
///     [[expect]]
///     check = "offline_within"
///     agents = "agent-2"
///     after = "10s"
///     within = "5s"
/// "#)?;
/// let run = loaded.run(7);
/// assert!(run.passed(), "{:?}", run.failures());
/// let offline = run.events().filter(|(_, node, event)| {
///     *node == "master-1" && matches!(event, Event::Master(MasterEvent::NodeOffline { .. }))
/// });
/// assert_eq!(offline.count(), 1);
/// ```
///
/// (`sim/tests/library.rs` is this example, run.)
#[derive(Clone, Debug)]
pub struct Judged {
    pub output: run::RunOutput,
    pub verdicts: Vec<judge::Verdict>,
}

impl Judged {
    /// Every expectation, invariant and rule held.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|verdict| verdict.ok)
    }

    /// The verdicts that failed.
    pub fn failures(&self) -> Vec<&judge::Verdict> {
        self.verdicts.iter().filter(|verdict| !verdict.ok).collect()
    }

    /// The verdict whose title starts with `check` (its check's name, like `all_online`).
    pub fn verdict(&self, check: &str) -> Option<&judge::Verdict> {
        self.verdicts
            .iter()
            .find(|verdict| verdict.check.starts_with(check))
    }

    /// The control plane's events, typed, as `(t_ms, node, event)`.
    pub fn events(&self) -> impl Iterator<Item = (u64, &str, &fleet_core::timeline::Event)> {
        (self.output.timeline.entries.iter())
            .filter_map(|entry| Some((entry.t_ms, entry.node.as_str(), entry.system()?)))
    }

    /// The faults the harness injected, as `(t_ms, fault)`.
    pub fn faults(&self) -> impl Iterator<Item = (u64, &history::FaultEvent)> {
        (self.output.timeline.entries.iter()).filter_map(|entry| Some((entry.t_ms, entry.fault()?)))
    }
}

impl Loaded {
    /// Runs the scenario with `seed` and judges the timeline: the one call a test or a command
    /// needs.
    pub fn run(&self, seed: u64) -> Judged {
        let output = run::run(&self.scenario, seed);
        let verdicts = judge::evaluate(&self.scenario, &self.expectations, &output.timeline);
        Judged { output, verdicts }
    }
}
