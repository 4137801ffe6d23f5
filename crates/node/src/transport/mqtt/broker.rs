//! The broker: the part of MQTT 3.1.1 the fleet uses, as `broker-1` runs it in the simulator.
//! [`Broker`] is a pure core (packets and time in, packets out, like the fleet's cores);
//! [`serve`] runs it over the shell's sockets.
//!
//! What it does, and where it follows mosquitto (which the conformance test runs it against):
//! - CONNECT first, once; a second one, or anything before it, closes the connection. A client
//!   id already connected is taken over: the old connection closes, its will is published when
//!   either side asked for a clean session, and a kept session's unacknowledged messages are
//!   sent again (DUP set, same packet ids) before the queued ones.
//! - Subscriptions are granted QoS 0 or 1 (2 is not supported); a subscription gets the
//!   retained messages it matches, with RETAIN set. Live subscribers get RETAIN clear.
//! - A QoS 1 publish is routed, then acknowledged. At most 20 messages per session wait for
//!   their PUBACK; the rest queue in order (1,000 at most, the newest dropped past that). An
//!   offline kept session queues QoS 1 only.
//! - A client that sends nothing for 1.5 times its keepalive is lost: its will is published and
//!   its connection closed. (mosquitto checks every few seconds on whole seconds, so its wills
//!   come up to about 7s later; this broker is exact.) DISCONNECT discards the will.
//! - Every subscriber gets its messages in the order the broker routed them, whatever their
//!   topics: one client's register, heartbeats and results arrive in the order it sent them.
//! - Nothing outlives the process: a restarted broker has no sessions and no retained messages
//!   (mosquitto with `persistence false`).

use crate::net::{TcpListener, TcpStream};
use fleet_core::timeline::ShellEvent;
use futures::{SinkExt, StreamExt};
use rumqttc::mqttbytes::v4::{
    Codec, ConnAck, ConnectReturnCode, LastWill, Packet, PubAck, Publish, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{has_wildcards, matches, valid_filter, valid_topic, QoS};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

/// A connection, numbered by the shell in the order they were accepted.
pub type ConnId = u64;

/// What the broker does next.
#[derive(Debug, PartialEq)]
pub enum Out {
    Send(ConnId, Packet),
    /// Close the connection (the broker has forgotten it).
    Close(ConnId),
    /// It lost `client` and published its will, for `cause` (see [`Cause`]), the client silent
    /// for `silent` by the broker's clock.
    WillPublished {
        client: String,
        cause: Cause,
        silent: Duration,
    },
}

/// Why the broker lost a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Its connection ended without a DISCONNECT.
    Closed,
    /// It sent nothing for 1.5 keepalives.
    Silent,
    /// A new connection took its client id over.
    TookOver,
    /// It broke the protocol.
    ProtocolError,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::Closed => "closed",
            Cause::Silent => "silent",
            Cause::TookOver => "took_over",
            Cause::ProtocolError => "protocol_error",
        }
    }
}

/// Unacknowledged QoS 1 messages a session may have at once (mosquitto's default).
pub const MAX_INFLIGHT: usize = 20;
/// Messages a session queues behind those (mosquitto's default).
pub const MAX_QUEUED: usize = 1000;
/// The largest packet either side takes.
pub const MAX_PACKET: usize = 256 << 10;

struct Conn {
    /// Set by CONNECT.
    client: Option<String>,
    keep_alive: Duration,
    last_in: Instant,
    will: Option<LastWill>,
}

#[derive(Default)]
struct Session {
    conn: Option<ConnId>,
    clean: bool,
    subscriptions: BTreeMap<String, QoS>,
    last_pkid: u16,
    /// Sent, waiting for their PUBACK, in the order sent.
    inflight: VecDeque<Publish>,
    queued: VecDeque<Publish>,
}

#[derive(Default)]
pub struct Broker {
    conns: BTreeMap<ConnId, Conn>,
    sessions: BTreeMap<String, Session>,
    retained: BTreeMap<String, Publish>,
    out: VecDeque<Out>,
    /// Who subscribed to each filter (with the QoS granted), topics without wildcards apart:
    /// a publish looks its topic up there and matches only the wildcard filters, so routing
    /// costs no walk over every client.
    exact: BTreeMap<String, BTreeMap<String, QoS>>,
    wild: BTreeMap<String, BTreeMap<String, QoS>>,
    /// The time of the input being handled.
    now: Option<Instant>,
    /// When to look for silent clients next: no later than the first can be lost. Deadlines
    /// only move later as packets come in, so an earlier check stays a valid lower bound, and
    /// a packet costs no timer.
    next_check: Option<Instant>,
}

