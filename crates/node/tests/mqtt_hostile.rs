//! Hostile packets to the MQTT broker close only their own connection.
//!
//! - 100,000 mangled inputs (valid packets with bytes flipped, cut, inserted, or plain garbage),
//!   each on a connection of its own, decoded as the broker's socket does and fed to the broker
//!   core beside two well-behaved clients: no panic, neither good client is ever closed, and the
//!   subscriber keeps receiving what the publisher sends.
//! - 2,000 of them over real loopback sockets to the served broker, then the good clients
//!   still talk through it.
//!
//! Seeded: a failure names its input.

use bytes::BytesMut;
use fleet_node::transport::mqtt::broker::{Broker, ConnId, Out, MAX_PACKET};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rumqttc::mqttbytes::v4::{Connect, LastWill, Packet, PubAck, Publish, Subscribe, Unsubscribe};
use rumqttc::mqttbytes::QoS;
use std::time::{Duration, Instant};

const SUBSCRIBER: ConnId = 1;
const PUBLISHER: ConnId = 2;

fn bytes(packet: Packet) -> Vec<u8> {
    let mut buffer = BytesMut::new();
    packet.write(&mut buffer, MAX_PACKET).unwrap();
    buffer.to_vec()
}

/// Valid packets to mangle.
fn corpus() -> Vec<Vec<u8>> {
    let mut connect = Connect::new("agent-7");
    connect.keep_alive = 30;
    connect.last_will = Some(LastWill::new(
        "fleet/agent-7/status",
        "x",
        QoS::AtLeastOnce,
        true,
    ));
    let mut publish = Publish::new("fleet/agent-7/heartbeat", QoS::AtLeastOnce, "{\"seq\":1}");
    publish.pkid = 3;
    let mut retained = Publish::new("fleet/agent-7/status", QoS::AtMostOnce, "on");
    retained.retain = true;
    let mut subscribe = Subscribe::new("fleet/+/control", QoS::AtLeastOnce);
    subscribe.pkid = 4;
    let mut unsubscribe = Unsubscribe::new("fleet/+/control");
    unsubscribe.pkid = 5;
    [
        Packet::Connect(connect),
        Packet::Publish(publish),
        Packet::Publish(retained),
        Packet::Subscribe(subscribe),
        Packet::Unsubscribe(unsubscribe),
        Packet::PubAck(PubAck::new(3)),
        Packet::PingReq,
        Packet::Disconnect,
    ]
    .into_iter()
    .map(bytes)
    .collect()
}

/// One hostile input: a CONNECT or not, then mangled packets.
fn mangle(rng: &mut ChaCha8Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut input = match rng.gen_bool(0.6) {
        true => corpus[0].clone(),
        false => Vec::new(),
    };
    for _ in 0..rng.gen_range(1..4) {
        let mut packet = corpus[rng.gen_range(0..corpus.len())].clone();
        match rng.gen_range(0..5) {
            0 => {
                let at = rng.gen_range(0..packet.len());
                packet[at] = rng.gen();
            }
            1 => packet.truncate(rng.gen_range(0..packet.len())),
            2 => {
                let at = rng.gen_range(0..=packet.len());
                packet.insert(at, rng.gen());
            }
            3 => packet = (0..rng.gen_range(1..40)).map(|_| rng.gen()).collect(),
            _ => {}
        }
        input.extend(packet);
    }
    input
}

/// The good clients: a subscriber to `good/#` and a publisher.
fn good_clients(broker: &mut Broker, now: Instant) {
    for (conn, id) in [
        (SUBSCRIBER, "good-subscriber-0001"),
        (PUBLISHER, "good-publisher-0001"),
    ] {
        broker.handle_open(now, conn);
        broker.handle_packet(now, conn, Packet::Connect(Connect::new(id)));
    }
    let mut subscribe = Subscribe::new("good/#", QoS::AtLeastOnce);
    subscribe.pkid = 1;
    broker.handle_packet(now, SUBSCRIBER, Packet::Subscribe(subscribe));
}

