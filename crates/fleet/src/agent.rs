//! `fleet agent`: the reconnecting agent over real sockets.

use crate::cli::{self, AgentArgs, StartError};
use fleet_core::agent::{AgentConfig, Connector};
use fleet_node::AgentControl;
use std::sync::Arc;
use std::time::Duration;

/// How long a stopping agent may take to unregister before the process ends anyway.
const UNREGISTER_GRACE: Duration = Duration::from_secs(2);

/// Runs the agent until SIGTERM or SIGINT, then unregisters and returns.
pub async fn run(args: AgentArgs) -> Result<(), StartError> {
    let params = cli::params(&args.common, args.master.len() as u32, None)?;
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|error| {
                StartError::Usage(format!("--token-file {}: {error}", path.display()))
            })?
            .trim()
            .to_string(),
        None => String::new(),
    };
    let hostname = std::fs::read_to_string("/etc/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    let (names, addresses): (Vec<String>, Vec<_>) = args.master.iter().cloned().unzip();
    let config = AgentConfig {
        masters: names,
        heartbeat_interval: params.heartbeat.interval,
        heartbeat_timeout: params.heartbeat.timeout,
        backoff: params.backoff,
        register: fleet_node::registration(
            &args.name,
            &hostname,
            std::process::id(),
            fleet_node::clock::unix_ms(),
            token,
        ),
        commands: params.executor,
        reauth_delay: params.reauth_delay,
        bugs: Default::default(),
    };
    let connector = Connector::new(config, crate::rng(), fleet_node::clock::now());
    let control = Arc::new(AgentControl::default());
    let running = {
        let control = control.clone();
        tokio_rt::spawn(async move { fleet_node::run_agent(connector, addresses, &control).await })
    };
    crate::stop_signal().await;
    control.stop();
    let _ = tokio_rt::time::timeout(UNREGISTER_GRACE, running).await;
    Ok(())
}
