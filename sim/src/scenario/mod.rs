//! The first stage: scenario files. What to build, what to break and when, and what must hold.
//!
//! Parsing is two steps. serde reads the TOML into `Raw*` structs (unknown keys and bad values
//! are errors there, with toml's position); [`Scenario::parse`] then checks what serde cannot
//! (limits, node names, one action per fault) and reports the position of the offending value
//! too. `[[expect]]` entries are kept as located tables: the judge stage, which owns the checks,
//! compiles them. Nothing here runs anything.

pub mod commands;
pub mod expect;
pub mod explore;
pub mod faults;
pub mod network;
pub mod overrides;
pub mod recovery;
pub mod selector;
pub mod sometimes;

// The parameters' schema and parser, shared with the `fleet` binaries' config files.
pub use fleet_config::{duration, params, preset, protection, source};

use crate::scenario::commands::{Operation, RawCommand, RawConfig};
use crate::scenario::duration::Dur;
use crate::scenario::expect::{ExpectSpec, RawExpect};
use crate::scenario::explore::{ExploreSpec, RawExplore};
use crate::scenario::faults::{Fault, RawFault};
use crate::scenario::network::{check_network, RawNetwork};
use crate::scenario::protection::{AuthParams, MasterParams};
use crate::scenario::selector::Topology;
use crate::scenario::source::{printable, Source};
use fleet_config::{RawParams, RawParts};
use fleet_core::backoff::BackoffPolicy;
use fleet_core::bugs::{Bug, Bugs};
use fleet_core::command::ExecutorConfig;
use fleet_core::fmt_duration;
use fleet_core::transport::Transport;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

pub(crate) use network::check_loss;
pub use network::{Network, DEFAULT_TICK};
pub use params::{ClusterSpec, HeartbeatParams};
pub use source::ConfigError;

/// At most this many masters: the address plan gives each one address in 10.0.0.0/24.
pub(crate) const MAX_MASTERS: u32 = 254;
pub(crate) const MAX_AGENTS: u32 = 10_000;
/// The longest run a scenario may ask for: a week of simulated time (a 1h fleet takes seconds).
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

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
    /// `[params.transport]`: what carries the messages between agents and masters.
    pub transport: Transport,
    /// The `[[expect]]` entries, for the judge to compile.
    pub expectations: Vec<ExpectSpec>,
    /// What `sim explore` may break; `sim run` ignores it.
    pub explore: Option<ExploreSpec>,
    /// `[[sometimes]]`: states `sim explore` must see some run reach.
    pub sometimes: Vec<sometimes::Sometimes>,
    /// `buggify = true` (or `"20s"`): the shell's fault points fire, for the whole run (or
    /// until then). `[explore] buggify` sets it for runs, until the faults stop.
    pub buggify: Option<Duration>,
    /// `bugs = ["raft_vote_twice"]`: bugs planted in the control plane for this run (a build
    /// with the `bugs` feature only; `--bug NAME` sets it), for `sim zoo` and its reproductions.
    pub bugs: Bugs,
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
    cluster: Option<Spanned<toml::Table>>,
    #[serde(default)]
    faults: Vec<Spanned<RawFault>>,
    #[serde(default)]
    commands: Vec<Spanned<RawCommand>>,
    #[serde(default)]
    config: Vec<Spanned<RawConfig>>,
    #[serde(default)]
    expect: Vec<Spanned<RawExpect>>,
    explore: Option<RawExplore>,
    #[serde(default)]
    sometimes: Vec<sometimes::RawSometimes>,
    buggify: Option<Spanned<toml::Value>>,
    bugs: Option<Spanned<Vec<Spanned<String>>>>,
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

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ConfigError> {
        let text = source::read(path)?;
        Scenario::parse(&path.display().to_string(), &text)
    }

    /// Parses and checks a scenario; `path` only labels errors.
    pub fn parse(path: &str, text: &str) -> Result<Scenario, ConfigError> {
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

/// The commands and config, in firing order (by `at`, then file order).
fn check_operations(
    commands: Vec<Spanned<commands::RawCommand>>,
    config: Vec<Spanned<commands::RawConfig>>,
    topology: &Topology,
    duration: Duration,
    captured: &BTreeSet<String>,
    source: &Source,
) -> Result<Vec<Operation>, ConfigError> {
    let mut operations = Vec::new();
    for command in commands {
        operations.extend(commands::check_command(
            command, topology, duration, captured, source,
        )?);
    }
    for config in config {
        operations.push(commands::check_config(config, duration, source)?);
    }
    operations.sort_by_key(Operation::at);
    Ok(operations)
}

impl RawScenario {
    fn check(self, source: &Source) -> Result<Scenario, ConfigError> {
        let (name, description) = check_texts(self.name, self.description, source)?;
        let topology = check_topology(&self.topology, source)?;
        let parts = RawParts {
            preset: self.preset,
            cluster: self.cluster,
            params: self.params,
        };
        let params = parts.check(topology.masters, source)?;
        let (cluster, auth) = (&params.cluster, &params.auth);
        let topology = Topology {
            store: matches!(cluster, ClusterSpec::Lease(_)),
            broker: matches!(params.transport, Transport::Mqtt(_)),
            ..topology
        };
        let duration = check_duration(&self.duration, source)?;
        let network = check_network(self.network, source)?;
        let (faults, captured) =
            check_faults(self.faults, &topology, duration, auth.is_some(), source)?;
        let operations = check_operations(
            self.commands,
            self.config,
            &topology,
            duration,
            &captured,
            source,
        )?;
        let expectations = (self.expect.into_iter())
            .map(|expect| expect::check(expect, source))
            .collect::<Result<Vec<_>, _>>()?;
        let recovery = recovery::Parameters {
            cluster,
            heartbeat: &params.heartbeat,
            backoff: &params.backoff,
            reauth: auth.as_ref().map(|_| params.reauth_delay),
            attempts: &params.master.attempts,
        };
        let explore = (self.explore)
            .map(|raw| explore::check(raw, &topology, duration, &recovery, source))
            .transpose()?;
        let sometimes = sometimes::check_all(self.sometimes, &topology, source)?;
        Ok(Scenario {
            path: source.path.to_string(),
            name,
            description,
            seed: self.seed,
            seeds: check_seeds(self.seeds, source)?,
            duration,
            topology,
            cluster: params.cluster,
            preset: params.preset,
            heartbeat: params.heartbeat,
            backoff: params.backoff,
            auth: params.auth,
            reauth_delay: params.reauth_delay,
            master: params.master,
            network,
            faults,
            operations,
            executor: params.executor,
            transport: params.transport,
            expectations,
            explore,
            sometimes,
            buggify: check_buggify(self.buggify.as_ref(), duration, source)?,
            bugs: check_bugs(self.bugs, source)?,
            captures: captured,
            overrides: Vec::new(),
        })
    }
}

/// `seeds = [...]`: at least one.
fn check_seeds(
    seeds: Option<Spanned<Vec<u64>>>,
    source: &Source,
) -> Result<Option<Vec<u64>>, ConfigError> {
    match seeds {
        Some(seeds) if seeds.get_ref().is_empty() => {
            Err(source.error(seeds.span(), "`seeds` lists at least one seed"))
        }
        other => Ok(other.map(Spanned::into_inner)),
    }
}

/// `buggify = true` for the whole run, `"20s"` until then, `false` (or absent) never.
fn check_buggify(
    value: Option<&Spanned<toml::Value>>,
    duration: Duration,
    source: &Source,
) -> Result<Option<Duration>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    let what = "`buggify` is true, false, or how long the fault points fire, like \"20s\"";
    match value.get_ref() {
        toml::Value::Boolean(on) => Ok(on.then_some(duration)),
        toml::Value::String(text) => duration::parse_duration(text)
            .map(Some)
            .map_err(|why| source.error(value.span(), format!("{what}: {why}"))),
        _ => Err(source.error(value.span(), what)),
    }
}

