//! The shell's side of the cores' events: each core queues what it reports and hands it out
//! from `poll_event`; the shell emits it here, through `tracing`, as one JSON field that any
//! subscriber can log and the simulator parses back into the same types.

use fleet_core::timeline::{Event, Json, FIELD, TARGET};

/// Reports `event` to whoever listens (the simulator's timeline, a log). Costs nothing beyond
/// building the event when nobody does.
pub fn emit(event: impl Into<Event>) {
    let event = event.into();
    debug_assert_eq!((TARGET, FIELD), ("fleet_core::timeline", "event"));
    tracing::info!(target: "fleet_core::timeline", event = %Json(&event));
}

/// Emits every event `poll` hands out, in order: call it right after each input to a core,
/// before anything can await, so each event keeps its time and its order among the others.
pub fn emit_from(mut poll: impl FnMut() -> Option<Event>) {
    while let Some(event) = poll() {
        emit(event);
    }
}
