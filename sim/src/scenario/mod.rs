//! The first stage: scenario files. What to build, what to break and when, and what must hold.
//!
//! Parsing is two steps. serde reads the TOML into `Raw*` structs (unknown keys and bad values
//! are errors there, with toml's position); [`Scenario::parse`] then checks what serde cannot
//! (limits, node names, one action per fault) and reports the position of the offending value
//! too. `[[expect]]` entries are kept as located tables: the judge stage, which owns the checks,
//! compiles them. Nothing here runs anything.

pub mod commands;
pub mod duration;
pub mod expect;
pub mod explore;
pub mod faults;
pub mod overrides;
pub mod preset;
pub mod protection;
pub mod selector;
pub mod source;

use crate::scenario::commands::{Operation, RawCommand, RawConfig, RawExecutor};
use crate::scenario::duration::{Dur, DurRange};
use crate::scenario::expect::{ExpectSpec, RawExpect};
use crate::scenario::explore::{ExploreSpec, RawExplore};
use crate::scenario::faults::{Fault, RawFault};
use crate::scenario::preset::Defaults;
use crate::scenario::protection::{AuthParams, MasterParams, RawAuth, RawMaster};
use crate::scenario::selector::Topology;
use crate::scenario::source::{printable, Source};
use fleet_core::backoff::{BackoffPolicy, Strategy, WhenExhausted};
use fleet_core::cluster::lease::LeaseConfig;
use fleet_core::cluster::raft::RaftConfig;
use fleet_core::command::ExecutorConfig;
use fleet_core::fmt_duration;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

pub use source::ScenarioError;

/// At most this many masters: the address plan gives each one address in 10.0.0.0/24.
pub const MAX_MASTERS: u32 = 254;
pub const MAX_AGENTS: u32 = 10_000;
/// The longest run a scenario may ask for: a week of simulated time (a 1h fleet takes seconds).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How agents and masters keep in touch.
#[derive(Clone, Debug, PartialEq)]
pub struct HeartbeatParams {
    pub interval: Duration,
    pub max_miss: u32,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub latency: (Duration, Duration),
    pub loss: f64,
    /// turmoil's step: every host runs this long per step, so no timer or message resolves
    /// finer. madsim has no steps and ignores it.
    pub tick: Duration,
}

/// turmoil's step unless `[network] tick` says otherwise: turmoil's own default.
pub const DEFAULT_TICK: Duration = Duration::from_millis(1);

/// How the masters agree on a leader.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterSpec {
    Single,
    /// `persist`: each master keeps its term and vote on a disk that survives its crashes.
    /// Off only to show why it must be on.
    Raft {
        config: RaftConfig,
        persist: bool,
    },
    Lease(LeaseConfig),
}

