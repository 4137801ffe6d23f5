//! `[explore]`: what `sim explore` may break in a scenario, and how soon it must recover.
//!
//! ```toml
//! [explore]
//! faults = ["crash", "restart", "partition", "oneway", "heal", "latency", "loss", "wipe", "isolate",
//!           "revoke", "force", "shutdown", "hold"]   # hold: turmoil only, madsim never draws it
//! targets = "masters"     # the nodes faults hit
//! mean_gap = "2s"         # mean time between faults
//! until = "20s"           # faults stop here; the liveness phase starts
//! liveness = "10s"        # by until + liveness, a leader leads every agent; "auto": the bound
//!                         # the fleet's parameters give (see `recovery`)
//! lose = 1                # up to this many masters lose their state for good (below a majority)
//! buggify = true          # the shell's fault points fire (see `fleet_node::buggify`)
//!
//! [explore.vary]          # swarm knobs: each run takes one value per key, written into its file
//! "cluster.election_timeout" = ["600ms..1200ms", "1500ms..3000ms"]
//! ```

use crate::scenario::duration::{parse_duration, Dur};
use crate::scenario::faults::kinds::{draw_specs, DrawSpec};
use crate::scenario::recovery::{bound, Parameters};
use crate::scenario::selector::{NodeKind, Selector, Topology};
use crate::scenario::source::{ConfigError, Source};
use fleet_core::fmt_duration;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// A checked `[explore]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct ExploreSpec {
    /// The kinds a run may draw from, in the fault table's order, without repeats.
    pub kinds: Vec<&'static DrawSpec>,
    /// The nodes faults hit: a fixed selector, never empty.
    pub targets: Selector,
    pub mean_gap: Duration,
    pub until: Duration,
    pub liveness: Duration,
    /// Up to this many masters lose their state for good in a run: crashed and never brought
    /// back, or wiped and restarted empty (a replaced disk). Below a majority.
    pub lose: usize,
    /// Runs turn the shell's fault points on.
    pub buggify: bool,
    /// `[explore.vary]`: dotted keys of the file, each with the values a run draws one of, as
    /// TOML text; in key order. The template checks each value (it must make a valid file).
    pub vary: Vec<(String, Vec<String>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExplore {
    faults: Spanned<Vec<Spanned<String>>>,
    targets: Spanned<String>,
    mean_gap: Spanned<Dur>,
    until: Spanned<Dur>,
    liveness: Spanned<String>,
    #[serde(default)]
    lose: Option<Spanned<u64>>,
    #[serde(default)]
    buggify: bool,
    #[serde(default)]
    vary: std::collections::BTreeMap<String, Spanned<Vec<toml::Value>>>,
}

pub(crate) fn check(
    raw: RawExplore,
    topology: &Topology,
    duration: Duration,
    recovery: &Parameters,
    source: &Source,
) -> Result<ExploreSpec, ConfigError> {
    let authenticates = recovery.reauth.is_some();
    let kinds = check_kinds(&raw.faults, source)?;
    let targets = topology
        .select_fixed(raw.targets.get_ref())
        .map_err(|message| source.error(raw.targets.span(), message))?;
    check_needs(&kinds, &targets, authenticates, &raw, source)?;
    if targets.nodes().is_empty() {
        return Err(source.error(raw.targets.span(), "the targets select no node"));
    }
    let positive = |value: &Spanned<Dur>, field: &str| {
        if value.get_ref().0.is_zero() {
            Err(source.error(value.span(), format!("{field} must be greater than 0")))
        } else {
            Ok(value.get_ref().0)
        }
    };
    let mean_gap = positive(&raw.mean_gap, "mean_gap")?;
    let until = positive(&raw.until, "until")?;
    let liveness = match raw.liveness.get_ref().as_str() {
        "auto" => bound(recovery),
        text => {
            let parsed = parse_duration(text)
                .map_err(|why| source.error(raw.liveness.span(), format!("liveness: {why}")))?;
            if parsed.is_zero() {
                let message = "liveness must be greater than 0, or \"auto\"";
                return Err(source.error(raw.liveness.span(), message));
            }
            parsed
        }
    };
    if until.saturating_add(liveness) > duration {
        return Err(source.error(
            raw.liveness.span(),
            format!(
                "until + liveness ({} + {}) must fit in the run's duration ({})",
                fmt_duration(until),
                fmt_duration(liveness),
                fmt_duration(duration)
            ),
        ));
    }
    let lose = check_lose(raw.lose.as_ref(), topology, source)?;
    let mut vary = Vec::new();
    for (key, values) in raw.vary {
        if values.get_ref().is_empty() {
            let message = format!("[explore.vary] {key:?} lists no value");
            return Err(source.error(values.span(), message));
        }
        let texts = values.get_ref().iter().map(|value| value.to_string());
        vary.push((key, texts.collect()));
    }
    Ok(ExploreSpec {
        kinds,
        targets,
        mean_gap,
        until,
        liveness,
        lose,
        buggify: raw.buggify,
        vary,
    })
}

/// `lose` must leave a majority of the masters whole: no cluster keeps what it agreed on when
/// a majority of its members lose their state.
fn check_lose(
    lose: Option<&Spanned<u64>>,
    topology: &Topology,
    source: &Source,
) -> Result<usize, ConfigError> {
    let Some(lose) = lose else { return Ok(0) };
    let masters = topology.masters as u64;
    let majority = masters / 2 + 1;
    if *lose.get_ref() >= majority {
        return Err(source.error(
            lose.span(),
            format!(
                "lose = {} would take a majority of the {masters} masters ({majority}): no \
                 cluster keeps what it agreed on then; at most {}",
                lose.get_ref(),
                majority - 1
            ),
        ));
    }
    Ok(*lose.get_ref() as usize)
}

/// The kinds listed, each once, in the fault table's order.
fn check_kinds(
    faults: &Spanned<Vec<Spanned<String>>>,
    source: &Source,
) -> Result<Vec<&'static DrawSpec>, ConfigError> {
    let mut kinds: Vec<&'static DrawSpec> = Vec::new();
    for name in faults.get_ref() {
        let kind = draw_specs()
            .find(|kind| kind.name == name.get_ref())
            .ok_or_else(|| {
                let names: Vec<&str> = draw_specs().map(|kind| kind.name).collect();
                source.error(
                    name.span(),
                    format!(
                        "unknown fault kind {:?}; expected one of {}",
                        name.get_ref(),
                        names.join(", ")
                    ),
                )
            })?;
        if kinds.iter().any(|listed| listed.name == kind.name) {
            return Err(source.error(name.span(), format!("{:?} is listed twice", kind.name)));
        }
        kinds.push(kind);
    }
    if kinds.is_empty() {
        return Err(source.error(faults.span(), "list at least one fault kind"));
    }
    kinds.sort_by_key(|kind| draw_specs().position(|other| other.name == kind.name));
    Ok(kinds)
}

/// What each kind needs of the template: credentials, and a node of its kind to hit.
fn check_needs(
    kinds: &[&'static DrawSpec],
    targets: &Selector,
    authenticates: bool,
    raw: &RawExplore,
    source: &Source,
) -> Result<(), ConfigError> {
    for kind in kinds {
        if kind.auth && !authenticates {
            return Err(source.error(
                raw.faults.span(),
                format!(
                    "`{}` acts on credentials; add [params.auth] so agents have some",
                    kind.name
                ),
            ));
        }
        let Some(needs) = kind.target else { continue };
        let has = (targets.nodes().iter()).any(|node| node.starts_with(needs.prefix()));
        if !has {
            let what = match needs {
                NodeKind::Master => "a master",
                NodeKind::Agent => "an agent",
                NodeKind::Store => "the store",
                NodeKind::Broker => "the broker",
            };
            return Err(source.error(
                raw.targets.span(),
                format!("`{}` needs {what} among the targets", kind.name),
            ));
        }
    }
    Ok(())
}
