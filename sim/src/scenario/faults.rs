//! `[[faults]]`: what breaks, and when. The runner applies them; the report lists them.

use crate::scenario::check_loss;
use crate::scenario::duration::{Dur, DurRange};
use crate::scenario::selector::{check_capture_name, NodeKind, Selector, Topology};
use crate::scenario::source::{ScenarioError, Source};
use fleet_core::fmt_duration;
use serde::Deserialize;
use std::collections::BTreeSet;
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
    /// The latency of the links between two sets of nodes, both ways (turmoil only).
    LinkLatency {
        between: [Selector; 2],
        low: Duration,
        high: Duration,
    },
    Loss(f64),
    /// Queues the messages between two sets of nodes, both ways (turmoil only).
    Hold([Selector; 2]),
    /// Delivers the messages held between two sets of nodes, and lets traffic flow again.
    Release([Selector; 2]),
    /// Erases the selected nodes' disks, as a lost disk would; the processes run on.
    Wipe(Selector),
    /// Cuts each selected node off from every other node.
    Isolate(Selector),
    /// Invalidates the selected agents' credentials at every master and ends their sessions.
    Revoke(Selector),
    /// Makes the selected agents' credentials valid again.
    Restore(Selector),
    /// The selected agents unregister and stop for good.
    Stop(Selector),
    /// The selected masters say goodbye to their agents (going away) and go down.
    Shutdown(Selector),
    /// An operator's request to the leader.
    Admin(AdminOp),
}

/// What an operator asks the leading master.
#[derive(Clone, Debug, PartialEq)]
pub enum AdminOp {
    /// Its reconnection record of each selected agent.
    Status(Selector),
    /// The agents it holds reconnection records for.
    Active,
    /// Drop expired records.
    Cleanup,
    /// Forget each agent's attempts and end its session, so it reconnects at once.
    Force(Selector),
    /// End each agent's session with a normal close: it does not come back.
    Decommission(Selector),
}

impl AdminOp {
    pub fn name(&self) -> &'static str {
        match self {
            AdminOp::Status(_) => "status",
            AdminOp::Active => "active",
            AdminOp::Cleanup => "cleanup",
            AdminOp::Force(_) => "force",
            AdminOp::Decommission(_) => "decommission",
        }
    }

    pub fn agents(&self) -> Option<&Selector> {
        match self {
            AdminOp::Status(agents) | AdminOp::Force(agents) | AdminOp::Decommission(agents) => {
                Some(agents)
            }
            AdminOp::Active | AdminOp::Cleanup => None,
        }
    }
}

/// A moment a fault waits for (`when`), checked against the timeline so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Some master leads.
    LeaderExists,
    /// Every agent is online.
    AllOnline,
}

impl Condition {
    const NAMES: &'static str = "\"leader_exists\" or \"all_online\"";

    pub fn name(self) -> &'static str {
        match self {
            Condition::LeaderExists => "leader_exists",
            Condition::AllOnline => "all_online",
        }
    }

    fn from_name(name: &str) -> Option<Condition> {
        match name {
            "leader_exists" => Some(Condition::LeaderExists),
            "all_online" => Some(Condition::AllOnline),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub at: Duration,
    pub action: FaultAction,
    /// `as`: the names its nodes are captured under, one per group for a partition.
    pub captures: Vec<String>,
    /// `when`: it fires at the first moment at or after `at` when this holds.
    pub when: Option<Condition>,
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
            FaultAction::LinkLatency { between, low, high } => write!(
                f,
                "latency {}..{} between {}",
                fmt_duration(*low),
                fmt_duration(*high),
                show_pair(between)
            ),
            FaultAction::Loss(rate) => write!(f, "loss {rate}"),
            FaultAction::Hold(between) => write!(f, "hold {}", show_pair(between)),
            FaultAction::Release(between) => write!(f, "release {}", show_pair(between)),
            FaultAction::Wipe(target) => write!(f, "wipe {target}"),
            FaultAction::Isolate(target) => write!(f, "isolate {target}"),
            FaultAction::Revoke(target) => write!(f, "revoke {target}"),
            FaultAction::Restore(target) => write!(f, "restore {target}"),
            FaultAction::Stop(target) => write!(f, "stop {target}"),
            FaultAction::Shutdown(target) => write!(f, "shutdown {target}"),
            FaultAction::Admin(op) => match op.agents() {
                Some(agents) => write!(f, "admin {} {agents}", op.name()),
                None => write!(f, "admin {}", op.name()),
            },
        }
    }
}

