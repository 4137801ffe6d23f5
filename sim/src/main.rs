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
    use sim::scenario::Scenario;
    use sim::{exit, expect, report, runner};
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

    fn load(file: &Path) -> Result<Scenario, i32> {
        Scenario::load(file).map_err(|error| {
            eprintln!("error: {error}");
            exit::BAD_INPUT
        })
    }

    fn run(file: &Path, seed: Option<u64>, json: bool) -> i32 {
        let scenario = match load(file) {
            Ok(scenario) => scenario,
            Err(code) => return code,
        };
        let seed = seed.unwrap_or(scenario.seed);
        let output = runner::run(&scenario, seed);
        let verdicts = expect::evaluate(&scenario, &output.events);
        let failed = verdicts.iter().any(|verdict| !verdict.ok);
        if json {
            println!(
                "{}",
                report::json(&scenario, seed, &output.events, &verdicts, output.wall)
            );
        } else {
            print!(
                "{}",
                report::deterministic_text(&scenario, seed, &output.events, &verdicts)
            );
            println!("{}", report::wall_line(&scenario, output.wall));
        }
        if failed {
            eprintln!(
                "reproduce: cargo run --release -p sim -- run {} --seed {seed}",
                file.display()
            );
            exit::EXPECTATION_FAILED
        } else {
            exit::OK
        }
    }

    fn bench(file: &Path, runs: usize) -> i32 {
        let scenario = match load(file) {
            Ok(scenario) => scenario,
            Err(code) => return code,
        };
        let mut walls = Vec::new();
        for run in 1..=runs.max(1) {
            let output = runner::run(&scenario, scenario.seed);
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
            Ok(scenario) => scenario,
            Err(code) => return code,
        };
        let seed = seed.unwrap_or(scenario.seed);
        let first = runner::run(&scenario, seed);
        let second = runner::run(&scenario, seed);
        let length = first.events.len().max(second.events.len());
        let difference = (0..length).find(|&i| first.events.get(i) != second.events.get(i));
        match difference {
            None => {
                println!(
                    "deterministic  {}  seed {seed}: {} events identical in two runs",
                    file.display(),
                    first.events.len()
                );
                exit::OK
            }
            Some(index) => {
                let show = |events: &[sim::trace::Event]| {
                    events.get(index).map_or("(no event)".to_string(), |event| {
                        format!(
                            "{} {} {} {}",
                            expect::fmt_time(event.t_ms),
                            event.node,
                            event.kind,
                            event.fields_text()
                        )
                    })
                };
                println!(
                    "NONDETERMINISTIC  {}  seed {seed}: runs differ at event {index}\n  first:  {}\n  second: {}",
                    file.display(),
                    show(&first.events),
                    show(&second.events)
                );
                exit::EXPECTATION_FAILED
            }
        }
    }
}
