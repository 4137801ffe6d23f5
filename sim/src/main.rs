//! `sim run FILE` runs a scenario and prints its timeline and verdicts; `sim check FILE...` runs
//! each scenario twice and fails on the first difference between the two timelines; `sim
//! explore FILE` runs a template under random fault schedules and shrinks what fails.
//!
//! Exit codes: 0 every expectation holds (or the runs match, or no run failed), 1 one failed
//! (or they differ), 2 bad input.

use clap::{Parser, Subcommand};

/// The engine this build runs scenarios on, as a literal for `--version`.
#[cfg(madsim)]
macro_rules! sim_engine {
    () => {
        "madsim"
    };
}
#[cfg(not(madsim))]
macro_rules! sim_engine {
    () => {
        "turmoil"
    };
}
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sim",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", sim_engine!(), ")"),
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
Exit codes: 0 every expectation held, 1 one failed, 2 bad input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    Run {
        file: PathBuf,
        /// Override the scenario's seed.
        #[arg(long, conflicts_with = "seeds")]
        seed: Option<u64>,
        /// Run many seeds, side by side: a range like 1..32 (both included) or a list 1,5,9.
        /// Prints one line per failing seed, then a summary.
        #[arg(long, value_parser = sim::seeds::seed_list)]
        seeds: Option<sim::seeds::SeedList>,
        /// Print one JSON document instead of text (with --seeds, one per seed, a line each).
        #[arg(long)]
        json: bool,
        /// Change the file before it is checked: a dotted KEY into it and a VALUE, like
        /// params.heartbeat.max_miss=2 or cluster.election_timeout=150ms..300ms. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = sim::scenario::overrides::Override::parse)]
        set: Vec<sim::scenario::overrides::Override>,
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
    },
    /// Run a scenario over a grid of parameter values × seeds, in parallel, and print a row
    /// per grid point: the values, the pass rate, and every measured number's median, p90 and
    /// max over the seeds.
    #[command(after_help = "Examples:
  sim sweep scenarios/tune-detection.toml --grid params.heartbeat.max_miss=1,2,3,4 \\
      --set params.heartbeat.interval=500ms --seeds 1..50
  sim sweep scenarios/tune-storm.toml --grid params.backoff.base=1s,5s \\
      --grid params.backoff.first_delay=0s..0s,0s..30s --seeds 1..20 --csv storm.csv")]
    Sweep {
        file: PathBuf,
        /// A parameter and its values: KEY=V1,V2,... (KEY as for --set). Repeatable; the
        /// grid is every combination.
        #[arg(long, value_name = "KEY=V1,V2,...", value_parser = sim::sweep::Grid::parse, required = true)]
        grid: Vec<sim::sweep::Grid>,
        /// The seeds each point runs: a range like 1..32 or a list 1,5,9.
        #[arg(long, value_parser = sim::seeds::seed_list)]
        seeds: sim::seeds::SeedList,
        /// Also write one CSV row per run (params, seed, each check's ok and value, metrics).
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Also draw each measured number against the grid (median, p10–p90 band) and a
        /// histogram of failover times, as SVG files in this directory.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Change the file before it is checked, for every point (as for run). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = sim::scenario::overrides::Override::parse)]
        set: Vec<sim::scenario::overrides::Override>,
    },
    /// Run a scenario several times and print the median wall time and speed-up.
    #[command(after_help = "Example:
  sim bench scenarios/fleet-1h.toml --runs 5")]
    Bench {
        file: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Change the file before it is checked: a dotted KEY into it and a VALUE, like
        /// params.heartbeat.max_miss=2 or cluster.election_timeout=150ms..300ms. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = sim::scenario::overrides::Override::parse)]
        set: Vec<sim::scenario::overrides::Override>,
    },
    /// Run each scenario twice with the same seed and compare the timelines.
    #[command(after_help = "Examples:
  sim check scenarios/*.toml
  sim check scenarios/raft-leader-crash.toml --seeds 1..20")]
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Override the scenarios' seeds.
        #[arg(long, conflicts_with = "seeds")]
        seed: Option<u64>,
        /// Check many seeds of each file, side by side: 1..20 or 1,5,9.
        #[arg(long, value_parser = sim::seeds::seed_list)]
        seeds: Option<sim::seeds::SeedList>,
        /// Change the file before it is checked: a dotted KEY into it and a VALUE, like
        /// params.heartbeat.max_miss=2 or cluster.election_timeout=150ms..300ms. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = sim::scenario::overrides::Override::parse)]
        set: Vec<sim::scenario::overrides::Override>,
    },
    /// Run a template (a scenario with an [explore] table) under fault schedules drawn from
    /// each run's seed; check every run; shrink the failures into scenario files.
    #[command(after_help = "Examples:
  sim explore scenarios/explore/raft.toml --runs 2000
  sim explore scenarios/explore/raft.toml --runs 10000 --shard 2/4 --json > shard-2.json
  sim explore --merge shard-*.json")]
    Explore {
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
        #[arg(long, value_parser = sim::explore::pool::parse_shard)]
        shard: Option<(u64, u64)>,
        /// Print one JSON summary instead of text.
        #[arg(long)]
        json: bool,
        /// Where failing runs' scenario files go.
        #[arg(long, default_value = "target/explore")]
        out: PathBuf,
        /// Add up the JSON summaries of shards into one, instead of exploring.
        #[arg(long, num_args = 1.., conflicts_with = "file")]
        merge: Vec<PathBuf>,
        /// Change the file before it is checked: a dotted KEY into it and a VALUE, like
        /// params.heartbeat.max_miss=2 or cluster.election_timeout=150ms..300ms. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = sim::scenario::overrides::Override::parse)]
        set: Vec<sim::scenario::overrides::Override>,
    },
    /// One worker process of `sim explore` (internal).
    #[command(hide = true)]
    ExploreWorker {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_delimiter = ',')]
        seeds: Vec<u64>,
        #[arg(long, requires = "check")]
        shrink: Option<u64>,
        #[arg(long)]
        check: Option<String>,
        #[arg(long = "set", value_parser = sim::scenario::overrides::Override::parse)]
        set: Vec<sim::scenario::overrides::Override>,
    },
}

fn main() {
    let cli = Cli::parse();
    std::process::exit(app::main(cli.command));
}

mod app {
    use super::Command;
    use sim::explore::pool::{self, Options, Seeds};
    use sim::explore::{summary, worker, Template};
    use sim::history::{fmt_time, Entry};
    use sim::run::SIM;
    use sim::scenario::overrides::Override;
    use sim::{exit, report, run, Loaded};
    use std::path::{Path, PathBuf};

    pub fn main(command: Command) -> i32 {
        match command {
            Command::Run {
                file,
                seed,
                seeds,
                json,
                set,
                filter,
                verdicts_only,
                plot,
                html,
            } => match seeds.map(|list| list.0).or_else(|| env_seeds(seed)) {
                Some(seeds) => run_seeds(&file, &set, &seeds, json),
                None => {
                    let seed = seed.or_else(|| env_u64("MADSIM_TEST_SEED"));
                    let shown = Shown {
                        json,
                        filter,
                        verdicts_only,
                        plot,
                        html,
                    };
                    run(&file, &set, seed, &shown)
                }
            },
            Command::Bench { file, runs, set } => bench(&file, &set, runs),
            Command::Sweep {
                file,
                grid,
                seeds,
                csv,
                plot,
                set,
            } => sweep(
                &file,
                &set,
                &grid,
                &seeds.0,
                csv.as_deref(),
                plot.as_deref(),
            ),
            Command::Check {
                files,
                seed,
                seeds,
                set,
            } => files
                .iter()
                .map(|file| match &seeds {
                    Some(seeds) => check_seeds(file, &set, &seeds.0),
                    None => check(file, &set, seed),
                })
                .max()
                .unwrap_or(exit::OK),
            Command::Explore {
                file,
                runs,
                jobs,
                seed,
                shard,
                json,
                out,
                merge,
                set,
            } => match file {
                None => merge_summaries(&merge, json),
                Some(file) => {
                    let jobs = jobs.unwrap_or_else(|| {
                        std::thread::available_parallelism().map_or(1, |n| n.get())
                    });
                    let shard = shard.unwrap_or((1, 1));
                    explore(file, set, runs, jobs, seed, shard, json, out)
                }
            },
            Command::ExploreWorker {
                file,
                out,
                seeds,
                shrink,
                check,
                set,
            } => explore_worker(&file, &set, &out, &seeds, shrink.zip(check)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn explore(
        file: PathBuf,
        overrides: Vec<Override>,
        runs: u64,
        jobs: usize,
        seed: Option<u64>,
        shard: (u64, u64),
        json: bool,
        out: PathBuf,
    ) -> i32 {
        let template = match Template::load_with(&file, &overrides) {
            Ok(template) => template,
            Err(error) => {
                eprintln!("error: {error}");
                return exit::BAD_INPUT;
            }
        };
        let first = seed.unwrap_or(template.scenario.seed);
        // A scenario file writes its seed as a TOML integer: at most i64::MAX.
        if first
            .checked_add(runs)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            eprintln!(
                "error: seeds {first} onward for {runs} runs pass {}",
                i64::MAX
            );
            return exit::BAD_INPUT;
        }
        let options = Options {
            file,
            overrides,
            seeds: Seeds { first, runs, shard },
            jobs,
            out,
        };
        let summary = match pool::explore(&options) {
            Ok(summary) => summary,
            Err(error) => {
                eprintln!("error: {error}");
                return exit::BAD_INPUT;
            }
        };
        print_summary(&summary, json)
    }

    fn print_summary(summary: &summary::Summary, json: bool) -> i32 {
        if json {
            let text = serde_json::to_string_pretty(summary).expect("summaries serialize");
            println!("{text}");
            let failed = summary.failed.len();
            eprintln!(
                "{}",
                summary::last_line(summary.runs, summary.wall_ms, failed)
            );
        } else {
            print!("{}", pool::text(summary));
        }
        if summary.failed.is_empty() {
            exit::OK
        } else {
            exit::EXPECTATION_FAILED
        }
    }

    fn merge_summaries(files: &[PathBuf], json: bool) -> i32 {
        match summary::merge(files) {
            Ok(merged) => print_summary(&merged, json),
            Err(error) => {
                eprintln!("error: {error}");
                exit::BAD_INPUT
            }
        }
    }

    fn explore_worker(
        file: &Path,
        overrides: &[Override],
        out: &Path,
        seeds: &[u64],
        shrink: Option<(u64, String)>,
    ) -> i32 {
        // A panic inside a run is reported as a broken rule, not printed.
        std::panic::set_hook(Box::new(|_| {}));
        let done = Template::load_with(file, overrides).and_then(|template| match shrink {
            Some((seed, check)) => worker::shrink_seed(&template, seed, &check, out),
            None => worker::run_seeds(&template, seeds, out, pool::WORKER_MAX_RSS),
        });
        match done {
            Ok(()) => exit::OK,
            Err(error) => {
                eprintln!("error: {error}");
                exit::BAD_INPUT
            }
        }
    }

    fn load(file: &Path, overrides: &[Override]) -> Result<Loaded, i32> {
        sim::load_with(file, overrides).map_err(|error| {
            eprintln!("error: {error}");
            exit::BAD_INPUT
        })
    }

    /// How `sim run` shows one run.
    struct Shown {
        json: bool,
        filter: Option<String>,
        verdicts_only: bool,
        plot: Option<PathBuf>,
        html: Option<PathBuf>,
    }

    fn env_u64(name: &str) -> Option<u64> {
        std::env::var(name).ok()?.trim().parse().ok()
    }

    /// `MADSIM_TEST_NUM=K` (with `MADSIM_TEST_SEED=N`, or `--seed N`, or 1): seeds N..N+K-1.
    fn env_seeds(seed: Option<u64>) -> Option<Vec<u64>> {
        let count = env_u64("MADSIM_TEST_NUM")?.max(1);
        let first = seed.or_else(|| env_u64("MADSIM_TEST_SEED")).unwrap_or(1);
        Some((first..first.saturating_add(count)).collect())
    }

    /// Runs `loaded` with `seed`, drawing a progress bar on stderr once it has taken more than
    /// 2 s of wall time (a thread outside the simulation watches the simulated clock).
    fn run_with_progress(loaded: &Loaded, seed: u64) -> sim::Judged {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let progress = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let end_ms = loaded.scenario.duration.as_millis() as u64;
        let watcher = {
            let (progress, done) = (progress.clone(), done.clone());
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                let mut bar: Option<indicatif::ProgressBar> = None;
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    if start.elapsed() < std::time::Duration::from_secs(2) {
                        continue;
                    }
                    let bar = bar.get_or_insert_with(|| {
                        let style = indicatif::ProgressStyle::with_template(
                            "{bar:40} {msg} simulated · {elapsed} · eta {eta}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                        indicatif::ProgressBar::new(end_ms).with_style(style)
                    });
                    let at = progress.load(Ordering::Relaxed).min(end_ms);
                    bar.set_position(at);
                    bar.set_message(fleet_core::fmt_duration(std::time::Duration::from_millis(
                        at,
                    )));
                }
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
            })
        };
        let output = run::run_watched(&loaded.scenario, seed, Some(progress));
        done.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        let verdicts =
            sim::judge::evaluate(&loaded.scenario, &loaded.expectations, &output.timeline);
        sim::Judged { output, verdicts }
    }

    fn plot_run(
        dir: &Path,
        scenario: &sim::scenario::Scenario,
        entries: &[Entry],
    ) -> Result<(), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        report::plot::run_rates(&dir.join("rates.svg"), scenario, entries)?;
        let metrics = report::measure(scenario, entries);
        if !metrics.failover_ms.is_empty() {
            let title = format!("{}: failover ms", scenario.name);
            let path = dir.join("failover-histogram.svg");
            report::plot::histogram(&path, &title, &metrics.failover_ms)?;
        }
        if !metrics.election_ms.is_empty() {
            let title = format!("{}: election ms", scenario.name);
            let path = dir.join("election-histogram.svg");
            report::plot::histogram(&path, &title, &metrics.election_ms)?;
        }
        Ok(())
    }

    fn run(file: &Path, overrides: &[Override], seed: Option<u64>, shown: &Shown) -> i32 {
        let loaded = match load(file, overrides) {
            Ok(loaded) => loaded,
            Err(code) => return code,
        };
        let scenario = &loaded.scenario;
        let filter = match shown
            .filter
            .as_deref()
            .map(|text| report::Filter::parse(text, scenario))
        {
            None => None,
            Some(Ok(filter)) => Some(filter),
            Some(Err(error)) => {
                eprintln!("error: {error}");
                return exit::BAD_INPUT;
            }
        };
        let json = shown.json;
        let seed = seed.unwrap_or(scenario.seed);
        let sim::Judged { output, verdicts } = run_with_progress(&loaded, seed);
        let entries = &output.timeline.entries;
        let failed = verdicts.iter().any(|verdict| !verdict.ok);
        if json {
            let document = report::json::json(scenario, seed, entries, &verdicts, output.wall);
            println!("{document}");
        } else {
            let text = report::run_text(
                scenario,
                seed,
                entries,
                &verdicts,
                filter.as_ref(),
                shown.verdicts_only,
            );
            print!("{text}");
            println!("{}", report::wall_line(scenario, output.wall));
        }
        if let Some(dir) = &shown.plot {
            if let Err(error) = plot_run(dir, scenario, entries) {
                eprintln!("error: {error}");
                return exit::BAD_INPUT;
            }
        }
        if let Some(path) = &shown.html {
            let page = report::html::page(scenario, seed, entries);
            if let Err(error) = std::fs::write(path, page) {
                eprintln!("error: cannot write {}: {error}", path.display());
                return exit::BAD_INPUT;
            }
        }
        if !failed {
            return exit::OK;
        }
        eprintln!(
            "reproduce: {SIM} run {}{} --seed {seed}",
            file.display(),
            flags(overrides)
        );
        exit::EXPECTATION_FAILED
    }

    fn sweep(
        file: &Path,
        overrides: &[Override],
        grids: &[sim::sweep::Grid],
        seeds: &[u64],
        csv: Option<&Path>,
        plot: Option<&Path>,
    ) -> i32 {
        let points = sim::sweep::points(grids);
        let mut loaded = Vec::new();
        for point in &points {
            let all: Vec<Override> = overrides.iter().chain(point).cloned().collect();
            match load(file, &all) {
                Ok(one) => loaded.push(one),
                Err(code) => return code,
            }
        }
        let total = (points.len() * seeds.len()) as u64;
        let bar = indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} runs · {elapsed} · eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let start = std::time::Instant::now();
        let jobs: Vec<u64> = (0..total).collect();
        let runs = sim::seeds::parallel(&jobs, cores(), |job| {
            let (point, seed) = (
                (job as usize) / seeds.len(),
                seeds[job as usize % seeds.len()],
            );
            let one = &loaded[point];
            let sim::Judged { output, verdicts } = one.run(seed);
            let metrics = report::measure(&one.scenario, &output.timeline.entries);
            bar.inc(1);
            sim::sweep::Run {
                point,
                seed,
                verdicts,
                metrics,
            }
        });
        bar.finish_and_clear();
        print!("{}", sim::sweep::table(grids, &points, &runs));
        println!(
            "{}: {} points × {} seeds = {total} runs in {:.1} s",
            file.display(),
            points.len(),
            seeds.len(),
            start.elapsed().as_secs_f64()
        );
        if let Some(path) = csv {
            if let Err(error) = std::fs::write(path, sim::sweep::csv(grids, &points, &runs)) {
                eprintln!("error: cannot write {}: {error}", path.display());
                return exit::BAD_INPUT;
            }
        }
        if let Some(dir) = plot {
            match sim::sweep::plot(dir, grids, &points, &runs) {
                Ok(files) => println!("plots: {} files in {}", files.len(), dir.display()),
                Err(error) => {
                    eprintln!("error: {error}");
                    return exit::BAD_INPUT;
                }
            }
        }
        exit::OK
    }

    /// ` --set K=V` for each override, as a reproduce command repeats them.
    fn flags(overrides: &[Override]) -> String {
        overrides
            .iter()
            .map(|one| format!(" {}", one.flag()))
            .collect()
    }

    fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// The seeds to run: those asked for, unless the scenario pins its own (`seeds = [...]`).
    fn seeds_for(scenario: &sim::scenario::Scenario, asked: &[u64]) -> Vec<u64> {
        match &scenario.seeds {
            None => asked.to_vec(),
            Some(pinned) => {
                eprintln!(
                    "{}: pins its seeds to {pinned:?} (see its opening comment); running those",
                    scenario.path
                );
                pinned.clone()
            }
        }
    }

    fn run_seeds(file: &Path, overrides: &[Override], seeds: &[u64], json: bool) -> i32 {
        let loaded = match load(file, overrides) {
            Ok(loaded) => loaded,
            Err(code) => return code,
        };
        let scenario = &loaded.scenario;
        let seeds = seeds_for(scenario, seeds);
        let start = std::time::Instant::now();
        let results = sim::seeds::parallel(&seeds, cores(), |seed| {
            let sim::Judged { output, verdicts } = loaded.run(seed);
            let document = json.then(|| {
                let entries = &output.timeline.entries;
                let text = report::json::json(scenario, seed, entries, &verdicts, output.wall);
                serde_json::from_str::<serde_json::Value>(&text)
                    .map(|value| value.to_string())
                    .unwrap_or(text)
            });
            (seed, verdicts, document)
        });
        let mut failed = Vec::new();
        for (seed, verdicts, document) in &results {
            if let Some(document) = document {
                println!("{document}");
            }
            let broken: Vec<_> = verdicts.iter().filter(|verdict| !verdict.ok).collect();
            let Some(first) = broken.first() else {
                continue;
            };
            failed.push(*seed);
            if !json {
                let more = match broken.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                println!(
                    "FAIL seed {seed}: {}{more}\n  {}\n  reproduce: {SIM} run {}{} --seed {seed}",
                    first.check,
                    first.detail,
                    file.display(),
                    flags(overrides)
                );
            }
        }
        let summary = format!(
            "{}: {} of {} seeds failed{} ({:.1} s)",
            file.display(),
            failed.len(),
            seeds.len(),
            match failed.len() {
                0 => String::new(),
                1..=20 => format!(": {failed:?}"),
                n => format!(": {:?} and {} more", &failed[..20], n - 20),
            },
            start.elapsed().as_secs_f64()
        );
        if json {
            eprintln!("{summary}");
        } else {
            let runs: Vec<&[sim::judge::Verdict]> = results
                .iter()
                .map(|(_, verdicts, _)| verdicts.as_slice())
                .collect();
            print!("{}", report::spread::spread(&runs));
            println!("{summary}");
        }
        if failed.is_empty() {
            exit::OK
        } else {
            exit::EXPECTATION_FAILED
        }
    }

    fn check_seeds(file: &Path, overrides: &[Override], seeds: &[u64]) -> i32 {
        let scenario = match load(file, overrides) {
            Ok(loaded) => loaded.scenario,
            Err(code) => return code,
        };
        let seeds = seeds_for(&scenario, seeds);
        let results = sim::seeds::parallel(&seeds, cores(), |seed| {
            let first = run::run(&scenario, seed).timeline.entries;
            let second = run::run(&scenario, seed).timeline.entries;
            (seed, first_difference(&first, &second))
        });
        let mut differ = Vec::new();
        for (seed, difference) in results {
            if let Some(difference) = difference {
                println!(
                    "NONDETERMINISTIC  {}  seed {seed}: {difference}",
                    file.display()
                );
                differ.push(seed);
            }
        }
        if differ.is_empty() {
            println!(
                "deterministic  {}  {} seeds, each identical in two runs",
                file.display(),
                seeds.len()
            );
            exit::OK
        } else {
            exit::EXPECTATION_FAILED
        }
    }

    /// Where two timelines of one seed first differ, if they do.
    fn first_difference(first: &[Entry], second: &[Entry]) -> Option<String> {
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

    fn bench(file: &Path, overrides: &[Override], runs: usize) -> i32 {
        let scenario = match load(file, overrides) {
            Ok(loaded) => loaded.scenario,
            Err(code) => return code,
        };
        let mut walls = Vec::new();
        for run in 1..=runs.max(1) {
            let output = run::run(&scenario, scenario.seed);
            println!("run {run}: {}", report::wall_line(&scenario, output.wall));
            walls.push(output.wall);
        }
        walls.sort();
        let median = walls[walls.len() / 2];
        println!(
            "{}: median {} over {} runs",
            scenario.name,
            report::wall_line(&scenario, median),
            walls.len()
        );
        exit::OK
    }

    fn check(file: &Path, overrides: &[Override], seed: Option<u64>) -> i32 {
        let scenario = match load(file, overrides) {
            Ok(loaded) => loaded.scenario,
            Err(code) => return code,
        };
        let seed = seed.unwrap_or(scenario.seed);
        let first = run::run(&scenario, seed).timeline.entries;
        let second = run::run(&scenario, seed).timeline.entries;
        let Some(difference) = first_difference(&first, &second) else {
            println!(
                "deterministic  {}  seed {seed}: {} events identical in two runs",
                file.display(),
                first.len()
            );
            return exit::OK;
        };
        println!(
            "NONDETERMINISTIC  {}  seed {seed}: {difference}",
            file.display()
        );
        exit::EXPECTATION_FAILED
    }
}
