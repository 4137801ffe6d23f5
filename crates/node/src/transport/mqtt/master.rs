//! The master's side: one broker connection for all its agents. It hears every agent's
//! topics, opens a session for each new one addressed to it, and publishes what each session
//! sends on that agent's control topic. A lost broker ends every session; the master connects
//! again every second until the broker is back.

use super::client::{Client, Options};
use super::{control_topic, master_status_topic, qos, Down, Status, Up, MASTER_FILTERS};
use crate::codec::CodecError;
use crate::transport::{AbortOnDrop, BoxChannel, Channel};
use fleet_core::transport::MqttTransport;
use fleet_core::wire::Message;
use futures::{Sink, Stream};
use rumqttc::mqttbytes::v4::Publish;
use rumqttc::mqttbytes::QoS;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a master waits before it tries a lost broker again.
const RETRY: Duration = Duration::from_secs(1);

/// A master's agents, through the broker.
pub struct Acceptor {
    opened: mpsc::UnboundedReceiver<BoxChannel>,
    _task: AbortOnDrop<()>,
}

impl Acceptor {
    /// Serves the agents that address `name` through the broker at `broker`.
    pub fn new(broker: SocketAddr, name: &str, mqtt: &MqttTransport) -> Acceptor {
        let (opened, sessions_opened) = mpsc::unbounded_channel();
        let (name, mqtt) = (name.to_string(), mqtt.clone());
        let task = crate::task::spawn(async move {
            let (sent, mut to_send) = mpsc::unbounded_channel();
            let process = crate::clock::unix_ms();
            for connection in 1.. {
                let mut hub = Hub {
                    name: name.clone(),
                    qos: qos(&mqtt),
                    sessions: BTreeMap::new(),
                    opened: opened.clone(),
                    sent: sent.clone(),
                };
                let session = format!("{process}.{connection}");
                match hub.attach(broker, &mqtt, &session, &mut to_send).await {
                    Ok(()) => return,
                    Err(error) => tracing::warn!("{name}'s broker connection: {error}"),
                }
                drop(hub);
                crate::clock::sleep(RETRY).await;
            }
        });
        Acceptor {
            opened: sessions_opened,
            _task: AbortOnDrop(task),
        }
    }

    /// The next agent's session.
    pub async fn accept(&mut self) -> io::Result<BoxChannel> {
        (self.opened.recv().await).ok_or_else(|| io::Error::other("the broker link stopped"))
    }
}

/// What a session sends: a message, or (`None`) its end.
type Sent = (String, String, Option<Message>);

/// A session's messages; `None`: the broker published the agent's will.
type Received = Option<Message>;

/// An agent's latest session: open (its messages go to the sender), or ended.
struct Known {
    session: String,
    open: Option<mpsc::UnboundedSender<Received>>,
}

struct Hub {
    name: String,
    qos: QoS,
    sessions: BTreeMap<String, Known>,
    opened: mpsc::UnboundedSender<BoxChannel>,
    sent: mpsc::UnboundedSender<Sent>,
}

impl Hub {
    /// Connects as `process` and serves until the broker is lost (an error) or the master
    /// stops (`Ok`).
    async fn attach(
        &mut self,
        broker: SocketAddr,
        mqtt: &MqttTransport,
        process: &str,
        to_send: &mut mpsc::UnboundedReceiver<Sent>,
    ) -> io::Result<()> {
        let status = master_status_topic(&self.name);
        let options = Options {
            id: self.name.clone(),
            keep_alive: mqtt.keepalive,
            will: Some(Status::will(status.clone(), process, self.qos)),
        };
        let mut client = Client::connect(broker, options).await?;
        let filters = MASTER_FILTERS.map(|filter| (filter.to_string(), self.qos));
        client.subscribe(&filters).await?;
        let online = Status {
            online: true,
            session: process.to_string(),
            lost: false,
        };
        client
            .publish(&status, online.payload(), self.qos, true)
            .await?;
        loop {
            crate::select_in_order! {
                sent = to_send.recv() => {
                    let Some((agent, session, message)) = sent else { return Ok(()) };
                    let ended = message.is_none();
                    if ended && !self.end(&agent, &session, false) {
                        continue;
                    }
                    let down = Down { from: self.name.clone(), session, message };
                    let payload = serde_json::to_vec(&down).map_err(io::Error::other)?;
                    client.publish(&control_topic(&agent), payload, self.qos, false).await?;
                },
                publish = client.next() => self.route(publish?),
            }
        }
    }

    /// Ends `agent`'s `session` if it is the open one, telling it the agent is `lost`; whether
    /// it was.
    fn end(&mut self, agent: &str, session: &str, lost: bool) -> bool {
        match self.sessions.get_mut(agent) {
            Some(known) if known.session == session && known.open.is_some() => {
                if let (Some(open), true) = (known.open.take(), lost) {
                    let _ = open.send(None);
                }
                true
            }
            _ => false,
        }
    }

    /// Hands an agent's publish to its session: a new session opens with the first message
    /// addressed to this master; an offline status ends the session it names. What is not for
    /// this master, or does not parse, is dropped.
    fn route(&mut self, publish: Publish) {
        let mut levels = publish.topic.split('/');
        let (Some("fleet"), Some(agent), Some(kind), None) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return;
        };
        if kind == "status" {
            if let Ok(status) = serde_json::from_slice::<Status>(&publish.payload) {
                if !status.online {
                    self.end(agent, &status.session, status.lost);
                }
            }
            return;
        }
        let Ok(up) = serde_json::from_slice::<Up>(&publish.payload) else {
            return;
        };
        if up.to != self.name {
            return;
        }
        let known = self.sessions.get(agent);
        if known.is_none_or(|known| known.session != up.session) {
            let (sender, received) = mpsc::unbounded_channel();
            let channel = MasterChannel {
                agent: agent.to_string(),
                session: up.session.clone(),
                received,
                sent: self.sent.clone(),
                lost: false,
            };
            // A new session of the agent ends its last one, as a new connection would.
            let known = Known {
                session: up.session.clone(),
                open: Some(sender),
            };
            self.sessions.insert(agent.to_string(), known);
            let _ = self.opened.send(Box::new(channel));
        }
        if let Some(open) = &self.sessions[agent].open {
            let _ = open.send(Some(up.message));
        }
    }
}

/// One agent's session, as the master's session loop sees it.
struct MasterChannel {
    agent: String,
    session: String,
    received: mpsc::UnboundedReceiver<Received>,
    sent: mpsc::UnboundedSender<Sent>,
    lost: bool,
}

impl Drop for MasterChannel {
    fn drop(&mut self) {
        let _ = (self.sent).send((self.agent.clone(), self.session.clone(), None));
    }
}

impl Channel for MasterChannel {
    fn lost(&self) -> bool {
        self.lost
    }
}

impl Stream for MasterChannel {
    type Item = Result<Message, CodecError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.lost {
            return Poll::Ready(None);
        }
        match self.received.poll_recv(cx) {
            Poll::Ready(Some(Some(message))) => Poll::Ready(Some(Ok(message))),
            Poll::Ready(Some(None)) => {
                self.lost = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Sink<Message> for MasterChannel {
    type Error = CodecError;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), CodecError> {
        let sent = (self.agent.clone(), self.session.clone(), Some(message));
        self.sent.send(sent).map_err(|_| {
            let why = "the broker link stopped";
            CodecError::Io(io::Error::new(io::ErrorKind::BrokenPipe, why))
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Poll::Ready(Ok(()))
    }
}
