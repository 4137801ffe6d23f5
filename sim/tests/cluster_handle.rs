//! The cluster as a master's code sees it, inside madsim: status queries, job trackers, periodic
//! leader/follower tasks and remote calls between masters.
#![cfg(madsim)]

use fleet_core::cluster::calls::CallError;
use fleet_core::cluster::raft::RaftConfig;
use fleet_core::cluster::JobTracker;
use fleet_core::master::{Leadership, MasterConfig};
use fleet_node::cluster::{run_cluster, ClusterConfig, ClusterHandle, ClusterMode};
use fleet_node::MasterState;
use madsim::runtime::{Handle, Runtime};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Log = Arc<Mutex<Vec<String>>>;

struct Recorder(Log);

impl JobTracker for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn on_started_leading(&mut self) {
        self.0.lock().unwrap().push("started leading".into());
    }
    fn on_new_leader(&mut self, leader: &str) {
        self.0.lock().unwrap().push(format!("new leader {leader}"));
    }
    fn on_release_master(&mut self) {
        self.0.lock().unwrap().push("released".into());
    }
    fn on_stopped_leading(&mut self) {
        self.0.lock().unwrap().push("stopped leading".into());
    }
}

#[test]
fn status_trackers_periodic_tasks_and_remote_calls() {
    let runtime = Runtime::with_seed_and_config(7, madsim::Config::default());
    let names: Vec<String> = (1..=3).map(|i| format!("master-{i}")).collect();
    let members: BTreeMap<String, SocketAddr> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1));
            (name.clone(), SocketAddr::new(ip, 7001))
        })
        .collect();
    let handles: Arc<Mutex<BTreeMap<String, ClusterHandle>>> = Arc::default();
    let logs: BTreeMap<String, Log> = names.iter().map(|n| (n.clone(), Log::default())).collect();
    let ticks: Arc<Mutex<BTreeMap<String, (u32, u32)>>> = Arc::default();
    let mut ids = BTreeMap::new();
    for name in &names {
        let (name, members, handles, log, ticks) = (
            name.clone(),
            members.clone(),
            handles.clone(),
            logs[name].clone(),
            ticks.clone(),
        );
        let address = members[&name];
        let node = runtime
            .create_node()
            .name(&name)
            .ip(address.ip())
            .init(move || {
                let (name, members, handles, log, ticks) = (
                    name.clone(),
                    members.clone(),
                    handles.clone(),
                    log.clone(),
                    ticks.clone(),
                );
                async move {
                    let state = MasterState::new(MasterConfig {
                        name: name.to_string(),
                        heartbeat_interval: Duration::from_secs(1),
                        max_miss: 3,
                        ..MasterConfig::default()
                    });
                    state.set_leadership(Leadership::Follower { leader: None }, None);
                    let handle = ClusterHandle::new(&name);
                    let me = name.clone();
                    handle.register_function(
                        "whoami",
                        Box::new(move |_| Ok(me.clone().into_bytes())),
                    );
                    handle.add_job_tracker(Box::new(Recorder(log)));
                    let (lead, follow) = (ticks.clone(), ticks.clone());
                    let (lead_name, follow_name) = (name.clone(), name.clone());
                    handle.add_periodic(
                        Duration::from_secs(1),
                        Box::new(move || {
                            lead.lock().unwrap().entry(lead_name.clone()).or_default().0 += 1
                        }),
                        Box::new(move |_| {
                            follow
                                .lock()
                                .unwrap()
                                .entry(follow_name.clone())
                                .or_default()
                                .1 += 1
                        }),
                    );
                    handles.lock().unwrap().insert(name.clone(), handle.clone());
                    let listener = fleet_node::net::TcpListener::bind(members[&name])
                        .await
                        .unwrap();
                    let config = ClusterConfig {
                        me: name.clone(),
                        members,
                        mode: ClusterMode::Raft(RaftConfig::default()),
                        disk: Some(fleet_node::disk::Disk::default()),
                        save_votes: true,
                        fsync: true,
                        first_start: true,
                    };
                    let rng = rand_chacha::ChaCha8Rng::seed_from_u64(name.len() as u64);
                    run_cluster(config, listener, rng, state, handle).await;
                }
            })
            .build();
        ids.insert(address, node.id());
    }
    let ids: BTreeMap<String, _> = members
        .iter()
        .map(|(name, address)| (name.clone(), ids[address]))
        .collect();

    runtime.block_on(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let handle = |name: &str| handles.lock().unwrap()[name].clone();
        let statuses: Vec<_> = names.iter().map(|n| handle(n).status().unwrap()).collect();
        let leader = statuses.iter().find(|s| s.is_leader()).unwrap().me.clone();
        for status in &statuses {
            assert!(status.is_ready());
            assert_eq!(status.leader_name(), Some(leader.as_str()));
            assert_eq!(status.all_count(), 3);
        }
        assert_eq!(statuses.iter().filter(|s| s.is_follower()).count(), 2);
        let leader_status = statuses.iter().find(|s| s.is_leader()).unwrap();
        assert_eq!(
            leader_status.alive_count(),
            3,
            "the leader hears every follower"
        );
        assert!(leader_status.lost().is_empty());

        // Trackers heard the election; periodic tasks ran for the right role.
        assert!(logs[&leader]
            .lock()
            .unwrap()
            .contains(&"started leading".to_string()));
        let followers: Vec<&String> = names.iter().filter(|n| **n != leader).collect();
        for follower in &followers {
            let log = logs[*follower].lock().unwrap();
            assert!(
                log.contains(&format!("new leader {leader}")),
                "{follower}: {log:?}"
            );
            assert!(
                ticks.lock().unwrap()[*follower].1 > 0,
                "{follower} ran its follower task"
            );
        }
        assert!(
            ticks.lock().unwrap()[&leader].0 > 0,
            "the leader ran its leader task"
        );

        // Trackers can be removed by name.
        assert_eq!(handle(followers[0]).remove_job_tracker("recorder"), 1);
        assert_eq!(handle(followers[0]).remove_job_tracker("recorder"), 0);

        // Remote calls: synchronous, asynchronous, unknown function, unreachable node.
        let caller = handle(followers[0]);
        let second = Duration::from_secs(1);
        let answer = caller.call(&leader, "whoami", vec![], second).await;
        assert_eq!(answer, Ok(leader.clone().into_bytes()));
        let id = caller.call_async(followers[1], "whoami", vec![], second);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            caller.fetch(id),
            Some(Ok(followers[1].clone().into_bytes()))
        );
        let unknown = caller.call(&leader, "format_disk", vec![], second).await;
        assert_eq!(
            unknown,
            Err(CallError::UnknownFunction {
                function: "format_disk".into(),
                node: leader.clone()
            })
        );
        // A graceful handover: the leader releases, another master takes over.
        handle(&leader).release();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let log = logs[&leader].lock().unwrap().clone();
        let released = log.iter().position(|entry| entry == "released");
        let stopped = log.iter().rposition(|entry| entry == "stopped leading");
        assert!(
            matches!((released, stopped), (Some(r), Some(s)) if r < s),
            "released, then stopped leading: {log:?}"
        );
        let successor = handle(followers[0]).status().unwrap().leader.unwrap();
        assert_ne!(successor, leader, "someone else leads after the release");

        // Closing leaves the cluster for good.
        handle(&leader).close();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let closed = handle(&leader).status().unwrap();
        assert!(closed.closed && !closed.is_ready());

        Handle::current().kill(ids[followers[1]]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let dead = caller.call(followers[1], "whoami", vec![], second).await;
        assert!(
            matches!(
                dead,
                Err(CallError::Unreachable { .. }) | Err(CallError::Timeout { .. })
            ),
            "{dead:?}"
        );
    });
}
