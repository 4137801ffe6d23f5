//! `fleet master` and `fleet agent`: flags, the config file under them, and what they start.
//! A bad flag or file exits 2 with an error naming it; a stop by SIGTERM or SIGINT exits 0.

use crate::logs::Format;
use clap::{Args, Parser, Subcommand};
use fleet_config::{ConfigError, Params};
use fleet_core::transport::Transport;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "fleet",
    version,
    about = "The fleet control plane: masters that elect a leader and command agents, and the agents",
    after_help = "Examples:\n  \
        fleet master --name master-1 --listen 127.0.0.1:7000 --cluster-listen 127.0.0.1:7001 \\\n    \
        --admin 127.0.0.1:8080 --data /tmp/fleet/master-1 \\\n    \
        --peer master-2=127.0.0.1:7011 --peer master-3=127.0.0.1:7021\n  \
        fleet agent --name agent-1 --master master-1=127.0.0.1:7000 --master master-2=127.0.0.1:7010"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a master: serve agents, elect a leader with its peers, answer the admin API.
    Master(MasterArgs),
    /// Run an agent: register with the leader, beat, run commands, follow the leader.
    Agent(AgentArgs),
}

#[derive(Args, Debug)]
pub struct Common {
    /// A TOML file with a scenario's `preset`, `[cluster]` and `[params.*]` keys, same meaning;
    /// flags win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What carries the messages between agents and masters, over the config file's
    /// `[params.transport] kind` (its settings kept when the kinds agree). Masters and their
    /// agents must agree. Default: tcp.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Transport::NAMES))]
    pub transport: Option<String>,
    /// The MQTT broker agents and masters meet at (--transport mqtt): in place of the master's
    /// --listen and the agent's master addresses.
    #[arg(long, value_name = "ADDR")]
    pub broker: Option<SocketAddr>,
    /// How timeline events are logged to stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: Format,
}

#[derive(Args, Debug)]
pub struct MasterArgs {
    /// This master's name, as its peers and agents know it.
    #[arg(long)]
    pub name: String,
    /// Where agents connect (over mqtt, through --broker instead).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Where peers connect (raft and lease mode).
    #[arg(long, value_name = "ADDR")]
    pub cluster_listen: Option<SocketAddr>,
    /// Where the admin API answers.
    #[arg(long, value_name = "ADDR")]
    pub admin: SocketAddr,
    /// Where the master keeps its term, vote, commands and config across restarts.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// A master of the cluster, by its cluster address: NAME=ADDR. Repeatable; it may list this
    /// master too (at its --cluster-listen), so every master can be given the same list.
    #[arg(long, value_name = "NAME=ADDR", value_parser = named_address)]
    pub peer: Vec<(String, SocketAddr)>,
    /// A master's admin address, where this one sends writes when that one leads: NAME=ADDR.
    /// Repeatable; it may list this master too (at its --admin).
    #[arg(long, value_name = "NAME=ADDR", value_parser = named_address)]
    pub peer_admin: Vec<(String, SocketAddr)>,
    /// How the masters agree on a leader; over the config file's `[cluster] mode`. Default:
    /// single alone, raft with peers.
    #[arg(long, value_parser = ["single", "raft", "lease"])]
    pub mode: Option<String>,
    /// The Redis-like store lease mode keeps its lease in.
    #[arg(long, value_name = "ADDR")]
    pub store: Option<SocketAddr>,
    /// A file holding the cluster's secret: agents must then present a token made with it.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Raft: this master starts a new cluster, so an empty --data is its first start. Without
    /// it, an empty --data is a lost disk: the master rejoins carefully, voting only once a
    /// leader brought it up to date, so it never votes twice in a term it forgot. Ignored when
    /// --data holds records.
    #[arg(long)]
    pub initial: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// This agent's name.
    #[arg(long)]
    pub name: String,
    /// A master, NAME=ADDR, in the order they are tried; repeat for each. A master's redirect
    /// names the leader, so name them as the masters name themselves. Over mqtt, NAME alone:
    /// every master is reached through --broker.
    #[arg(long, value_name = "NAME=ADDR", value_parser = master_entry, required = true)]
    pub master: Vec<(String, Option<SocketAddr>)>,
    /// A file holding this agent's token, read again after every refusal of it.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// A command named NAME runs PROGRAM, its args as JSON on stdin, its stdout the result,
    /// under the command's timeout. Repeatable; only the names listed run anything.
    #[arg(long, value_name = "NAME=PROGRAM", value_parser = crate::exec::parse)]
    pub exec: Vec<(String, PathBuf)>,
    /// Where the agent answers `GET /metrics` (Prometheus) and `GET /healthz`.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    #[command(flatten)]
    pub common: Common,
}

