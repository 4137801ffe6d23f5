//! Which protocol carries the wire's messages between agents and masters, and its settings.
//! The messages and the cores are the same on every transport; what changes is how long a
//! message waits (a long poll's round trip), and how a broken link shows itself.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub enum Transport {
    /// One TCP connection per session, a length-prefixed frame per message (the default).
    Tcp,
    /// The connector design's HTTP API: a request per message the agent sends, and a long poll
    /// for what the master sends.
    Http(HttpTransport),
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpTransport {
    /// How long a `GET .../commands` waits for something to carry before it answers empty.
    pub poll: Duration,
}

impl Default for HttpTransport {
    fn default() -> Self {
        HttpTransport {
            poll: Duration::from_secs(5),
        }
    }
}

impl Transport {
    /// The names scenario files and flags give the transports.
    pub const NAMES: [&'static str; 2] = ["tcp", "http"];

    /// The transport named `name`, with its defaults.
    pub fn named(name: &str) -> Option<Transport> {
        match name {
            "tcp" => Some(Transport::Tcp),
            "http" => Some(Transport::Http(HttpTransport::default())),
            _ => None,
        }
    }

    /// The kind and its settings, for a report's header.
    pub fn describe(&self) -> String {
        match self {
            Transport::Tcp => "tcp · a framed connection per session".to_string(),
            Transport::Http(http) => {
                format!("http · long poll {}", crate::fmt_duration(http.poll))
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Http(_) => "http",
        }
    }
}
