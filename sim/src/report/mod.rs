//! The last stage: what a run prints. A header with every parameter, the aligned timeline, one
//! verdict line per expectation, and the numbers. Everything but wall time is a pure function
//! of the scenario and seed, and that part is what the snapshots keep.

pub mod html;
pub mod json;
pub mod plot;
pub mod spread;

use crate::history::attempts::peak_connect_rate;
use crate::history::leaders::LeaderHistory;
use crate::history::metrics::{median, Metrics};
use crate::history::online::OnlineHistory;
use crate::history::{fmt_time, Entry};
use crate::judge::Verdict;
use crate::scenario::Scenario;
use fleet_core::fmt_duration as show;
use std::fmt::Write;
use std::time::Duration;

pub fn header(scenario: &Scenario, seed: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario   {}", scenario.name);
    if !scenario.description.is_empty() {
        let _ = writeln!(out, "           {}", scenario.description.trim());
    }
    let _ = writeln!(out, "seed       {seed}");
    if !scenario.overrides.is_empty() {
        let _ = writeln!(out, "overrides  {}", scenario.overrides.join(" "));
    }
    let (topology, duration) = (scenario.topology.describe(), show(scenario.duration));
    let _ = writeln!(out, "topology   {topology} · duration {duration}");
    let heartbeat = &scenario.heartbeat;
    let _ = writeln!(
        out,
        "heartbeat  interval {} · max_miss {} · timeout {}",
        show(heartbeat.interval),
        heartbeat.max_miss,
        show(heartbeat.timeout)
    );
    params_lines(scenario, &mut out);
    let network = &scenario.network;
    let (low, high) = (show(network.latency.0), show(network.latency.1));
    // madsim is the default engine; a turmoil run says so, with its step.
    let engine = match crate::run::ENGINE {
        "madsim" => String::new(),
        engine => format!(" · {engine}, tick {}", show(network.tick)),
    };
    let _ = writeln!(
        out,
        "network    latency {low}..{high} · loss {}{engine}",
        network.loss
    );
    let _ = writeln!(out, "faults     {}", scenario.faults.len());
    for fault in &scenario.faults {
        let _ = writeln!(out, "  at {:>8}  {}", show(fault.at), fault.action);
    }
    let operations = &scenario.operations;
    if !operations.is_empty() {
        let _ = writeln!(out, "commands   {}", operations.len());
        for operation in operations.iter().take(SHOWN_OPERATIONS) {
            let _ = writeln!(out, "  at {:>8}  {operation}", show(operation.at()));
        }
        if operations.len() > SHOWN_OPERATIONS {
            let _ = writeln!(
                out,
                "  ... and {} more",
                operations.len() - SHOWN_OPERATIONS
            );
        }
    }
    out
}

/// The header's lines for the parameters past the heartbeat: backoff, and the preset, the
/// transport, authentication and the masters' protection where a scenario sets them.
fn params_lines(scenario: &Scenario, out: &mut String) {
    let _ = writeln!(out, "backoff    {}", scenario.backoff.describe());
    if let Some(preset) = &scenario.preset {
        let _ = writeln!(
            out,
            "preset     {preset}: its design document's defaults, under the file's keys"
        );
    }
    // Said where it is not the default, which every scenario written before it used.
    if scenario.transport != fleet_core::transport::Transport::Tcp {
        let _ = writeln!(out, "transport  {}", scenario.transport.describe());
    }
    if scenario.auth.is_some() {
        let reauth = show(scenario.reauth_delay);
        let _ = writeln!(
            out,
            "auth       a token per agent · refused agents retry after {reauth}"
        );
    }
    if let Some(line) = protection(scenario) {
        let _ = writeln!(out, "master     {line}");
    }
}