fn named_address(text: &str) -> Result<(String, SocketAddr), String> {
    let (name, address) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=ADDR"))?;
    if name.is_empty() {
        return Err(format!("{text:?} has an empty name"));
    }
    let address = address
        .parse()
        .map_err(|error| format!("{address:?} is not an address like 127.0.0.1:7000: {error}"))?;
    Ok((name.to_string(), address))
}

fn master_entry(text: &str) -> Result<(String, Option<SocketAddr>), String> {
    match text.contains('=') {
        true => named_address(text).map(|(name, address)| (name, Some(address))),
        false if text.is_empty() => Err("a master needs a name".to_string()),
        false => Ok((text.to_string(), None)),
    }
}

/// The broker, when `transport` needs one: --broker must be given exactly then.
pub fn broker(common: &Common, transport: &Transport) -> Result<Option<SocketAddr>, StartError> {
    match (transport, common.broker) {
        (Transport::Mqtt(_), Some(broker)) => Ok(Some(broker)),
        (Transport::Mqtt(_), None) => Err(StartError::Usage(
            "--transport mqtt needs --broker ADDR: where agents and masters meet".into(),
        )),
        (_, Some(_)) => Err(StartError::Usage(format!(
            "--broker is for --transport mqtt, and the transport is {}",
            transport.name()
        ))),
        (_, None) => Ok(None),
    }
}

/// Why a process could not start: a bad flag or file (exit 2), or a failure to run (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
}

impl StartError {
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) | StartError::Usage(_) => 2,
            StartError::Io(_) => 1,
        }
    }
}

/// The parameters: the config file's, or the defaults, for a cluster of `masters`; `mode`
/// over the file's.
pub fn params(common: &Common, masters: u32, mode: Option<&str>) -> Result<Params, StartError> {
    let text = match &common.config {
        Some(path) => fleet_config::source::read(path)?,
        None => String::new(),
    };
    let shown = common
        .config
        .as_ref()
        .map_or("(flags)".to_string(), |path| path.display().to_string());
    let text = match mode {
        Some(mode) => with_mode(&text, mode)
            .map_err(|why| StartError::Usage(format!("--mode {mode}: {why}")))?,
        None => text,
    };
    let mut params = Params::parse(&shown, &text, masters)?;
    let flag = (common.transport.as_deref())
        .and_then(|kind| fleet_config::params::named(kind, params.heartbeat.interval));
    if let Some(transport) = flag.filter(|flag| flag.name() != params.transport.name()) {
        params.transport = transport;
    }
    Ok(params)
}

/// The config text with `[cluster] mode = mode` added, where the file has no `[cluster]`; a
/// file whose `[cluster]` is of another mode conflicts with the flag. The file's own text is
/// kept as it is, so its errors point at its lines.
fn with_mode(text: &str, mode: &str) -> Result<String, String> {
    // A file that does not parse is reported by the parser, with its position.
    let Ok(document) = text.parse::<toml::Table>() else {
        return Ok(text.to_string());
    };
    match document.get("cluster").map(|cluster| cluster.get("mode")) {
        None => Ok(format!("{text}\n[cluster]\nmode = \"{mode}\"\n")),
        Some(file_mode) => {
            let file_mode = file_mode.and_then(toml::Value::as_str).unwrap_or("raft");
            if file_mode == mode {
                Ok(text.to_string())
            } else {
                Err(format!(
                    "the config file's [cluster] is mode \"{file_mode}\""
                ))
            }
        }
    }
}
