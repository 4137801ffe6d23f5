//! The third stage's input and everything derived from it: the timeline of a run, and what it
//! says about who was online, who led, and which faults hit which nodes.
//!
//! The control plane's events arrive as JSON (see `fleet_core::timeline`) and are parsed once,
//! by the runner's recorder, into [`Entry`]; the harness records its faults typed, with the
//! nodes they hit. Everything after that matches typed events.

pub mod attempts;
pub mod captures;
pub mod commands;
mod faults;
pub mod leaders;
pub mod links;
pub mod metrics;
pub mod online;
pub mod terms;

pub use faults::{Effect, FaultEvent, Fired};

use fleet_core::timeline::Event;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// The node name of the harness itself: fault events happen there.
pub(crate) const HARNESS: &str = "sim";

/// What happened: a fault the harness injected, or an event of the control plane.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
    /// How far the node's clock was from true time when it emitted the event, in milliseconds
    /// (negative: behind): 0 unless a `clock` fault moved it. The harness's lines have none.
    pub clock_ms: i64,
    pub event: Happening,
}

impl Entry {
    /// The event's kind and its fields as `key=value key=value`, in the order written.
    pub(crate) fn parts(&self) -> (String, String) {
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
        if self.clock_ms != 0 {
            if !fields.is_empty() {
                fields.push(' ');
            }
            fields.push_str("clock=");
            fields.push_str(&crate::scenario::faults::fmt_offset(self.clock_ms));
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
        let clock = usize::from(self.clock_ms != 0);
        let mut map = serializer.serialize_map(Some(2 + clock + fields.len()))?;
        map.serialize_entry("t_ms", &self.t_ms)?;
        map.serialize_entry("node", &self.node)?;
        if self.clock_ms != 0 {
            map.serialize_entry("clock_ms", &self.clock_ms)?;
        }
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
    /// The run went over its budget (see `run::budget`) and was stopped there: nothing after
    /// was recorded.
    pub runaway: Option<Runaway>,
    /// The bytes every node's sockets wrote over the run: what its transport cost on the wire
    /// (a cluster's own traffic too).
    pub wire_bytes: u64,
}

/// A run stopped for going over its budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runaway {
    /// When it was stopped, in simulated ms.
    pub t_ms: u64,
    /// What went over, and by how much: `events` or `polls of master-2`.
    pub what: String,
    pub spent: u64,
    pub limit: u64,
    /// The commonest (node, kind) of the last stretch of the timeline, most frequent first.
    pub hottest: Vec<(String, String, u64)>,
}

impl Runaway {
    /// One line: `stopped at 0:00:12.345: 81,234 events over the budget of 80,000; the last
    /// 2,000 were mostly lease_renewed on master-2 (1,990)`.
    pub fn detail(&self) -> String {
        let mut text = format!(
            "stopped at {}: {} {} over the budget of {}",
            fmt_time(self.t_ms),
            self.spent,
            self.what,
            self.limit
        );
        if self.hottest.is_empty() {
            text.push_str("; nothing was recorded: a node spun without a word");
        } else {
            let busiest: Vec<String> = (self.hottest.iter())
                .map(|(node, kind, count)| format!("{kind} on {node} ×{count}"))
                .collect();
            text.push_str(&format!(
                "; the last events were mostly {}",
                busiest.join(", ")
            ));
        }
        text
    }
}

/// `h:mm:ss.mmm`, the timeline's clock.
pub(crate) fn fmt_time(t_ms: u64) -> String {
    let (hours, rest) = (t_ms / 3_600_000, t_ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    format!("{hours}:{minutes:02}:{:02}.{:03}", rest / 1000, rest % 1000)
}

/// `a, b, c` or `a, b, c and 7 more`.
pub(crate) fn abbreviate(names: &[&str]) -> String {
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
            clock_ms: 0,
            event: Happening::System(event.into()),
        }
    }

    /// A fault that fired, written as a `[[faults]]` entry's action (`crash = "leader"`) in a
    /// run of 3 masters and 10 agents, with the nodes each of its selectors meant (its fixed
    /// nodes when `resolved` is empty).
    pub fn fired(action: &str, resolved: &[&[&str]]) -> FaultEvent {
        let text = format!(
            "name = \"t\"\nduration = \"1h\"\n[topology]\nmasters = 3\nagents = 10\n\
             [[faults]]\nat = \"1s\"\n{action}\n"
        );
        let scenario = crate::scenario::Scenario::parse("t.toml", &text).unwrap();
        let mut fired = Fired::fixed(scenario.faults[0].action.clone());
        if !resolved.is_empty() {
            fired.resolved = (resolved.iter())
                .map(|nodes| nodes.iter().map(|node| node.to_string()).collect())
                .collect();
        }
        FaultEvent::Fired(Box::new(fired))
    }

    pub fn fault(t_ms: u64, event: FaultEvent) -> Entry {
        Entry {
            t_ms,
            node: HARNESS.into(),
            clock_ms: 0,
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
    fn a_skewed_nodes_line_shows_its_clock_offset() {
        let ahead = Entry {
            clock_ms: 2_500,
            ..attempt(42, 2, 1000)
        };
        assert_eq!(
            ahead.parts().1,
            "attempt=2 delay_ms=1000 target=master-1 clock=+2s500ms"
        );
        assert_eq!(
            serde_json::to_string(&ahead).unwrap(),
            r#"{"t_ms":42,"node":"agent-1","clock_ms":2500,"kind":"connect_attempt","attempt":2,"delay_ms":1000,"target":"master-1"}"#
        );
        let behind = Entry {
            clock_ms: -512,
            ..attempt(42, 2, 1000)
        };
        assert!(behind.parts().1.ends_with(" clock=-512ms"));
    }

    #[test]
    fn a_fault_event_names_whom_a_dynamic_target_meant() {
        let crash = fault(9000, fired(r#"crash = "leader""#, &[&["master-2"]]));
        assert_eq!(crash.parts().1, "target=leader nodes=master-2");
        assert_eq!(
            serde_json::to_string(&crash).unwrap(),
            r#"{"t_ms":9000,"node":"sim","kind":"crash","target":"leader","nodes":["master-2"]}"#
        );
    }

    #[test]
    fn clock_format() {
        assert_eq!(fmt_time(0), "0:00:00.000");
        assert_eq!(fmt_time(3_723_456), "1:02:03.456");
    }
}