impl Broker {
    pub fn handle_open(&mut self, now: Instant, conn: ConnId) {
        self.now = Some(now);
        let fresh = Conn {
            client: None,
            keep_alive: Duration::ZERO,
            last_in: now,
            will: None,
        };
        self.conns.insert(conn, fresh);
    }

    /// The connection ended without a DISCONNECT: its will goes out.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        self.now = Some(now);
        self.lose(conn, Some(Cause::Closed));
    }

    /// The next thing to do, in order.
    pub fn poll_out(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    /// When to look for silent clients: at the latest when the first could be lost.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_check
    }

    /// Loses every client silent for 1.5 keepalives, and aims at the next one that could be.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_check.is_none_or(|at| now < at) {
            return;
        }
        self.now = Some(now);
        let deadline = |conn: &Conn| {
            (!conn.keep_alive.is_zero()).then(|| conn.last_in + conn.keep_alive * 3 / 2)
        };
        let lost: Vec<ConnId> = (self.conns.iter())
            .filter(|(_, conn)| deadline(conn).is_some_and(|at| now >= at))
            .map(|(id, _)| *id)
            .collect();
        for conn in lost {
            self.lose(conn, Some(Cause::Silent));
        }
        self.next_check = self.conns.values().filter_map(deadline).min();
    }

    pub fn handle_packet(&mut self, now: Instant, conn: ConnId, packet: Packet) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        self.now = Some(now);
        state.last_in = now;
        let client = state.client.clone();
        match (packet, client) {
            (Packet::Connect(connect), None) => {
                let will = connect.last_will.clone();
                let keep_alive = Duration::from_secs(connect.keep_alive.into());
                self.connect(
                    conn,
                    connect.client_id,
                    connect.clean_session,
                    keep_alive,
                    will,
                );
            }
            (Packet::PingReq, Some(_)) => self.out.push_back(Out::Send(conn, Packet::PingResp)),
            (Packet::Disconnect, Some(_)) => self.lose(conn, None),
            (Packet::Publish(publish), Some(_)) => self.publish(conn, publish),
            (Packet::PubAck(ack), Some(client)) => {
                let session = self.sessions.get_mut(&client).expect("a connected session");
                session.inflight.retain(|sent| sent.pkid != ack.pkid);
                Self::fill(session, &mut self.out);
            }
            (Packet::Subscribe(subscribe), Some(client)) => {
                let filters = subscribe.filters.into_iter().map(|f| (f.path, f.qos));
                self.subscribe(conn, &client, subscribe.pkid, filters.collect());
            }
            (Packet::Unsubscribe(unsubscribe), Some(client)) => {
                let session = self.sessions.get_mut(&client).expect("a connected session");
                for topic in &unsubscribe.topics {
                    session.subscriptions.remove(topic);
                }
                for topic in &unsubscribe.topics {
                    self.index_remove(topic, &client);
                }
                let ack = Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid));
                self.out.push_back(Out::Send(conn, ack));
            }
            // Anything before CONNECT, a second CONNECT, QoS 2's packets, a broker's packets.
            _ => self.lose(conn, Some(Cause::ProtocolError)),
        }
    }

    fn connect(
        &mut self,
        conn: ConnId,
        client: String,
        clean: bool,
        keep_alive: Duration,
        will: Option<LastWill>,
    ) {
        if client.is_empty() && !clean {
            let refused = ConnAck::new(ConnectReturnCode::BadClientId, false);
            self.out
                .push_back(Out::Send(conn, Packet::ConnAck(refused)));
            return self.lose(conn, None);
        }
        let client = match client.is_empty() {
            true => format!("auto-{conn}"),
            false => client,
        };
        let old = self.sessions.get(&client).and_then(|session| session.conn);
        if let Some(old) = old {
            // Taken over: mosquitto publishes the old will unless both kept their session.
            let old_clean = self.sessions[&client].clean;
            self.lose(old, (old_clean || clean).then_some(Cause::TookOver));
        }
        if clean {
            self.forget(&client);
        }
        let present = self.sessions.contains_key(&client);
        let state = self.conns.get_mut(&conn).expect("an open connection");
        (state.client, state.keep_alive, state.will) = (Some(client.clone()), keep_alive, will);
        if !keep_alive.is_zero() {
            let at = state.last_in + keep_alive * 3 / 2;
            self.next_check = Some(self.next_check.map_or(at, |next| next.min(at)));
        }
        let session = self.sessions.entry(client).or_default();
        (session.conn, session.clean) = (Some(conn), clean);
        let accepted = ConnAck::new(ConnectReturnCode::Success, present);
        self.out
            .push_back(Out::Send(conn, Packet::ConnAck(accepted)));
        for sent in &session.inflight {
            let again = Publish {
                dup: true,
                ..sent.clone()
            };
            self.out.push_back(Out::Send(conn, Packet::Publish(again)));
        }
        Self::fill(session, &mut self.out);
    }

    fn publish(&mut self, conn: ConnId, publish: Publish) {
        if publish.qos == QoS::ExactlyOnce || !valid_topic(&publish.topic) {
            return self.lose(conn, Some(Cause::ProtocolError));
        }
        let pkid = publish.pkid;
        let qos = publish.qos;
        self.route(publish);
        if qos == QoS::AtLeastOnce {
            let ack = Packet::PubAck(PubAck::new(pkid));
            self.out.push_back(Out::Send(conn, ack));
        }
    }

    /// Every session subscribed to `publish`'s topic gets it once, at the highest QoS it
    /// subscribed with (no higher than published); a retained one is kept for later
    /// subscribers, or cleared by an empty payload.
    fn route(&mut self, publish: Publish) {
        if publish.retain {
            match publish.payload.is_empty() {
                true => self.retained.remove(&publish.topic),
                false => self.retained.insert(publish.topic.clone(), publish.clone()),
            };
        }
        // Each subscriber once, at the highest QoS among its matching filters, in name order.
        let mut granted: BTreeMap<&str, QoS> = BTreeMap::new();
        let exact = self.exact.get(&publish.topic).into_iter();
        let wild = (self.wild.iter()).filter(|(filter, _)| matches(&publish.topic, filter));
        for clients in exact.chain(wild.map(|(_, clients)| clients)) {
            for (client, qos) in clients {
                let best = granted.entry(client).or_insert(*qos);
                if (*qos as u8) > (*best as u8) {
                    *best = *qos;
                }
            }
        }
        for (client, qos) in granted {
            let Some(session) = self.sessions.get_mut(client) else {
                continue;
            };
            let forwarded = Publish {
                qos: least(publish.qos, qos),
                retain: false,
                dup: false,
                ..publish.clone()
            };
            Self::deliver(session, forwarded, &mut self.out);
        }
    }

    fn subscribe(&mut self, conn: ConnId, client: &str, pkid: u16, filters: Vec<(String, QoS)>) {
        let session = self.sessions.get_mut(client).expect("a connected session");
        let mut codes = Vec::new();
        let mut granted = Vec::new();
        for (filter, qos) in filters {
            if !valid_filter(&filter) {
                codes.push(SubscribeReasonCode::Failure);
                continue;
            }
            let qos = least(qos, QoS::AtLeastOnce);
            session.subscriptions.insert(filter.clone(), qos);
            let index = match has_wildcards(&filter) {
                true => &mut self.wild,
                false => &mut self.exact,
            };
            index
                .entry(filter.clone())
                .or_default()
                .insert(client.to_string(), qos);
            codes.push(SubscribeReasonCode::Success(qos));
            granted.push((filter, qos));
        }
        let ack = Packet::SubAck(SubAck::new(pkid, codes));
        self.out.push_back(Out::Send(conn, ack));
        for (filter, qos) in granted {
            for retained in self.retained.values() {
                if matches(&retained.topic, &filter) {
                    let copy = Publish {
                        qos: least(retained.qos, qos),
                        retain: true,
                        dup: false,
                        ..retained.clone()
                    };
                    Self::deliver(session, copy, &mut self.out);
                }
            }
        }
    }

    fn deliver(session: &mut Session, publish: Publish, out: &mut VecDeque<Out>) {
        match (publish.qos, session.conn) {
            (QoS::AtMostOnce, Some(conn)) => {
                out.push_back(Out::Send(conn, Packet::Publish(publish)))
            }
            (QoS::AtMostOnce, None) => {}
            _ if session.queued.len() < MAX_QUEUED => {
                session.queued.push_back(publish);
                Self::fill(session, out);
            }
            _ => {}
        }
    }

    /// Sends queued QoS 1 messages while the session is online and has room in flight.
    fn fill(session: &mut Session, out: &mut VecDeque<Out>) {
        let Some(conn) = session.conn else { return };
        while session.inflight.len() < MAX_INFLIGHT {
            let Some(mut publish) = session.queued.pop_front() else {
                return;
            };
            publish.pkid = Self::next_pkid(session);
            session.inflight.push_back(publish.clone());
            out.push_back(Out::Send(conn, Packet::Publish(publish)));
        }
    }

    /// The next packet id not in flight (never 0).
    fn next_pkid(session: &mut Session) -> u16 {
        loop {
            session.last_pkid = session.last_pkid.checked_add(1).unwrap_or(1);
            let id = session.last_pkid;
            if !session.inflight.iter().any(|sent| sent.pkid == id) {
                return id;
            }
        }
    }

    /// Ends `client`'s session and its subscriptions.
    fn forget(&mut self, client: &str) {
        if let Some(session) = self.sessions.remove(client) {
            for filter in session.subscriptions.keys() {
                self.index_remove(filter, client);
            }
        }
    }

    fn index_remove(&mut self, filter: &str, client: &str) {
        let index = match has_wildcards(filter) {
            true => &mut self.wild,
            false => &mut self.exact,
        };
        if let Some(clients) = index.get_mut(filter) {
            clients.remove(client);
            if clients.is_empty() {
                index.remove(filter);
            }
        }
    }

    /// Forgets `conn`, publishing its will if it was lost for a `cause` (not if it said
    /// goodbye); a clean session ends with it.
    fn lose(&mut self, conn: ConnId, cause: Option<Cause>) {
        let Some(state) = self.conns.remove(&conn) else {
            return;
        };
        self.out.push_back(Out::Close(conn));
        let Some(client) = state.client else { return };
        if let Some(session) = self.sessions.get_mut(&client) {
            session.conn = None;
            if session.clean {
                self.forget(&client);
            }
        }
        if let (Some(will), Some(cause)) = (state.will, cause) {
            let now = self.now.unwrap_or(state.last_in);
            self.out.push_back(Out::WillPublished {
                client: client.clone(),
                cause,
                silent: now.saturating_duration_since(state.last_in),
            });
            let mut publish = Publish::new(will.topic, will.qos, will.message);
            publish.retain = will.retain;
            self.route(publish);
        }
    }
}

