//! Lease mode against a real `redis-server` on loopback: the same client and the same Lua
//! scripts the simulated store runs. Two masters; one acquires the lease and keeps it by
//! renewing; when it dies the other takes over with a higher fencing token.
//!
//! Native build only (`cargo native test -p fleet-node`). Needs `redis-server` on the PATH;
//! `.ci/run` installs it (Debian package redis-server).
#![cfg(not(madsim))]

use fleet_core::cluster::lease::LeaseConfig;
use fleet_core::master::{Leadership, MasterConfig};
use fleet_core::resp::{self, Value};
use fleet_node::cluster::{run_cluster, ClusterConfig, ClusterHandle, ClusterMode};
use fleet_node::MasterState;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_millis(1500);

/// A redis-server for this test only, stopped when dropped.
struct Redis {
    child: Child,
    address: SocketAddr,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (Debian: apt-get install redis-server)");
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let started = Instant::now();
        while TcpStream::connect(address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, address }
    }

    /// One command over a fresh connection.
    fn query(&self, args: &[&str]) -> Value {
        let mut stream = TcpStream::connect(self.address).unwrap();
        let mut request = Vec::new();
        Value::command(args).encode(&mut request);
        stream.write_all(&request).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "redis closed the connection");
            buf.extend_from_slice(&chunk[..n]);
            if let Some((value, _)) = resp::decode(&buf).unwrap() {
                return value;
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_master(name: &str, store: SocketAddr) -> (MasterState, tokio::task::JoinHandle<()>) {
    let state = MasterState::new(MasterConfig {
        name: "master-1".into(),
        heartbeat_interval: Duration::from_millis(100),
        max_miss: 3,
        ..MasterConfig::default()
    });
    state.set_leadership(Leadership::Follower { leader: None }, None);
    let config = ClusterConfig {
        me: name.to_string(),
        members: BTreeMap::new(),
        mode: ClusterMode::Lease {
            config: LeaseConfig::new(
                // A wide margin over the renew interval: a loaded CI machine may stall a while.
                LEASE,
                Duration::from_millis(150),
                Duration::from_millis(100),
            ),
            store,
        },
        // Lease mode keeps nothing on disk: the store holds the lease and the commands.
        disk: None,
        save_votes: false,
        fsync: true,
        first_start: true,
    };
    let listener_state = state.clone();
    let task = tokio::spawn(async move {
        let unused = fleet_node::net::TcpListener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let handle = ClusterHandle::new(&config.me);
        run_cluster(config, unused, rng, listener_state, handle).await;
    });
    (state, task)
}

fn leadership(state: &MasterState) -> Leadership {
    state.with_registry(|registry| registry.leadership().clone())
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_real_redis_grants_renews_and_regrants_the_lease_with_a_higher_token() {
    let redis = Redis::start();
    assert_eq!(redis.query(&["PING"]), Value::Simple("PONG".into()));

    let (first, first_task) = start_master("master-1", redis.address);
    wait_for("master-1 leads", || {
        leadership(&first) == Leadership::Leader
    })
    .await;
    let (second, _second_task) = start_master("master-2", redis.address);
    wait_for("master-2 follows master-1", || {
        leadership(&second)
            == Leadership::Follower {
                leader: Some("master-1".into()),
            }
    })
    .await;

    // Three lease periods: only renewals keep master-1 in office that long.
    tokio::time::sleep(LEASE * 3).await;
    assert_eq!(leadership(&first), Leadership::Leader);
    let held = redis.query(&["GET", "fleet:leader"]);
    let held = held.as_text().unwrap_or_default();
    assert!(
        held.starts_with("master-1 1 "),
        "node, token, process: {held:?}"
    );

    // A command is accepted once the store holds it: it survives master-1.
    let request_id = first
        .submit(
            None,
            "agent-1",
            "echo",
            BTreeMap::new(),
            Duration::from_secs(1),
        )
        .unwrap();
    wait_for("the store holds the command", || {
        first.is_accepted(&request_id)
    })
    .await;
    let stored = redis.query(&["GET", "fleet:leader:state"]);
    let stored = stored.as_text().unwrap_or_default();
    assert!(stored.contains(&request_id), "{stored}");

    // master-1 dies without a word; its lease runs out and master-2 is granted token 2.
    first_task.abort();
    wait_for("master-2 leads", || {
        leadership(&second) == Leadership::Leader
    })
    .await;
    let held = redis.query(&["GET", "fleet:leader"]);
    let held = held.as_text().unwrap_or_default();
    assert!(held.starts_with("master-2 2 "), "{held:?}");
    // The new holder read the state before leading: it holds master-1's command.
    assert!(second.is_accepted(&request_id));
}
