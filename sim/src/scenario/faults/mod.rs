//! `[[faults]]`: what breaks, and when. Every kind is a row of [`kinds::FAULTS`], read by one
//! loop here; the runner applies them and the report lists them.

mod fields;
pub mod kinds;

use crate::scenario::duration::Dur;
use crate::scenario::selector::{check_capture_name, Selector, Topology};
use crate::scenario::source::{ConfigError, Source};
use fields::FaultFields;
pub(crate) use fields::RawFault;
use fleet_core::fmt_duration;
use kinds::{FaultSpec, FAULTS};
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
    /// The selected nodes' clocks jump by `offset_ms` (negative: back), and run at `rate` of
    /// true time from then on (`None`: as before).
    Clock {
        target: Selector,
        offset_ms: i64,
        rate: Option<f64>,
    },
    /// The selected processes stop: no task runs and no timer fires until they resume.
    Pause(Selector),
    Resume(Selector),
    /// The selected nodes lose power: they crash, and every write they had not synced is lost.
    PowerFail(Selector),
    /// The selected nodes' stored records are damaged.
    Corrupt(Selector),
    /// A majorities ring among the selected nodes: each reaches only its neighbours.
    Ring(Selector),
    /// The selected nodes (with `from`, only their links with those nodes) still accept
    /// connections but read nothing, until healed.
    Stall {
        target: Selector,
        from: Option<Selector>,
    },
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
            FaultAction::Clock {
                target,
                offset_ms,
                rate,
            } => {
                write!(f, "clock {target}")?;
                if *offset_ms != 0 || rate.is_none() {
                    write!(f, " {}", fmt_offset(*offset_ms))?;
                }
                match rate {
                    Some(rate) => write!(f, " rate {rate}"),
                    None => Ok(()),
                }
            }
            FaultAction::Pause(target) => write!(f, "pause {target}"),
            FaultAction::Resume(target) => write!(f, "resume {target}"),
            FaultAction::PowerFail(target) => write!(f, "power_fail {target}"),
            FaultAction::Corrupt(target) => write!(f, "corrupt {target}"),
            FaultAction::Ring(target) => write!(f, "ring {target}"),
            FaultAction::Stall { target, from } => match from {
                Some(from) => write!(f, "stall {target} from {from}"),
                None => write!(f, "stall {target}"),
            },
        }
    }
}

impl FaultAction {
    /// The keys of the `[[faults]]` entry that reads back as this action, besides `at`: what
    /// a written exploration run says.
    pub fn keys(&self) -> Vec<(&'static str, toml_edit::Value)> {
        use toml_edit::{Array, Value};
        let text = |selector: &Selector| Value::from(selector.to_string());
        let pair = |[a, b]: &[Selector; 2]| Value::Array(Array::from_iter([text(a), text(b)]));
        let range = |low: &Duration, high: &Duration| {
            Value::from(format!("{}..{}", fmt_duration(*low), fmt_duration(*high)))
        };
        match self {
            FaultAction::Crash(target) => vec![("crash", text(target))],
            FaultAction::Restart(target) => vec![("restart", text(target))],
            FaultAction::Partition { groups, oneway } => {
                let groups = groups.iter().map(|group| {
                    Value::Array(group.iter().map(|s| s.to_string()).collect::<Array>())
                });
                let mut keys = vec![("partition", Value::Array(groups.collect()))];
                if *oneway {
                    keys.push(("oneway", Value::from(true)));
                }
                keys
            }
            FaultAction::Heal(None) => vec![("heal", Value::from("all"))],
            FaultAction::Heal(Some(target)) => vec![("heal", text(target))],
            FaultAction::Latency(low, high) => vec![("latency", range(low, high))],
            FaultAction::LinkLatency { between, low, high } => {
                vec![("latency", range(low, high)), ("between", pair(between))]
            }
            FaultAction::Loss(rate) => vec![("loss", Value::from(*rate))],
            FaultAction::Hold(ends) => vec![("hold", pair(ends))],
            FaultAction::Release(ends) => vec![("release", pair(ends))],
            FaultAction::Wipe(target) => vec![("wipe", text(target))],
            FaultAction::Isolate(target) => vec![("isolate", text(target))],
            FaultAction::Revoke(target) => vec![("revoke", text(target))],
            FaultAction::Restore(target) => vec![("restore", text(target))],
            FaultAction::Stop(target) => vec![("stop", text(target))],
            FaultAction::Shutdown(target) => vec![("shutdown", text(target))],
            FaultAction::Admin(op) => {
                let mut keys = vec![("admin", Value::from(op.name()))];
                keys.extend(op.agents().map(|agents| ("agent", text(agents))));
                keys
            }
            FaultAction::Clock {
                target,
                offset_ms,
                rate,
            } => {
                let mut keys = vec![("clock", text(target))];
                if *offset_ms != 0 || rate.is_none() {
                    keys.push(("offset", Value::from(fmt_offset(*offset_ms))));
                }
                keys.extend(rate.map(|rate| ("rate", Value::from(rate))));
                keys
            }
            FaultAction::Pause(target) => vec![("pause", text(target))],
            FaultAction::Resume(target) => vec![("resume", text(target))],
            FaultAction::PowerFail(target) => vec![("power_fail", text(target))],
            FaultAction::Corrupt(target) => vec![("corrupt", text(target))],
            FaultAction::Ring(target) => vec![("ring", text(target))],
            FaultAction::Stall { target, from } => {
                let mut keys = vec![("stall", text(target))];
                keys.extend(from.as_ref().map(|from| ("from", text(from))));
                keys
            }
        }
    }

