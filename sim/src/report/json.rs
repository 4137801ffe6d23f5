//! `sim run --json`: one document with the scenario, seed, timeline, verdicts and stats.

use crate::history::Entry;
use crate::judge::Verdict;
use crate::scenario::commands::Operation;
use crate::scenario::{ClusterSpec, Scenario};
use serde::Serialize;
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
    params: serde_json::Value,
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

/// The scenario's parameters after defaults: what the run actually used.
pub fn params(scenario: &Scenario) -> serde_json::Value {
    let cluster = cluster(&scenario.cluster);
    let backoff = &scenario.backoff;
    let (heartbeat, network) = (&scenario.heartbeat, &scenario.network);
    serde_json::json!({
        "duration_ms": ms(scenario.duration),
        "topology": {
            "masters": scenario.topology.masters,
            "agents": scenario.topology.agents,
            "store": scenario.topology.store,
        },
        "cluster": cluster,
        "heartbeat": {
            "interval_ms": ms(heartbeat.interval),
            "max_miss": heartbeat.max_miss,
            "timeout_ms": ms(heartbeat.timeout),
        },
        "backoff": {
            "strategy": backoff.strategy.name(),
            "base_ms": ms(backoff.base),
            "multiplier": backoff.multiplier,
            "max_ms": ms(backoff.max),
            "jitter": backoff.jitter,
            "max_retries": backoff.max_retries,
            "first_delay_ms": backoff.first_delay.map(|(low, high)| [ms(low), ms(high)]),
        },
        "preset": scenario.preset,
        "auth": scenario.auth.as_ref().map(|_| serde_json::json!({
            "reauth_delay_ms": ms(scenario.reauth_delay),
        })),
        "master": {
            "capacity": scenario.master.admission.map(|limit| limit.capacity),
            "retry_after_ms": scenario.master.admission.and_then(|limit| limit.retry_after).map(ms),
            "attempts": {
                "enforce": scenario.master.attempts.enforce,
                "base_ms": ms(scenario.master.attempts.base),
                "max_ms": ms(scenario.master.attempts.max),
                "max_retries": scenario.master.attempts.max_retries,
                "expiry_ms": ms(scenario.master.attempts.expiry),
            },
        },
        "network": {
            "latency_ms": [network.latency.0.as_secs_f64() * 1000.0, network.latency.1.as_secs_f64() * 1000.0],
            "loss": network.loss,
            "engine": crate::run::ENGINE,
            "tick_ms": ms(network.tick),
        },
        "faults": scenario.faults.iter().map(|fault| serde_json::json!({
            "at_ms": ms(fault.at),
            "action": fault.action.to_string(),
        })).collect::<Vec<_>>(),
        "executor": {
            "max_concurrent": scenario.executor.max_concurrent,
            "queue_limit": scenario.executor.queue_limit,
            "remember": scenario.executor.remember,
        },
        "operations": operations(&scenario.operations),
    })
}

fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

/// The cluster's mode and its parameters.
fn cluster(spec: &ClusterSpec) -> serde_json::Value {
    match spec {
        ClusterSpec::Single => serde_json::json!({ "mode": "single" }),
        ClusterSpec::Raft { config, persist } => serde_json::json!({
            "mode": "raft",
            "election_timeout_ms": [ms(config.election_timeout.0), ms(config.election_timeout.1)],
            "heartbeat_interval_ms": ms(config.heartbeat_interval),
            "pre_vote": config.pre_vote,
            "check_quorum": config.check_quorum,
            "persist": persist,
        }),
        ClusterSpec::Lease(config) => serde_json::json!({
            "mode": "lease",
            "lease_period_ms": ms(config.lease_period),
            "renew_interval_ms": ms(config.renew_interval),
            "sync_interval_ms": ms(config.sync_interval),
        }),
    }
}

/// The operator's commands and config pushes, in firing order.
fn operations(operations: &[Operation]) -> serde_json::Value {
    serde_json::Value::from(
        operations
            .iter()
            .map(|operation| match operation {
                Operation::Command(command) => serde_json::json!({
                    "at_ms": ms(command.at),
                    "command": command.name,
                    "to": command.to.to_string(),
                    "args": command.args,
                    "timeout_ms": ms(command.timeout),
                }),
                Operation::Config(config) => serde_json::json!({
                    "at_ms": ms(config.at),
                    "config": config.values,
                }),
            })
            .collect::<Vec<_>>(),
    )
}
