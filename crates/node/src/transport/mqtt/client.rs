//! An MQTT 3.1.1 client over the shell's sockets, the one agents and masters use in every
//! build: connect with a will and a keepalive, subscribe, publish at QoS 0 or 1, and receive.
//! It keeps no session across connections (clean sessions) and never reconnects: a lost
//! connection is an error, and the caller's policy decides what comes next.

use super::broker::MAX_PACKET;
use crate::clock::Timer;
use crate::net::TcpStream;
use futures::{SinkExt, StreamExt};
use rumqttc::mqttbytes::v4::{
    Codec, Connect, ConnectReturnCode, LastWill, Packet, PubAck, Publish, Subscribe,
    SubscribeFilter,
};
use rumqttc::mqttbytes::QoS;
use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::codec::Framed;

/// How long a broker may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Options {
    pub id: String,
    /// Whole seconds on the wire; zero: none.
    pub keep_alive: Duration,
    pub will: Option<LastWill>,
}

pub struct Client {
    framed: Framed<TcpStream, Codec>,
    keep_alive: Duration,
    /// Aimed at a keepalive after a packet sent: a PINGREQ goes out when it expires with
    /// nothing sent since, and the broker is lost when it expires again before the PINGRESP.
    /// A packet sent only moves `last_sent`, not the timer: the timer catches up when it fires.
    ping: Timer,
    last_sent: std::time::Instant,
    pinged: bool,
    last_pkid: u16,
    /// Our QoS 1 publishes the broker has not acknowledged yet.
    unacked: BTreeSet<u16>,
    /// Publishes received while waiting for something else.
    received: VecDeque<Publish>,
    /// A SUBACK or PINGRESP a caller waits for.
    acked: VecDeque<Packet>,
}

fn codec_error(error: rumqttc::mqttbytes::Error) -> io::Error {
    match error {
        rumqttc::mqttbytes::Error::Io(error) => error,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the broker closed the connection",
    )
}

