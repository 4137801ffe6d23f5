//! The third stage's input and everything derived from it: the timeline of a run, and what it
//! says about who was online, who led, and which faults hit which nodes.
//!
//! A run's events arrive as JSON (see `fleet_core::timeline`) and are parsed once, by the
//! runner's capture layer, into [`Entry`]. Everything after that matches typed events.

pub mod attempts;
pub mod captures;
pub mod commands;
pub mod leaders;
pub mod metrics;
pub mod online;
pub mod terms;

use crate::scenario::selector::Topology;
use fleet_core::timeline::Event;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// The node name of the harness itself: fault events happen there.
pub const HARNESS: &str = "sim";

/// A fault the harness injected, as the timeline shows it. `target` is the selector as written;
/// `nodes`, for `leader` and `followers`, is whom it meant at that moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultEvent {
    Crash {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nodes: Option<Vec<String>>,
    },
    Restart {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nodes: Option<Vec<String>>,
    },
    Partition {
        groups: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        oneway: bool,
    },
    Heal {
        target: String,
    },
    Latency {
        range: String,
        /// The links' two ends, `a | b`; every link when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        between: Option<String>,
    },
    Loss {
        rate: f64,
    },
    /// Messages between the two ends (`a | b`) are queued, both ways.
    Hold {
        between: String,
    },
    /// What was held between the two ends is delivered, and traffic flows again.
    Release {
        between: String,
    },
    Wipe {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nodes: Option<Vec<String>>,
    },
    Isolate {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nodes: Option<Vec<String>>,
    },
    /// The selected agents' credentials were revoked at every master.
    Revoke {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nodes: Option<Vec<String>>,
    },
    /// The selected agents' credentials are valid again.
    Restore {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nodes: Option<Vec<String>>,
    },
    /// The selected agents were told to unregister and stop for good.
    Stop {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nodes: Option<Vec<String>>,
    },
    /// The selected masters shut down: goodbyes to their agents, then down.
    Shutdown {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nodes: Option<Vec<String>>,
    },
    /// An operator asked `master` (the leader then; `None` when there was none) to run `op`
    /// on `agents`.
    Admin {
        op: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agents: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nodes: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        master: Option<String>,
    },
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

impl FaultEvent {
    /// The processes a crash, restart, stop or shutdown ended; `None` for faults that leave
    /// processes alone.
    pub fn processes_ended(&self, topology: &Topology) -> Option<Vec<String>> {
        match self {
            FaultEvent::Crash { target, nodes }
            | FaultEvent::Restart { target, nodes }
            | FaultEvent::Stop { target, nodes }
            | FaultEvent::Shutdown { target, nodes } => Some(match nodes {
                Some(nodes) => nodes.clone(),
                None => topology
                    .select(target)
                    .map(|selector| selector.nodes().to_vec())
                    .unwrap_or_default(),
            }),
            // A wiped disk leaves its process running.
            FaultEvent::Partition { .. }
            | FaultEvent::Heal { .. }
            | FaultEvent::Latency { .. }
            | FaultEvent::Loss { .. }
            | FaultEvent::Hold { .. }
            | FaultEvent::Release { .. }
            | FaultEvent::Wipe { .. }
            | FaultEvent::Isolate { .. }
            | FaultEvent::Revoke { .. }
            | FaultEvent::Restore { .. }
            | FaultEvent::Admin { .. }
            | FaultEvent::Captured { .. }
            | FaultEvent::Unfired { .. } => None,
        }
    }
}

/// The groups of a partition as the timeline shows them: `leader(master-2),agent-1 | agents`.
/// A target that depended on the run lists its nodes in parentheses.
pub fn partition_groups(groups: &str, topology: &Topology) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for group in groups.split(" | ") {
        let mut nodes = Vec::new();
        let (mut depth, mut start) = (0, 0);
        let mut items = Vec::new();
        for (i, c) in group.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&group[start..]);
        for item in items {
            match item.split_once('(') {
                Some((_, inside)) => {
                    let inside = inside.trim_end_matches(')');
                    nodes.extend(
                        inside
                            .split(',')
                            .filter(|n| !n.is_empty())
                            .map(String::from),
                    );
                }
                None => nodes
                    .extend((topology.select(item).ok().iter()).flat_map(|s| s.nodes().to_vec())),
            }
        }
        out.push(nodes);
    }
    out
}

/// What happened: a fault the harness injected, or an event of the control plane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Happening {
    Fault(FaultEvent),
    System(Event),
}

/// One line of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Simulated milliseconds since the start of the run.
    pub t_ms: u64,
    pub node: String,
    pub event: Happening,
}