impl ClusterSpec {
    pub fn mode(&self) -> &'static str {
        match self {
            ClusterSpec::Single => "single",
            ClusterSpec::Raft { .. } => "raft",
            ClusterSpec::Lease(_) => "lease",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The file it came from, as errors name it.
    pub path: String,
    pub name: String,
    pub description: String,
    pub seed: u64,
    /// `seeds = [8]`: the only seeds the scenario claims to hold on (it shows a failure that
    /// needs them); `None`: every seed.
    pub seeds: Option<Vec<u64>>,
    pub duration: Duration,
    pub topology: Topology,
    pub cluster: ClusterSpec,
    /// `preset`: the design document whose defaults it starts from.
    pub preset: Option<String>,
    pub heartbeat: HeartbeatParams,
    pub backoff: BackoffPolicy,
    /// `[params.auth]`: agents must present a token; `None`, no authentication.
    pub auth: Option<AuthParams>,
    /// How long an agent whose credentials were refused waits before it tries again.
    pub reauth_delay: Duration,
    /// `[params.master]`: admission capacity and the attempt manager.
    pub master: MasterParams,
    pub network: Network,
    /// In firing order (by `at`, then file order).
    pub faults: Vec<Fault>,
    /// `[[commands]]` and `[[config]]`, in firing order (by `at`, then file order).
    pub operations: Vec<Operation>,
    /// How agents run commands.
    pub executor: ExecutorConfig,
    /// The `[[expect]]` entries, for the judge to compile.
    pub expectations: Vec<ExpectSpec>,
    /// What `sim explore` may break; `sim run` ignores it.
    pub explore: Option<ExploreSpec>,
    /// The names faults capture with `as`, for checks that read `@NAME`.
    pub captures: BTreeSet<String>,
    /// The `--set` flags applied to the file, as a command line says them.
    pub overrides: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<Spanned<String>>,
    #[serde(default)]
    seed: u64,
    seeds: Option<Spanned<Vec<u64>>>,
    preset: Option<Spanned<String>>,
    duration: Spanned<Dur>,
    topology: RawTopology,
    #[serde(default)]
    params: RawParams,
    #[serde(default)]
    network: RawNetwork,
    cluster: Option<Spanned<RawCluster>>,
    #[serde(default)]
    faults: Vec<Spanned<RawFault>>,
    #[serde(default)]
    commands: Vec<Spanned<RawCommand>>,
    #[serde(default)]
    config: Vec<Spanned<RawConfig>>,
    #[serde(default)]
    expect: Vec<Spanned<RawExpect>>,
    explore: Option<RawExplore>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default = "one")]
    masters: Spanned<u32>,
    agents: Spanned<u32>,
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawParams {
    heartbeat: Option<Spanned<RawHeartbeat>>,
    backoff: Option<Spanned<RawBackoff>>,
    executor: Option<RawExecutor>,
    auth: Option<RawAuth>,
    master: Option<RawMaster>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    mode: Option<Spanned<String>>,
    election_timeout: Option<DurRange>,
    heartbeat_interval: Option<Dur>,
    pre_vote: Option<bool>,
    check_quorum: Option<bool>,
    persist: Option<bool>,
    lease_period: Option<Dur>,
    renew_interval: Option<Dur>,
    sync_interval: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartbeat {
    interval: Option<Dur>,
    max_miss: Option<u32>,
    timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    strategy: Option<Spanned<String>>,
    base: Option<Dur>,
    multiplier: Option<f64>,
    max: Option<Dur>,
    jitter: Option<f64>,
    max_retries: Option<u32>,
    long_wait: Option<Dur>,
    first_delay: Option<DurRange>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    latency: Option<DurRange>,
    loss: Option<Spanned<f64>>,
    tick: Option<Spanned<Dur>>,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = source::read(path)?;
        Scenario::parse(&path.display().to_string(), &text)
    }

    /// Parses and checks a scenario; `path` only labels errors.
    pub fn parse(path: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let source = Source { path, text };
        let raw: RawScenario = toml::from_str(text).map_err(|error| {
            source.error(
                error.span().unwrap_or(0..0),
                error.message().trim_end().to_string(),
            )
        })?;
        raw.check(&source)
    }
}

impl RawScenario {
    fn check(self, source: &Source) -> Result<Scenario, ScenarioError> {
        let (name, description) = check_texts(self.name, self.description, source)?;
        let topology = check_topology(&self.topology, source)?;
        let defaults = check_preset(self.preset.as_ref(), source)?;
        let cluster = check_cluster(self.cluster, topology.masters, &defaults, source)?;
        let (auth, reauth_delay) = protection::check_auth(self.params.auth, source)?;
        let master = protection::check_master(self.params.master, defaults.attempts, source)?;
        let topology = Topology {
            store: matches!(cluster, ClusterSpec::Lease(_)),
            ..topology
        };
        let duration = check_duration(&self.duration, source)?;
        let network = check_network(self.network, source)?;
        let authenticates = auth.is_some();
        let (faults, captured) =
            check_faults(self.faults, &topology, duration, authenticates, source)?;
        let mut operations = Vec::new();
        for command in self.commands {
            operations.extend(commands::check_command(
                command, &topology, duration, &captured, source,
            )?);
        }
        for config in self.config {
            operations.push(commands::check_config(config, duration, source)?);
        }
        operations.sort_by_key(Operation::at);
        let expectations = self
            .expect
            .into_iter()
            .map(|expect| expect::check(expect, source))
            .collect::<Result<Vec<_>, _>>()?;
        let explore = self
            .explore
            .map(|raw| explore::check(raw, &topology, duration, auth.is_some(), source))
            .transpose()?;
        Ok(Scenario {
            path: source.path.to_string(),
            name,
            description,
            seed: self.seed,
            seeds: match self.seeds {
                Some(seeds) if seeds.get_ref().is_empty() => {
                    return Err(source.error(seeds.span(), "`seeds` lists at least one seed"))
                }
                other => other.map(Spanned::into_inner),
            },
            duration,
            topology,
            cluster,
            preset: self.preset.map(Spanned::into_inner),
            heartbeat: parse_heartbeat(self.params.heartbeat, &defaults, source)?,
            backoff: parse_backoff(self.params.backoff, &defaults, source)?,
            auth,
            reauth_delay,
            master,
            network,
            faults,
            operations,
            executor: commands::check_executor(self.params.executor, source)?,
            expectations,
            explore,
            captures: captured,
            overrides: Vec::new(),
        })
    }
}

