//! Records the run's timeline: every timeline event the shells emit through `tracing`, with
//! simulated time and the name of the node that emitted it, parsed once into [`Entry`] (other
//! `tracing` events, the simulator's own logging, are never even built); and the harness's
//! faults, which it records typed, with the nodes they hit.

use super::budget::{self, Budget};
use crate::history::{Entry, FaultEvent, Happening, Timeline};
use fleet_core::timeline::{Event, FIELD, TARGET};
use fleet_node::report::{EventJson, Typed};
use fleet_node::sync::lock;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Says when and where an event happened: simulated milliseconds and node name.
pub type Locate = Arc<dyn Fn() -> (u64, String) + Send + Sync>;

/// Where the harness records what it does: the run's timeline, in the same order and with the
/// same clock as the control plane's events. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    pub timeline: Arc<Mutex<Timeline>>,
    locate: Locate,
}

impl Recorder {
    /// Records `event` now, from the harness.
    /// Returns its line: its index among the timeline's entries.
    pub fn record(&self, event: FaultEvent) -> usize {
        let (t_ms, node) = (self.locate)();
        // For `RUST_LOG` readers; the timeline takes the event itself, below.
        tracing::info!(target: "sim::faults", fault = ?event.fields());
        let entries = &mut lock(&self.timeline).entries;
        entries.push(Entry {
            t_ms,
            node,
            clock_ms: 0,
            event: Happening::Fault(event),
        });
        entries.len() - 1
    }
}

/// Collects timeline events into a shared [`Timeline`]: typed, through the layer [`typed`]
/// gives (the fast path, with nothing to format or parse), or else from `tracing`'s events.
///
/// [`typed`]: CaptureLayer::typed
pub struct CaptureLayer {
    capture: Arc<Capture>,
    /// Another layer logs too (`RUST_LOG`): let every event through and pick ours in
    /// `on_event`, since a layer that disables an event disables it for all.
    shared: bool,
}

/// What the capture keeps, whichever way an event comes.
struct Capture {
    timeline: Arc<Mutex<Timeline>>,
    locate: Locate,
    /// What the run may record; once over it, it records nothing more.
    budget: Budget,
    /// How many events each node recorded.
    spent: Mutex<BTreeMap<String, u64>>,
}

impl CaptureLayer {
    pub fn new(locate: Locate, budget: Budget) -> (CaptureLayer, Recorder) {
        let timeline = Arc::new(Mutex::new(Timeline::default()));
        let recorder = Recorder {
            timeline: timeline.clone(),
            locate: locate.clone(),
        };
        let capture = Capture {
            timeline,
            locate,
            budget,
            spent: Mutex::default(),
        };
        let layer = CaptureLayer {
            capture: Arc::new(capture),
            shared: false,
        };
        (layer, recorder)
    }

    /// The layer, beside another that logs what `RUST_LOG` asks for.
    pub(crate) fn shared(self) -> CaptureLayer {
        CaptureLayer {
            shared: true,
            ..self
        }
    }

    /// A layer through which the shells hand this capture their events typed; with it in the
    /// subscriber, no other layer sees them.
    pub(crate) fn typed(&self) -> Typed {
        let capture = self.capture.clone();
        Typed::new(move |event| capture.take(|| Ok(event)))
    }
}

impl Capture {
    /// Records the event `read` gives, at the current time and node.
    fn take(&self, read: impl FnOnce() -> Result<Event, String>) {
        let (t_ms, node) = (self.locate)();
        let mut timeline = lock(&self.timeline);
        if timeline.runaway.is_some() {
            return;
        }
        let spent = {
            let mut spent = lock(&self.spent);
            match spent.get_mut(node.as_str()) {
                Some(count) => {
                    *count += 1;
                    *count
                }
                None => *spent.entry(node.clone()).or_insert(1),
            }
        };
        if let Some(runaway) = (self.budget).check(t_ms, &node, spent, &timeline.entries) {
            return budget::stop(&mut timeline, runaway);
        }
        let clock_ms = fleet_node::clock::offset_ms();
        match read() {
            Ok(event) => timeline.entries.push(Entry {
                t_ms,
                node,
                clock_ms,
                event: Happening::System(event),
            }),
            Err(error) => (timeline.unreadable).push(format!("{node} at {t_ms}ms: {error}")),
        }
    }
}

/// `RUST_LOG`'s log lines stamped with simulated time and the node that wrote them:
/// `0:01:02.345 master-1`.
pub(crate) struct SimTime(pub Locate);

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> fmt::Result {
        let (t_ms, node) = (self.0)();
        write!(w, "{} {node}", crate::history::fmt_time(t_ms))
    }
}

/// Timeline events: this workspace's `info` events that carry the one `event` field. And the
/// span turmoil opens around each host's tick, which says whose events those are: a layer
/// that refused it would disable it for every layer.
fn wanted(metadata: &Metadata<'_>) -> bool {
    (metadata.is_event()
        && *metadata.level() <= Level::INFO
        && metadata.target() == TARGET
        && metadata.fields().field(FIELD).is_some())
        || is_host_span(metadata)
}