/// `a | b`: the two ends of a link fault, as written.
pub fn show_pair([a, b]: &[Selector; 2]) -> String {
    format!("{a} | {b}")
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
    between: Option<Spanned<Vec<Spanned<String>>>>,
    loss: Option<Spanned<f64>>,
    hold: Option<Spanned<Vec<Spanned<String>>>>,
    release: Option<Spanned<Vec<Spanned<String>>>>,
    wipe: Option<Spanned<String>>,
    isolate: Option<Spanned<String>>,
    revoke: Option<Spanned<String>>,
    restore: Option<Spanned<String>>,
    stop: Option<Spanned<String>>,
    shutdown: Option<Spanned<String>>,
    admin: Option<Spanned<String>>,
    agent: Option<Spanned<String>>,
    #[serde(rename = "as")]
    capture: Option<Spanned<toml::Value>>,
    when: Option<Spanned<String>>,
    every: Option<Spanned<Dur>>,
    until: Option<Spanned<Dur>>,
}

const ACTIONS: &str = "crash, restart, partition, heal, latency, loss, hold, release, wipe, \
     isolate, revoke, restore, stop, shutdown or admin";
const ADMIN_OPS: &str = "status, active, cleanup, force or decommission";

/// `every` and `until`: the moments a repeated fault or expectation fires, `at`, `at + every`,
/// ... before `until` (the end of the run by default). Just `at` without `every`.
pub(crate) fn repetition(
    at: Duration,
    every: Option<&Spanned<Dur>>,
    until: Option<&Spanned<Dur>>,
    duration: Duration,
    source: &Source,
) -> Result<Vec<Duration>, ScenarioError> {
    let Some(every) = every else {
        if let Some(until) = until {
            return Err(source.error(until.span(), "`until` only goes with `every`"));
        }
        return Ok(vec![at]);
    };
    let step = every.get_ref().0;
    if step.is_zero() {
        return Err(source.error(every.span(), "`every` must be greater than 0"));
    }
    let end = match until {
        Some(until) if until.get_ref().0 > duration => {
            return Err(source.error(
                until.span(),
                format!(
                    "`until` {} is after the end of the run ({})",
                    fmt_duration(until.get_ref().0),
                    fmt_duration(duration)
                ),
            ))
        }
        Some(until) => until.get_ref().0,
        None => duration,
    };
    let mut moments = Vec::new();
    let mut moment = at;
    while moment < end {
        moments.push(moment);
        moment += step;
    }
    Ok(moments)
}

/// Checks one `[[faults]]` entry; a repeated one gives one fault per firing.
/// Refuses `@NAME` before a fault captures NAME (in file order).
pub(crate) fn captured_before(
    selector: Selector,
    defined: &BTreeSet<String>,
    text: &Spanned<String>,
    source: &Source,
) -> Result<Selector, ScenarioError> {
    match selector.captures().into_iter().find(|name| !defined.contains(name)) {
        None => Ok(selector),
        Some(name) => Err(source.error(
            text.span(),
            format!("no fault before this one captures @{name}; add `as = \"{name}\"` to the fault whose nodes it means"),
        )),
    }
}

