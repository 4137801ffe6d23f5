//! `sim run FILE` runs a scenario and prints its timeline and verdicts; `sim check FILE...` runs
//! each scenario twice and fails on the first difference between the two timelines; `sim
//! explore FILE` runs a template under random fault schedules and shrinks what fails.
//!
//! This file only reads flags, calls the library and prints what it returns. Exit codes
//! ([`sim::exit`]): 0 every expectation holds (or the runs match, or no run failed), 1 one
//! failed (or they differ), 2 bad input, 3 an output file could not be written.

use clap::{Args, Parser, Subcommand};
use fleet_core::bugs::Bug;
use sim::exit::{self, passed, Error};
use sim::explore::pool::{self, Options, Seeds};
use sim::explore::worker::RunSpec;
use sim::explore::{summary, worker, Template};
use sim::scenario::{overrides::Override, Scenario};
use sim::seeds::{seed_list, Choice, ManyRuns, SeedList};
use sim::{check, progress, report, sweep, zoo, Loaded};
use std::path::{Path, PathBuf};

/// `--version`: the crate's, and the engine this build runs scenarios on.
const VERSION: &str = if cfg!(madsim) {
    concat!(env!("CARGO_PKG_VERSION"), " (madsim)")
} else {
    concat!(env!("CARGO_PKG_VERSION"), " (turmoil)")
};

