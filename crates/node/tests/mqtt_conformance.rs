//! Our MQTT broker against a real mosquitto: the same packet sequences to both, the same
//! answers expected (packet ids aside: each broker numbers its own). Timing is compared in
//! windows: mosquitto checks keepalives every few seconds, on whole seconds, so its wills come
//! up to about 7s after the 1.5 keepalives ours waits exactly.
//! Native build only; needs `/usr/sbin/mosquitto` (Debian's `mosquitto`, which `.ci/run`
//! installs). Without it the test fails under CI and is skipped elsewhere.
#![cfg(not(madsim))]

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rumqttc::mqttbytes::v4::{Codec, Connect, LastWill, Packet, PubAck, Publish, Subscribe};
use rumqttc::mqttbytes::QoS;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A broker under test: ours on a task, or a mosquitto process (killed on drop).
struct Broker {
    address: SocketAddr,
    _process: Option<Child>,
    /// How late a will may come past 1.5 keepalives.
    will_slack: Duration,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(process) = &mut self._process {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

async fn ours() -> Broker {
    let listener = fleet_node::net::TcpListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(fleet_node::transport::mqtt::broker::serve(listener));
    Broker {
        address,
        _process: None,
        will_slack: Duration::from_millis(300),
    }
}

async fn mosquitto() -> Option<Broker> {
    if !std::path::Path::new(MOSQUITTO).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{MOSQUITTO} is missing: .ci/run installs Debian's mosquitto"
        );
        eprintln!("skipped: {MOSQUITTO} is missing");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("fleet-mosquitto-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mosquitto.conf");
    let text = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
    );
    std::fs::write(&config, text).unwrap();
    let process = Command::new(MOSQUITTO)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Held from here, so that a mosquitto that never listens is killed and reaped too.
    let broker = Broker {
        address,
        _process: Some(process),
        will_slack: Duration::from_secs(8),
    };
    for _ in 0..100 {
        if TcpStream::connect(address).await.is_ok() {
            return Some(broker);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("mosquitto did not listen on {address}");
}

type Conn = Framed<TcpStream, Codec>;

async fn open(broker: &Broker) -> Conn {
    let stream = TcpStream::connect(broker.address).await.unwrap();
    let codec = Codec {
        max_incoming_size: 1 << 20,
        max_outgoing_size: 1 << 20,
    };
    Framed::new(stream, codec)
}

/// A packet as both brokers must send it: packet ids left out.
fn shape(packet: &Packet) -> String {
    match packet {
        Packet::Publish(p) => format!(
            "PUBLISH {} {:?} qos={} retain={} dup={}",
            p.topic,
            String::from_utf8_lossy(&p.payload),
            p.qos as u8,
            p.retain,
            p.dup
        ),
        Packet::ConnAck(ack) => format!("CONNACK {:?} present={}", ack.code, ack.session_present),
        Packet::SubAck(ack) => format!("SUBACK {:?}", ack.return_codes),
        Packet::PubAck(_) => "PUBACK".to_string(),
        other => format!("{other:?}"),
    }
}

async fn next(conn: &mut Conn, within: Duration) -> Option<Packet> {
    match tokio::time::timeout(within, conn.next()).await {
        Ok(Some(Ok(packet))) => Some(packet),
        _ => None,
    }
}

async fn expect(conn: &mut Conn, want: &str) -> Packet {
    let packet = next(conn, Duration::from_secs(5)).await;
    let got = packet.as_ref().map(shape);
    assert_eq!(got.as_deref(), Some(want));
    packet.unwrap()
}

async fn quiet(conn: &mut Conn, during: Duration) {
    if let Some(packet) = next(conn, during).await {
        panic!("expected nothing, got {}", shape(&packet));
    }
}

async fn closed(conn: &mut Conn) {
    let end = tokio::time::timeout(Duration::from_secs(5), conn.next()).await;
    assert!(
        matches!(end, Ok(None) | Ok(Some(Err(_)))),
        "expected the broker to close the connection, got {end:?}"
    );
}

fn connect(id: &str, keep_alive: u16, will: Option<(&str, &str)>) -> Packet {
    let mut connect = Connect::new(id);
    connect.keep_alive = keep_alive;
    connect.last_will =
        will.map(|(topic, message)| LastWill::new(topic, message, QoS::AtLeastOnce, false));
    Packet::Connect(connect)
}

fn subscribe(pkid: u16, filter: &str, qos: QoS) -> Packet {
    let mut subscribe = Subscribe::new(filter, qos);
    subscribe.pkid = pkid;
    Packet::Subscribe(subscribe)
}

fn publish(topic: &str, payload: &str, qos: QoS, retain: bool, pkid: u16) -> Packet {
    let mut publish = Publish::new(topic, qos, Bytes::from(payload.to_string()));
    (publish.retain, publish.pkid) = (retain, pkid);
    Packet::Publish(publish)
}

const ACCEPTED: &str = "CONNACK Success present=false";

/// A connected client.
async fn client(broker: &Broker, id: &str, keep_alive: u16, will: Option<(&str, &str)>) -> Conn {
    let mut conn = open(broker).await;
    conn.send(connect(id, keep_alive, will)).await.unwrap();
    expect(&mut conn, ACCEPTED).await;
    conn
}

/// A client subscribed to every agent's status, at QoS 0.
async fn watcher(broker: &Broker) -> Conn {
    let mut watcher = client(broker, "w", 0, None).await;
    let filter = subscribe(1, "fleet/+/status", QoS::AtMostOnce);
    watcher.send(filter).await.unwrap();
    expect(&mut watcher, "SUBACK [Success(AtMostOnce)]").await;
    watcher
}

/// Runs `script` against our broker and against mosquitto.
async fn both<F, Fut>(script: F)
where
    F: Fn(Broker) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    script(ours().await).await;
    if let Some(mosquitto) = mosquitto().await {
        script(mosquitto).await;
    }
}

#[tokio::test]
async fn retained_messages() {
    both(|broker| async move {
        let mut publisher = client(&broker, "p", 0, None).await;
        let retained = publish("fleet/a/status", "on", QoS::AtLeastOnce, true, 1);
        publisher.send(retained).await.unwrap();
        expect(&mut publisher, "PUBACK").await;
        // A new subscription gets it with RETAIN set, at the lower QoS of the two.
        let mut subscriber = client(&broker, "s", 0, None).await;
        let filter = subscribe(1, "fleet/+/status", QoS::AtLeastOnce);
        subscriber.send(filter).await.unwrap();
        expect(&mut subscriber, "SUBACK [Success(AtLeastOnce)]").await;
        let got = expect(
            &mut subscriber,
            "PUBLISH fleet/a/status \"on\" qos=1 retain=true dup=false",
        )
        .await;
        let Packet::Publish(got) = got else {
            unreachable!()
        };
        subscriber
            .send(Packet::PubAck(PubAck::new(got.pkid)))
            .await
            .unwrap();
        // A live subscriber gets later retained messages with RETAIN clear.
        let live = publish("fleet/a/status", "off", QoS::AtMostOnce, true, 0);
        publisher.send(live).await.unwrap();
        expect(
            &mut subscriber,
            "PUBLISH fleet/a/status \"off\" qos=0 retain=false dup=false",
        )
        .await;
        // An empty retained payload clears it: live subscribers see the empty message...
        let clear = publish("fleet/a/status", "", QoS::AtMostOnce, true, 0);
        publisher.send(clear).await.unwrap();
        expect(
            &mut subscriber,
            "PUBLISH fleet/a/status \"\" qos=0 retain=false dup=false",
        )
        .await;
        // ...and a later subscription gets nothing.
        let mut late = client(&broker, "l", 0, None).await;
        late.send(subscribe(1, "fleet/#", QoS::AtLeastOnce))
            .await
            .unwrap();
        expect(&mut late, "SUBACK [Success(AtLeastOnce)]").await;
        quiet(&mut late, Duration::from_millis(300)).await;
    })
    .await;
}

#[tokio::test]
async fn wills_on_close_not_on_disconnect() {
    both(|broker| async move {
        let mut watcher = watcher(&broker).await;
        // A socket closed without DISCONNECT: the will, at once.
        let gone = client(&broker, "a", 0, Some(("fleet/a/status", "lost"))).await;
        drop(gone);
        expect(
            &mut watcher,
            "PUBLISH fleet/a/status \"lost\" qos=0 retain=false dup=false",
        )
        .await;
        // DISCONNECT first: no will.
        let mut leaving = client(&broker, "b", 0, Some(("fleet/b/status", "lost"))).await;
        leaving.send(Packet::Disconnect).await.unwrap();
        drop(leaving);
        quiet(&mut watcher, Duration::from_millis(500)).await;
    })
    .await;
}

#[tokio::test]
async fn a_silent_client_is_lost_after_one_and_a_half_keepalives() {
    both(|broker| async move {
        let mut watcher = watcher(&broker).await;
        let start = Instant::now();
        let _silent = client(&broker, "a", 2, Some(("fleet/a/status", "lost"))).await;
        let want = "PUBLISH fleet/a/status \"lost\" qos=0 retain=false dup=false";
        let will = next(&mut watcher, Duration::from_secs(3) + broker.will_slack).await;
        assert_eq!(will.as_ref().map(shape).as_deref(), Some(want));
        let after = start.elapsed();
        assert!(
            after >= Duration::from_millis(2900),
            "the will came early: {after:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_second_connection_takes_the_client_id_over() {
    both(|broker| async move {
        let mut watcher = watcher(&broker).await;
        let mut first = client(&broker, "a", 0, Some(("fleet/a/status", "lost"))).await;
        let _second = client(&broker, "a", 0, None).await;
        closed(&mut first).await;
        // Clean sessions on both sides: the old connection's will is published.
        expect(
            &mut watcher,
            "PUBLISH fleet/a/status \"lost\" qos=0 retain=false dup=false",
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn qos_1_is_acknowledged_and_redelivered_to_a_kept_session() {
    both(|broker| async move {
        // A subscriber that keeps its session and never acknowledges.
        let mut subscriber = open(&broker).await;
        let mut kept = Connect::new("s");
        kept.clean_session = false;
        subscriber
            .send(Packet::Connect(kept.clone()))
            .await
            .unwrap();
        expect(&mut subscriber, ACCEPTED).await;
        subscriber
            .send(subscribe(1, "fleet/+/result", QoS::AtLeastOnce))
            .await
            .unwrap();
        expect(&mut subscriber, "SUBACK [Success(AtLeastOnce)]").await;
        let mut publisher = client(&broker, "p", 0, None).await;
        publisher
            .send(publish("fleet/a/result", "1", QoS::AtLeastOnce, false, 7))
            .await
            .unwrap();
        expect(&mut publisher, "PUBACK").await;
        expect(
            &mut subscriber,
            "PUBLISH fleet/a/result \"1\" qos=1 retain=false dup=false",
        )
        .await;
        drop(subscriber);
        // Published while it is away: queued for it.
        publisher
            .send(publish("fleet/a/result", "2", QoS::AtLeastOnce, false, 8))
            .await
            .unwrap();
        expect(&mut publisher, "PUBACK").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut back = open(&broker).await;
        back.send(Packet::Connect(kept)).await.unwrap();
        expect(&mut back, "CONNACK Success present=true").await;
        // The unacknowledged one again, marked DUP, then the queued one.
        expect(
            &mut back,
            "PUBLISH fleet/a/result \"1\" qos=1 retain=false dup=true",
        )
        .await;
        expect(
            &mut back,
            "PUBLISH fleet/a/result \"2\" qos=1 retain=false dup=false",
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn anything_before_connect_or_a_second_connect_closes_the_connection() {
    both(|broker| async move {
        let mut early = open(&broker).await;
        early.send(Packet::PingReq).await.unwrap();
        closed(&mut early).await;
        let mut twice = client(&broker, "a", 0, None).await;
        twice.send(connect("a", 0, None)).await.unwrap();
        closed(&mut twice).await;
    })
    .await;
}