pub(crate) fn check(
    fault: Spanned<RawFault>,
    topology: &Topology,
    duration: Duration,
    authenticates: bool,
    defined: &mut BTreeSet<String>,
    source: &Source,
) -> Result<Vec<Fault>, ScenarioError> {
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
        let selector = topology
            .select(text.get_ref())
            .map_err(|message| source.error(text.span(), message))?;
        captured_before(selector, defined, text, source)
    };
    let mut actions = Vec::new();
    if let Some(target) = &fault.crash {
        actions.push(("crash", FaultAction::Crash(select(target)?)));
    }
    if let Some(target) = &fault.restart {
        actions.push(("restart", FaultAction::Restart(select(target)?)));
    }
    if let Some(groups) = &fault.partition {
        let groups = check_partition(groups, topology, &select, source)?;
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
    match (fault.latency, &fault.between) {
        (Some(range), None) => actions.push(("latency", FaultAction::Latency(range.0, range.1))),
        (Some(range), Some(between)) => {
            turmoil_only(
                "`latency` with `between` (one link's latency)",
                between,
                source,
            )?;
            let between = check_pair(between, "between", topology, &select, source)?;
            let (low, high) = (range.0, range.1);
            actions.push(("latency", FaultAction::LinkLatency { between, low, high }));
        }
        (None, Some(between)) => {
            return Err(source.error(between.span(), "`between` only goes with `latency`"))
        }
        (None, None) => {}
    }
    if let Some(loss) = fault.loss {
        actions.push(("loss", FaultAction::Loss(check_loss(loss, source)?)));
    }
    if let Some(pair) = &fault.hold {
        turmoil_only("`hold` (messages queued on a link)", pair, source)?;
        let pair = check_pair(pair, "hold", topology, &select, source)?;
        actions.push(("hold", FaultAction::Hold(pair)));
    }
    if let Some(pair) = &fault.release {
        turmoil_only("`release` (messages queued on a link)", pair, source)?;
        let pair = check_pair(pair, "release", topology, &select, source)?;
        actions.push(("release", FaultAction::Release(pair)));
    }
    if let Some(target) = &fault.wipe {
        actions.push(("wipe", FaultAction::Wipe(select(target)?)));
    }
    if let Some(target) = &fault.isolate {
        actions.push(("isolate", FaultAction::Isolate(select(target)?)));
    }
    let select_kind = |text: &Spanned<String>, kind: NodeKind, what: &str| {
        let selector = select(text)?;
        (selector.only_of(kind, what)).map_err(|message| source.error(text.span(), message))?;
        Ok::<Selector, ScenarioError>(selector)
    };
    for (name, raw) in [("revoke", &fault.revoke), ("restore", &fault.restore)] {
        let Some(target) = raw else { continue };
        if !authenticates {
            return Err(source.error(
                target.span(),
                format!("`{name}` acts on credentials; add [params.auth] so agents have some"),
            ));
        }
        let agents = select_kind(target, NodeKind::Agent, "credentials are agents'")?;
        actions.push(match name {
            "revoke" => ("revoke", FaultAction::Revoke(agents)),
            _ => ("restore", FaultAction::Restore(agents)),
        });
    }
    if let Some(target) = &fault.stop {
        let agents = select_kind(
            target,
            NodeKind::Agent,
            "`stop` stops agents (masters: `shutdown`)",
        )?;
        actions.push(("stop", FaultAction::Stop(agents)));
    }
    if let Some(target) = &fault.shutdown {
        let masters = select_kind(
            target,
            NodeKind::Master,
            "`shutdown` stops masters (agents: `stop`)",
        )?;
        actions.push(("shutdown", FaultAction::Shutdown(masters)));
    }
    if let Some(op) = &fault.admin {
        actions.push((
            "admin",
            FaultAction::Admin(check_admin(op, fault.agent.as_ref(), &select_kind, source)?),
        ));
    } else if let Some(agent) = &fault.agent {
        return Err(source.error(agent.span(), "`agent` only goes with `admin`"));
    }
    match actions.len() {
        1 => {
            let action = actions.pop().expect("one action").1;
            let captures = check_captures(fault.capture.as_ref(), &action, span.clone(), source)?;
            defined.extend(captures.iter().cloned());
            let when = match &fault.when {
                None => None,
                Some(name) => Some(Condition::from_name(name.get_ref()).ok_or_else(|| {
                    source.error(
                        name.span(),
                        format!(
                            "unknown condition {:?}; expected {}",
                            name.get_ref(),
                            Condition::NAMES
                        ),
                    )
                })?),
            };
            let moments = repetition(
                at,
                fault.every.as_ref(),
                fault.until.as_ref(),
                duration,
                source,
            )?;
            Ok(moments
                .into_iter()
                .map(|at| Fault {
                    at,
                    action: action.clone(),
                    captures: captures.clone(),
                    when,
                })
                .collect())
        }
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

/// Parses a selector that must name nodes of one kind.
type SelectKind<'a> =
    dyn Fn(&Spanned<String>, NodeKind, &str) -> Result<Selector, ScenarioError> + 'a;

/// `admin = "OP"`, with `agent = SEL` for the operations on agents.
fn check_admin(
    op: &Spanned<String>,
    agent: Option<&Spanned<String>>,
    select_kind: &SelectKind,
    source: &Source,
) -> Result<AdminOp, ScenarioError> {
    let name = op.get_ref().as_str();
    let agents = || match agent {
        Some(agent) => select_kind(agent, NodeKind::Agent, "admin operations name agents"),
        None => Err(source.error(
            op.span(),
            format!("admin {name:?} needs `agent = SEL`, the agents it is about"),
        )),
    };
    let no_agent = |op: AdminOp| match agent {
        Some(agent) => Err(source.error(
            agent.span(),
            format!("admin {name:?} is about every agent; it takes no `agent`"),
        )),
        None => Ok(op),
    };
    match name {
        "status" => Ok(AdminOp::Status(agents()?)),
        "force" => Ok(AdminOp::Force(agents()?)),
        "decommission" => Ok(AdminOp::Decommission(agents()?)),
        "active" => no_agent(AdminOp::Active),
        "cleanup" => no_agent(AdminOp::Cleanup),
        other => Err(source.error(
            op.span(),
            format!("unknown admin operation {other:?}; expected {ADMIN_OPS}"),
        )),
    }
}

/// `as = "NAME"`, or for a partition `as = ["A", "B"]`, one name per group.
fn check_captures(
    raw: Option<&Spanned<toml::Value>>,
    action: &FaultAction,
    span: std::ops::Range<usize>,
    source: &Source,
) -> Result<Vec<String>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let error = |message: String| source.error(raw.span(), message);
    let names: Vec<String> = match (raw.get_ref(), action) {
        (toml::Value::Array(items), FaultAction::Partition { groups, .. }) => {
            if items.len() != groups.len() {
                return Err(error(format!(
                    "`as` names each of the partition's {} groups, got {} names",
                    groups.len(),
                    items.len()
                )));
            }
            (items.iter())
                .map(|item| match item {
                    toml::Value::String(name) => Ok(name.clone()),
                    _ => Err(error("`as` takes names, like [\"old\", \"rest\"]".into())),
                })
                .collect::<Result<_, _>>()?
        }
        (_, FaultAction::Partition { .. }) => {
            return Err(error(
                "a partition captures one name per group: `as = [\"old\", \"rest\"]`".into(),
            ))
        }
        (toml::Value::String(name), FaultAction::Crash(_))
        | (toml::Value::String(name), FaultAction::Restart(_))
        | (toml::Value::String(name), FaultAction::Wipe(_))
        | (toml::Value::String(name), FaultAction::Isolate(_))
        | (toml::Value::String(name), FaultAction::Revoke(_))
        | (toml::Value::String(name), FaultAction::Stop(_))
        | (toml::Value::String(name), FaultAction::Shutdown(_))
        | (toml::Value::String(name), FaultAction::Heal(Some(_))) => vec![name.clone()],
        (toml::Value::String(_), _) => {
            return Err(source.error(
                span,
                "`as` captures the nodes a fault hits; this fault hits no nodes by name",
            ))
        }
        _ => return Err(error("`as` is a name, like \"old\"".into())),
    };
    for name in &names {
        check_capture_name(name).map_err(error)?;
    }
    Ok(names)
}

/// Two or more groups, none empty, and no node certainly in two groups. Whether `leader` or
/// `followers` meets a named master depends on the run (`[["leader"], ["master-3"]]`): the
/// runner keeps such a node in its first group.
/// Refuses a fault only turmoil can do in the simulation build, which runs madsim.
fn turmoil_only<T>(what: &str, at: &Spanned<T>, source: &Source) -> Result<(), ScenarioError> {
    if cfg!(madsim) {
        return Err(source.error(
            at.span(),
            format!(
                "{what} needs the turmoil engine, and this build runs madsim: run the scenario \
                 with the native build, `cargo native run --release -p sim -- run FILE`"
            ),
        ));
    }
    Ok(())
}

/// `KEY = [SEL, SEL]`: the two ends of a link fault, which may not share a node.
fn check_pair(
    pair: &Spanned<Vec<Spanned<String>>>,
    key: &str,
    topology: &Topology,
    select: &dyn Fn(&Spanned<String>) -> Result<Selector, ScenarioError>,
    source: &Source,
) -> Result<[Selector; 2], ScenarioError> {
    let [a, b] = pair.get_ref().as_slice() else {
        return Err(source.error(
            pair.span(),
            format!("`{key}` names the two ends of the links, like [\"master-1\", \"agents\"]"),
        ));
    };
    let (first, second) = (select(a)?, select(b)?);
    if let Some(node) = certain_overlap(topology, &first, &second) {
        return Err(source.error(
            b.span(),
            format!(
                "{:?} overlaps {:?} (both select {node})",
                b.get_ref(),
                a.get_ref()
            ),
        ));
    }
    Ok([first, second])
}

fn check_partition(
    groups: &Spanned<Vec<Vec<Spanned<String>>>>,
    topology: &Topology,
    select: &dyn Fn(&Spanned<String>) -> Result<Selector, ScenarioError>,
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
            let selector = select(text)?;
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
        // `leader` meets `leader`, `followers` meets `followers`; never each other. Of other
        // expressions, only the run knows.
        (true, true) => (a.only_masters() && a.to_string() == b.to_string()).then(|| a.to_string()),
        (true, false) | (false, true) => {
            let (dynamic, fixed) = if a.is_dynamic() { (a, b) } else { (b, a) };
            let masters = topology.masters();
            let covers_all = masters.iter().all(|master| fixed.contains(master));
            (dynamic.only_masters() && covers_all).then(|| format!("the {dynamic}"))
        }
    }
}
