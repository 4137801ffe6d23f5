//! The gRPC design's `AgentService` as a transport (`proto/fleet/v1/agent.proto`): Register
//! and Heartbeat are unary calls, and `ExecuteCommand` is the session's bidirectional stream.
//! One HTTP/2 connection is one session.
//!
//! tonic gives the generated client and server and gzip; the HTTP/2 under them is hyper's,
//! over the shell's sockets, with the shell's spawn and clock, so the same code runs in madsim,
//! on turmoil and for real (tonic's own transport would reach for real tokio).

mod agent;
mod master;

pub use agent::connect;
pub use master::Acceptor;

use fleet_core::wire::Message;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("fleet.v1");
}

/// A wire message as the stream carries it.
pub fn envelope(message: &Message) -> pb::Envelope {
    pb::Envelope {
        kind: message.kind().to_string(),
        json: serde_json::to_vec(message).unwrap_or_default(),
    }
}

/// The wire message an envelope carries.
pub fn open(envelope: &pb::Envelope) -> Result<Message, String> {
    serde_json::from_slice(&envelope.json).map_err(|error| format!("not a message: {error}"))
}

/// hyper's executor: whatever hyper starts (a connection's tasks, a stream's body) goes through
/// the shell's spawn, onto the current machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct Exec;

impl<F> hyper::rt::Executor<F> for Exec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        crate::task::spawn(future);
    }
}

/// hyper's timer, for HTTP/2 keepalive pings: the runtime's clock (madsim's in a simulation).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timer;

struct Sleep(Pin<Box<tokio::time::Sleep>>);

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for Sleep {}

impl hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep(Box::pin(tokio::time::sleep(duration))))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let from_now = deadline.saturating_duration_since(self.now());
        self.sleep(from_now)
    }

    // The runtime's clock, as the sleeps above count it (a type of its own in some builds).
    #[allow(clippy::useless_conversion)]
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into()
    }
}