/// `bugs = [NAME, ...]`: each a bug of the zoo, in a build that can plant them.
fn check_bugs(
    bugs: Option<Spanned<Vec<Spanned<String>>>>,
    source: &Source,
) -> Result<Bugs, ConfigError> {
    let Some(bugs) = bugs else {
        return Ok(Bugs::NONE);
    };
    let span = bugs.span();
    let named = (bugs.into_inner().into_iter())
        .map(|name| {
            let span = name.span();
            name.into_inner()
                .parse::<Bug>()
                .map_err(|why| source.error(span, why))
        })
        .collect::<Result<Vec<Bug>, _>>()?;
    Bugs::of(&named).map_err(|why| source.error(span, why))
}

/// Every `[[faults]]` entry in firing order, and the names they capture.
fn check_faults(
    raw: Vec<Spanned<RawFault>>,
    topology: &Topology,
    duration: Duration,
    authenticates: bool,
    source: &Source,
) -> Result<(Vec<Fault>, BTreeSet<String>), ConfigError> {
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
) -> Result<(String, String), ConfigError> {
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
fn check_topology(raw: &RawTopology, source: &Source) -> Result<Topology, ConfigError> {
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
        broker: false,
    })
}

fn check_duration(duration: &Spanned<Dur>, source: &Source) -> Result<Duration, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::cluster::raft::RaftConfig;

    const MINIMAL: &str = "name = \"t\"\nduration = \"1m\"\n[topology]\nagents = 3\n";

    fn error(text: &str) -> ConfigError {
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
                store: false,
                broker: false,
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
                persist: true,
                fsync: true,
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
        assert_eq!((overlap.line, overlap.column), (8, 31), "at \"agents\"");
        let unknown = with(r#"[["master-1"], ["agent-1", 'agent-9']]"#).unwrap_err();
        assert!(unknown.message.contains("agent-9"), "{}", unknown.message);
        assert_eq!((unknown.line, unknown.column), (8, 40), "at 'agent-9'");
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
    fn bugs_are_planted_by_name_and_only_in_a_build_that_has_them() {
        let with = |bugs: &str| {
            let text =
                format!("name = \"t\"\nduration = \"1m\"\nbugs = {bugs}\n[topology]\nagents = 1\n");
            Scenario::parse("t.toml", &text)
        };
        let unknown = with(r#"["no_such_bug"]"#).unwrap_err().to_string();
        assert!(
            unknown.contains("t.toml:3:") && unknown.contains("raft_vote_twice"),
            "{unknown}"
        );
        let planted = with(r#"["raft_vote_twice"]"#);
        if fleet_core::bugs::PLANTABLE {
            assert!(planted.unwrap().bugs.has(Bug::RaftVoteTwice));
        } else {
            let error = planted.unwrap_err().to_string();
            assert!(error.contains("--features bugs"), "{error}");
        }
        assert_eq!(with("[]").unwrap().bugs, Bugs::NONE);
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
