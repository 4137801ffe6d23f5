//! The shell's side of the cores' events: each core queues what it reports and hands it out
//! from `poll_event`; the shell emits it here, through `tracing`, as one JSON field that any
//! subscriber can log and parse back into the same types; or, to a listener that installed a
//! [`Typed`] layer (the simulator's timeline), as it is.

use fleet_core::timeline::{Event, Json, FIELD, TARGET};
use std::fmt;
use tracing::field::{Field, Visit};

/// Reports `event` to whoever listens (the simulator's timeline, a log). Costs nothing beyond
/// building the event when nobody does.
pub fn emit(event: impl Into<Event>) {
    let mut event = Some(event.into());
    tracing::dispatcher::get_default(|dispatch| {
        if let Some(typed) = dispatch.downcast_ref::<Typed>() {
            if let Some(event) = event.take() {
                (typed.0)(event);
            }
        }
    });
    if let Some(event) = event {
        debug_assert_eq!((TARGET, FIELD), ("fleet_core::timeline", "event"));
        tracing::info!(target: "fleet_core::timeline", event = %Json(&event));
    }
}

/// A listener that takes the events as they are: a `tracing` layer that does nothing itself,
/// which [`emit`] finds in the current subscriber and hands each event to, instead of writing
/// it as JSON for a subscriber to parse back. Events then skip `tracing` altogether, so install
/// it only where nothing else wants them (the simulator does, unless `RUST_LOG` logs).
pub struct Typed(Box<dyn Fn(Event) + Send + Sync>);

impl Typed {
    pub fn new(take: impl Fn(Event) + Send + Sync + 'static) -> Typed {
        Typed(Box::new(take))
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Typed {}

/// Emits every event `poll` hands out, in order: call it right after each input to a core,
/// before anything can await, so each event keeps its time and its order among the others.
pub fn emit_from(mut poll: impl FnMut() -> Option<Event>) {
    while let Some(event) = poll() {
        emit(event);
    }
}

/// Reads back what [`emit`] wrote: the JSON text of the event's one field, from a `tracing`
/// event (`event.record(&mut visitor)`), for any subscriber that wants the events (the
/// simulator's timeline, the binaries' log lines). Empty for any other event.
#[derive(Default)]
pub struct EventJson {
    pub json: String,
}

impl Visit for EventJson {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == FIELD {
            self.json = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == FIELD {
            // `%Json(..)` records a display value, whose Debug is the JSON text.
            self.json = format!("{value:?}");
        }
    }
}
