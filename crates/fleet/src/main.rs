//! `fleet`: see the crate's documentation and `fleet --help`.

use clap::Parser;
use fleet::cli::{Cli, Command};
use fleet::logs;
use fleet::metrics::Metrics;
use std::process::ExitCode;

fn main() -> ExitCode {
    // clap exits 2, naming the flag, on a bad one.
    let cli = Cli::parse();
    if !fleet_node::net::REAL_SOCKETS {
        // The simulation build (`--cfg madsim`): its sockets are madsim's.
        eprintln!(
            "fleet: this build's sockets are a simulator's; build the native binary: \
             cargo native build --release -p fleet"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio_rt::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fleet: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let metrics = Metrics::default();
    let result = match cli.command {
        Command::Master(args) => {
            logs::init(&args.name, args.common.log_format, metrics.clone());
            runtime.block_on(fleet::master::run(args, metrics))
        }
        Command::Agent(args) => {
            logs::init(&args.name, args.common.log_format, metrics.clone());
            runtime.block_on(fleet::agent::run(args, metrics))
        }
    };
    // Tasks still running (sessions lingering, the admin server) end with the runtime.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fleet: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
