//! What the harness did to a run: each fault that fired, with the nodes it hit, and the notes
//! around them (what `as` captured, what never fired). The timeline shows each as the scenario
//! wrote it, with the nodes a target that depends on the run meant in parentheses.

use crate::scenario::faults::{fmt_offset, show_pair, FaultAction};
use crate::scenario::selector::Selector;
use fleet_core::fmt_duration;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// A fault the harness injected, or a note about one.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultEvent {
    Fired(Box<Fired>),
    /// The fault just above captured `nodes` as `name` (`as = "name"`): `@name` means them from
    /// now on.
    Captured {
        name: String,
        nodes: Vec<String>,
    },
    /// The run ended before this fault's `when` held, so it never fired.
    Unfired {
        fault: String,
        when: String,
    },
}

/// A fault that fired: its action, and whom each of its selectors meant at that moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    pub action: FaultAction,
    /// The nodes of each selector of the action, in the order [`FaultAction::selectors`]
    /// lists them.
    pub resolved: Vec<Vec<String>>,
    /// Where an admin request went: the leader then, `None` while nobody led.
    pub master: Option<String>,
    /// What it did, counted (see [`Effect`]); written in once the run is over, since a link
    /// fault's is counted for as long as it stands.
    pub effect: Effect,
}

/// What a fault did, as counts the timeline shows after its fields: `stopped=2`,
/// `writes_lost=3`, `blocked=41`. A fault whose counts are all zero did nothing, and fails a
/// scenario's run ([`Fired::did_nothing`]). Faults with nothing to count (latency, loss,
/// credentials, admin requests) have none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effect(pub Vec<(&'static str, u64)>);

impl Effect {
    /// Adds `count` to `what`, which shows even at zero once added.
    pub fn add(&mut self, what: &'static str, count: u64) {
        match self.0.iter_mut().find(|(name, _)| *name == what) {
            Some((_, total)) => *total += count,
            None => self.0.push((what, count)),
        }
    }
}

impl Fired {
    /// A fault whose selectors all name fixed nodes, as it fires: each selector's nodes.
    pub fn fixed(action: FaultAction) -> Fired {
        let resolved = (action.selectors().iter())
            .map(|selector| selector.nodes().to_vec())
            .collect();
        Fired {
            action,
            resolved,
            master: None,
            effect: Effect::default(),
        }
    }

    /// Whether it had something to do and did none of it: every count zero.
    pub fn did_nothing(&self) -> bool {
        let counts = &self.effect.0;
        !counts.is_empty() && counts.iter().all(|(_, count)| *count == 0)
    }

    /// The nodes a fault with one target hit; none for one without.
    pub fn nodes(&self) -> &[String] {
        self.resolved.first().map_or(&[], Vec::as_slice)
    }

    /// A partition's groups, or a link fault's two ends: each one's nodes, a node two of them
    /// name kept in the first.
    pub fn groups(&self) -> Vec<Vec<String>> {
        let sizes: Vec<usize> = match &self.action {
            FaultAction::Partition { groups, .. } => groups.iter().map(Vec::len).collect(),
            FaultAction::LinkLatency { .. } | FaultAction::Hold(_) | FaultAction::Release(_) => {
                vec![1, 1]
            }
            FaultAction::Stall { from: Some(_), .. } => vec![1, 1],
            FaultAction::Crash(_)
            | FaultAction::Restart(_)
            | FaultAction::Heal(_)
            | FaultAction::Latency(..)
            | FaultAction::Loss(_)
            | FaultAction::Wipe(_)
            | FaultAction::Isolate(_)
            | FaultAction::Revoke(_)
            | FaultAction::Restore(_)
            | FaultAction::Stop(_)
            | FaultAction::Shutdown(_)
            | FaultAction::Admin(_)
            | FaultAction::Clock { .. }
            | FaultAction::Pause(_)
            | FaultAction::Resume(_)
            | FaultAction::PowerFail(_)
            | FaultAction::Corrupt(_)
            | FaultAction::Ring(_)
            | FaultAction::Stall { from: None, .. } => return vec![self.nodes().to_vec()],
        };
        let mut placed = BTreeSet::new();
        let mut resolved = self.resolved.iter();
        (sizes.into_iter())
            .map(|size| {
                (resolved.by_ref().take(size).flatten())
                    .filter(|node| placed.insert(node.to_string()))
                    .cloned()
                    .collect()
            })
            .collect()
    }

