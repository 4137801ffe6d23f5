//! `sim run FILE` runs a scenario and prints its timeline and verdicts; `sim check FILE...` runs
//! each scenario twice and fails on the first difference between the two timelines.
//!
//! Exit codes: 0 every expectation holds (or the runs match), 1 one failed (or they differ),
//! 2 bad input.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sim",
    about = "Deterministic simulation of the fleet control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario and print its timeline, verdicts and stats.
    Run {
        file: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario several times and print the median wall time and speed-up.
    Bench {
        file: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Run each scenario twice with the same seed and compare the timelines.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Override the scenarios' seeds.
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() {
    let cli = Cli::parse();
    std::process::exit(app::main(cli.command));
}

#[cfg(not(madsim))]
mod app {
    use super::Command;

    pub fn main(_: Command) -> i32 {
        eprintln!(
            "error: `sim` runs scenarios inside madsim and needs the simulation build.\n\
             Build it with plain cargo from the repository (its .cargo/config.toml sets \
             --cfg madsim): cargo run --release -p sim -- run scenarios/steady-state.toml"
        );
        sim::exit::BAD_INPUT
    }
}

#[cfg(madsim)]
mod app {
    use super::Command;
    use sim::history::{fmt_time, Entry};
    use sim::{exit, judge, report, run, Loaded};
    use std::path::Path;

    pub fn main(command: Command) -> i32 {
        match command {
            Command::Run { file, seed, json } => run(&file, seed, json),
            Command::Bench { file, runs } => bench(&file, runs),
            Command::Check { files, seed } => files
                .iter()
                .map(|file| check(file, seed))
                .max()
                .unwrap_or(exit::OK),
        }
    }

    fn load(file: &Path) -> Result<Loaded, i32> {
        sim::load(file).map_err(|error| {
            eprintln!("error: {error}");
            exit::BAD_INPUT
        })
    }

    fn run(file: &Path, seed: Option<u64>, json: bool) -> i32 {
        let Loaded {
            scenario,
            expectations,
        } = match load(file) {
            Ok(loaded) => loaded,
            Err(code) => return code,
        };
        let seed = seed.unwrap_or(scenario.seed);
        let output = run::run(&scenario, seed);
        let entries = &output.timeline.entries;
        let verdicts = judge::evaluate(&scenario, &expectations, &output.timeline);
        let failed = verdicts.iter().any(|verdict| !verdict.ok);
        if json {
            let document = report::json::json(&scenario, seed, entries, &verdicts, output.wall);
            println!("{document}");
        } else {
            print!(
                "{}",
                report::deterministic_text(&scenario, seed, entries, &verdicts)
            );
            println!("{}", report::wall_line(&scenario, output.wall));
        }
        if !failed {
            return exit::OK;
        }
        eprintln!(
            "reproduce: cargo run --release -p sim -- run {} --seed {seed}",
            file.display()
        );
        exit::EXPECTATION_FAILED
    }

    fn bench(file: &Path, runs: usize) -> i32 {
        let scenario = match load(file) {
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

    fn check(file: &Path, seed: Option<u64>) -> i32 {
        let scenario = match load(file) {
            Ok(loaded) => loaded.scenario,
            Err(code) => return code,
        };
        let seed = seed.unwrap_or(scenario.seed);
        let first = run::run(&scenario, seed).timeline.entries;
        let second = run::run(&scenario, seed).timeline.entries;
        let length = first.len().max(second.len());
        let Some(index) = (0..length).find(|&i| first.get(i) != second.get(i)) else {
            println!(
                "deterministic  {}  seed {seed}: {} events identical in two runs",
                file.display(),
                first.len()
            );
            return exit::OK;
        };
        let show = |entries: &[Entry]| {
            entries
                .get(index)
                .map_or("(no event)".to_string(), |entry| {
                    let (kind, fields) = entry.parts();
                    format!("{} {} {kind} {fields}", fmt_time(entry.t_ms), entry.node)
                })
        };
        println!(
            "NONDETERMINISTIC  {}  seed {seed}: runs differ at event {index}\n  first:  {}\n  second: {}",
            file.display(),
            show(&first),
            show(&second)
        );
        exit::EXPECTATION_FAILED
    }
}
