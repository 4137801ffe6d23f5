//! What a run prints: a header with every parameter, the aligned timeline, one verdict line per
//! expectation, and the numbers. Everything but wall time is a pure function of the scenario and
//! seed, and that part is what the snapshots keep.

use crate::expect::{fmt_time, peak_connect_rate, Verdict};
use crate::scenario::{FaultAction, Scenario};
use crate::trace::Event;
use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;

fn show(duration: Duration) -> String {
    fleet_core::fmt_duration(duration)
}

pub fn header(scenario: &Scenario, seed: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario   {}", scenario.name);
    if !scenario.description.is_empty() {
        let _ = writeln!(out, "           {}", scenario.description.trim());
    }
    let _ = writeln!(out, "seed       {seed}");
    let _ = writeln!(
        out,
        "topology   {} · duration {}",
        scenario.topology.describe(),
        show(scenario.duration)
    );
    let heartbeat = &scenario.heartbeat;
    let _ = writeln!(
        out,
        "heartbeat  interval {} · max_miss {} · timeout {}",
        show(heartbeat.interval),
        heartbeat.max_miss,
        show(heartbeat.timeout)
    );
    let _ = writeln!(out, "backoff    {}", scenario.backoff.describe());
    let _ = writeln!(
        out,
        "network    latency {}..{} · loss {}",
        show(scenario.network.latency.0),
        show(scenario.network.latency.1),
        scenario.network.loss
    );
    let _ = writeln!(out, "faults     {}", scenario.faults.len());
    for fault in &scenario.faults {
        let what = match &fault.action {
            FaultAction::Crash(target) => format!("crash {target}"),
            FaultAction::Restart(target) => format!("restart {target}"),
            FaultAction::Partition { groups, oneway } => {
                let groups: Vec<String> = groups
                    .iter()
                    .map(|group| {
                        group
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect();
                let direction = if *oneway { " (one way)" } else { "" };
                format!("partition {}{direction}", groups.join(" | "))
            }
            FaultAction::Heal(None) => "heal all".to_string(),
            FaultAction::Heal(Some(target)) => format!("heal {target}"),
            FaultAction::Latency(low, high) => format!("latency {}..{}", show(*low), show(*high)),
            FaultAction::Loss(rate) => format!("loss {rate}"),
        };
        let _ = writeln!(out, "  at {:>8}  {what}", show(fault.at));
    }
    out
}

pub fn timeline(events: &[Event]) -> String {
    let node_width = events
        .iter()
        .map(|e| e.node.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let kind_width = events
        .iter()
        .map(|e| e.kind.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<11}  {:<node_width$}  {:<kind_width$}  fields",
        "time", "node", "event"
    );
    for event in events {
        let line = format!(
            "{}  {:<node_width$}  {:<kind_width$}  {}",
            fmt_time(event.t_ms),
            event.node,
            event.kind,
            event.fields_text()
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

pub fn verdicts(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "expectations");
    if verdicts.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for verdict in verdicts {
        let mark = if verdict.ok { "ok  " } else { "FAIL" };
        let _ = writeln!(out, "  {mark}  {}: {}", verdict.check, verdict.detail);
    }
    out
}

/// The numbers that depend only on the scenario and seed.
pub fn summary(scenario: &Scenario, events: &[Event]) -> String {
    let peak = match peak_connect_rate(events, 0, scenario.duration.as_millis() as u64) {
        Some((count, at)) => format!("{count}/s at {}", fmt_time(at)),
        None => "none".to_string(),
    };
    format!(
        "simulated {} · {} events · peak connect attempts {peak}\n",
        show(scenario.duration),
        events.len()
    )
}

/// Header, timeline, verdicts and summary: the deterministic part of a run, as snapshotted.
pub fn deterministic_text(
    scenario: &Scenario,
    seed: u64,
    events: &[Event],
    results: &[Verdict],
) -> String {
    format!(
        "{}\n{}\n{}\n{}",
        header(scenario, seed),
        timeline(events),
        verdicts(results),
        summary(scenario, events)
    )
}

/// `wall 0.41s · speed-up 1463×`.
pub fn wall_line(scenario: &Scenario, wall: Duration) -> String {
    let speedup = scenario.duration.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    format!("wall {:.3}s · speed-up {speedup:.0}×", wall.as_secs_f64())
}

#[derive(Serialize)]
struct JsonStats {
    sim_ms: u64,
    wall_ms: u64,
    events: usize,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    scenario: &'a str,
    seed: u64,
    events: &'a [Event],
    expectations: &'a [Verdict],
    stats: JsonStats,
}

pub fn json(
    scenario: &Scenario,
    seed: u64,
    events: &[Event],
    results: &[Verdict],
    wall: Duration,
) -> String {
    let report = JsonReport {
        scenario: &scenario.name,
        seed,
        events,
        expectations: results,
        stats: JsonStats {
            sim_ms: scenario.duration.as_millis() as u64,
            wall_ms: wall.as_millis() as u64,
            events: events.len(),
        },
    };
    serde_json::to_string_pretty(&report).expect("the report serializes")
}