    /// The processes it ended: a crash's, a restart's (a crash, then a clean start), a stop's,
    /// a shutdown's. `None` for a fault that leaves processes alone (a wiped disk's runs on).
    pub(crate) fn processes_ended(&self) -> Option<&[String]> {
        match &self.action {
            FaultAction::Crash(_)
            | FaultAction::Restart(_)
            | FaultAction::Stop(_)
            | FaultAction::Shutdown(_)
            | FaultAction::PowerFail(_) => Some(self.nodes()),
            FaultAction::Partition { .. }
            | FaultAction::Heal(_)
            | FaultAction::Latency(..)
            | FaultAction::LinkLatency { .. }
            | FaultAction::Loss(_)
            | FaultAction::Hold(_)
            | FaultAction::Release(_)
            | FaultAction::Wipe(_)
            | FaultAction::Isolate(_)
            | FaultAction::Revoke(_)
            | FaultAction::Restore(_)
            | FaultAction::Admin(_)
            | FaultAction::Clock { .. }
            | FaultAction::Pause(_)
            | FaultAction::Resume(_)
            | FaultAction::Corrupt(_)
            | FaultAction::Ring(_)
            | FaultAction::Stall { .. } => None,
        }
    }

    /// A selector as the timeline shows it: `@old(master-2)` for one that depends on the run.
    fn shown(selector: &Selector, nodes: &[String]) -> String {
        if selector.is_dynamic() {
            format!("{selector}({})", nodes.join(","))
        } else {
            selector.to_string()
        }
    }

    /// `target` as written, and `nodes` when it depended on the run.
    fn target(&self, selector: &Selector) -> Vec<(&'static str, Value)> {
        let mut fields = vec![("target", json!(selector.to_string()))];
        if selector.is_dynamic() {
            fields.push(("nodes", json!(self.nodes())));
        }
        fields
    }

    /// A partition's groups as the timeline shows them: `a,b | c`.
    fn shown_groups(&self, groups: &[Vec<Selector>]) -> String {
        let mut resolved = self.resolved.iter();
        let shown: Vec<String> = (groups.iter())
            .map(|group| {
                let names: Vec<String> = (group.iter().zip(resolved.by_ref()))
                    .map(|(selector, nodes)| Fired::shown(selector, nodes))
                    .collect();
                names.join(",")
            })
            .collect();
        shown.join(" | ")
    }

    /// A clock fault's fields: whom, and its jump and rate as written.
    fn clock(
        &self,
        target: &Selector,
        offset_ms: i64,
        rate: Option<f64>,
    ) -> Vec<(&'static str, Value)> {
        let mut fields = self.target(target);
        if offset_ms != 0 || rate.is_none() {
            fields.push(("offset", json!(fmt_offset(offset_ms))));
        }
        if let Some(rate) = rate {
            fields.push(("rate", json!(rate)));
        }
        fields
    }

    /// The two ends of a link fault as the timeline shows them: `a | b`.
    fn ends(&self, ends: &[Selector; 2]) -> String {
        let shown: Vec<String> = (ends.iter().zip(&self.resolved))
            .map(|(selector, nodes)| Fired::shown(selector, nodes))
            .collect();
        let text = shown.join(" | ");
        debug_assert!(ends.iter().any(Selector::is_dynamic) || text == show_pair(ends));
        text
    }