/// Feeds `input` to the broker as connection `conn`'s bytes, as its socket task would: each
/// packet decoded in turn, a decode error ending the connection.
fn feed(broker: &mut Broker, now: Instant, conn: ConnId, input: &[u8]) {
    broker.handle_open(now, conn);
    let mut buffer = BytesMut::from(input);
    loop {
        match Packet::read(&mut buffer, MAX_PACKET) {
            Ok(packet) => broker.handle_packet(now, conn, packet),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => break,
            Err(_) => break,
        }
    }
    // Every hostile connection ends after its input, one way or the other.
    broker.handle_closed(now, conn);
}

#[test]
fn a_hundred_thousand_hostile_inputs_close_only_their_own_connections() {
    let mut rng = ChaCha8Rng::seed_from_u64(24);
    let corpus = corpus();
    let mut broker = Broker::default();
    let start = Instant::now();
    good_clients(&mut broker, start);
    let mut delivered = 0;
    for input in 0..100_000u64 {
        // Time moves a millisecond per input: keepalives expire along the way.
        let now = start + Duration::from_millis(input);
        broker.handle_timeout(now);
        let conn = 1_000 + input;
        let bytes = mangle(&mut rng, &corpus);
        feed(&mut broker, now, conn, &bytes);
        if input % 100 == 0 {
            let mut publish = Publish::new("good/news", QoS::AtLeastOnce, input.to_string());
            publish.pkid = (input / 100 % 60_000 + 1) as u16;
            broker.handle_packet(now, PUBLISHER, Packet::Publish(publish));
        }
        while let Some(out) = broker.poll_out() {
            match out {
                Out::Close(SUBSCRIBER | PUBLISHER) => {
                    panic!("input {input} ({bytes:?}) closed a good client")
                }
                Out::Send(SUBSCRIBER, Packet::Publish(publish)) if publish.topic == "good/news" => {
                    delivered += 1;
                    let ack = Packet::PubAck(PubAck::new(publish.pkid));
                    broker.handle_packet(now, SUBSCRIBER, ack);
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        delivered, 1_000,
        "every good publish reached the subscriber"
    );
}

#[cfg(not(madsim))]
#[tokio::test]
async fn hostile_sockets_leave_the_served_broker_working() {
    use futures::{SinkExt, StreamExt};
    use rumqttc::mqttbytes::v4::Codec;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::Framed;

    let listener = fleet_node::net::TcpListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let served = tokio::spawn(fleet_node::transport::mqtt::broker::serve(listener));
    let codec = || Codec {
        max_incoming_size: MAX_PACKET,
        max_outgoing_size: MAX_PACKET,
    };
    let mut subscriber = Framed::new(
        tokio::net::TcpStream::connect(address).await.unwrap(),
        codec(),
    );
    subscriber
        .send(Packet::Connect(Connect::new("good-subscriber-0001")))
        .await
        .unwrap();
    subscriber.next().await.unwrap().unwrap();
    let mut subscribe = Subscribe::new("good/#", QoS::AtMostOnce);
    subscribe.pkid = 1;
    subscriber.send(Packet::Subscribe(subscribe)).await.unwrap();
    subscriber.next().await.unwrap().unwrap();

    let mut rng = ChaCha8Rng::seed_from_u64(25);
    let corpus = corpus();
    for _ in 0..2_000 {
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        let _ = socket.write_all(&mangle(&mut rng, &corpus)).await;
    }
    assert!(!served.is_finished(), "the broker stopped");
    let mut publisher = Framed::new(
        tokio::net::TcpStream::connect(address).await.unwrap(),
        codec(),
    );
    publisher
        .send(Packet::Connect(Connect::new("good-publisher-0001")))
        .await
        .unwrap();
    publisher.next().await.unwrap().unwrap();
    let news = Publish::new("good/news", QoS::AtMostOnce, "still here");
    publisher.send(Packet::Publish(news)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), subscriber.next()).await;
    match got {
        Ok(Some(Ok(Packet::Publish(publish)))) => assert_eq!(&publish.payload[..], b"still here"),
        other => panic!("the subscriber lost the broker: {other:?}"),
    }
}
