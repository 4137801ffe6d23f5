//! `sim run --json`: one document with the scenario, seed, timeline, verdicts and stats.

use crate::history::Entry;
use crate::judge::Verdict;
use crate::scenario::commands::Operation;
use crate::scenario::selector::Topology;
use crate::scenario::{ClusterSpec, Scenario};
use fleet_core::command::ExecutorConfig;
use fleet_core::transport::Transport;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Serialize)]
struct JsonStats {
    sim_ms: u64,
    wall_ms: u64,
    events: usize,
    metrics: crate::history::metrics::Metrics,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    scenario: &'a str,
    seed: u64,
    params: Params<'a>,
    events: &'a [Entry],
    expectations: &'a [Verdict],
    stats: JsonStats,
}

pub fn json(
    scenario: &Scenario,
    seed: u64,
    entries: &[Entry],
    results: &[Verdict],
    wall: Duration,
) -> String {
    let report = JsonReport {
        scenario: &scenario.name,
        seed,
        params: params(scenario),
        events: entries,
        expectations: results,
        stats: JsonStats {
            sim_ms: scenario.duration.as_millis() as u64,
            wall_ms: wall.as_millis() as u64,
            events: entries.len(),
            metrics: super::measure(scenario, entries),
        },
    };
    serde_json::to_string_pretty(&report).expect("the report serializes")
}

/// Milliseconds, as the JSON writes every duration.
#[derive(Clone, Copy)]
struct Ms(Duration);

impl Serialize for Ms {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0.as_millis() as u64)
    }
}

/// The scenario's parameters after defaults: what the run actually used.
#[derive(Serialize)]
pub struct Params<'a> {
    duration_ms: Ms,
    topology: &'a Topology,
    cluster: Cluster,
    heartbeat: Heartbeat,
    backoff: Backoff,
    preset: &'a Option<String>,
    auth: Option<Auth>,
    master: Master,
    network: Network,
    faults: Vec<Fault>,
    executor: &'a ExecutorConfig,
    /// `tcp`, or `http` with its `poll_ms`.
    transport: serde_json::Value,
    operations: Vec<JsonOperation<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
enum Cluster {
    Single,
    Raft {
        election_timeout_ms: [Ms; 2],
        heartbeat_interval_ms: Ms,
        pre_vote: bool,
        check_quorum: bool,
        persist: bool,
        fsync: bool,
    },
    Lease {
        lease_period_ms: Ms,
        renew_interval_ms: Ms,
        sync_interval_ms: Ms,
        max_drift: f64,
    },
}

#[derive(Serialize)]
struct Heartbeat {
    interval_ms: Ms,
    max_miss: u32,
    timeout_ms: Ms,
}

#[derive(Serialize)]
struct Backoff {
    strategy: &'static str,
    base_ms: Ms,
    multiplier: f64,
    max_ms: Ms,
    jitter: f64,
    max_retries: u32,
    first_delay_ms: Option<[Ms; 2]>,
}

#[derive(Serialize)]
struct Auth {
    reauth_delay_ms: Ms,
}

#[derive(Serialize)]
struct Master {
    capacity: Option<u32>,
    retry_after_ms: Option<Ms>,
    attempts: Attempts,
}

#[derive(Serialize)]
struct Attempts {
    enforce: bool,
    base_ms: Ms,
    max_ms: Ms,
    max_retries: u32,
    expiry_ms: Ms,
}

#[derive(Serialize)]
struct Network {
    /// Fractional milliseconds: latency may be set below one.
    latency_ms: [f64; 2],
    loss: f64,
    engine: &'static str,
    tick_ms: Ms,
}

#[derive(Serialize)]
struct Fault {
    at_ms: Ms,
    action: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonOperation<'a> {
    Command {
        at_ms: Ms,
        command: &'a str,
        to: String,
        args: &'a BTreeMap<String, String>,
        timeout_ms: Ms,
    },
    Config {
        at_ms: Ms,
        config: &'a BTreeMap<String, String>,
    },
}

