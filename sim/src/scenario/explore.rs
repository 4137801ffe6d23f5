//! `[explore]`: what `sim explore` may break in a scenario, and how soon it must recover.
//!
//! ```toml
//! [explore]
//! faults = ["crash", "restart", "partition", "oneway", "heal", "latency", "loss", "wipe", "isolate",
//!           "revoke", "force", "shutdown", "hold"]   # hold: turmoil only, madsim never draws it
//! targets = "masters"     # the nodes faults hit
//! mean_gap = "2s"         # mean time between faults
//! until = "20s"           # faults stop here; the liveness phase starts
//! liveness = "10s"        # by until + liveness, a leader leads every agent
//! ```

use crate::scenario::duration::Dur;
use crate::scenario::selector::{NodeKind, Selector, Topology};
use crate::scenario::source::{ScenarioError, Source};
use fleet_core::fmt_duration;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use toml::Spanned;

/// A kind of fault exploration may draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    Crash,
    Restart,
    Partition,
    Oneway,
    Heal,
    Latency,
    Loss,
    Wipe,
    Isolate,
    /// Revokes an agent's credentials (restored in the liveness phase); needs [params.auth].
    Revoke,
    /// An operator's `admin = "force"` on an agent.
    Force,
    /// A master shuts down gracefully (restarted in the liveness phase).
    Shutdown,
    /// Holds the messages between some nodes and the rest (released in the liveness phase);
    /// turmoil only: madsim never draws it.
    Hold,
}

impl FaultKind {
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Crash,
        FaultKind::Restart,
        FaultKind::Partition,
        FaultKind::Oneway,
        FaultKind::Heal,
        FaultKind::Latency,
        FaultKind::Loss,
        FaultKind::Wipe,
        FaultKind::Isolate,
        FaultKind::Revoke,
        FaultKind::Force,
        FaultKind::Shutdown,
        FaultKind::Hold,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Restart => "restart",
            FaultKind::Partition => "partition",
            FaultKind::Oneway => "oneway",
            FaultKind::Heal => "heal",
            FaultKind::Latency => "latency",
            FaultKind::Loss => "loss",
            FaultKind::Wipe => "wipe",
            FaultKind::Isolate => "isolate",
            FaultKind::Revoke => "revoke",
            FaultKind::Force => "force",
            FaultKind::Shutdown => "shutdown",
            FaultKind::Hold => "hold",
        }
    }

    fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A checked `[explore]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct ExploreSpec {
    /// The kinds a run may draw from, in the order of [`FaultKind::ALL`], without repeats.
    pub kinds: Vec<FaultKind>,
    /// The nodes faults hit: a fixed selector, never empty.
    pub targets: Selector,
    pub mean_gap: Duration,
    pub until: Duration,
    pub liveness: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExplore {
    faults: Spanned<Vec<Spanned<String>>>,
    targets: Spanned<String>,
    mean_gap: Spanned<Dur>,
    until: Spanned<Dur>,
    liveness: Spanned<Dur>,
}

pub(crate) fn check(
    raw: RawExplore,
    topology: &Topology,
    duration: Duration,
    authenticates: bool,
    source: &Source,
) -> Result<ExploreSpec, ScenarioError> {
    let mut kinds = Vec::new();
    for name in raw.faults.get_ref() {
        let kind = FaultKind::from_name(name.get_ref()).ok_or_else(|| {
            let names: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
            source.error(
                name.span(),
                format!(
                    "unknown fault kind {:?}; expected one of {}",
                    name.get_ref(),
                    names.join(", ")
                ),
            )
        })?;
        if kinds.contains(&kind) {
            return Err(source.error(name.span(), format!("{kind:?} is listed twice")));
        }
        kinds.push(kind);
    }
    if kinds.is_empty() {
        return Err(source.error(raw.faults.span(), "list at least one fault kind"));
    }
    kinds.sort();
    let targets = topology
        .select_fixed(raw.targets.get_ref())
        .map_err(|message| source.error(raw.targets.span(), message))?;
    if kinds.contains(&FaultKind::Revoke) && !authenticates {
        return Err(source.error(
            raw.faults.span(),
            "`revoke` acts on credentials; add [params.auth] so agents have some",
        ));
    }
    let has = |kind: NodeKind| {
        targets
            .nodes()
            .iter()
            .any(|node| node.starts_with(kind.prefix()))
    };
    for (kind, needs, what) in [
        (FaultKind::Revoke, NodeKind::Agent, "an agent"),
        (FaultKind::Force, NodeKind::Agent, "an agent"),
        (FaultKind::Shutdown, NodeKind::Master, "a master"),
    ] {
        if kinds.contains(&kind) && !has(needs) {
            return Err(source.error(
                raw.targets.span(),
                format!("`{kind}` needs {what} among the targets"),
            ));
        }
    }
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
    let liveness = positive(&raw.liveness, "liveness")?;
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
    Ok(ExploreSpec {
        kinds,
        targets,
        mean_gap,
        until,
        liveness,
    })
}
