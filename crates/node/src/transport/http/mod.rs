//! The connector design's HTTP API as a transport. The agent's messages are requests, each a
//! `wire::Message` as its JSON body; what the master sends comes back in the answers, as a JSON
//! array of messages:
//!
//! | request | body | answer |
//! |---|---|---|
//! | `POST /api/master/nodes/register` | `Register` | its ack (or a redirect); header `fleet-session` |
//! | `POST /api/master/heartbeat` | `Heartbeat` | its ack |
//! | `POST /api/master/command/result` | `CommandResult` | (nothing) |
//! | `POST /api/master/nodes/{id}/config` | `ConfigPull`, `ConfigAck` | what the master answers |
//! | `POST /api/master/nodes/{id}/unregister` | `Unregister` | (nothing) |
//! | `GET /api/master/nodes/{id}/commands?wait=MS` | | commands, config pushes, a goodbye: whatever the master sent since, waiting up to `wait` for one |
//!
//! A registration opens a session: its answer names it in a `fleet-session` header, and every
//! later request carries it. A session is what one TCP connection is to framed TCP: it ends when
//! the agent unregisters, the master closes it, or no request came for three poll intervals (a
//! minute at least), and
//! a request on an ended session gets `410 Gone` (to the agent, a closed connection). A refused
//! registration answers `401` (unauthorized), `429` with `Retry-After` (busy, or retrying too
//! soon) or `503` (no leader, shutting down), its ack in the body either way.

mod agent;
mod master;

pub use agent::connect;
pub use master::Acceptor;

use fleet_core::wire::Message;

/// The header that names an agent's session.
pub const SESSION: &str = "fleet-session";

/// The requests that carry an agent's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Register,
    Heartbeat,
    Result,
    Config,
    Unregister,
}

impl Route {
    /// The request that carries `message`; `None` for what only a master sends.
    pub fn of(message: &Message) -> Option<Route> {
        Some(match message {
            Message::Register(_) => Route::Register,
            Message::Heartbeat(_) => Route::Heartbeat,
            Message::CommandResult(_) => Route::Result,
            Message::ConfigPull(_) | Message::ConfigAck(_) => Route::Config,
            Message::Unregister(_) => Route::Unregister,
            Message::RegisterAck(_)
            | Message::HeartbeatAck(_)
            | Message::Redirect(_)
            | Message::Command(_)
            | Message::ConfigPush(_)
            | Message::Goodbye(_) => return None,
        })
    }

    /// Its path, for the agent named `agent`.
    pub fn path(self, agent: &str) -> String {
        match self {
            Route::Register => "/api/master/nodes/register".to_string(),
            Route::Heartbeat => "/api/master/heartbeat".to_string(),
            Route::Result => "/api/master/command/result".to_string(),
            Route::Config => format!("/api/master/nodes/{}/config", escape(agent)),
            Route::Unregister => format!("/api/master/nodes/{}/unregister", escape(agent)),
        }
    }
}

/// Where an agent long-polls for what its master sends.
pub fn commands(agent: &str, wait_ms: u64) -> String {
    format!(
        "/api/master/nodes/{}/commands?wait={wait_ms}",
        escape(agent)
    )
}

/// `name` as one path segment: bytes other than letters, digits, `-`, `_` and `.` as `%XX`.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