impl Client {
    /// Connects to the broker at `address` with a clean session.
    pub async fn connect(address: SocketAddr, options: Options) -> io::Result<Client> {
        let stream = TcpStream::connect(address).await?;
        let _ = stream.set_nodelay(true);
        let codec = Codec {
            max_incoming_size: MAX_PACKET,
            max_outgoing_size: MAX_PACKET,
        };
        let mut client = Client {
            framed: Framed::new(stream, codec),
            keep_alive: options.keep_alive,
            ping: Timer::default(),
            last_sent: crate::clock::now(),
            pinged: false,
            last_pkid: 0,
            unacked: BTreeSet::new(),
            received: VecDeque::new(),
            acked: VecDeque::new(),
        };
        let mut connect = Connect::new(options.id);
        connect.keep_alive = options.keep_alive.as_secs().min(u16::MAX.into()) as u16;
        connect.clean_session = true;
        connect.last_will = options.will;
        client.send(Packet::Connect(connect)).await?;
        if !client.keep_alive.is_zero() {
            client.ping.set(Some(client.last_sent + client.keep_alive));
        }
        let answer = crate::clock::timeout(CONNECT_TIMEOUT, client.framed.next()).await;
        match answer {
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the broker did not accept the connection in time",
            )),
            Ok(Some(Ok(Packet::ConnAck(ack)))) if ack.code == ConnectReturnCode::Success => {
                Ok(client)
            }
            Ok(Some(Ok(Packet::ConnAck(ack)))) => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("the broker refused the connection: {:?}", ack.code),
            )),
            Ok(Some(Ok(other))) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the broker answered CONNECT with {other:?}"),
            )),
            Ok(Some(Err(error))) => Err(codec_error(error)),
            Ok(None) => Err(closed()),
        }
    }

    async fn send(&mut self, packet: Packet) -> io::Result<()> {
        self.framed.send(packet).await.map_err(codec_error)?;
        self.last_sent = crate::clock::now();
        Ok(())
    }

    /// Subscribes to `filters` and waits for the broker's SUBACK.
    pub async fn subscribe(&mut self, filters: &[(String, QoS)]) -> io::Result<()> {
        let filters = (filters.iter())
            .map(|(path, qos)| SubscribeFilter::new(path.clone(), *qos))
            .collect();
        let pkid = self.next_pkid();
        self.send(Packet::Subscribe(Subscribe { pkid, filters }))
            .await?;
        match self.acknowledged().await? {
            Packet::SubAck(ack) if ack.pkid == pkid => Ok(()),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the broker answered SUBSCRIBE with {other:?}"),
            )),
        }
    }

    /// Sends a PINGREQ and waits for its PINGRESP: everything the broker sent before it (the
    /// retained messages of a subscription, say) is then in [`Client::take_received`].
    pub async fn round_trip(&mut self) -> io::Result<()> {
        self.send(Packet::PingReq).await?;
        self.pinged = true;
        while self.pinged {
            self.read().await?;
        }
        Ok(())
    }

    /// Publishes `payload` on `topic`; a QoS 1 publish is acknowledged later (see
    /// [`Client::settle`]).
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    ) -> io::Result<()> {
        let mut publish = Publish::new(topic, qos, payload);
        publish.retain = retain;
        if qos != QoS::AtMostOnce {
            publish.pkid = self.next_pkid();
            self.unacked.insert(publish.pkid);
        }
        self.send(Packet::Publish(publish)).await
    }

    /// Waits until the broker acknowledged every QoS 1 publish.
    pub async fn settle(&mut self) -> io::Result<()> {
        while !self.unacked.is_empty() {
            self.read().await?;
        }
        Ok(())
    }

    /// Ends the connection cleanly: the broker discards the will.
    pub async fn disconnect(&mut self) -> io::Result<()> {
        self.send(Packet::Disconnect).await
    }

    /// What was received while waiting for something else.
    pub fn take_received(&mut self) -> Vec<Publish> {
        self.received.drain(..).collect()
    }

    /// The next message published to us. Cancel-safe: a packet half read stays in the socket's
    /// buffer.
    pub async fn next(&mut self) -> io::Result<Publish> {
        loop {
            if let Some(publish) = self.received.pop_front() {
                return Ok(publish);
            }
            self.read().await?;
        }
    }

    async fn acknowledged(&mut self) -> io::Result<Packet> {
        loop {
            if let Some(packet) = self.acked.pop_front() {
                return Ok(packet);
            }
            self.read().await?;
        }
    }

    /// Reads one packet, or keeps the connection alive.
    async fn read(&mut self) -> io::Result<()> {
        crate::select_in_order! {
            packet = self.framed.next() => match packet {
                Some(Ok(packet)) => self.handle(packet).await,
                Some(Err(error)) => Err(codec_error(error)),
                None => Err(closed()),
            },
            _ = self.ping.expired() => {
                let due = self.last_sent + self.keep_alive;
                if !self.pinged && crate::clock::now() < due {
                    self.ping.set(Some(due));
                    return Ok(());
                }
                if self.pinged {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "the broker stopped answering",
                    ));
                }
                self.send(Packet::PingReq).await?;
                self.pinged = true;
                self.ping.set(Some(self.last_sent + self.keep_alive));
                Ok(())
            },
        }
    }

    async fn handle(&mut self, packet: Packet) -> io::Result<()> {
        match packet {
            Packet::Publish(publish) => {
                let (qos, pkid) = (publish.qos, publish.pkid);
                // Kept before the ack goes out: a caller that stops waiting loses nothing.
                self.received.push_back(publish);
                if qos == QoS::AtLeastOnce {
                    self.send(Packet::PubAck(PubAck::new(pkid))).await?;
                }
            }
            Packet::PubAck(ack) => {
                self.unacked.remove(&ack.pkid);
            }
            Packet::PingResp => self.pinged = false,
            Packet::SubAck(_) | Packet::UnsubAck(_) => self.acked.push_back(packet),
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a client does not take {other:?}"),
                ))
            }
        }
        Ok(())
    }

    fn next_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.checked_add(1).unwrap_or(1);
            if !self.unacked.contains(&self.last_pkid) {
                return self.last_pkid;
            }
        }
    }
}
