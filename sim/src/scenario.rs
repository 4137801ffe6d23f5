//! Scenario files: what to build, what to break and when, and what must hold.
//!
//! Parsing is two steps. serde reads the TOML into `Raw*` structs (unknown keys and bad values
//! are errors there, with toml's position); [`Scenario::parse`] then checks what serde cannot
//! (node names, one action per fault, the fields each check needs) and reports the position of
//! the offending value too. Nothing here runs anything.

use crate::duration::{Dur, DurRange};
use crate::selector::{Selector, Topology};
use fleet_core::backoff::{BackoffPolicy, Strategy, WhenExhausted};
use fleet_core::cluster::raft::RaftConfig;
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// A scenario file that cannot be used, with where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    pub path: String,
    /// 1-based; 0 when the error is about the file as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path, self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for ScenarioError {}

#[derive(Clone, Debug, PartialEq)]
pub struct Heartbeat {
    pub interval: Duration,
    pub max_miss: u32,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub latency: (Duration, Duration),
    pub loss: f64,
}

/// How lease mode times its lease.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseTiming {
    pub lease_period: Duration,
    pub renew_interval: Duration,
    pub sync_interval: Duration,
}

/// How the masters agree on a leader.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterSpec {
    Single,
    Raft(RaftConfig),
    Lease(LeaseTiming),
}

impl ClusterSpec {
    pub fn mode(&self) -> &'static str {
        match self {
            ClusterSpec::Single => "single",
            ClusterSpec::Raft(_) => "raft",
            ClusterSpec::Lease(_) => "lease",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    Crash(Selector),
    Restart(Selector),
    Partition {
        groups: Vec<Vec<Selector>>,
        oneway: bool,
    },
    /// `None` heals everything.
    Heal(Option<Selector>),
    Latency(Duration, Duration),
    Loss(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub at: Duration,
    pub action: FaultAction,
}

/// What an `[[expect]]` entry asserts. Times are offsets from the start of the run.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// Every selected agent is online (as its master sees it) at `at`.
    AllOnline { agents: Selector, at: Duration },
    /// Every selected agent is offline at some point in `[after, after + within]`.
    OfflineWithin {
        agents: Selector,
        after: Duration,
        within: Duration,
    },
    /// Every delay before a connect attempt at or after `after` lies within the policy's bounds.
    BackoffFollowsPolicy { agents: Selector, after: Duration },
    /// At most `max` connect attempts by the selected agents during `during`.
    MaxConnectAttempts {
        agents: Selector,
        during: (Duration, Duration),
        max: u64,
    },
    /// No selected agent is offline at any moment of `during`.
    NoOffline {
        agents: Selector,
        during: (Duration, Duration),
    },
    /// Some master leads at some moment of `[after, after + within]`.
    LeaderElected { after: Duration, within: Duration },
    /// `node` leads at `at`.
    LeaderIs { node: String, at: Duration },
    /// No master leads at any moment of `during`.
    NoLeader { during: (Duration, Duration) },
    /// No election ever reaches a term above `max`.
    TermAtMost { max: u64 },
    /// By `after + within`, every selected agent is registered with the master leading then.
    AgentsFollowLeader {
        agents: Selector,
        after: Duration,
        within: Duration,
    },
    /// The busiest whole second of `during` has between `min` and `max` connect attempts
    /// (`min` shows a storm happens, `max` that it does not).
    PeakConnectRate {
        during: (Duration, Duration),
        min: u64,
        max: u64,
    },
}

impl Check {
    pub const NAMES: [&'static str; 11] = [
        "all_online",
        "offline_within",
        "backoff_follows_policy",
        "max_connect_attempts",
        "no_offline",
        "peak_connect_rate",
        "leader_elected",
        "leader_is",
        "no_leader",
        "term_at_most",
        "agents_follow_leader",
    ];
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub duration: Duration,
    pub topology: Topology,
    pub cluster: ClusterSpec,
    pub heartbeat: Heartbeat,
    pub backoff: BackoffPolicy,
    pub network: Network,
    /// In firing order (by `at`, then file order).
    pub faults: Vec<Fault>,
    pub expectations: Vec<Expectation>,
}

/// A check, and whether it should hold. `holds = false` documents a failure a scenario exists to
/// show (what goes wrong without pre-vote, say): the verdict is ok when the check fails.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    pub check: Check,
    pub holds: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    seed: u64,
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
    expect: Vec<Spanned<RawExpect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default = "one")]
    masters: Spanned<u32>,
    agents: u32,
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawParams {
    heartbeat: Option<Spanned<RawHeartbeat>>,
    backoff: Option<Spanned<RawBackoff>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    mode: Option<Spanned<String>>,
    election_timeout: Option<DurRange>,
    heartbeat_interval: Option<Dur>,
    pre_vote: Option<bool>,
    check_quorum: Option<bool>,
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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    latency: Option<DurRange>,
    loss: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: Spanned<Dur>,
    crash: Option<Spanned<String>>,
    restart: Option<Spanned<String>>,
    partition: Option<Spanned<Vec<Vec<Spanned<String>>>>>,
    oneway: Option<bool>,
    heal: Option<Spanned<String>>,
    latency: Option<DurRange>,
    loss: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    check: Spanned<String>,
    agents: Option<Spanned<String>>,
    at: Option<Dur>,
    after: Option<Dur>,
    within: Option<Dur>,
    during: Option<DurRange>,
    max: Option<u64>,
    min: Option<u64>,
    node: Option<Spanned<String>>,
    holds: Option<bool>,
}

