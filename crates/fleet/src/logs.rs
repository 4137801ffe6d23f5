//! What a running `fleet` process writes to stderr: one line per timeline event (the same events
//! the simulator's timeline shows), as text or JSON, and whatever else `RUST_LOG` asks for. It
//! also hands each event to the process's [`Metrics`].

use crate::metrics::Metrics;
use fleet_core::timeline::{Event, FIELD, TARGET};
use fleet_node::report::EventJson;
use std::io::Write;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `2026-12-06T10:00:00.123Z master-1 became_leader term=2 votes=3`
    Text,
    /// `{"time":"2026-12-06T10:00:00.123Z","node":"master-1","kind":"became_leader",...}`
    Json,
}

/// Installs the process's subscriber: timeline events as lines on stderr, counted in
/// `metrics`; other events as `RUST_LOG` says (warnings and errors by default).
pub fn init(node: &str, format: Format, metrics: Metrics) {
    let timeline = TimelineLines {
        node: node.to_string(),
        format,
        metrics,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let others = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter)
        .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.target() != TARGET
        }));
    let _ = tracing_subscriber::registry()
        .with(timeline)
        .with(others)
        .try_init();
}

struct TimelineLines {
    node: String,
    format: Format,
    metrics: Metrics,
}

fn is_timeline(metadata: &Metadata<'_>) -> bool {
    metadata.target() == TARGET && metadata.fields().field(FIELD).is_some()
}

impl<S: Subscriber> Layer<S> for TimelineLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if !is_timeline(event.metadata()) {
            return;
        }
        let mut visitor = EventJson::default();
        event.record(&mut visitor);
        let Ok(parsed) = Event::from_json(&visitor.json) else {
            return;
        };
        self.metrics
            .count(&self.node, &parsed, std::time::Instant::now());
        let line = match self.format {
            Format::Text => text_line(&self.node, &visitor.json),
            Format::Json => json_line(&self.node, &visitor.json),
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// Now, in UTC, to the millisecond: `2026-12-06T10:00:00.123Z`.
fn timestamp() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

fn text_line(node: &str, json: &str) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(json) else {
        return format!("{} {node} {json}", timestamp());
    };
    let mut line = format!("{} {node}", timestamp());
    for (key, value) in fields {
        let shown = match value {
            serde_json::Value::String(text) => text,
            other => other.to_string(),
        };
        if key == "kind" {
            line.push(' ');
        } else {
            line.push_str(&format!(" {key}="));
        }
        line.push_str(&shown);
    }
    line
}

fn json_line(node: &str, json: &str) -> String {
    let mut line = serde_json::Map::new();
    line.insert("time".into(), timestamp().into());
    line.insert("node".into(), node.into());
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(json) {
        line.extend(fields);
    }
    serde_json::Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_becomes_a_line_of_its_fields() {
        let json = r#"{"kind":"became_leader","term":2,"votes":3}"#;
        let text = text_line("master-1", json);
        assert!(
            text.ends_with(" master-1 became_leader term=2 votes=3"),
            "{text}"
        );
        let line: serde_json::Value = serde_json::from_str(&json_line("master-1", json)).unwrap();
        assert_eq!(line["node"], "master-1");
        assert_eq!(line["kind"], "became_leader");
        assert_eq!(line["votes"], 3);
    }
}