/// The scenario's parameters after defaults, as `--json` reports them.
pub fn params(scenario: &Scenario) -> Params<'_> {
    let (backoff, heartbeat) = (&scenario.backoff, &scenario.heartbeat);
    let (master, network) = (&scenario.master, &scenario.network);
    let fractional = |d: Duration| d.as_secs_f64() * 1000.0;
    Params {
        duration_ms: Ms(scenario.duration),
        topology: &scenario.topology,
        cluster: cluster(&scenario.cluster),
        heartbeat: Heartbeat {
            interval_ms: Ms(heartbeat.interval),
            max_miss: heartbeat.max_miss,
            timeout_ms: Ms(heartbeat.timeout),
        },
        backoff: Backoff {
            strategy: backoff.strategy.name(),
            base_ms: Ms(backoff.base),
            multiplier: backoff.multiplier,
            max_ms: Ms(backoff.max),
            jitter: backoff.jitter,
            max_retries: backoff.max_retries,
            first_delay_ms: backoff.first_delay.map(|(low, high)| [Ms(low), Ms(high)]),
        },
        preset: &scenario.preset,
        auth: (scenario.auth.as_ref()).map(|_| Auth {
            reauth_delay_ms: Ms(scenario.reauth_delay),
        }),
        master: Master {
            capacity: master.admission.map(|limit| limit.capacity),
            retry_after_ms: master.admission.and_then(|limit| limit.retry_after).map(Ms),
            attempts: Attempts {
                enforce: master.attempts.enforce,
                base_ms: Ms(master.attempts.base),
                max_ms: Ms(master.attempts.max),
                max_retries: master.attempts.max_retries,
                expiry_ms: Ms(master.attempts.expiry),
            },
        },
        network: Network {
            latency_ms: [fractional(network.latency.0), fractional(network.latency.1)],
            loss: network.loss,
            engine: crate::run::ENGINE,
            tick_ms: Ms(network.tick),
        },
        faults: (scenario.faults.iter())
            .map(|fault| Fault {
                at_ms: Ms(fault.at),
                action: fault.action.to_string(),
            })
            .collect(),
        executor: &scenario.executor,
        transport: match &scenario.transport {
            Transport::Tcp => serde_json::json!({ "kind": "tcp" }),
            Transport::Http(http) => {
                serde_json::json!({ "kind": "http", "poll_ms": http.poll.as_millis() as u64 })
            }
            Transport::Grpc(grpc) => serde_json::json!({
                "kind": "grpc",
                "gzip": grpc.gzip,
                "keepalive_ms": grpc.keepalive.as_millis() as u64,
            }),
            Transport::Mqtt(mqtt) => serde_json::json!({
                "kind": "mqtt",
                "qos": mqtt.qos,
                "keepalive_ms": mqtt.keepalive.as_millis() as u64,
            }),
        },
        operations: scenario.operations.iter().map(operation).collect(),
    }
}

fn cluster(spec: &ClusterSpec) -> Cluster {
    match spec {
        ClusterSpec::Single => Cluster::Single,
        ClusterSpec::Raft {
            config,
            persist,
            fsync,
        } => Cluster::Raft {
            election_timeout_ms: [Ms(config.election_timeout.0), Ms(config.election_timeout.1)],
            heartbeat_interval_ms: Ms(config.heartbeat_interval),
            pre_vote: config.pre_vote,
            check_quorum: config.check_quorum,
            persist: *persist,
            fsync: *fsync,
        },
        ClusterSpec::Lease(config) => Cluster::Lease {
            lease_period_ms: Ms(config.lease_period),
            renew_interval_ms: Ms(config.renew_interval),
            sync_interval_ms: Ms(config.sync_interval),
            max_drift: config.max_drift,
        },
    }
}

fn operation(operation: &Operation) -> JsonOperation<'_> {
    match operation {
        Operation::Command(command) => JsonOperation::Command {
            at_ms: Ms(command.at),
            command: &command.name,
            to: command.to.to_string(),
            args: &command.args,
            timeout_ms: Ms(command.timeout),
        },
        Operation::Config(config) => JsonOperation::Config {
            at_ms: Ms(config.at),
            config: &config.values,
        },
    }
}