    /// Every selector the action names, in the order written (a partition's groups one after
    /// the other): the order the record of a fired fault resolves them in.
    pub(crate) fn selectors(&self) -> Vec<&Selector> {
        match self {
            FaultAction::Crash(target)
            | FaultAction::Restart(target)
            | FaultAction::Heal(Some(target))
            | FaultAction::Wipe(target)
            | FaultAction::Isolate(target)
            | FaultAction::Revoke(target)
            | FaultAction::Restore(target)
            | FaultAction::Stop(target)
            | FaultAction::Shutdown(target)
            | FaultAction::Clock { target, .. }
            | FaultAction::Pause(target)
            | FaultAction::Resume(target)
            | FaultAction::PowerFail(target)
            | FaultAction::Corrupt(target)
            | FaultAction::Ring(target) => vec![target],
            FaultAction::Stall { target, from } => std::iter::once(target).chain(from).collect(),
            FaultAction::Partition { groups, .. } => groups.iter().flatten().collect(),
            FaultAction::LinkLatency { between: ends, .. }
            | FaultAction::Hold(ends)
            | FaultAction::Release(ends) => ends.iter().collect(),
            FaultAction::Admin(op) => op.agents().into_iter().collect(),
            FaultAction::Heal(None) | FaultAction::Latency(..) | FaultAction::Loss(_) => Vec::new(),
        }
    }
}

/// A clock's jump as written: `+2s`, `-500ms`.
pub(crate) fn fmt_offset(offset_ms: i64) -> String {
    let sign = if offset_ms < 0 { "-" } else { "+" };
    let size = Duration::from_millis(offset_ms.unsigned_abs());
    format!("{sign}{}", fmt_duration(size))
}

/// `a | b`: the two ends of a link fault, as written.
pub(crate) fn show_pair([a, b]: &[Selector; 2]) -> String {
    format!("{a} | {b}")
}