/// `preset = "NAME"`: the design document whose defaults the file starts from.
fn check_preset(
    name: Option<&Spanned<String>>,
    source: &Source,
) -> Result<Defaults, ScenarioError> {
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

fn check_network(raw: RawNetwork, source: &Source) -> Result<Network, ScenarioError> {
    Ok(Network {
        latency: raw.latency.map_or(
            (Duration::from_millis(1), Duration::from_millis(10)),
            |range| (range.0, range.1),
        ),
        loss: match raw.loss {
            Some(loss) => check_loss(loss, source)?,
            None => 0.0,
        },
        tick: match raw.tick {
            Some(tick) if tick.get_ref().0.is_zero() => {
                return Err(source.error(tick.span(), "`tick` must be greater than 0"))
            }
            Some(tick) => tick.get_ref().0,
            None => DEFAULT_TICK,
        },
    })
}

/// Every `[[faults]]` entry in firing order, and the names they capture.
fn check_faults(
    raw: Vec<Spanned<RawFault>>,
    topology: &Topology,
    duration: Duration,
    authenticates: bool,
    source: &Source,
) -> Result<(Vec<Fault>, BTreeSet<String>), ScenarioError> {
    let mut faults = Vec::new();
    let mut captured = BTreeSet::new();
    for fault in raw {
        faults.extend(faults::check(
            fault,
            topology,
            duration,
            authenticates,
            &mut captured,
            source,
        )?);
    }
    // Stable: faults at the same moment fire in file order.
    faults.sort_by_key(|fault| fault.at);
    Ok((faults, captured))
}

/// The name and description, which the report prints: no control characters.
fn check_texts(
    name: Spanned<String>,
    description: Option<Spanned<String>>,
    source: &Source,
) -> Result<(String, String), ScenarioError> {
    printable(name.get_ref(), false).map_err(|why| source.error(name.span(), why))?;
    if name.get_ref().trim().is_empty() {
        return Err(source.error(name.span(), "a scenario needs a name"));
    }
    let description = match description {
        None => String::new(),
        Some(text) => {
            printable(text.get_ref(), true).map_err(|why| source.error(text.span(), why))?;
            text.into_inner()
        }
    };
    Ok((name.into_inner(), description))
}

/// The counts; whether there is a store is decided by the cluster mode.
fn check_topology(raw: &RawTopology, source: &Source) -> Result<Topology, ScenarioError> {
    let masters = *raw.masters.get_ref();
    if masters == 0 || masters > MAX_MASTERS {
        return Err(source.error(
            raw.masters.span(),
            format!("a topology has 1 to {MAX_MASTERS} masters, got {masters}"),
        ));
    }
    let agents = *raw.agents.get_ref();
    if agents > MAX_AGENTS {
        return Err(source.error(
            raw.agents.span(),
            format!("a topology has at most {MAX_AGENTS} agents, got {agents}"),
        ));
    }
    Ok(Topology {
        masters,
        agents,
        store: false,
    })
}

fn check_duration(duration: &Spanned<Dur>, source: &Source) -> Result<Duration, ScenarioError> {
    let value = duration.get_ref().0;
    if value.is_zero() {
        return Err(source.error(duration.span(), "duration must be greater than 0"));
    }
    if value > MAX_DURATION {
        return Err(source.error(
            duration.span(),
            format!(
                "duration {} is longer than the limit of {} (7 days)",
                fmt_duration(value),
                fmt_duration(MAX_DURATION)
            ),
        ));
    }
    Ok(value)
}

fn check_cluster(
    raw: Option<Spanned<RawCluster>>,
    masters: u32,
    defaults: &Defaults,
    source: &Source,
) -> Result<ClusterSpec, ScenarioError> {
    let Some(raw) = raw else {
        // One master leads alone; several elect a leader.
        return Ok(if masters == 1 {
            ClusterSpec::Single
        } else {
            ClusterSpec::Raft {
                config: defaults.raft.clone(),
                persist: true,
            }
        });
    };
    let span = raw.span();
    check_mode(&raw.into_inner(), span, masters, defaults, source)
}

/// A `[cluster]` table that is written: its mode, and only the keys of that mode.
fn check_mode(
    raw: &RawCluster,
    span: std::ops::Range<usize>,
    masters: u32,
    defaults: &Defaults,
    source: &Source,
) -> Result<ClusterSpec, ScenarioError> {
    let mode = raw
        .mode
        .as_ref()
        .map_or("raft", |mode| mode.get_ref().as_str());
    let misplaced = |fields: &[(&str, bool)]| -> Result<(), ScenarioError> {
        match fields.iter().find(|(_, present)| *present) {
            Some((field, _)) => Err(source.error(
                span.clone(),
                format!("`{field}` does not apply to mode {mode:?}"),
            )),
            None => Ok(()),
        }
    };
    let raft_fields = [
        ("election_timeout", raw.election_timeout.is_some()),
        ("heartbeat_interval", raw.heartbeat_interval.is_some()),
        ("pre_vote", raw.pre_vote.is_some()),
        ("check_quorum", raw.check_quorum.is_some()),
        ("persist", raw.persist.is_some()),
    ];
    let lease_fields = [
        ("lease_period", raw.lease_period.is_some()),
        ("renew_interval", raw.renew_interval.is_some()),
        ("sync_interval", raw.sync_interval.is_some()),
    ];
    match mode {
        "single" => {
            misplaced(&raft_fields)?;
            misplaced(&lease_fields)?;
            if masters != 1 {
                return Err(source.error(span, "mode \"single\" runs exactly one master"));
            }
            Ok(ClusterSpec::Single)
        }
        "raft" => {
            misplaced(&lease_fields)?;
            let config = raft_config(raw, &defaults.raft);
            config
                .validate()
                .map_err(|message| source.error(span, format!("[cluster]: {message}")))?;
            let persist = raw.persist.unwrap_or(true);
            Ok(ClusterSpec::Raft { config, persist })
        }
        "lease" => {
            misplaced(&raft_fields)?;
            let config = lease_config(raw, &defaults.lease);
            config
                .validate()
                .map_err(|message| source.error(span, format!("[cluster]: {message}")))?;
            Ok(ClusterSpec::Lease(config))
        }
        other => Err(source.error(
            raw.mode.as_ref().map_or(span.clone(), |mode| mode.span()),
            format!("unknown cluster mode {other:?}; expected raft, lease or single"),
        )),
    }
}

/// Raft's settings: the file's, or the defaults.
fn raft_config(raw: &RawCluster, defaults: &RaftConfig) -> RaftConfig {
    RaftConfig {
        election_timeout: raw
            .election_timeout
            .map_or(defaults.election_timeout, |range| (range.0, range.1)),
        heartbeat_interval: raw
            .heartbeat_interval
            .map_or(defaults.heartbeat_interval, |d| d.0),
        pre_vote: raw.pre_vote.unwrap_or(defaults.pre_vote),
        check_quorum: raw.check_quorum.unwrap_or(defaults.check_quorum),
    }
}

/// Lease mode's timing: the file's, or the defaults.
fn lease_config(raw: &RawCluster, defaults: &LeaseConfig) -> LeaseConfig {
    LeaseConfig {
        lease_period: raw.lease_period.map_or(defaults.lease_period, |d| d.0),
        renew_interval: raw.renew_interval.map_or(defaults.renew_interval, |d| d.0),
        sync_interval: raw.sync_interval.map_or(defaults.sync_interval, |d| d.0),
        ..defaults.clone()
    }
}

pub(crate) fn check_loss(loss: Spanned<f64>, source: &Source) -> Result<f64, ScenarioError> {
    let value = *loss.get_ref();
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(source.error(
            loss.span(),
            format!("loss is a probability from 0.0 to 1.0, got {value}"),
        ))
    }
}