/// Turns byte offsets into positions for one file.
struct Source<'a> {
    path: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ScenarioError {
        let (line, column) = if span == (0..0) {
            (0, 0)
        } else {
            let before = &self.text[..span.start.min(self.text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, column)
        };
        ScenarioError {
            path: self.path.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError {
            path: shown.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read the scenario file: {error}"),
        })?;
        Scenario::parse(&shown, &text)
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
        let masters = self.topology.masters;
        if *masters.get_ref() == 0 || self.topology.agents > 10_000 {
            return Err(source.error(
                masters.span(),
                "a topology needs 1 or more masters and at most 10000 agents",
            ));
        }
        let cluster = check_cluster(self.cluster, *masters.get_ref(), source)?;
        let topology = Topology {
            masters: *masters.get_ref(),
            agents: self.topology.agents,
            store: matches!(cluster, ClusterSpec::Lease(_)),
        };
        let duration = self.duration.get_ref().0;
        if duration.is_zero() {
            return Err(source.error(self.duration.span(), "duration must be greater than 0"));
        }
        let heartbeat = check_heartbeat(self.params.heartbeat, source)?;
        let backoff = check_backoff(self.params.backoff, source)?;
        let network = Network {
            latency: self.network.latency.map_or(
                (Duration::from_millis(1), Duration::from_millis(10)),
                |range| (range.0, range.1),
            ),
            loss: match self.network.loss {
                Some(loss) => check_loss(loss, source)?,
                None => 0.0,
            },
        };
        let select = |text: &Spanned<String>| {
            topology
                .select(text.get_ref())
                .map_err(|message| source.error(text.span(), message))
        };
        let mut faults = Vec::new();
        for fault in self.faults {
            let span = fault.span();
            let fault = fault.into_inner();
            let at = fault.at.get_ref().0;
            if at > duration {
                return Err(source.error(
                    fault.at.span(),
                    format!(
                        "fault at {} is after the end of the run ({})",
                        fleet_core::fmt_duration(at),
                        fleet_core::fmt_duration(duration)
                    ),
                ));
            }
            let mut actions = Vec::new();
            if let Some(target) = &fault.crash {
                actions.push(("crash", FaultAction::Crash(select(target)?)));
            }
            if let Some(target) = &fault.restart {
                actions.push(("restart", FaultAction::Restart(select(target)?)));
            }
            if let Some(groups) = &fault.partition {
                if groups.get_ref().len() < 2 {
                    return Err(source.error(
                        groups.span(),
                        "a partition needs at least two groups, like [[\"agent-1\"], [\"master-1\"]]",
                    ));
                }
                let groups = groups
                    .get_ref()
                    .iter()
                    .map(|group| group.iter().map(select).collect::<Result<Vec<_>, _>>())
                    .collect::<Result<Vec<_>, _>>()?;
                actions.push((
                    "partition",
                    FaultAction::Partition {
                        groups,
                        oneway: fault.oneway.unwrap_or(false),
                    },
                ));
            } else if fault.oneway.is_some() {
                return Err(source.error(span, "`oneway` only goes with `partition`"));
            }
            if let Some(target) = &fault.heal {
                let selector = match target.get_ref().as_str() {
                    "all" => None,
                    _ => Some(select(target)?),
                };
                actions.push(("heal", FaultAction::Heal(selector)));
            }
            if let Some(range) = fault.latency {
                actions.push(("latency", FaultAction::Latency(range.0, range.1)));
            }
            if let Some(loss) = fault.loss {
                actions.push(("loss", FaultAction::Loss(check_loss(loss, source)?)));
            }
            match actions.len() {
                1 => faults.push(Fault {
                    at,
                    action: actions.pop().expect("one action").1,
                }),
                0 => {
                    return Err(source.error(
                        span,
                        "a fault needs one of crash, restart, partition, heal, latency or loss",
                    ))
                }
                _ => {
                    let names: Vec<_> = actions.iter().map(|(name, _)| *name).collect();
                    return Err(source.error(
                        span,
                        format!(
                            "a fault takes exactly one action, found {}: split it into one \
                             [[faults]] entry each",
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
        faults.sort_by_key(|fault| fault.at);

        let mut expectations = Vec::new();
        for expect in self.expect {
            let span = expect.span();
            let expect = expect.into_inner();
            let check_name = expect.check.get_ref().as_str();
            let need = |field: &str| {
                source.error(
                    span.clone(),
                    format!("check {check_name:?} needs `{field}`"),
                )
            };
            let agents = match &expect.agents {
                Some(text) => topology
                    .select_fixed(text.get_ref())
                    .map_err(|message| source.error(text.span(), message))?,
                None => topology.select("agents").expect("`agents` always selects"),
            };
            let whole_run = (Duration::ZERO, duration);
            let during = expect.during.map_or(whole_run, |range| (range.0, range.1));
            let check = match check_name {
                "all_online" => Check::AllOnline {
                    agents,
                    at: expect.at.ok_or_else(|| need("at"))?.0,
                },
                "offline_within" => Check::OfflineWithin {
                    agents,
                    after: expect.after.ok_or_else(|| need("after"))?.0,
                    within: expect.within.ok_or_else(|| need("within"))?.0,
                },
                "backoff_follows_policy" => Check::BackoffFollowsPolicy {
                    agents,
                    after: expect.after.map_or(Duration::ZERO, |after| after.0),
                },
                "max_connect_attempts" => Check::MaxConnectAttempts {
                    agents,
                    during,
                    max: expect.max.ok_or_else(|| need("max"))?,
                },
                "no_offline" => Check::NoOffline {
                    agents,
                    during: expect
                        .during
                        .map(|r| (r.0, r.1))
                        .ok_or_else(|| need("during"))?,
                },
                "leader_elected" => Check::LeaderElected {
                    after: expect.after.map_or(Duration::ZERO, |after| after.0),
                    within: expect.within.ok_or_else(|| need("within"))?.0,
                },
                "leader_is" => {
                    let node = expect.node.as_ref().ok_or_else(|| need("node"))?;
                    let nodes = topology
                        .select_fixed(node.get_ref())
                        .map_err(|message| source.error(node.span(), message))?;
                    if nodes.nodes().len() != 1 || !topology.masters().contains(&nodes.nodes()[0]) {
                        return Err(source.error(node.span(), "`node` names one master"));
                    }
                    Check::LeaderIs {
                        node: nodes.nodes()[0].clone(),
                        at: expect.at.ok_or_else(|| need("at"))?.0,
                    }
                }
                "no_leader" => Check::NoLeader {
                    during: expect
                        .during
                        .map(|r| (r.0, r.1))
                        .ok_or_else(|| need("during"))?,
                },
                "term_at_most" => Check::TermAtMost {
                    max: expect.max.ok_or_else(|| need("max"))?,
                },
                "agents_follow_leader" => Check::AgentsFollowLeader {
                    agents,
                    after: expect.after.map_or(Duration::ZERO, |after| after.0),
                    within: expect.within.ok_or_else(|| need("within"))?.0,
                },
                "peak_connect_rate" => {
                    if expect.min.is_none() && expect.max.is_none() {
                        return Err(need("min` or `max"));
                    }
                    Check::PeakConnectRate {
                        during,
                        min: expect.min.unwrap_or(0),
                        max: expect.max.unwrap_or(u64::MAX),
                    }
                }
                other => {
                    return Err(source.error(
                        expect.check.span(),
                        format!(
                            "unknown check {other:?}; expected one of {}",
                            Check::NAMES.join(", ")
                        ),
                    ))
                }
            };
            expectations.push(Expectation {
                check,
                holds: expect.holds.unwrap_or(true),
            });
        }

        Ok(Scenario {
            name: self.name,
            description: self.description,
            seed: self.seed,
            duration,
            topology,
            cluster,
            heartbeat,
            backoff,
            network,
            faults,
            expectations,
        })
    }
}

fn check_cluster(
    raw: Option<Spanned<RawCluster>>,
    masters: u32,
    source: &Source,
) -> Result<ClusterSpec, ScenarioError> {
    let Some(raw) = raw else {
        // One master leads alone; several elect a leader.
        return Ok(if masters == 1 {
            ClusterSpec::Single
        } else {
            ClusterSpec::Raft(RaftConfig::default())
        });
    };
    let span = raw.span();
    let raw = raw.into_inner();
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
            let defaults = RaftConfig::default();
            let config = RaftConfig {
                election_timeout: raw
                    .election_timeout
                    .map_or(defaults.election_timeout, |range| (range.0, range.1)),
                heartbeat_interval: raw
                    .heartbeat_interval
                    .map_or(defaults.heartbeat_interval, |d| d.0),
                pre_vote: raw.pre_vote.unwrap_or(defaults.pre_vote),
                check_quorum: raw.check_quorum.unwrap_or(defaults.check_quorum),
            };
            config
                .validate()
                .map_err(|message| source.error(span, format!("[cluster]: {message}")))?;
            Ok(ClusterSpec::Raft(config))
        }
        "lease" => {
            misplaced(&raft_fields)?;
            let timing = LeaseTiming {
                lease_period: raw.lease_period.map_or(Duration::from_secs(10), |d| d.0),
                renew_interval: raw.renew_interval.map_or(Duration::from_secs(3), |d| d.0),
                sync_interval: raw.sync_interval.map_or(Duration::from_secs(2), |d| d.0),
            };
            if timing.renew_interval.is_zero()
                || timing.sync_interval.is_zero()
                || timing.lease_period <= timing.renew_interval
            {
                return Err(source.error(
                    span,
                    "[cluster]: lease_period must be greater than renew_interval, and both \
                     intervals greater than 0",
                ));
            }
            Ok(ClusterSpec::Lease(timing))
        }
        other => Err(source.error(
            raw.mode.as_ref().map_or(span.clone(), |mode| mode.span()),
            format!("unknown cluster mode {other:?}; expected raft, lease or single"),
        )),
    }
}

fn check_loss(loss: Spanned<f64>, source: &Source) -> Result<f64, ScenarioError> {
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

fn check_heartbeat(
    raw: Option<Spanned<RawHeartbeat>>,
    source: &Source,
) -> Result<Heartbeat, ScenarioError> {
    let defaults = Heartbeat {
        interval: Duration::from_secs(1),
        max_miss: 3,
        timeout: Duration::from_secs(3),
    };
    let Some(raw) = raw else {
        return Ok(defaults);
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let heartbeat = Heartbeat {
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

fn check_backoff(
    raw: Option<Spanned<RawBackoff>>,
    source: &Source,
) -> Result<BackoffPolicy, ScenarioError> {
    let defaults = BackoffPolicy::default();
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
        when_exhausted: raw.long_wait.map_or(WhenExhausted::GiveUp, |wait| {
            WhenExhausted::LongWait(wait.0)
        }),
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
    fn a_check_missing_a_field_says_which() {
        let missing = error(&format!("{MINIMAL}[[expect]]\ncheck = \"all_online\"\n"));
        assert!(
            missing.message.contains("needs `at`"),
            "{}",
            missing.message
        );
        let error = error(&format!(
            "{MINIMAL}[[expect]]\ncheck = \"everything_fine\"\n"
        ));
        assert!(error.message.contains("all_online"), "{}", error.message);
        assert_eq!((error.line, error.column), (6, 9));
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
        assert_eq!(scenario.cluster, ClusterSpec::Raft(RaftConfig::default()));
        let lease =
            Scenario::parse("t.toml", &format!("{three}[cluster]\nmode = \"lease\"\n")).unwrap();
        assert!(lease.topology.store);
        let single = error(&format!("{three}[cluster]\nmode = \"single\"\n"));
        assert!(
            single.message.contains("exactly one master"),
            "{}",
            single.message
        );
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
    fn expectations_name_fixed_nodes() {
        let error = error(&format!(
            "{MINIMAL}[[expect]]\ncheck = \"all_online\"\nat = \"1s\"\nagents = \"leader\"\n"
        ));
        assert!(
            error.message.contains("only known while the run goes on"),
            "{}",
            error.message
        );
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
}