/// turmoil's span around one host's tick, whose `name` field is the host's.
pub(crate) fn is_host_span(metadata: &Metadata<'_>) -> bool {
    metadata.is_span() && metadata.name() == "node" && metadata.target().starts_with("turmoil")
}

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.shared || wanted(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        self.shared || wanted(metadata)
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if self.shared && !wanted(event.metadata()) {
            return;
        }
        self.capture.take(|| {
            let mut visitor = EventJson::default();
            event.record(&mut visitor);
            Event::from_json(&visitor.json).map_err(|error| format!("{error}: {}", visitor.json))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::timeline::{AgentEvent, Event};
    use fleet_node::report::emit;
    use tracing_subscriber::layer::SubscriberExt;

    fn an_attempt() -> AgentEvent {
        AgentEvent::ConnectAttempt {
            attempt: 2,
            delay_ms: 1000,
            target: "master-1".into(),
        }
    }

    #[test]
    fn events_are_parsed_back_with_time_and_node() {
        let locate: Locate = Arc::new(|| (42, "agent-1".to_string()));
        let (layer, recorder) = CaptureLayer::new(locate, Budget::unlimited());
        let timeline = recorder.timeline;
        let subscriber = tracing_subscriber::registry().with(layer);
        let sent = an_attempt();
        tracing::subscriber::with_default(subscriber, || {
            emit(sent.clone());
            tracing::info!(attempt = 3, "not a timeline event");
            tracing::debug!("too quiet to keep");
        });
        let timeline = timeline.lock().unwrap();
        assert!(timeline.unreadable.is_empty(), "{:?}", timeline.unreadable);
        assert_eq!(
            timeline.entries,
            vec![Entry {
                t_ms: 42,
                node: "agent-1".into(),
                clock_ms: 0,
                event: Happening::System(Event::Agent(sent)),
            }]
        );
    }

    /// Counts the `tracing` events it sees.
    struct Counting(Arc<Mutex<usize>>);

    impl<S: Subscriber> Layer<S> for Counting {
        fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, S>) {
            *lock(&self.0) += 1;
        }
    }

    #[test]
    fn through_the_typed_layer_events_arrive_as_they_are_and_skip_tracing() {
        let locate: Locate = Arc::new(|| (42, "agent-1".to_string()));
        let (layer, recorder) = CaptureLayer::new(locate, Budget::unlimited());
        let typed = layer.typed();
        // Shared, so that it lets the other layer see every event.
        let layer = layer.shared();
        let seen = Arc::new(Mutex::new(0));
        let subscriber = (tracing_subscriber::registry())
            .with(layer)
            .with(typed)
            .with(Counting(seen.clone()));
        let sent = an_attempt();
        tracing::subscriber::with_default(subscriber, || {
            emit(sent.clone());
            tracing::info!(attempt = 3, "not a timeline event");
        });
        let timeline = recorder.timeline.lock().unwrap();
        assert_eq!(
            (timeline.entries.iter().map(|e| &e.event)).collect::<Vec<_>>(),
            [&Happening::System(Event::Agent(sent))]
        );
        assert_eq!(*lock(&seen), 1, "only the other event went through tracing");
    }

    #[test]
    fn an_event_from_a_skewed_machine_carries_its_clock_offset() {
        let locate: Locate = Arc::new(|| (42, "master-1".to_string()));
        let (layer, recorder) = CaptureLayer::new(locate, Budget::unlimited());
        let timeline = recorder.timeline;
        let subscriber = tracing_subscriber::registry().with(layer);
        let machine = fleet_node::machine::Machine::default();
        machine.adjust_clock(std::time::Instant::now(), 2_000, None);
        let sent = AgentEvent::Registered {
            instance_id: "agent-1-sim-101".into(),
        };
        tracing::subscriber::with_default(subscriber, || {
            emit(sent.clone());
            machine.enter(|| emit(sent.clone()));
        });
        let timeline = timeline.lock().unwrap();
        let offsets: Vec<i64> = timeline.entries.iter().map(|e| e.clock_ms).collect();
        assert_eq!(
            offsets,
            [0, 2_000],
            "true time outside the machine, its clock inside"
        );
    }

    #[test]
    fn an_unreadable_event_is_kept_aside() {
        let locate: Locate = Arc::new(|| (7, "master-1".to_string()));
        let (layer, recorder) = CaptureLayer::new(locate, Budget::unlimited());
        let timeline = recorder.timeline;
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "fleet_core::timeline", event = r#"{"kind":"nonsense"}"#);
        });
        let timeline = timeline.lock().unwrap();
        assert!(timeline.entries.is_empty());
        assert_eq!(timeline.unreadable.len(), 1);
        assert!(timeline.unreadable[0].contains("nonsense"));
    }
}