#[derive(Parser)]
#[command(
    name = "sim",
    version = VERSION,
    about = "Deterministic simulation of the fleet control plane",
    after_help = "Examples:
  sim run scenarios/master-restart.toml                 run one scenario, print its timeline
  sim run scenarios/raft-leader-crash.toml --seeds 1..100   a property over 100 seeds
  sim sweep scenarios/tune-detection.toml --grid params.heartbeat.max_miss=2,3 --seeds 1..50
  sim check scenarios/*.toml                            every scenario twice: deterministic?
  sim explore scenarios/explore/raft.toml --runs 2000   random faults; shrink what fails

The seed: --seed N, or MADSIM_TEST_SEED=N (MADSIM_TEST_NUM=K runs seeds N..N+K-1).
The engine: madsim in the simulation build (cargo run --release -p sim -- ...), turmoil in
the native build (cargo native run --release -p sim -- ...); `sim --version` names this one's.
Exit codes: 0 every expectation held, 1 one failed, 2 bad input, 3 an output file could not
be written."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// The flags several commands share, each declared once and flattened into each command.

/// A scenario file and the overrides applied to it.
#[derive(Args)]
struct ScenarioFile {
    file: PathBuf,
    #[command(flatten)]
    overrides: Overrides,
}

/// `--set KEY=VALUE` and `--bug NAME`, repeatable.
#[derive(Args)]
struct Overrides {
    /// Change the file before it is checked: a dotted KEY into it and a VALUE, like
    /// params.heartbeat.max_miss=2 or cluster.election_timeout=150ms..300ms. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = Override::parse)]
    set: Vec<Override>,
    /// Plant this bug of the zoo in the control plane (a build with `--features bugs`
    /// only; `sim zoo --list` names them). Repeatable.
    #[arg(long = "bug", value_name = "NAME", value_parser = parse_bug)]
    bugs: Vec<Bug>,
}

fn parse_bug(name: &str) -> Result<Bug, String> {
    name.parse()
}

impl Overrides {
    /// The `--set` flags, and `--bug` as one more: `bugs = [...]`.
    fn all(&self) -> Vec<Override> {
        let mut all = self.set.clone();
        if !self.bugs.is_empty() {
            let names: Vec<String> = self
                .bugs
                .iter()
                .map(|bug| format!("{:?}", bug.name()))
                .collect();
            let planted = Override::parse(&format!("bugs=[{}]", names.join(",")));
            all.extend(planted);
        }
        all
    }
}

/// The seeds to run; without either flag, madsim's variables, else the scenario's seed.
#[derive(Args)]
struct SeedFlags {
    /// Override the scenario's seed [default: MADSIM_TEST_SEED, else the file's].
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Many seeds, side by side: a range like 1..32 (both included) or a list 1,5,9. `run`
    /// prints one line per failing seed, then a summary; `check` checks each seed of each file.
    #[arg(long, value_parser = seed_list)]
    seeds: Option<SeedList>,
}

impl SeedFlags {
    fn choice(&self) -> Choice {
        Choice::from_env(self.seed, self.seeds.clone())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario and print its timeline, verdicts and stats.
    #[command(after_help = "Examples:
  sim run scenarios/master-restart.toml
  sim run scenarios/master-restart.toml --seed 7 --filter node=agent-3,kind=connect_attempt
  sim run scenarios/fleet-1h.toml --verdicts-only
  sim run scenarios/raft-leader-crash.toml --seeds 1..100
  sim run scenarios/master-restart.toml --set params.heartbeat.max_miss=2 --json")]
    Run(RunFlags),
    /// Run a scenario over a grid of parameter values × seeds, in parallel, and print a row
    /// per grid point: the values, the pass rate, and every measured number's median, p90 and
    /// max over the seeds.
    #[command(
        after_help = "Examples:
  sim sweep scenarios/tune-detection.toml --grid params.heartbeat.max_miss=1,2,3,4 \\
      --set params.heartbeat.interval=500ms --seeds 1..50
  sim sweep scenarios/tune-storm.toml --grid params.backoff.base=1s,5s \\
      --grid params.backoff.first_delay=0s..0s,0s..30s --seeds 1..20 --csv storm.csv",
        mut_arg("set", |arg| arg.help(
            "Change the file before it is checked, for every point (as for run). Repeatable"
        ))
    )]
    Sweep(SweepFlags),
    /// Run a scenario several times and print the median wall time and speed-up.
    #[command(after_help = "Example:
  sim bench scenarios/fleet-1h.toml --runs 5")]
    Bench {
        #[command(flatten)]
        scenario: ScenarioFile,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Run each scenario twice with the same seed and compare the timelines.
    #[command(after_help = "Examples:
  sim check scenarios/*.toml
  sim check scenarios/raft-leader-crash.toml --seeds 1..20")]
    Check(CheckFlags),
    /// Run a template (a scenario with an [explore] table) under fault schedules drawn from
    /// each run's seed; check every run; shrink the failures into scenario files.
    #[command(after_help = "Examples:
  sim explore scenarios/explore/raft.toml --runs 2000
  sim explore scenarios/explore/raft.toml --runs 10000 --shard 2/4 --json > shard-2.json
  sim explore --merge shard-*.json")]
    Explore(ExploreFlags),
    /// How fast exploration finds each bug planted in the control plane: for each, the
    /// templates that apply run with it until one run fails or the budget is spent; prints
    /// runs and seconds to the first failure, the rule it broke and its shrunk size. Needs a
    /// build with the planted bugs: cargo run --release -p sim --features bugs -- zoo
    #[command(after_help = "Examples:
  cargo run --release -p sim --features bugs -- zoo
  cargo run --release -p sim --features bugs -- zoo --bug raft_vote_twice --budget 2000
  cargo run --release -p sim --features bugs -- zoo --list")]
    Zoo(ZooFlags),
    /// One worker process of `sim explore` (internal).
    #[command(hide = true)]
    ExploreWorker(WorkerFlags),
}

#[derive(Args)]
struct CheckFlags {
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    seeds: SeedFlags,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Args)]
struct WorkerFlags {
    #[command(flatten)]
    scenario: ScenarioFile,
    #[arg(long)]
    out: PathBuf,
    /// Each run: SEED, or SEED/RECIPE for a guided run's mutated schedule.
    #[arg(long, value_delimiter = ',', value_parser = RunSpec::parse)]
    seeds: Vec<RunSpec>,
    #[arg(long, requires = "check", value_parser = RunSpec::parse)]
    shrink: Option<RunSpec>,
    #[arg(long)]
    check: Option<String>,
    /// Report the abstract states each run reached.
    #[arg(long)]
    states: bool,
}

#[derive(Args)]
struct RunFlags {
    #[command(flatten)]
    scenario: ScenarioFile,
    #[command(flatten)]
    seeds: SeedFlags,
    /// Print one JSON document instead of text (with --seeds, one per seed, a line each).
    #[arg(long)]
    json: bool,
    /// Print only the timeline lines that match: node=NAME-OR-SELECTOR, kind=KIND, joined
    /// by commas (one key's values are alternatives; different keys must all match).
    #[arg(long, value_name = "KEY=VALUE,...", conflicts_with_all = ["json", "verdicts_only"])]
    filter: Option<String>,
    /// Print the header, verdicts and stats, without the timeline.
    #[arg(long, conflicts_with = "json")]
    verdicts_only: bool,
    /// Draw connect attempts per second and agents online over time (faults shaded), and
    /// a histogram of failover times, as SVG files in this directory.
    #[arg(long, conflicts_with = "seeds")]
    plot: Option<PathBuf>,
    /// Write the run as one self-contained HTML page: a lane per node, faults shaded, who
    /// leads as a band, each event's fields on hover.
    #[arg(long, value_name = "OUT.html", conflicts_with = "seeds")]
    html: Option<PathBuf>,
}

#[derive(Args)]
struct SweepFlags {
    #[command(flatten)]
    scenario: ScenarioFile,
    /// A parameter and its values: KEY=V1,V2,... (KEY as for --set). Repeatable; the
    /// grid is every combination.
    #[arg(long, value_name = "KEY=V1,V2,...", value_parser = sweep::Grid::parse, required = true)]
    grid: Vec<sweep::Grid>,
    /// The seeds each point runs: a range like 1..32 or a list 1,5,9.
    #[arg(long, value_parser = seed_list)]
    seeds: SeedList,
    /// Also write one CSV row per run (params, seed, each check's ok and value, metrics).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Also draw each measured number against the grid (median, p10–p90 band) and a
    /// histogram of failover times, as SVG files in this directory.
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Args)]
struct ZooFlags {
    /// Only these bugs [default: every one]. Repeatable.
    #[arg(long = "bug", value_name = "NAME", value_parser = parse_bug)]
    bugs: Vec<Bug>,
    /// Runs per template before a bug counts as not found.
    #[arg(long, default_value_t = 20_000)]
    budget: u64,
    /// The first seeds each search starts from, like 1..5; the table gives the median.
    #[arg(long, value_parser = seed_list, default_value = "1")]
    seeds: SeedList,
    /// Only random search, not guided beside it.
    #[arg(long)]
    random_only: bool,
    /// Worker processes at once [default: the number of CPUs].
    #[arg(long)]
    jobs: Option<usize>,
    /// Print one JSON report instead of the table.
    #[arg(long)]
    json: bool,
    /// Where failing runs' scenario files go, a folder per bug.
    #[arg(long, default_value = "target/zoo")]
    out: PathBuf,
    /// Name every bug, its area and what a user would see, and stop.
    #[arg(long)]
    list: bool,
}

#[derive(Args)]
struct ExploreFlags {
    /// The template; not needed with --merge.
    #[arg(required_unless_present = "merge")]
    file: Option<PathBuf>,
    /// How many runs (seeds) to explore.
    #[arg(long, default_value_t = 100)]
    runs: u64,
    /// Worker processes at once [default: the number of CPUs].
    #[arg(long)]
    jobs: Option<usize>,
    /// The first seed [default: the template's seed].
    #[arg(long)]
    seed: Option<u64>,
    /// Run only the K-th of N disjoint slices of the seeds, as K/N.
    #[arg(long, value_parser = pool::parse_shard)]
    shard: Option<(u64, u64)>,
    /// Print one JSON summary instead of text.
    #[arg(long)]
    json: bool,
    /// Where failing runs' scenario files go.
    #[arg(long, default_value = "target/explore")]
    out: PathBuf,
    /// Steer by what the runs reached: keep the schedules that reached a new state, and spend
    /// half the runs on mutations of them (the same runs whatever --jobs is).
    #[arg(long)]
    guided: bool,
    /// Count the distinct abstract states the runs reached, and print how that grew.
    #[arg(long)]
    coverage: bool,
    /// Add up the JSON summaries of shards into one, instead of exploring.
    #[arg(long, num_args = 1.., conflicts_with = "file")]
    merge: Vec<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

/// `print!`, but a reader that went away (`sim run --json | head -c 100`) ends the command
/// quietly instead of in a panic: what it would have printed has no one to read it.
macro_rules! out {
    ($($arg:tt)*) => { write_out(format_args!($($arg)*)) };
}

/// `println!`, likewise.
macro_rules! outln {
    ($($arg:tt)*) => { write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

fn write_out(text: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(exit::OK);
        }
        eprintln!("error: cannot write the output: {error}");
        std::process::exit(exit::CANNOT_WRITE);
    }
}

fn main() {
    let code = match Cli::parse().command {
        Command::Check(flags) => check(flags),
        Command::Run(flags) => ended(run(flags)),
        Command::Sweep(flags) => ended(sweep(flags)),
        Command::Bench { scenario, runs } => ended(bench(&scenario, runs)),
        Command::Explore(flags) => ended(explore(flags)),
        Command::Zoo(flags) => ended(zoo(flags)),
        Command::ExploreWorker(flags) => ended(explore_worker(flags)),
    };
    std::process::exit(code);
}

/// The exit code of a command that returned `result`, its error printed.
fn ended(result: Result<i32, Error>) -> i32 {
    result.unwrap_or_else(|error| {
        eprintln!("error: {error}");
        error.code()
    })
}

fn load(scenario: &ScenarioFile) -> Result<Loaded, Error> {
    Ok(sim::load_with(&scenario.file, &scenario.overrides.all())?)
}

/// The seeds `choice` means for `scenario`, saying so when the scenario pins its own.
fn seeds_for(choice: &Choice, scenario: &Scenario) -> Vec<u64> {
    let (seeds, note) = choice.seeds(scenario);
    if let Some(note) = note {
        eprintln!("{note}");
    }
    seeds
}

fn run(flags: RunFlags) -> Result<i32, Error> {
    let loaded = load(&flags.scenario)?;
    let seed = match flags.seeds.choice() {
        many @ Choice::Many(_) => return run_many(&flags, &loaded, &many),
        Choice::One(seed) => seed,
        Choice::Scenario => loaded.scenario.seed,
    };
    let scenario = &loaded.scenario;
    let filter = (flags.filter.as_deref())
        .map(|text| report::Filter::parse(text, scenario))
        .transpose()
        .map_err(Error::BadFlag)?;
    let run = progress::run_with_progress(&loaded, seed);
    let (only, entries) = (flags.verdicts_only, &run.output.timeline.entries);
    let printed = report::run_printed(scenario, &run, flags.json, filter.as_ref(), only);
    out!("{printed}");
    if let Some(dir) = &flags.plot {
        report::plot::run_plots(dir, scenario, entries).map_err(Error::Plot)?;
    }
    if let Some(path) = &flags.html {
        Error::write(path, report::html::page(scenario, seed, entries))?;
    }
    if !run.passed() {
        let (file, overrides) = (&flags.scenario.file, flags.scenario.overrides.all());
        let overrides = &overrides;
        let reproduce = sim::seeds::reproduce(file, overrides, seed);
        eprintln!("reproduce: {reproduce}");
    }
    Ok(passed(run.passed()))
}

fn run_many(flags: &RunFlags, loaded: &Loaded, choice: &Choice) -> Result<i32, Error> {
    let (file, overrides) = (&flags.scenario.file, flags.scenario.overrides.all());
    let overrides = &overrides;
    let many = ManyRuns::run(loaded, &seeds_for(choice, &loaded.scenario), flags.json);
    out!("{}", many.text(file, overrides));
    if flags.json {
        // Stdout is only the documents.
        eprintln!("{}", many.summary(file));
    }
    Ok(passed(many.failed().is_empty()))
}

/// Each file is checked whatever the others did; the worst code wins.
fn check(flags: CheckFlags) -> i32 {
    let choice = flags.seeds.choice();
    (flags.files.iter())
        .map(|file| ended(check_file(file, &flags.overrides.all(), &choice)))
        .max()
        .unwrap_or(exit::OK)
}

fn check_file(file: &Path, overrides: &[Override], choice: &Choice) -> Result<i32, Error> {
    let scenario = sim::load_with(file, overrides)?.scenario;
    let checked = check::check(&scenario, &seeds_for(choice, &scenario));
    out!("{}", check::text(file, &checked));
    Ok(passed(check::deterministic(&checked)))
}

fn bench(scenario: &ScenarioFile, runs: usize) -> Result<i32, Error> {
    let scenario = load(scenario)?.scenario;
    let walls = sim::bench::bench(&scenario, runs, |number, wall| {
        outln!("{}", sim::bench::run_line(&scenario, number, wall));
    });
    outln!("{}", sim::bench::median_line(&scenario, &walls));
    Ok(exit::OK)
}

fn sweep(flags: SweepFlags) -> Result<i32, Error> {
    let (file, seeds, grids) = (&flags.scenario.file, &flags.seeds.0, &flags.grid);
    let swept = sweep::Sweep::load(file, &flags.scenario.overrides.all(), grids)?;
    let bar = progress::runs_bar((swept.points.len() * seeds.len()) as u64);
    let start = std::time::Instant::now();
    let runs = swept.run(seeds, || bar.inc(1));
    bar.finish_and_clear();
    out!("{}", sweep::table(grids, &swept.points, &runs));
    outln!("{}", swept.summary(file, seeds.len(), start.elapsed()));
    if let Some(path) = &flags.csv {
        Error::write(path, sweep::csv(grids, &swept.points, &runs))?;
    }
    if let Some(dir) = &flags.plot {
        let files = sweep::plot(dir, grids, &swept.points, &runs).map_err(Error::Plot)?;
        outln!("plots: {} files in {}", files.len(), dir.display());
    }
    Ok(exit::OK)
}

fn explore(flags: ExploreFlags) -> Result<i32, Error> {
    let Some(file) = flags.file else {
        let merged = summary::merge(&flags.merge).map_err(Error::BadFlag)?;
        return Ok(print_summary(&merged, flags.json));
    };
    let template = Template::load_with(&file, &flags.overrides.all())?;
    let (first, runs) = (flags.seed.unwrap_or(template.scenario.seed), flags.runs);
    sim::seeds::check_range(first, runs).map_err(Error::BadFlag)?;
    let sometimes = (template.scenario.sometimes.iter())
        .map(ToString::to_string)
        .collect();
    let options = Options {
        file,
        sometimes,
        overrides: flags.overrides.all(),
        seeds: Seeds {
            first,
            runs,
            shard: flags.shard.unwrap_or((1, 1)),
        },
        jobs: flags.jobs.unwrap_or_else(sim::seeds::cores),
        out: flags.out,
        guided: flags.guided,
        coverage: flags.coverage,
        stop_early: false,
    };
    let summary = pool::explore(&options).map_err(Error::Explore)?;
    Ok(print_summary(&summary, flags.json))
}

fn print_summary(summary: &summary::Summary, json: bool) -> i32 {
    if json {
        let text = serde_json::to_string_pretty(summary).expect("summaries serialize");
        outln!("{text}");
        let unreached = summary.unreached();
        if !unreached.is_empty() {
            eprintln!("never reached: {}", unreached.join(", "));
        }
        let last = summary::last_line(summary.runs, summary.wall_ms, summary.failed.len());
        eprintln!("{last}");
    } else {
        // The text says NEVER beside each entry no run reached.
        out!("{}", pool::text(summary));
    }
    passed(summary.passed())
}

fn zoo(flags: ZooFlags) -> Result<i32, Error> {
    if flags.list {
        for bug in Bug::ALL {
            outln!("{:34} {:13} {}", bug.name(), bug.area(), bug.seen());
        }
        return Ok(exit::OK);
    }
    fleet_core::bugs::Bugs::of(Bug::ALL).map_err(Error::BadFlag)?;
    let zoo = zoo::Zoo {
        bugs: match flags.bugs.is_empty() {
            true => Bug::ALL.to_vec(),
            false => flags.bugs,
        },
        budget: flags.budget,
        first_seeds: flags.seeds.0,
        guided: !flags.random_only,
        jobs: flags.jobs.unwrap_or_else(sim::seeds::cores),
        out: flags.out,
    };
    let report = zoo
        .run(|found| {
            let outcome = match &found.rule {
                Some(rule) => format!("found in {} runs: {rule}", found.random.runs),
                None => format!("NOT found in {} runs", found.random.runs),
            };
            eprintln!("zoo: {} {outcome}", found.name);
        })
        .map_err(Error::Explore)?;
    if flags.json {
        let text = serde_json::to_string_pretty(&report).expect("reports serialize");
        outln!("{text}");
    } else {
        out!("{}", zoo::table(&report));
    }
    Ok(passed(report.found == report.bugs.len()))
}

fn explore_worker(flags: WorkerFlags) -> Result<i32, Error> {
    // A panic inside a run is reported as a broken rule, not printed.
    std::panic::set_hook(Box::new(|_| {}));
    let scenario = &flags.scenario;
    let template = Template::load_with(&scenario.file, &scenario.overrides.all())?;
    match flags.shrink.zip(flags.check) {
        Some((run, check)) => worker::shrink_seed(&template, &run, &check, &flags.out)?,
        None => {
            let (runs, out, states) = (&flags.seeds, &flags.out, flags.states);
            worker::run_seeds(&template, runs, out, pool::WORKER_MAX_RSS, states)?
        }
    }
    Ok(exit::OK)
}