fn least(a: QoS, b: QoS) -> QoS {
    match (a as u8) <= (b as u8) {
        true => a,
        false => b,
    }
}

/// What a connection's task tells the broker.
enum Event {
    Packet(ConnId, Packet),
    Closed(ConnId),
}

/// Serves MQTT on `listener` until the node stops.
pub async fn serve(listener: TcpListener) {
    let mut broker = Broker::default();
    let (events, mut received) = mpsc::unbounded_channel();
    let mut writers: BTreeMap<ConnId, mpsc::UnboundedSender<Packet>> = BTreeMap::new();
    let mut timer = crate::clock::Timer::default();
    let mut next_conn: ConnId = 0;
    loop {
        while let Some(out) = broker.poll_out() {
            match out {
                Out::Send(conn, packet) => {
                    if let Some(writer) = writers.get(&conn) {
                        let _ = writer.send(packet);
                    }
                }
                // The connection's task closes the socket once it has written what came first.
                Out::Close(conn) => drop(writers.remove(&conn)),
                Out::WillPublished {
                    client,
                    cause,
                    silent,
                } => crate::report::emit(ShellEvent::WillPublished {
                    client,
                    cause: cause.name().to_string(),
                    silent_ms: silent.as_millis() as u64,
                }),
            }
        }
        timer.set(broker.poll_timeout());
        crate::select_in_order! {
            Some(event) = received.recv() => match event {
                Event::Packet(conn, packet) => broker.handle_packet(crate::clock::now(), conn, packet),
                Event::Closed(conn) => {
                    writers.remove(&conn);
                    broker.handle_closed(crate::clock::now(), conn);
                }
            },
            _ = timer.expired() => broker.handle_timeout(crate::clock::now()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    next_conn += 1;
                    let (writer, packets) = mpsc::unbounded_channel();
                    writers.insert(next_conn, writer);
                    broker.handle_open(crate::clock::now(), next_conn);
                    crate::task::spawn(connection(next_conn, stream, packets, events.clone()));
                }
                Err(error) => {
                    tracing::warn!("accepting a connection failed, trying again: {error}");
                    crate::clock::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// One client's socket: packets in to the broker, the broker's out, until either side ends.
async fn connection(
    conn: ConnId,
    stream: TcpStream,
    mut packets: mpsc::UnboundedReceiver<Packet>,
    events: mpsc::UnboundedSender<Event>,
) {
    let _ = stream.set_nodelay(true);
    let codec = Codec {
        max_incoming_size: MAX_PACKET,
        max_outgoing_size: MAX_PACKET,
    };
    let mut framed = Framed::new(stream, codec);
    loop {
        crate::select_in_order! {
            packet = packets.recv() => match packet {
                Some(packet) => {
                    if framed.send(packet).await.is_err() {
                        break;
                    }
                }
                // The broker closed it.
                None => return,
            },
            packet = framed.next() => match packet {
                Some(Ok(packet)) => {
                    let _ = events.send(Event::Packet(conn, packet));
                }
                // A packet that does not decode closes only its own connection.
                Some(Err(_)) | None => break,
            },
        }
    }
    let _ = events.send(Event::Closed(conn));
}
