//! `[[faults]]`: what breaks, and when. The runner applies them; the report lists them.

use crate::scenario::check_loss;
use crate::scenario::duration::{Dur, DurRange};
use crate::scenario::selector::{Selector, Topology};
use crate::scenario::source::{ScenarioError, Source};
use fleet_core::fmt_duration;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use toml::Spanned;

#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    Crash(Selector),
    Restart(Selector),
    /// Cuts every link between two groups; `oneway` cuts only traffic from earlier groups to
    /// later ones.
    Partition {
        groups: Vec<Vec<Selector>>,
        oneway: bool,
    },
    /// `None` heals everything.
    Heal(Option<Selector>),
    Latency(Duration, Duration),
    Loss(f64),
    /// Erases the selected nodes' disks, as a lost disk would; the processes run on.
    Wipe(Selector),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub at: Duration,
    pub action: FaultAction,
}

/// As the report's header lists it: `crash leader`, `partition master-1 | agents`.
impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultAction::Crash(target) => write!(f, "crash {target}"),
            FaultAction::Restart(target) => write!(f, "restart {target}"),
            FaultAction::Partition { groups, oneway } => {
                let direction = if *oneway { " (one way)" } else { "" };
                write!(f, "partition {}{direction}", show_groups(groups))
            }
            FaultAction::Heal(None) => f.write_str("heal all"),
            FaultAction::Heal(Some(target)) => write!(f, "heal {target}"),
            FaultAction::Latency(low, high) => {
                write!(f, "latency {}..{}", fmt_duration(*low), fmt_duration(*high))
            }
            FaultAction::Loss(rate) => write!(f, "loss {rate}"),
            FaultAction::Wipe(target) => write!(f, "wipe {target}"),
        }
    }
}

/// `a,b | c`: groups as written.
pub fn show_groups(groups: &[Vec<Selector>]) -> String {
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
    groups.join(" | ")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFault {
    at: Spanned<Dur>,
    crash: Option<Spanned<String>>,
    restart: Option<Spanned<String>>,
    partition: Option<Spanned<Vec<Vec<Spanned<String>>>>>,
    oneway: Option<bool>,
    heal: Option<Spanned<String>>,
    latency: Option<DurRange>,
    loss: Option<Spanned<f64>>,
    wipe: Option<Spanned<String>>,
}

const ACTIONS: &str = "crash, restart, partition, heal, latency, loss or wipe";

pub(crate) fn check(
    fault: Spanned<RawFault>,
    topology: &Topology,
    duration: Duration,
    source: &Source,
) -> Result<Fault, ScenarioError> {
    let span = fault.span();
    let fault = fault.into_inner();
    let at = fault.at.get_ref().0;
    if at > duration {
        return Err(source.error(
            fault.at.span(),
            format!(
                "fault at {} is after the end of the run ({})",
                fmt_duration(at),
                fmt_duration(duration)
            ),
        ));
    }
    let select = |text: &Spanned<String>| {
        topology
            .select(text.get_ref())
            .map_err(|message| source.error(text.span(), message))
    };
    let mut actions = Vec::new();
    if let Some(target) = &fault.crash {
        actions.push(("crash", FaultAction::Crash(select(target)?)));
    }
    if let Some(target) = &fault.restart {
        actions.push(("restart", FaultAction::Restart(select(target)?)));
    }
    if let Some(groups) = &fault.partition {
        let groups = check_partition(groups, topology, source)?;
        let oneway = fault.oneway.unwrap_or(false);
        actions.push(("partition", FaultAction::Partition { groups, oneway }));
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
    if let Some(target) = &fault.wipe {
        actions.push(("wipe", FaultAction::Wipe(select(target)?)));
    }
    match actions.len() {
        1 => Ok(Fault {
            at,
            action: actions.pop().expect("one action").1,
        }),
        0 => Err(source.error(span, format!("a fault needs one of {ACTIONS}"))),
        _ => {
            let names: Vec<_> = actions.iter().map(|(name, _)| *name).collect();
            Err(source.error(
                span,
                format!(
                    "a fault takes exactly one action, found {}: split it into one \
                     [[faults]] entry each",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// Two or more groups, none empty, and no node certainly in two groups. Whether `leader` or
/// `followers` meets a named master depends on the run (`[["leader"], ["master-3"]]`): the
/// runner keeps such a node in its first group.
fn check_partition(
    groups: &Spanned<Vec<Vec<Spanned<String>>>>,
    topology: &Topology,
    source: &Source,
) -> Result<Vec<Vec<Selector>>, ScenarioError> {
    if groups.get_ref().len() < 2 {
        return Err(source.error(
            groups.span(),
            "a partition needs at least two groups, like [[\"agent-1\"], [\"master-1\"]]",
        ));
    }
    let mut parsed: Vec<Vec<(Selector, &Spanned<String>)>> = Vec::new();
    for group in groups.get_ref() {
        if group.is_empty() {
            return Err(source.error(
                groups.span(),
                "a partition group is empty: every group names at least one node",
            ));
        }
        let mut selectors = Vec::new();
        for text in group {
            let selector = topology
                .select(text.get_ref())
                .map_err(|message| source.error(text.span(), message))?;
            for (earlier, earlier_text) in parsed.iter().flatten() {
                if let Some(node) = certain_overlap(topology, earlier, &selector) {
                    return Err(source.error(
                        text.span(),
                        format!(
                            "{:?} overlaps {:?} (both select {node}): a node can be in only \
                             one group",
                            text.get_ref(),
                            earlier_text.get_ref()
                        ),
                    ));
                }
            }
            selectors.push((selector, text));
        }
        parsed.push(selectors);
    }
    Ok(parsed
        .into_iter()
        .map(|group| group.into_iter().map(|(selector, _)| selector).collect())
        .collect())
}

/// A node `a` and `b` both select whatever happens in the run.
fn certain_overlap(topology: &Topology, a: &Selector, b: &Selector) -> Option<String> {
    match (a.is_dynamic(), b.is_dynamic()) {
        (false, false) => a.nodes().iter().find(|node| b.contains(node)).cloned(),
        // `leader` meets `leader`, `followers` meets `followers`; never each other.
        (true, true) => (a.to_string() == b.to_string()).then(|| a.to_string()),
        (true, false) | (false, true) => {
            let (dynamic, fixed) = if a.is_dynamic() { (a, b) } else { (b, a) };
            let masters = topology.masters();
            let covers_all = masters.iter().all(|master| fixed.contains(master));
            covers_all.then(|| format!("the {dynamic}"))
        }
    }
}