    /// The kind and fields the timeline shows, in order: the fault's, then what it did.
    fn fields(&self) -> (&'static str, Vec<(&'static str, Value)>) {
        let (kind, mut fields) = self.action_fields();
        fields.extend(
            self.effect
                .0
                .iter()
                .map(|(what, count)| (*what, json!(count))),
        );
        (kind, fields)
    }

    /// The fault's fields, as written and resolved.
    fn action_fields(&self) -> (&'static str, Vec<(&'static str, Value)>) {
        let range = |low, high| json!(format!("{}..{}", fmt_duration(low), fmt_duration(high)));
        match &self.action {
            FaultAction::Crash(target) => ("crash", self.target(target)),
            FaultAction::Restart(target) => ("restart", self.target(target)),
            FaultAction::Wipe(target) => ("wipe", self.target(target)),
            FaultAction::Isolate(target) => ("isolate", self.target(target)),
            FaultAction::Revoke(target) => ("revoke", self.target(target)),
            FaultAction::Restore(target) => ("restore", self.target(target)),
            FaultAction::Stop(target) => ("stop", self.target(target)),
            FaultAction::Shutdown(target) => ("shutdown", self.target(target)),
            FaultAction::Pause(target) => ("pause", self.target(target)),
            FaultAction::Resume(target) => ("resume", self.target(target)),
            FaultAction::PowerFail(target) => ("power_fail", self.target(target)),
            FaultAction::Corrupt(target) => ("corrupt", self.target(target)),
            FaultAction::Ring(target) => ("ring", self.target(target)),
            FaultAction::Clock {
                target,
                offset_ms,
                rate,
            } => ("clock", self.clock(target, *offset_ms, *rate)),
            FaultAction::Stall { target, from: None } => ("stall", self.target(target)),
            FaultAction::Stall {
                target,
                from: Some(from),
            } => {
                let ends = [target.clone(), from.clone()];
                ("stall", vec![("between", json!(self.ends(&ends)))])
            }
            FaultAction::Partition { groups, oneway } => {
                let mut fields = vec![("groups", json!(self.shown_groups(groups)))];
                if *oneway {
                    fields.push(("oneway", json!(true)));
                }
                ("partition", fields)
            }
            FaultAction::Heal(None) => ("heal", vec![("target", json!("all"))]),
            FaultAction::Heal(Some(target)) => {
                let shown = Fired::shown(target, self.nodes());
                ("heal", vec![("target", json!(shown))])
            }
            FaultAction::Latency(low, high) => ("latency", vec![("range", range(*low, *high))]),
            FaultAction::LinkLatency { between, low, high } => (
                "latency",
                vec![
                    ("range", range(*low, *high)),
                    ("between", json!(self.ends(between))),
                ],
            ),
            FaultAction::Loss(rate) => ("loss", vec![("rate", json!(rate))]),
            FaultAction::Hold(ends) => ("hold", vec![("between", json!(self.ends(ends)))]),
            FaultAction::Release(ends) => ("release", vec![("between", json!(self.ends(ends)))]),
            FaultAction::Admin(op) => {
                let mut fields = vec![("op", json!(op.name()))];
                if let Some(agents) = op.agents() {
                    fields.push(("agents", json!(agents.to_string())));
                    if agents.is_dynamic() {
                        fields.push(("nodes", json!(self.nodes())));
                    }
                }
                if let Some(master) = &self.master {
                    fields.push(("master", json!(master)));
                }
                ("admin", fields)
            }
        }
    }
}

impl FaultEvent {
    /// The fault that fired, if this is one.
    pub fn fired(&self) -> Option<&Fired> {
        match self {
            FaultEvent::Fired(fired) => Some(fired),
            FaultEvent::Captured { .. } | FaultEvent::Unfired { .. } => None,
        }
    }

    /// See [`Fired::processes_ended`].
    pub(crate) fn processes_ended(&self) -> Option<&[String]> {
        self.fired().and_then(Fired::processes_ended)
    }

    /// The kind and fields the timeline shows, in order.
    pub fn fields(&self) -> (&'static str, Vec<(&'static str, Value)>) {
        match self {
            FaultEvent::Fired(fired) => fired.fields(),
            FaultEvent::Captured { name, nodes } => (
                "captured",
                vec![("name", json!(name)), ("nodes", json!(nodes))],
            ),
            FaultEvent::Unfired { fault, when } => (
                "unfired",
                vec![("fault", json!(fault)), ("when", json!(when))],
            ),
        }
    }
}

/// `{"kind", ...fields}`, as the timeline and `--json` show every event.
impl Serialize for FaultEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (kind, fields) = self.fields();
        let mut map = serializer.serialize_map(Some(1 + fields.len()))?;
        map.serialize_entry("kind", kind)?;
        for (key, value) in &fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}