/// How the masters protect themselves, when they do.
fn protection(scenario: &Scenario) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(limit) = scenario.master.admission {
        let busy = match limit.retry_after {
            Some(after) => format!("busy: retry after {}", show(after)),
            None => "no retry_after: a busy agent waits twice its backoff".to_string(),
        };
        parts.push(format!(
            "admits {} registrations/s ({busy})",
            limit.capacity
        ));
    }
    let attempts = &scenario.master.attempts;
    if attempts.enforce {
        parts.push(format!(
            "enforces backoff {} ×2 to {}, {} retries, records kept {}",
            show(attempts.base),
            show(attempts.max),
            attempts.max_retries,
            show(attempts.expiry)
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// A header lists this many commands and config pushes; a repeated command makes many.
const SHOWN_OPERATIONS: usize = 6;

pub fn timeline(entries: &[Entry]) -> String {
    let lines: Vec<(&Entry, String, String)> = entries
        .iter()
        .map(|entry| {
            let (kind, fields) = entry.parts();
            (entry, kind, fields)
        })
        .collect();
    let node_width = entries
        .iter()
        .map(|e| e.node.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let kind_width = lines.iter().map(|l| l.1.len()).max().unwrap_or(5).max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<11}  {:<node_width$}  {:<kind_width$}  fields",
        "time", "node", "event"
    );
    for (entry, kind, fields) in &lines {
        let line = format!(
            "{}  {:<node_width$}  {:<kind_width$}  {fields}",
            fmt_time(entry.t_ms),
            entry.node,
            kind,
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
pub fn summary(scenario: &Scenario, entries: &[Entry]) -> String {
    let end_ms = scenario.duration.as_millis() as u64;
    let peak = match peak_connect_rate(entries, 0, end_ms) {
        Some((count, at)) => format!("{count}/s at {}", fmt_time(at)),
        None => "none".to_string(),
    };
    format!(
        "simulated {} · {} events · peak connect attempts {peak}\n{}\n",
        show(scenario.duration),
        entries.len(),
        measured_line(&measure(scenario, entries))
    )
}

/// What every run measures ([`Metrics`]).
pub(crate) fn measure(scenario: &Scenario, entries: &[Entry]) -> Metrics {
    let topology = &scenario.topology;
    let online = OnlineHistory::from_entries(entries);
    let leaders = LeaderHistory::from_entries(entries);
    let end_ms = scenario.duration.as_millis() as u64;
    Metrics::measure(entries, topology, &online, &leaders, end_ms)
}

/// `measured   detection 2500ms (max 3100ms, 4) · false offlines 0 · ...`: one line.
fn measured_line(metrics: &Metrics) -> String {
    let spread = |values: &[u64]| match (median(values), values.iter().max()) {
        (Some(median), Some(max)) => {
            format!("median {median}ms, max {max}ms, {} in all", values.len())
        }
        _ => "none".to_string(),
    };
    let recovered = match (metrics.last_fault_ms, metrics.recovered_ms) {
        (None, _) => "no fault".to_string(),
        (Some(_), Some(ms)) => format!("{ms}ms after the last fault"),
        (Some(_), None) => "not all back after the last fault".to_string(),
    };
    format!(
        "measured   detection {} · false offlines {} · recovery {recovered} · connect \
         attempts {} (peak {}/s) · registrations {} (peak {}/s) · failover {} · terms {}",
        spread(&metrics.detection_ms),
        metrics.false_offlines,
        metrics.connect_attempts,
        metrics.peak_connect_attempts,
        metrics.registrations,
        metrics.peak_registrations,
        spread(&metrics.failover_ms),
        metrics.terms
    )
}

/// Which timeline lines to print: `--filter node=agent-3,kind=connect_attempt`. Values of one
/// key are alternatives; different keys must all match. `node` takes a node name, `sim`, or a
/// selector of fixed nodes (`agents`, `agent-1..3`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub nodes: Vec<String>,
    pub kinds: Vec<String>,
}

impl Filter {
    /// Reads `key=value,key=value` against the scenario's nodes.
    pub fn parse(text: &str, scenario: &Scenario) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!("--filter {text}: {part:?} is not key=value"));
            };
            match key.trim() {
                "node" if value == crate::history::HARNESS => filter.nodes.push(value.into()),
                "node" => {
                    let selector = scenario
                        .topology
                        .select_fixed(value.trim())
                        .map_err(|why| format!("--filter {text}: {why}"))?;
                    filter.nodes.extend(selector.nodes().iter().cloned());
                }
                "kind" => filter.kinds.push(value.trim().to_string()),
                other => {
                    return Err(format!(
                        "--filter {text}: unknown key {other:?}; filter by node or kind"
                    ))
                }
            }
        }
        Ok(filter)
    }

    pub fn keeps(&self, entry: &Entry) -> bool {
        let node = self.nodes.is_empty() || self.nodes.contains(&entry.node);
        node && (self.kinds.is_empty() || self.kinds.contains(&entry.parts().0))
    }
}

/// What `sim run` prints of a run: everything, or the timeline filtered, or no timeline.
pub(crate) fn run_text(
    scenario: &Scenario,
    seed: u64,
    entries: &[Entry],
    results: &[Verdict],
    filter: Option<&Filter>,
    verdicts_only: bool,
) -> String {
    let shown: Vec<Entry>;
    let lines = match (verdicts_only, filter) {
        (true, _) => String::new(),
        (false, None) => timeline(entries),
        (false, Some(filter)) => {
            shown = entries
                .iter()
                .filter(|entry| filter.keeps(entry))
                .cloned()
                .collect();
            timeline(&shown)
        }
    };
    format!(
        "{}\n{}{}\n{}",
        header(scenario, seed),
        if lines.is_empty() {
            String::new()
        } else {
            format!("{lines}\n")
        },
        verdicts(results),
        summary(scenario, entries)
    )
}

/// What `sim run` prints of one run: its JSON document, or [`run_text`] and the wall-time line.
pub fn run_printed(
    scenario: &Scenario,
    run: &crate::Judged,
    json: bool,
    filter: Option<&Filter>,
    verdicts_only: bool,
) -> String {
    let (seed, wall) = (run.output.seed, run.output.wall);
    let (entries, verdicts) = (&run.output.timeline.entries, &run.verdicts);
    if json {
        return format!("{}\n", json::json(scenario, seed, entries, verdicts, wall));
    }
    let text = run_text(scenario, seed, entries, verdicts, filter, verdicts_only);
    format!("{text}{}\n", wall_line(scenario, wall))
}

/// Header, timeline, verdicts and summary: the deterministic part of a run, as snapshotted.
pub fn deterministic_text(
    scenario: &Scenario,
    seed: u64,
    entries: &[Entry],
    results: &[Verdict],
) -> String {
    format!(
        "{}\n{}\n{}\n{}",
        header(scenario, seed),
        timeline(entries),
        verdicts(results),
        summary(scenario, entries)
    )
}

/// `wall 0.41s · speed-up 1463×`.
pub(crate) fn wall_line(scenario: &Scenario, wall: Duration) -> String {
    let speedup = scenario.duration.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    format!("wall {:.3}s · speed-up {speedup:.0}×", wall.as_secs_f64())
}