impl Entry {
    /// The event's kind and its fields as `key=value key=value`, in the order written.
    pub fn parts(&self) -> (String, String) {
        let serde_json::Value::Object(map) =
            serde_json::to_value(&self.event).expect("events serialize")
        else {
            unreachable!("every event is a JSON object");
        };
        let mut kind = String::new();
        let mut fields = String::new();
        for (key, value) in map {
            if key == "kind" {
                kind = show_value(&value);
                continue;
            }
            if !fields.is_empty() {
                fields.push(' ');
            }
            fields.push_str(&key);
            fields.push('=');
            fields.push_str(&show_value(&value));
        }
        (kind, fields)
    }

    /// The fault this entry records, if it is one.
    pub fn fault(&self) -> Option<&FaultEvent> {
        match &self.event {
            Happening::Fault(fault) => Some(fault),
            Happening::System(_) => None,
        }
    }

    pub fn system(&self) -> Option<&Event> {
        match &self.event {
            Happening::System(event) => Some(event),
            Happening::Fault(_) => None,
        }
    }
}

fn show_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(items) => {
            items.iter().map(show_value).collect::<Vec<_>>().join(",")
        }
        serde_json::Value::Null => String::new(),
        // As Rust prints them: a loss rate of 0 is `0`, not JSON's `0.0`.
        serde_json::Value::Number(number) if number.is_f64() => number
            .as_f64()
            .map_or_else(|| number.to_string(), |n| n.to_string()),
        other => other.to_string(),
    }
}

/// `{"t_ms", "node", "kind", ...fields}`, flat, as the JSON output documents.
impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = match serde_json::to_value(&self.event) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let mut map = serializer.serialize_map(Some(2 + fields.len()))?;
        map.serialize_entry("t_ms", &self.t_ms)?;
        map.serialize_entry("node", &self.node)?;
        for (key, value) in &fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// A run's timeline: every entry in order, and any event that could not be read back (a bug
/// in an emitter; the judge reports it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    pub entries: Vec<Entry>,
    pub unreadable: Vec<String>,
}

/// `h:mm:ss.mmm`, the timeline's clock.
pub fn fmt_time(t_ms: u64) -> String {
    let (hours, rest) = (t_ms / 3_600_000, t_ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    format!("{hours}:{minutes:02}:{:02}.{:03}", rest / 1000, rest % 1000)
}

/// `a, b, c` or `a, b, c and 7 more`.
pub fn abbreviate(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use fleet_core::timeline::{AgentEvent, MasterEvent, RaftEvent};

    pub fn entry(t_ms: u64, node: &str, event: impl Into<Event>) -> Entry {
        Entry {
            t_ms,
            node: node.into(),
            event: Happening::System(event.into()),
        }
    }

    pub fn fault(t_ms: u64, event: FaultEvent) -> Entry {
        Entry {
            t_ms,
            node: HARNESS.into(),
            event: Happening::Fault(event),
        }
    }

    pub fn registered(t_ms: u64, master: &str, agent: &str) -> Entry {
        entry(
            t_ms,
            master,
            MasterEvent::NodeRegistered {
                agent: agent.into(),
                instance_id: format!("{agent}-sim-101"),
            },
        )
    }

    pub fn became_leader(t_ms: u64, master: &str, term: u64) -> Entry {
        entry(t_ms, master, RaftEvent::BecameLeader { term, votes: 2 })
    }

    pub fn attempt(t_ms: u64, attempt: u32, delay_ms: u64) -> Entry {
        entry(
            t_ms,
            "agent-1",
            AgentEvent::ConnectAttempt {
                attempt,
                delay_ms,
                target: "master-1".into(),
            },
        )
    }

    #[test]
    fn an_entry_prints_and_serializes_flat() {
        let entry = attempt(42, 2, 1000);
        assert_eq!(
            entry.parts(),
            (
                "connect_attempt".to_string(),
                "attempt=2 delay_ms=1000 target=master-1".to_string()
            )
        );
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"t_ms":42,"node":"agent-1","kind":"connect_attempt","attempt":2,"delay_ms":1000,"target":"master-1"}"#
        );
    }

    #[test]
    fn a_fault_event_names_whom_a_dynamic_target_meant() {
        let crash = fault(
            9000,
            FaultEvent::Crash {
                target: "leader".into(),
                nodes: Some(vec!["master-2".into()]),
            },
        );
        assert_eq!(crash.parts().1, "target=leader nodes=master-2");
        let back: Happening =
            serde_json::from_value(serde_json::to_value(&crash.event).unwrap()).unwrap();
        assert_eq!(back, crash.event);
    }

    #[test]
    fn clock_format() {
        assert_eq!(fmt_time(0), "0:00:00.000");
        assert_eq!(fmt_time(3_723_456), "1:02:03.456");
    }
}
