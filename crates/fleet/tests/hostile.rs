//! Hostile input to the admin API: 12,000 requests with mangled JSON bodies, wrong types,
//! oversized bodies, odd methods and garbage paths, drawn from a fixed seed. Every answer is a
//! 2xx, 3xx or 4xx with a JSON body (never a 5xx, never a panic), and one that is not a 2xx
//! changed nothing the master holds.
#![cfg(not(madsim))]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use fleet::admin::{self, Admin, MAX_BODY};
use fleet_core::master::MasterConfig;
use fleet_node::cluster::{run_cluster, ClusterConfig, ClusterHandle, ClusterMode};
use fleet_node::MasterState;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tower::ServiceExt;

const REQUESTS: usize = 12_000;

const PATHS: [&str; 12] = [
    "/api/cluster",
    "/api/nodes",
    "/api/commands",
    "/api/commands/master-1-1",
    "/api/config",
    "/api/reconnection/status?agent=agent-1",
    "/api/reconnection/status",
    "/api/reconnection/active",
    "/api/reconnection/cleanup",
    "/api/reconnection/force",
    "/metrics",
    "/healthz",
];

/// Bodies a client might mean to send; the fuzzer mangles them.
fn valid_bodies() -> Vec<Value> {
    vec![
        json!({"agent": "agent-1", "name": "echo", "args": {"x": 1}, "timeout_ms": 500}),
        json!({"agent": "agent-1", "name": "sleep", "args": {"ms": "10"}, "key": "op-1"}),
        json!({"values": {"level": "debug", "rate": 0.5, "on": true}}),
        json!({"agent": "agent-1"}),
    ]
}

/// A JSON value of any shape, at most `depth` deep.
fn any_value(rng: &mut ChaCha8Rng, depth: u32) -> Value {
    match rng.gen_range(0..if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e300),
        4 => json!(any_text(rng)),
        5 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| any_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.gen_range(0..4))
                .map(|_| (any_key(rng), any_value(rng, depth - 1)))
                .collect(),
        ),
    }
}

fn any_key(rng: &mut ChaCha8Rng) -> String {
    const KEYS: [&str; 9] = [
        "agent",
        "name",
        "args",
        "timeout_ms",
        "key",
        "values",
        "x",
        "",
        "é\u{0}",
    ];
    if rng.gen_bool(0.7) {
        KEYS[rng.gen_range(0..KEYS.len())].to_string()
    } else {
        any_text(rng)
    }
}

fn any_text(rng: &mut ChaCha8Rng) -> String {
    let len = rng.gen_range(0..24);
    (0..len)
        .map(|_| match rng.gen_range(0..4) {
            0 => char::from(rng.gen_range(0u8..128)),
            1 => char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('\u{fffd}'),
            _ => char::from(rng.gen_range(b'a'..=b'z')),
        })
        .collect()
}

/// A body: a valid one with a field replaced, bytes flipped or cut, any value, or too large.
fn any_body(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let bodies = valid_bodies();
    let mut base = bodies[rng.gen_range(0..bodies.len())].clone();
    match rng.gen_range(0..6) {
        0 => {
            if let Some(object) = base.as_object_mut() {
                let key = any_key(rng);
                object.insert(key, any_value(rng, 3));
            }
            base.to_string().into_bytes()
        }
        1 => {
            let mut bytes = base.to_string().into_bytes();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = rng.gen();
            }
            bytes
        }
        2 => {
            let bytes = base.to_string().into_bytes();
            bytes[..rng.gen_range(0..bytes.len())].to_vec()
        }
        3 => any_value(rng, 4).to_string().into_bytes(),
        4 => vec![b'{'; MAX_BODY + rng.gen_range(1..1000)],
        _ => (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect(),
    }
}

/// The paths that take a POST.
const WRITES: [&str; 4] = [
    "/api/commands",
    "/api/config",
    "/api/reconnection/cleanup",
    "/api/reconnection/force",
];

fn any_path(rng: &mut ChaCha8Rng, method: &Method) -> String {
    let path = if *method == Method::POST && rng.gen_bool(0.8) {
        WRITES[rng.gen_range(0..WRITES.len())]
    } else {
        PATHS[rng.gen_range(0..PATHS.len())]
    };
    match rng.gen_range(0..10) {
        0 => format!("{path}/{}", percent(&any_text(rng))),
        1 => format!("/api/commands/{}", percent(&any_text(rng))),
        2 => format!("/{}", percent(&any_text(rng))),
        3 => format!("{path}?agent={}&x=%zz", percent(&any_text(rng))),
        _ => path.to_string(),
    }
}

/// `text` with every byte outside `[A-Za-z0-9-._~]` percent-encoded, so it is a valid URI.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// What a failed request must leave unchanged: the replicated ledger and the announced config.
fn held(master: &MasterState) -> String {
    master.with_registry(|registry| {
        format!(
            "{:?} {:?}",
            registry.replicated(),
            registry.announced_config()
        )
    })
}

#[tokio_rt::test]
async fn hostile_requests_get_4xx_and_change_nothing() {
    let master = MasterState::new(MasterConfig::default());
    let handle = ClusterHandle::new("master-1");
    let listener = fleet_node::net::TcpListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let cluster = ClusterConfig {
        me: "master-1".into(),
        members: BTreeMap::from([("master-1".into(), listener.local_addr().unwrap())]),
        mode: ClusterMode::Single,
        disk: None,
        save_votes: true,
        fsync: true,
        first_start: true,
    };
    let rng = ChaCha8Rng::seed_from_u64(1);
    tokio_rt::spawn(run_cluster(
        cluster,
        listener,
        rng,
        master.clone(),
        handle.clone(),
    ));
    while handle.status().is_none_or(|status| !status.is_leader()) {
        tokio_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let router = admin::router(Arc::new(Admin {
        name: "master-1".into(),
        mode: "single",
        master: master.clone(),
        cluster: handle,
        admins: BTreeMap::new(),
        metrics: Default::default(),
    }));
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for n in 0..REQUESTS {
        // Mostly the methods the API takes, so most requests reach a handler.
        let method = match rng.gen_range(0..10) {
            0..=5 => Method::POST,
            6..=7 => Method::GET,
            _ => methods[rng.gen_range(0..methods.len())].clone(),
        };
        let path = any_path(&mut rng, &method);
        let body = any_body(&mut rng);
        let mut request = Request::builder().method(method.clone()).uri(&path);
        if rng.gen_bool(0.8) {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(Body::from(body.clone())).unwrap();
        let before = held(&master);
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        *by_status.entry(status.as_u16()).or_default() += 1;
        let shown = format!(
            "#{n} {method} {path} {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        assert!(!status.is_server_error(), "{status} for {shown}");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        if path.starts_with("/api/") {
            let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
            assert!(
                parsed.is_ok(),
                "{status} answered not JSON for {shown}: {bytes:?}"
            );
        }
        if !status.is_success() {
            assert_eq!(
                held(&master),
                before,
                "{status} changed the master for {shown}"
            );
        }
    }
    eprintln!("{REQUESTS} hostile requests, answers by status: {by_status:?}");
    assert!(by_status.keys().all(|status| *status < 500));
    assert!(by_status.contains_key(&StatusCode::PAYLOAD_TOO_LARGE.as_u16()));
    assert!(by_status.contains_key(&StatusCode::UNPROCESSABLE_ENTITY.as_u16()));
}
