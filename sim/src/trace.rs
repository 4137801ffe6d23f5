//! The run's timeline: `tracing` events from the cores, the shell and the runner, captured with
//! simulated time and the name of the node that emitted them.
//!
//! Events are `tracing::info!(field = value, ..., "kind")`: the message is the event's kind and
//! the other fields are its fields, in the order written. Only events from this workspace's
//! crates are kept, so the simulator's own logging costs nothing.

use serde::ser::{SerializeMap, Serializer};
use std::fmt;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::U64(v) => write!(f, "{v}"),
            FieldValue::I64(v) => write!(f, "{v}"),
            FieldValue::F64(v) => write!(f, "{v}"),
            FieldValue::Bool(v) => write!(f, "{v}"),
            FieldValue::Str(v) => f.write_str(v),
        }
    }
}

impl serde::Serialize for FieldValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldValue::U64(v) => serializer.serialize_u64(*v),
            FieldValue::I64(v) => serializer.serialize_i64(*v),
            FieldValue::F64(v) => serializer.serialize_f64(*v),
            FieldValue::Bool(v) => serializer.serialize_bool(*v),
            FieldValue::Str(v) => serializer.serialize_str(v),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Simulated milliseconds since the start of the run.
    pub t_ms: u64,
    pub node: String,
    pub kind: String,
    pub fields: Vec<(String, FieldValue)>,
}

impl Event {
    pub fn field(&self, name: &str) -> Option<&FieldValue> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    pub fn u64_field(&self, name: &str) -> Option<u64> {
        match self.field(name)? {
            FieldValue::U64(v) => Some(*v),
            FieldValue::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    pub fn str_field(&self, name: &str) -> Option<&str> {
        match self.field(name)? {
            FieldValue::Str(v) => Some(v),
            _ => None,
        }
    }

    /// `key=value key=value`, in the order the fields were written.
    pub fn fields_text(&self) -> String {
        let mut out = String::new();
        for (key, value) in &self.fields {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(key);
            out.push('=');
            out.push_str(&value.to_string());
        }
        out
    }
}

/// `{"t_ms", "node", "kind", ...fields}`, flat, as the JSON output documents.
impl serde::Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3 + self.fields.len()))?;
        map.serialize_entry("t_ms", &self.t_ms)?;
        map.serialize_entry("node", &self.node)?;
        map.serialize_entry("kind", &self.kind)?;
        for (key, value) in &self.fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Says when and where an event happened: simulated milliseconds and node name.
pub type Locate = Arc<dyn Fn() -> (u64, String) + Send + Sync>;

/// Collects the workspace's `info` events into a shared list.
pub struct CaptureLayer {
    events: Arc<Mutex<Vec<Event>>>,
    locate: Locate,
}

impl CaptureLayer {
    pub fn new(locate: Locate) -> (CaptureLayer, Arc<Mutex<Vec<Event>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        (
            CaptureLayer {
                events: events.clone(),
                locate,
            },
            events,
        )
    }
}

/// Our crates' events at info level and above; nothing else, and no spans.
fn wanted(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    metadata.is_event()
        && *metadata.level() <= Level::INFO
        && (target.starts_with("fleet_") || target == "sim" || target.starts_with("sim::"))
}

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if wanted(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        wanted(metadata)
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut visitor = FieldCollector::default();
        event.record(&mut visitor);
        let (t_ms, node) = (self.locate)();
        let captured = Event {
            t_ms,
            node,
            kind: visitor.kind,
            fields: visitor.fields,
        };
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(captured);
    }
}

#[derive(Default)]
struct FieldCollector {
    kind: String,
    fields: Vec<(String, FieldValue)>,
}

impl FieldCollector {
    fn push(&mut self, field: &Field, value: FieldValue) {
        self.fields.push((field.name().to_string(), value));
    }
}

impl Visit for FieldCollector {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::U64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::I64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, FieldValue::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.kind = value.to_string();
        } else {
            self.push(field, FieldValue::Str(value.to_string()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.kind = text;
        } else {
            self.push(field, FieldValue::Str(text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_keep_their_kind_fields_and_order() {
        let locate: Locate = Arc::new(|| (42, "agent-1".to_string()));
        let (layer, events) = CaptureLayer::new(locate);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                attempt = 2u32,
                delay_ms = 1000u64,
                target = "master-1",
                "connect_attempt"
            );
            tracing::debug!("too quiet to keep");
        });
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!((event.t_ms, event.node.as_str()), (42, "agent-1"));
        assert_eq!(event.kind, "connect_attempt");
        assert_eq!(
            event.fields_text(),
            "attempt=2 delay_ms=1000 target=master-1"
        );
        assert_eq!(
            serde_json::to_string(event).unwrap(),
            r#"{"t_ms":42,"node":"agent-1","kind":"connect_attempt","attempt":2,"delay_ms":1000,"target":"master-1"}"#
        );
    }
}