/// `a,b | c`: groups as written.
pub(crate) fn show_groups(groups: &[Vec<Selector>]) -> String {
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

/// The keys every fault takes besides its action's.
const COMMON: [&str; 5] = ["at", "as", "when", "every", "until"];

/// `every` and `until`: the moments a repeated fault or expectation fires, `at`, `at + every`,
/// ... before `until` (the end of the run by default). Just `at` without `every`.
pub(crate) fn repetition(
    at: Duration,
    every: Option<&Spanned<Dur>>,
    until: Option<&Spanned<Dur>>,
    duration: Duration,
    source: &Source,
) -> Result<Vec<Duration>, ConfigError> {
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

/// Refuses `@NAME` before a fault captures NAME (in file order).
pub(crate) fn captured_before(
    selector: Selector,
    defined: &BTreeSet<String>,
    text: &Spanned<String>,
    source: &Source,
) -> Result<Selector, ConfigError> {
    match selector.captures().into_iter().find(|name| !defined.contains(name)) {
        None => Ok(selector),
        Some(name) => Err(source.error(
            text.span(),
            format!("no fault before this one captures @{name}; add `as = \"{name}\"` to the fault whose nodes it means"),
        )),
    }
}

/// Checks one `[[faults]]` entry; a repeated one gives one fault per firing.
pub(crate) fn check(
    fault: Spanned<RawFault>,
    topology: &Topology,
    duration: Duration,
    authenticates: bool,
    defined: &mut BTreeSet<String>,
    source: &Source,
) -> Result<Vec<Fault>, ConfigError> {
    let span = fault.span();
    let raw = fault.into_inner();
    let fields = FaultFields {
        raw: &raw,
        topology,
        source,
        defined,
        authenticates,
        span: span.clone(),
    };
    let at = fields
        .duration("at")?
        .ok_or_else(|| fields.whole("a fault needs `at`, the moment it fires"))?;
    if at.get_ref().0 > duration {
        return Err(source.error(
            at.span(),
            format!(
                "fault at {} is after the end of the run ({})",
                fmt_duration(at.get_ref().0),
                fmt_duration(duration)
            ),
        ));
    }
    let spec = action_of(&fields)?;
    let action = (spec.parse)(&fields)?;
    let captures = check_captures(raw.get("as"), spec, &action, span, source)?;
    let when = check_when(&fields)?;
    let moments = repetition(
        at.get_ref().0,
        fields.duration("every")?.as_ref(),
        fields.duration("until")?.as_ref(),
        duration,
        source,
    )?;
    defined.extend(captures.iter().cloned());
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

/// The one kind an entry names, once every key it has is one that kind takes.
fn action_of(fields: &FaultFields) -> Result<&'static FaultSpec, ConfigError> {
    let named: Vec<&'static FaultSpec> = (FAULTS.iter())
        .filter(|spec| fields.get(spec.name).is_some())
        .collect();
    let spec = match named.as_slice() {
        [spec] => *spec,
        [] => {
            let names: Vec<&str> = FAULTS.iter().map(|spec| spec.name).collect();
            return Err(fields.whole(format!("a fault needs one of {}", names.join(", "))));
        }
        _ => {
            let names: Vec<&str> = named.iter().map(|spec| spec.name).collect();
            return Err(fields.whole(format!(
                "a fault takes exactly one action, found {}: split it into one [[faults]] \
                 entry each",
                names.join(", ")
            )));
        }
    };
    for (key, value) in fields.raw {
        if key == spec.name || COMMON.contains(&key.as_str()) || spec.fields.contains(&key.as_str())
        {
            continue;
        }
        let owners: Vec<&str> = (FAULTS.iter())
            .filter(|other| other.fields.contains(&key.as_str()))
            .map(|other| other.name)
            .collect();
        return Err(fields.error(
            value.span(),
            match owners.as_slice() {
                [] => format!(
                    "unknown key `{key}` in a fault; a fault takes {}, one action and its keys",
                    COMMON.join(", ")
                ),
                _ => format!("`{key}` only goes with `{}`", owners.join("` or `")),
            },
        ));
    }
    Ok(spec)
}

/// `when = "CONDITION"`.
fn check_when(fields: &FaultFields) -> Result<Option<Condition>, ConfigError> {
    let Some(name) = fields.text("when", "a condition's name")? else {
        return Ok(None);
    };
    let condition = Condition::from_name(name.get_ref()).ok_or_else(|| {
        fields.error(
            name.span(),
            format!(
                "unknown condition {:?}; expected {}",
                name.get_ref(),
                Condition::NAMES
            ),
        )
    })?;
    Ok(Some(condition))
}

/// `as = "NAME"`, or for a partition `as = ["A", "B"]`, one name per group.
fn check_captures(
    raw: Option<&Spanned<toml::Value>>,
    spec: &FaultSpec,
    action: &FaultAction,
    span: std::ops::Range<usize>,
    source: &Source,
) -> Result<Vec<String>, ConfigError> {
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
        // `heal = "all"` names no nodes, whatever its kind captures.
        (toml::Value::String(name), _) if spec.captures && !action.selectors().is_empty() => {
            vec![name.clone()]
        }
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
fn check_partition(
    groups: &[Vec<Spanned<String>>],
    span: std::ops::Range<usize>,
    fields: &FaultFields,
) -> Result<Vec<Vec<Selector>>, ConfigError> {
    if groups.len() < 2 {
        return Err(fields.error(
            span,
            "a partition needs at least two groups, like [[\"agent-1\"], [\"master-1\"]]",
        ));
    }
    let mut parsed: Vec<Vec<(Selector, &Spanned<String>)>> = Vec::new();
    for group in groups {
        if group.is_empty() {
            return Err(fields.error(
                span,
                "a partition group is empty: every group names at least one node",
            ));
        }
        let mut selectors = Vec::new();
        for text in group {
            let selector = fields.select(text)?;
            for (earlier, earlier_text) in parsed.iter().flatten() {
                if let Some(node) = certain_overlap(fields.topology, earlier, &selector) {
                    return Err(fields.error(
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
pub(crate) fn certain_overlap(topology: &Topology, a: &Selector, b: &Selector) -> Option<String> {
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
