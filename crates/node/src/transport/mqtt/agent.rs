//! The agent's side: a [`Channel`](crate::transport::Channel) that is one broker connection,
//! addressed to one master. A task owns the connection; the channel hands it messages to
//! publish and takes what it received.

use super::client::{Client, Options};
use super::{agent_topic, control_topic, master_status_topic, qos, status_topic, Down, Status, Up};
use crate::codec::CodecError;
use crate::transport::{BoxChannel, Channel, Ends};
use fleet_core::transport::MqttTransport;
use fleet_core::wire::Message;
use futures::{Sink, Stream};
use rumqttc::mqttbytes::QoS;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a leaving agent waits for the broker to take its last words.
const FINISH: Duration = Duration::from_secs(1);

/// An agent's session with `ends.master`, through the broker at `broker`: connected, subscribed,
/// and that master seen online.
pub async fn connect(
    broker: SocketAddr,
    mqtt: &MqttTransport,
    ends: &Ends<'_>,
) -> io::Result<BoxChannel> {
    let qos = qos(mqtt);
    let (agent, master) = (ends.agent.to_string(), ends.master.to_string());
    let session = ends.session.to_string();
    let options = Options {
        id: agent.clone(),
        keep_alive: mqtt.keepalive,
        will: Some(Status::will(status_topic(&agent), &session, qos)),
    };
    let mut client = Client::connect(broker, options).await?;
    let filters = [
        (control_topic(&agent), qos),
        (master_status_topic(&master), qos),
    ];
    client.subscribe(&filters).await?;
    // The master's retained status came before the PINGRESP, if it has one.
    client.round_trip().await?;
    let master_status = master_status_topic(&master);
    let seen = (client.take_received().into_iter())
        .filter(|publish| publish.topic == master_status)
        .filter_map(|publish| serde_json::from_slice::<Status>(&publish.payload).ok())
        .last();
    let process = match seen {
        Some(status) if status.online => status.session,
        _ => {
            let why = format!("{master} is not connected to the broker");
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, why));
        }
    };
    let online = Status {
        online: true,
        session: session.clone(),
        lost: false,
    };
    client
        .publish(&status_topic(&agent), online.payload(), qos, true)
        .await?;
    let (up, up_messages) = mpsc::unbounded_channel();
    let (down_messages, down) = mpsc::unbounded_channel();
    let link = Link {
        client,
        qos,
        agent,
        master,
        session,
        process,
    };
    let task = crate::task::spawn(link.run(up_messages, down_messages));
    Ok(Box::new(MqttChannel {
        up,
        down,
        ended: false,
        leaving: false,
        task: Some(task),
    }))
}

enum Request {
    Send(Message),
    /// Say offline and disconnect, then answer.
    Finish(oneshot::Sender<()>),
}

struct Link {
    client: Client,
    qos: QoS,
    agent: String,
    master: String,
    session: String,
    /// The master's process, as its status named it.
    process: String,
}

type Received = Result<Message, io::Error>;

impl Link {
    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        received: mpsc::UnboundedSender<Received>,
    ) {
        let ended = loop {
            crate::select_in_order! {
                request = requests.recv() => match request {
                    Some(Request::Send(message)) => {
                        if let Err(error) = self.send(message).await {
                            break error;
                        }
                    }
                    Some(Request::Finish(done)) => {
                        let _ = crate::clock::timeout(FINISH, self.leave()).await;
                        let _ = done.send(());
                        return;
                    }
                    // Dropped without a word: the socket closes, and the broker sends the will.
                    None => return,
                },
                publish = self.client.next() => match publish {
                    Ok(publish) => match self.open(&publish.topic, &publish.payload) {
                        Ok(Some(message)) => {
                            let _ = received.send(Ok(message));
                        }
                        Ok(None) => {}
                        Err(error) => break error,
                    },
                    Err(error) => break error,
                },
            }
        };
        let _ = received.send(Err(ended));
    }

    async fn send(&mut self, message: Message) -> io::Result<()> {
        let Some(topic) = agent_topic(&self.agent, &message) else {
            let why = format!("an agent does not send {message:?}");
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        };
        let up = Up {
            to: self.master.clone(),
            session: self.session.clone(),
            message,
        };
        let payload = serde_json::to_vec(&up).map_err(io::Error::other)?;
        self.client.publish(&topic, payload, self.qos, false).await
    }

    /// What a publish to us says: a message of this session, nothing for us, or the session's
    /// end (the master ended it: `closed`; the master is gone: `reset`).
    fn open(&self, topic: &str, payload: &[u8]) -> io::Result<Option<Message>> {
        if topic == master_status_topic(&self.master) {
            let status: Status = serde_json::from_slice(payload)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
            if status.online && status.session == self.process {
                return Ok(None);
            }
            let why = format!("{} left the broker", self.master);
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, why));
        }
        let down: Down = serde_json::from_slice(payload)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        if down.from != self.master || down.session != self.session {
            return Ok(None);
        }
        match down.message {
            Some(message) => Ok(Some(message)),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the master ended the session",
            )),
        }
    }

    /// Says offline, waits for the broker to have everything, and disconnects (no will).
    async fn leave(&mut self) {
        let offline = Status {
            online: false,
            session: self.session.clone(),
            lost: false,
        };
        let status = status_topic(&self.agent);
        if (self
            .client
            .publish(&status, offline.payload(), self.qos, true)
            .await)
            .is_ok()
            && self.client.settle().await.is_ok()
        {
            let _ = self.client.disconnect().await;
        }
    }
}

struct MqttChannel {
    up: mpsc::UnboundedSender<Request>,
    down: mpsc::UnboundedReceiver<Received>,
    ended: bool,
    /// The agent unregistered: its last words must reach the broker before it goes on.
    leaving: bool,
    /// The connection's task, aborted with the channel unless it was left to finish.
    task: Option<JoinHandle<()>>,
}

impl Drop for MqttChannel {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Channel for MqttChannel {
    /// Says offline and disconnects cleanly, so the broker sends no will. A leaving agent
    /// waits for that (briefly); one that goes on to another session leaves the connection to
    /// finish on its own, and dials at once.
    fn finish(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let (done, finished) = oneshot::channel();
            if self.up.send(Request::Finish(done)).is_err() {
                return;
            }
            match self.leaving {
                true => {
                    let _ = finished.await;
                }
                // Dropping the handle lets the task run to its end.
                false => drop(self.task.take()),
            }
        })
    }
}

impl Stream for MqttChannel {
    type Item = Result<Message, CodecError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.down.poll_recv(cx) {
            Poll::Ready(Some(Ok(message))) => Poll::Ready(Some(Ok(message))),
            Poll::Ready(Some(Err(error))) => {
                self.ended = true;
                Poll::Ready(Some(Err(CodecError::Io(error))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Sink<Message> for MqttChannel {
    type Error = CodecError;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), CodecError> {
        self.leaving |= matches!(message, Message::Unregister(_));
        (self.up.send(Request::Send(message))).map_err(|_| {
            let why = "the broker connection ended";
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
