//! The control plane's parameters, as files write them: one schema and one parser for the
//! simulator's scenario files and the `fleet` binaries' config files. A scenario's `preset`,
//! `[cluster]` and `[params.*]` mean the same in a config file, with the same defaults and the
//! same errors, which point at the offending value (`path:line:col`).

pub mod duration;
pub mod executor;
pub mod params;
pub mod preset;
pub mod protection;
pub mod source;

use fleet_core::backoff::BackoffPolicy;
use fleet_core::command::ExecutorConfig;
use fleet_core::transport::Transport;
use params::{RawBackoff, RawHeartbeat, RawTransport};
use preset::Defaults;
use protection::{RawAuth, RawMaster};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

pub use params::{ClusterSpec, HeartbeatParams};
pub use protection::{AuthParams, MasterParams};
pub use source::{ConfigError, Source};

/// `[params]`, as serde reads it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawParams {
    heartbeat: Option<Spanned<RawHeartbeat>>,
    backoff: Option<Spanned<RawBackoff>>,
    executor: Option<executor::RawExecutor>,
    auth: Option<RawAuth>,
    master: Option<RawMaster>,
    transport: Option<RawTransport>,
}

/// Everything a master or an agent is tuned by, after the preset's defaults and every check.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// `preset`: the design document whose defaults it starts from.
    pub preset: Option<String>,
    pub cluster: ClusterSpec,
    pub heartbeat: HeartbeatParams,
    pub backoff: BackoffPolicy,
    /// `[params.auth]`: agents must present a token; `None`, no authentication.
    pub auth: Option<AuthParams>,
    /// How long an agent whose credentials were refused waits before it tries again.
    pub reauth_delay: Duration,
    /// `[params.master]`: admission capacity and the attempt manager.
    pub master: MasterParams,
    /// `[params.executor]`: how agents run commands.
    pub executor: ExecutorConfig,
    /// `[params.transport]`: what carries the messages between agents and masters.
    pub transport: Transport,
}

/// The parts of a file that hold parameters, as serde read them.
pub struct RawParts {
    pub preset: Option<Spanned<String>>,
    pub cluster: Option<Spanned<toml::Table>>,
    pub params: RawParams,
}

impl RawParts {
    /// Checks them for a cluster of `masters` masters.
    pub fn check(self, masters: u32, source: &Source) -> Result<Params, ConfigError> {
        let defaults = check_preset(self.preset.as_ref(), source)?;
        let cluster = params::check_cluster(self.cluster, masters, &defaults, source)?;
        let (auth, reauth_delay) = protection::check_auth(self.params.auth, source)?;
        let master = protection::check_master(self.params.master, defaults.attempts, source)?;
        let heartbeat = params::parse_heartbeat(self.params.heartbeat, &defaults, source)?;
        let backoff = params::parse_backoff(self.params.backoff, &defaults, source)?;
        let executor = executor::check_executor(self.params.executor, source)?;
        let transport =
            params::check_transport(self.params.transport, &defaults, heartbeat.interval, source)?;
        Ok(Params {
            preset: self.preset.map(Spanned::into_inner),
            cluster,
            heartbeat,
            backoff,
            auth,
            reauth_delay,
            master,
            executor,
            transport,
        })
    }
}

/// A `fleet` config file: `preset`, `[cluster]` and `[params.*]`, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    preset: Option<Spanned<String>>,
    cluster: Option<Spanned<toml::Table>>,
    #[serde(default)]
    params: RawParams,
}

impl Params {
    /// The parameters of a cluster of `masters` masters that sets none: the project's defaults.
    pub fn defaults(masters: u32) -> Params {
        Params::parse("(defaults)", "", masters).expect("the defaults are valid")
    }

    /// Reads and checks the config file at `path`, for a cluster of `masters` masters.
    pub fn load(path: &Path, masters: u32) -> Result<Params, ConfigError> {
        let text = source::read(path)?;
        Params::parse(&path.display().to_string(), &text, masters)
    }

    /// Parses and checks a config file's text; `path` only labels errors.
    pub fn parse(path: &str, text: &str, masters: u32) -> Result<Params, ConfigError> {
        let source = Source { path, text };
        let raw: RawFile = toml::from_str(text).map_err(|error| {
            source.error(
                error.span().unwrap_or(0..0),
                error.message().trim_end().to_string(),
            )
        })?;
        let parts = RawParts {
            preset: raw.preset,
            cluster: raw.cluster,
            params: raw.params,
        };
        parts.check(masters, &source)
    }
}

