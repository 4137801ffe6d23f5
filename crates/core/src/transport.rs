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
    /// The gRPC design's `AgentService`: unary Register and Heartbeat, and a bidirectional
    /// stream for the rest, over one HTTP/2 connection per session.
    Grpc(GrpcTransport),
    /// The MQTT design's topics on a broker: agents and masters are its clients, and every
    /// message is a publish, addressed to one master.
    Mqtt(MqttTransport),
}

#[derive(Clone, Debug, PartialEq)]
pub struct MqttTransport {
    /// The MQTT keepalive every client asks of the broker: a client that sends nothing for
    /// 1.5 times this is lost, and the broker publishes its will. Whole seconds on the wire.
    pub keepalive: Duration,
    /// 0 (at most once) or 1 (at least once, the MQTT design's), for every publish.
    pub qos: u8,
}

impl MqttTransport {
    /// The defaults beside a heartbeat `interval` other than the MQTT design's: a keepalive of
    /// two intervals (whole seconds, at least 1s), so the broker's will for a silent client
    /// comes after three intervals, when missed heartbeats would say the same, and a client
    /// cut from the broker finds out as soon.
    pub fn beside(interval: Duration) -> MqttTransport {
        let keepalive = (interval * 2).as_secs_f64().ceil().max(1.0) as u64;
        MqttTransport {
            keepalive: Duration::from_secs(keepalive),
            ..MqttTransport::default()
        }
    }
}

impl Default for MqttTransport {
    /// The MQTT design: QoS 1, and a keepalive of its heartbeat's 30s.
    fn default() -> Self {
        MqttTransport {
            keepalive: Duration::from_secs(30),
            qos: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GrpcTransport {
    /// Messages compressed with gzip, both ways.
    pub gzip: bool,
    /// How often an idle connection is pinged; it is dead when a ping goes unanswered for
    /// [`GrpcTransport::KEEPALIVE_TIMEOUT`]. The gRPC design: 10s (the agent's side).
    pub keepalive: Duration,
}

impl GrpcTransport {
    /// How long a keepalive ping may go unanswered (the gRPC design's agent side: 30s... its
    /// master's: 20s).
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
}

impl Default for GrpcTransport {
    fn default() -> Self {
        GrpcTransport {
            gzip: true,
            keepalive: Duration::from_secs(10),
        }
    }
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
    pub const NAMES: [&'static str; 4] = ["tcp", "http", "grpc", "mqtt"];

    /// The transport named `name`, with its defaults.
    pub fn named(name: &str) -> Option<Transport> {
        match name {
            "tcp" => Some(Transport::Tcp),
            "http" => Some(Transport::Http(HttpTransport::default())),
            "grpc" => Some(Transport::Grpc(GrpcTransport::default())),
            "mqtt" => Some(Transport::Mqtt(MqttTransport::default())),
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
            Transport::Grpc(grpc) => format!(
                "grpc · gzip {} · keepalive {}",
                if grpc.gzip { "on" } else { "off" },
                crate::fmt_duration(grpc.keepalive)
            ),
            Transport::Mqtt(mqtt) => format!(
                "mqtt · through broker-1 · QoS {} · keepalive {}",
                mqtt.qos,
                crate::fmt_duration(mqtt.keepalive)
            ),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Http(_) => "http",
            Transport::Grpc(_) => "grpc",
            Transport::Mqtt(_) => "mqtt",
        }
    }
}
