//! `fleet agent`: the reconnecting agent over real sockets.

use crate::cli::{self, AgentArgs, StartError};
use crate::exec::Exec;
use crate::metrics::Metrics;
use fleet_core::agent::{AgentConfig, Connector};
use fleet_core::command::ExecutorConfig;
use fleet_node::net::TcpListener;
use fleet_node::AgentControl;
use fleet_node::{AgentHooks, Handlers};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The masters' names, and where each is reached: its address, or the broker's for all.
fn master_addresses(
    masters: &[(String, Option<SocketAddr>)],
    broker: Option<SocketAddr>,
) -> Result<(Vec<String>, Vec<SocketAddr>), StartError> {
    (masters.iter())
        .map(|(name, address)| match (address, broker) {
            (None, Some(broker)) => Ok((name.clone(), broker)),
            (Some(address), None) => Ok((name.clone(), *address)),
            (Some(_), Some(_)) => Err(StartError::Usage(format!(
                "--master {name}: over mqtt a master is reached through --broker; give its name alone"
            ))),
            (None, None) => Err(StartError::Usage(format!(
                "--master {name}: give its address, NAME=ADDR"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|pairs| pairs.into_iter().unzip())
}

/// How long a stopping agent may take to unregister before the process ends anyway.
const UNREGISTER_GRACE: Duration = Duration::from_secs(2);

/// Runs the agent until SIGTERM or SIGINT, then unregisters and returns.
pub async fn run(args: AgentArgs, metrics: Metrics) -> Result<(), StartError> {
    let params = cli::params(&args.common, args.master.len() as u32, None)?;
    let token = match &args.token_file {
        Some(path) => read_token(path).map_err(StartError::Usage)?,
        None => String::new(),
    };
    let hostname = std::fs::read_to_string("/etc/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    let broker = cli::broker(&args.common, &params.transport)?;
    let (names, addresses) = master_addresses(&args.master, broker)?;
    let masters = fleet_node::Masters {
        addresses,
        transport: params.transport.clone(),
    };
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
        commands: ExecutorConfig {
            external: args.exec.iter().map(|(name, _)| name.clone()).collect(),
            ..params.executor
        },
        reauth_delay: params.reauth_delay,
        bugs: Default::default(),
    };
    if let Some(address) = args.metrics {
        let listener = TcpListener::bind(address).await.map_err(|error| {
            StartError::Io(format!("--metrics {address}: cannot listen: {error}"))
        })?;
        tokio_rt::spawn(crate::admin::serve(
            listener,
            crate::admin::agent_router(metrics),
        ));
    }
    let connector = Connector::new(config, crate::rng(), fleet_node::clock::now());
    let control = Arc::new(AgentControl::default());
    let running = {
        let control = control.clone();
        let hooks = hooks(&args);
        tokio_rt::spawn(
            async move { fleet_node::run_agent(connector, masters, &control, &hooks).await },
        )
    };
    crate::stop_signal().await;
    control.stop();
    let _ = tokio_rt::time::timeout(UNREGISTER_GRACE, running).await;
    Ok(())
}

/// What the flags plug into the agent: `--exec` programs, and `--token-file` read again each
/// time a master refuses the token (the reconnection design's "fetch a new token"; an
/// unreadable file keeps the old one).
fn hooks(args: &AgentArgs) -> AgentHooks {
    let token = args.token_file.clone().map(|path| {
        let fetch: Arc<dyn Fn() -> Option<String> + Send + Sync> =
            Arc::new(move || match read_token(&path) {
                Ok(token) => Some(token),
                Err(error) => {
                    tracing::warn!("{error}; keeping the token it had");
                    None
                }
            });
        fetch
    });
    let handlers: Handlers = (args.exec.iter())
        .map(|(name, program)| {
            let exec: Arc<dyn fleet_node::Handler> = Arc::new(Exec {
                program: program.clone(),
            });
            (name.clone(), exec)
        })
        .collect();
    AgentHooks { handlers, token }
}

/// The token in `path`, trimmed.
fn read_token(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .map_err(|error| format!("--token-file {}: {error}", path.display()))
}
