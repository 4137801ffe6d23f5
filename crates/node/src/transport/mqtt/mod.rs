//! The MQTT design's topics as a transport: agents and masters are clients of one broker, and
//! each `wire::Message` is a publish, its JSON in an envelope that says which master it is for
//! and which of the agent's sessions it belongs to.
//!
//! | topic | publisher | QoS · retained | carries |
//! |---|---|---|---|
//! | `fleet/{agent}/register` | agent | qos · no | `Register`, `Unregister` |
//! | `fleet/{agent}/heartbeat` | agent | qos · no | `Heartbeat` |
//! | `fleet/{agent}/result` | agent | qos · no | `CommandResult`, `ConfigPull`, `ConfigAck` |
//! | `fleet/{agent}/status` | agent, and its will | qos · retained | `online` / `offline`, and the session |
//! | `fleet/{agent}/control` | masters | qos · no | everything a master sends, and a session's end |
//! | `fleet/master/{master}/status` | master, and its will | qos · retained | `online` / `offline` |
//!
//! A session is what one TCP connection is to framed TCP. The agent opens one on its own
//! broker connection, addressed to one master (`to`), once that master's retained status says
//! it is online; every master hears every agent, and only the one addressed acts, so a follower
//! redirects as it would over TCP and the leader registers. A session ends when:
//! - the agent's status says it went offline: it left, or the broker lost it (its will, at once
//!   for a closed socket, after 1.5 keepalives for a silent one);
//! - the master drops it: an `end` on the control topic, which the agent sees as a closed
//!   connection;
//! - the master's status changes (it left, or came back as a new process): the agent sees a
//!   reset connection;
//! - either side loses the broker.

pub mod broker;
pub mod client;

mod agent;
mod master;

pub use agent::connect;
pub use master::Acceptor;

use super::http::Route;
use fleet_core::transport::MqttTransport;
use fleet_core::wire::Message;
use rumqttc::mqttbytes::v4::LastWill;
use rumqttc::mqttbytes::QoS;
use serde::{Deserialize, Serialize};

/// The port brokers listen on.
pub const PORT: u16 = 1883;

pub fn status_topic(agent: &str) -> String {
    format!("fleet/{agent}/status")
}

pub fn control_topic(agent: &str) -> String {
    format!("fleet/{agent}/control")
}

pub fn master_status_topic(master: &str) -> String {
    format!("fleet/master/{master}/status")
}

/// The topic that carries `message` from an agent (by the HTTP request that would carry it);
/// `None` for what only a master sends.
pub fn agent_topic(agent: &str, message: &Message) -> Option<String> {
    let kind = match Route::of(message)? {
        Route::Register | Route::Unregister => "register",
        Route::Heartbeat => "heartbeat",
        Route::Result | Route::Config => "result",
    };
    Some(format!("fleet/{agent}/{kind}"))
}

/// The topics a master subscribes to: every agent's messages and status.
pub const MASTER_FILTERS: [&str; 4] = [
    "fleet/+/register",
    "fleet/+/heartbeat",
    "fleet/+/result",
    "fleet/+/status",
];

/// An agent's message to a master.
#[derive(Serialize, Deserialize)]
pub struct Up {
    pub to: String,
    pub session: String,
    pub message: Message,
}

/// A master's message to an agent, or (with no message) the end of the session.
#[derive(Serialize, Deserialize)]
pub struct Down {
    pub from: String,
    pub session: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
}

/// What a client's status topic says: whether it is connected, and which of its sessions (an
/// agent's) or processes (a master's) that is.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
pub struct Status {
    pub online: bool,
    pub session: String,
    /// Published by the broker, as the client's will: it lost the client.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
}

impl Status {
    pub fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a status serializes")
    }

    /// The will that says this client went offline.
    pub fn will(topic: String, session: &str, qos: QoS) -> LastWill {
        let offline = Status {
            online: false,
            session: session.to_string(),
            lost: true,
        };
        LastWill::new(topic, offline.payload(), qos, true)
    }
}

pub fn qos(mqtt: &MqttTransport) -> QoS {
    match mqtt.qos {
        0 => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}