/// The preset's defaults, or the project's.
fn check_preset(name: Option<&Spanned<String>>, source: &Source) -> Result<Defaults, ConfigError> {
    let Some(name) = name else {
        return Ok(Defaults::project());
    };
    Defaults::preset(name.get_ref()).ok_or_else(|| {
        source.error(
            name.span(),
            format!(
                "unknown preset {:?}; expected one of {}",
                name.get_ref(),
                preset::NAMES.join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_takes_a_scenarios_keys_with_the_same_defaults() {
        let text = "preset = \"grpc\"\n[cluster]\nmode = \"raft\"\nelection_timeout = \"1500ms..3000ms\"\n\
                    [params.backoff]\nmax = \"10s\"\n[params.executor]\nmax_concurrent = 2\n";
        let params = Params::parse("fleet.toml", text, 3).unwrap();
        assert_eq!(params.preset.as_deref(), Some("grpc"));
        assert_eq!(
            params.heartbeat.interval,
            Duration::from_secs(10),
            "the preset's"
        );
        assert_eq!(
            params.backoff.max,
            Duration::from_secs(10),
            "the file's, over the preset"
        );
        assert_eq!(params.executor.max_concurrent, 2);
        let ClusterSpec::Raft { config, .. } = &params.cluster else {
            panic!("{:?}", params.cluster)
        };
        assert_eq!(config.election_timeout.0, Duration::from_millis(1500));
        assert_eq!(Params::defaults(1).cluster, ClusterSpec::Single);
        assert!(matches!(
            Params::defaults(3).cluster,
            ClusterSpec::Raft { .. }
        ));
    }

    #[test]
    fn the_transport_is_the_presets_unless_the_file_says() {
        let http = |poll| Transport::Http(fleet_core::transport::HttpTransport { poll });
        let parse = |text: &str| Params::parse("t", text, 1).unwrap().transport;
        assert_eq!(parse(""), Transport::Tcp);
        assert_eq!(
            parse("preset = \"connector\"\n"),
            http(Duration::from_secs(5))
        );
        let slower = "preset = \"connector\"\n[params.transport]\npoll = \"30s\"\n";
        assert_eq!(parse(slower), http(Duration::from_secs(30)));
        let tcp = "preset = \"connector\"\n[params.transport]\nkind = \"tcp\"\n";
        assert_eq!(parse(tcp), Transport::Tcp);
    }

    #[test]
    fn an_mqtt_keepalive_follows_the_heartbeat_unless_set() {
        use fleet_core::transport::MqttTransport;
        let mqtt = |secs, qos| {
            Transport::Mqtt(MqttTransport {
                keepalive: Duration::from_secs(secs),
                qos,
            })
        };
        let parse = |text: &str| Params::parse("t", text, 1).unwrap().transport;
        // Two intervals: a silent agent's will comes after three, as missed heartbeats would.
        assert_eq!(parse("[params.transport]\nkind = \"mqtt\"\n"), mqtt(2, 1));
        let slow =
            "[params.heartbeat]\ninterval = \"750ms\"\n[params.transport]\nkind = \"mqtt\"\n";
        assert_eq!(parse(slow), mqtt(2, 1), "whole seconds, rounded up");
        // The MQTT design's own: 30s.
        assert_eq!(parse("preset = \"mqtt\"\n"), mqtt(30, 1));
        let set = "[params.transport]\nkind = \"mqtt\"\nkeepalive = \"7s\"\nqos = 0\n";
        assert_eq!(parse(set), mqtt(7, 0));
    }

    #[test]
    fn a_bad_config_file_names_the_place() {
        for (text, masters, at, says) in [
            (
                "[params.heartbeat]\ninterval = \"1 s\"\n",
                1,
                (2, 12),
                "duration",
            ),
            ("[params.heartbat]\n", 1, (1, 9), "unknown field `heartbat`"),
            ("topology = 3\n", 1, (1, 1), "unknown field `topology`"),
            ("preset = \"websocket\"\n", 1, (1, 10), "unknown preset"),
            (
                "[cluster]\nmode = \"single\"\n",
                3,
                (1, 1),
                "exactly one master",
            ),
            (
                "[params.backoff]\nstrategy = \"random\"\n",
                1,
                (2, 12),
                "unknown backoff",
            ),
            (
                "[params.transport]\nkind = \"carrier-pigeon\"\n",
                1,
                (2, 8),
                "unknown kind \"carrier-pigeon\"; expected one of tcp, http, grpc, mqtt",
            ),
            (
                "[params.transport]\nkind = \"mqtt\"\nqos = 2\n",
                1,
                (3, 7),
                "qos must be 0 or 1",
            ),
            (
                "[params.transport]\nkind = \"mqtt\"\nkeepalive = \"1500ms\"\n",
                1,
                (3, 13),
                "whole seconds",
            ),
            (
                "[params.transport]\nkind = \"http\"\nqos = 1\n",
                1,
                (3, 7),
                "qos is a setting of kind \"mqtt\", not \"http\"",
            ),
            (
                "[params.transport]\npoll = \"2s\"\n",
                1,
                (2, 8),
                "poll is a setting of kind \"http\", not \"tcp\"",
            ),
            (
                "[params.transport]\nkind = \"http\"\npoll = \"0s\"\n",
                1,
                (3, 8),
                "poll must be greater than 0",
            ),
        ] {
            let error = Params::parse("fleet.toml", text, masters).unwrap_err();
            assert!(error.message.contains(says), "{text:?}: {error}");
            assert_eq!((error.line, error.column), at, "{text:?}: {error}");
            assert!(error.to_string().starts_with("fleet.toml:"), "{error}");
        }
    }
}

#[cfg(test)]
mod example {
    use super::*;

    /// `docs/fleet.toml`, the example the README points to, parses and says the defaults.
    #[test]
    fn the_example_config_file_is_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fleet.toml");
        let example = Params::load(Path::new(path), 3).unwrap();
        assert_eq!(example, Params::defaults(3));
        let single = "[cluster]\nmode = \"single\"\n";
        assert_eq!(Params::parse("t", single, 1).unwrap(), Params::defaults(1));
        // Its commented lease keys are lease mode's defaults too.
        let text = std::fs::read_to_string(path).unwrap();
        let lease_keys: String = (text.lines())
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| {
                [
                    "lease_period",
                    "renew_interval",
                    "sync_interval",
                    "max_drift",
                ]
                .iter()
                .any(|key| line.starts_with(key))
            })
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(lease_keys.lines().count(), 4, "{lease_keys}");
        let lease = format!("[cluster]\nmode = \"lease\"\n{lease_keys}");
        let parsed = Params::parse("t", &lease, 3).unwrap();
        let lease_defaults = fleet_core::cluster::lease::LeaseConfig::default();
        assert_eq!(parsed.cluster, ClusterSpec::Lease(lease_defaults));
    }
}