fn parse_heartbeat(
    raw: Option<Spanned<RawHeartbeat>>,
    defaults: &Defaults,
    source: &Source,
) -> Result<HeartbeatParams, ScenarioError> {
    let defaults = defaults.heartbeat.clone();
    let Some(raw) = raw else {
        return Ok(defaults);
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let heartbeat = HeartbeatParams {
        interval: raw.interval.map_or(defaults.interval, |d| d.0),
        max_miss: raw.max_miss.unwrap_or(defaults.max_miss),
        timeout: raw.timeout.map_or(defaults.timeout, |d| d.0),
    };
    if heartbeat.interval.is_zero() || heartbeat.timeout.is_zero() || heartbeat.max_miss == 0 {
        return Err(source.error(
            span,
            "heartbeat interval, timeout and max_miss must all be greater than 0",
        ));
    }
    Ok(heartbeat)
}

fn parse_backoff(
    raw: Option<Spanned<RawBackoff>>,
    defaults: &Defaults,
    source: &Source,
) -> Result<BackoffPolicy, ScenarioError> {
    let defaults = defaults.backoff.clone();
    let Some(raw) = raw else {
        return Ok(defaults);
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let strategy = match &raw.strategy {
        None => defaults.strategy,
        Some(name) => Strategy::from_name(name.get_ref()).ok_or_else(|| {
            source.error(
                name.span(),
                format!(
                    "unknown backoff strategy {:?}; expected one of {}",
                    name.get_ref(),
                    Strategy::NAMES.join(", ")
                ),
            )
        })?,
    };
    let policy = BackoffPolicy {
        strategy,
        base: raw.base.map_or(defaults.base, |d| d.0),
        multiplier: raw.multiplier.unwrap_or(defaults.multiplier),
        max: raw.max.map_or(defaults.max, |d| d.0),
        jitter: raw.jitter.unwrap_or(defaults.jitter),
        max_retries: raw.max_retries.unwrap_or(defaults.max_retries),
        when_exhausted: raw.long_wait.map_or(defaults.when_exhausted, |wait| {
            WhenExhausted::LongWait(wait.0)
        }),
        first_delay: raw
            .first_delay
            .map_or(defaults.first_delay, |range| Some((range.0, range.1))),
    };
    policy
        .validate()
        .map_err(|message| source.error(span, format!("[params.backoff]: {message}")))?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"t\"\nduration = \"1m\"\n[topology]\nagents = 3\n";

    fn error(text: &str) -> ScenarioError {
        Scenario::parse("t.toml", text).unwrap_err()
    }

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let scenario = Scenario::parse("t.toml", MINIMAL).unwrap();
        assert_eq!(
            scenario.topology,
            Topology {
                masters: 1,
                agents: 3,
                store: false
            }
        );
        assert_eq!(scenario.cluster, ClusterSpec::Single);
        assert_eq!(scenario.heartbeat.interval, Duration::from_secs(1));
        assert_eq!(scenario.backoff, BackoffPolicy::default());
        assert_eq!(scenario.network.latency.1, Duration::from_millis(10));
    }

    #[test]
    fn a_bad_duration_points_at_its_value() {
        let error = error("name = \"t\"\nduration = \"10x\"\n[topology]\nagents = 3\n");
        assert_eq!((error.line, error.column), (2, 12));
        assert!(error.message.contains("\"250ms\""), "{}", error.message);
    }

    #[test]
    fn an_unknown_key_is_named() {
        let error = error(&format!("{MINIMAL}[network]\nlatnecy = \"1ms..2ms\"\n"));
        assert_eq!(error.line, 6);
        assert!(error.message.contains("latnecy"), "{}", error.message);
    }

    #[test]
    fn an_unknown_node_points_at_the_selector() {
        let error = error(&format!(
            "{MINIMAL}[[faults]]\nat = \"1s\"\ncrash = \"agent-9\"\n"
        ));
        assert_eq!((error.line, error.column), (7, 9));
        assert!(
            error.message.contains("agent-1..agent-3"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_fault_with_two_actions_is_refused() {
        let error = error(&format!(
            "{MINIMAL}[[faults]]\nat = \"1s\"\ncrash = \"agent-1\"\nheal = \"all\"\n"
        ));
        assert!(error.message.contains("crash, heal"), "{}", error.message);
        assert_eq!(error.line, 5);
    }

    #[test]
    fn a_bad_backoff_strategy_lists_the_good_ones() {
        let error = error(&format!(
            "{MINIMAL}[params.backoff]\nstrategy = \"linear\"\n"
        ));
        assert!(error.message.contains("decorrelated"), "{}", error.message);
        assert_eq!(error.line, 6);
    }

    #[test]
    fn several_masters_elect_by_raft_unless_told_otherwise() {
        let three = "name = \"t\"\nduration = \"1m\"\n[topology]\nmasters = 3\nagents = 3\n";
        let scenario = Scenario::parse("t.toml", three).unwrap();
        assert_eq!(
            scenario.cluster,
            ClusterSpec::Raft {
                config: RaftConfig::default(),
                persist: true
            }
        );
        let lease =
            Scenario::parse("t.toml", &format!("{three}[cluster]\nmode = \"lease\"\n")).unwrap();
        assert!(lease.topology.store);
        let single = error(&format!("{three}[cluster]\nmode = \"single\"\n"));
        assert!(
            single.message.contains("exactly one master"),
            "{}",
            single.message
        );
        let persist = error(&format!(
            "{three}[cluster]\nmode = \"lease\"\npersist = false\n"
        ));
        assert!(persist.message.contains("persist"), "{}", persist.message);
        let misplaced = error(&format!(
            "{three}[cluster]\nmode = \"lease\"\npre_vote = false\n"
        ));
        assert!(
            misplaced.message.contains("pre_vote"),
            "{}",
            misplaced.message
        );
        let short = error(&format!(
            "{three}[cluster]\nmode = \"lease\"\nlease_period = \"1s\"\nrenew_interval = \"2s\"\n"
        ));
        assert!(short.message.contains("lease_period"), "{}", short.message);
    }

    #[test]
    fn faults_fire_in_time_order() {
        let scenario = Scenario::parse(
            "t.toml",
            &format!(
                "{MINIMAL}[[faults]]\nat = \"30s\"\nheal = \"all\"\n[[faults]]\nat = \"10s\"\nloss = 0.5\n"
            ),
        )
        .unwrap();
        let times: Vec<_> = scenario.faults.iter().map(|f| f.at.as_secs()).collect();
        assert_eq!(times, vec![10, 30]);
    }

    #[test]
    fn too_many_masters_are_refused_with_the_limit() {
        let masters =
            error("name = \"t\"\nduration = \"1m\"\n[topology]\nmasters = 257\nagents = 1\n");
        assert_eq!((masters.line, masters.column), (4, 11));
        assert!(masters.message.contains("1 to 254"), "{}", masters.message);
        let agents = error("name = \"t\"\nduration = \"1m\"\n[topology]\nagents = 10001\n");
        assert!(agents.message.contains("10000"), "{}", agents.message);
    }

    #[test]
    fn a_duration_past_the_limit_is_refused() {
        for long in ["1000000h", "18446744073709551615ms", "169h"] {
            let refused = error(&format!(
                "name = \"t\"\nduration = \"{long}\"\n[topology]\nagents = 1\n"
            ));
            assert_eq!(refused.line, 2, "{long}");
            assert!(
                refused.message.contains("168h"),
                "{long}: {}",
                refused.message
            );
        }
        let overflow =
            error("name = \"t\"\nduration = \"99999999999999999999h\"\n[topology]\nagents = 1\n");
        assert_eq!(overflow.line, 2);
    }

    #[test]
    fn partition_groups_must_be_disjoint_and_not_empty() {
        let with = |groups: &str| {
            Scenario::parse(
                "t.toml",
                &format!(
                    "name = \"t\"\nduration = \"1m\"\n[topology]\nmasters = 3\nagents = 3\n[[faults]]\nat = \"1s\"\npartition = {groups}\n"
                ),
            )
        };
        let overlap = with(r#"[["agent-1..2"], ["agents"]]"#).unwrap_err();
        assert!(overlap.message.contains("overlaps"), "{}", overlap.message);
        assert_eq!(overlap.line, 8);
        let leader = with(r#"[["leader"], ["masters"]]"#).unwrap_err();
        assert!(leader.message.contains("the leader"), "{}", leader.message);
        assert!(
            with(r#"[["leader"], ["master-3"]]"#).is_ok(),
            "decided by the run"
        );
        let empty = with(r#"[["agent-1"], []]"#).unwrap_err();
        assert!(empty.message.contains("empty"), "{}", empty.message);
        assert!(with(r#"[["leader"], ["followers"]]"#).is_ok());
        assert!(with(r#"[["leader", "agent-1"], ["followers", "agents"]]"#).is_err());
        assert!(with(r#"[["master-1"], ["agent-1..agent-3"]]"#).is_ok());
        let wipe = Scenario::parse(
            "t.toml",
            "name = \"t\"\nduration = \"1m\"\n[topology]\nmasters = 3\nagents = 1\n[[faults]]\nat = \"1s\"\nwipe = \"followers\"\n",
        )
        .unwrap();
        assert_eq!(wipe.faults[0].action.to_string(), "wipe followers");
    }

    #[test]
    fn a_preset_sets_its_designs_defaults_and_explicit_keys_win() {
        let grpc = Scenario::parse("t.toml", &format!("preset = \"grpc\"\n{MINIMAL}")).unwrap();
        assert_eq!(grpc.heartbeat.interval, Duration::from_secs(10));
        assert_eq!(grpc.backoff.base, Duration::from_millis(100));
        assert_eq!(grpc.backoff.max_retries, 3);
        let overridden = Scenario::parse(
            "t.toml",
            &format!("preset = \"grpc\"\n{MINIMAL}[params.backoff]\nmax_retries = 7\n"),
        )
        .unwrap();
        assert_eq!(overridden.backoff.max_retries, 7);
        assert_eq!(
            overridden.backoff.base,
            Duration::from_millis(100),
            "the rest stays"
        );
        let unknown = error(&format!("preset = \"grcp\"\n{MINIMAL}"));
        assert_eq!((unknown.line, unknown.column), (1, 10));
        assert!(
            unknown.message.contains("reconnection"),
            "{}",
            unknown.message
        );
    }

    #[test]
    fn credentials_admin_and_stop_faults_are_checked_where_written() {
        let fault = |params: &str, body: &str| {
            Scenario::parse(
                "t.toml",
                &format!("name = \"t\"\nduration = \"1m\"\n[topology]\nmasters = 3\nagents = 3\n{params}[[faults]]\nat = \"1s\"\n{body}"),
            )
        };
        let auth = "[params.auth]\nreauth_delay = \"2s\"\n";
        let cases = [
            ("", "revoke = \"agent-1\"\n", "add [params.auth]"),
            (auth, "revoke = \"master-1\"\n", "master-1 is not one"),
            (auth, "stop = \"leader\"\n", "not masters"),
            (auth, "shutdown = \"agent-2\"\n", "agent-2 is not one"),
            (auth, "admin = \"force\"\n", "needs `agent = SEL`"),
            (
                auth,
                "admin = \"active\"\nagent = \"agents\"\n",
                "takes no `agent`",
            ),
            (auth, "admin = \"reboot\"\n", "unknown admin operation"),
            (
                auth,
                "crash = \"agent-1\"\nagent = \"agent-1\"\n",
                "only goes with `admin`",
            ),
            (
                "[params.master]\ncapacity = 0\n",
                "heal = \"all\"\n",
                "at least 1",
            ),
            (
                "[params.master]\nretry_after = \"1s\"\n",
                "heal = \"all\"\n",
                "set `capacity` too",
            ),
        ];
        for (params, body, expected) in cases {
            let error = fault(params, body).unwrap_err();
            assert!(
                error.message.contains(expected),
                "{body}: {}",
                error.message
            );
            assert!(error.line >= 6, "{body}: located at line {}", error.line);
        }
        let fine = fault(auth, "admin = \"force\"\nagent = \"any(agents, 1)\"\n").unwrap();
        assert_eq!(
            fine.faults[0].action.to_string(),
            "admin force any(agents, 1)"
        );
        assert_eq!(fine.reauth_delay, Duration::from_secs(2));
        assert!(fault(auth, "shutdown = \"leader\"\n").is_ok());
    }

    #[test]
    fn control_characters_in_names_and_descriptions_are_refused() {
        let name = error("name = \"t\\u001b[2J\"\nduration = \"1m\"\n[topology]\nagents = 1\n");
        assert_eq!((name.line, name.column), (1, 8));
        assert!(name.message.contains("U+001B"), "{}", name.message);
        let description = error(
            "name = \"t\"\ndescription = \"a\\u0007\"\nduration = \"1m\"\n[topology]\nagents = 1\n",
        );
        assert_eq!(description.line, 2);
        assert!(
            description.message.contains("U+0007"),
            "{}",
            description.message
        );
        let multiline = Scenario::parse(
            "t.toml",
            "name = \"t\"\ndescription = \"\"\"\ntwo\nlines\"\"\"\nduration = \"1m\"\n[topology]\nagents = 1\n",
        );
        assert!(multiline.is_ok(), "{multiline:?}");
    }
}
