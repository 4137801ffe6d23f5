//! Real processes on loopback: `fleet` masters and agents started as an operator would, hurt with
//! signals, and watched only through the admin API.
//!
//! Native build only (`cargo native test -p fleet --test chaos`); lease mode needs `redis-server`
//! on the PATH, which `.ci/run` installs. Every process it starts is killed when the test ends,
//! however it ends.
#![cfg(not(madsim))]

mod common;

use common::{Fleet, MasterMode};
use std::time::{Duration, Instant};

#[test]
fn raft_masters_survive_kills_pauses_restarts_and_a_graceful_stop() {
    let mut fleet = Fleet::new("raft", 3, MasterMode::Raft, None);
    for agent in 1..=5 {
        fleet.start_agent(&format!("agent-{agent}"));
    }
    let leader = fleet.wait_for_leader(Duration::from_secs(10), None);
    fleet.wait_for_agents_at(&leader, 5, Duration::from_secs(15));

    // Commands through any master's API complete, with their results.
    for agent in 1..=5 {
        let id = fleet.submit(
            &format!("master-{}", 1 + agent % 3),
            &format!("agent-{agent}"),
        );
        let result = fleet.wait_for_result(&id, Duration::from_secs(5));
        assert_eq!(result["outcome"], "ok", "{id}: {result}");
    }

    // SIGKILL the leader: a new one, and every agent following it, within 10 s.
    let killed_at = Instant::now();
    fleet.signal(&leader.name, "KILL");
    let next = fleet.wait_for_leader(Duration::from_secs(10), Some(&leader));
    fleet.wait_for_agents_at(&next, 5, Duration::from_secs(10));
    let followed = killed_at.elapsed();
    eprintln!(
        "failover: {} leads {:?} after the kill; every agent follows it {followed:?} after",
        next.name, next.after
    );
    assert!(followed < Duration::from_secs(10), "{followed:?}");

    // SIGSTOP an agent past its timeout: offline; SIGCONT: online again.
    fleet.signal("agent-1", "STOP");
    let offline =
        fleet.wait_for_agent_status(&next.name, "agent-1", "offline", Duration::from_secs(10));
    fleet.signal("agent-1", "CONT");
    let online =
        fleet.wait_for_agent_status(&next.name, "agent-1", "online", Duration::from_secs(10));
    eprintln!("paused agent: offline after {offline:?}; online {online:?} after it resumed");

    // The killed master, restarted from its data directory, follows.
    fleet.start_master(&leader.name);
    fleet.wait_for_follower(&leader.name, &next.name, Duration::from_secs(10));

    // SIGTERM the leader: it exits 0, and a new leader exists within 2 s.
    let stopped_at = Instant::now();
    fleet.signal(&next.name, "TERM");
    let after = fleet.wait_for_leader(Duration::from_secs(2), Some(&next));
    eprintln!(
        "graceful stop: {} leads {:?} after SIGTERM",
        after.name, after.after
    );
    assert_eq!(
        fleet.wait_for_exit(&next.name, Duration::from_secs(5)),
        Some(0)
    );
    assert!(stopped_at.elapsed() < Duration::from_secs(5));
    fleet.wait_for_agents_at(&after, 5, Duration::from_secs(10));
    let id = fleet.submit(&after.name, "agent-3");
    assert_eq!(
        fleet.wait_for_result(&id, Duration::from_secs(5))["outcome"],
        "ok"
    );
}

#[test]
fn lease_masters_hand_over_when_the_holder_dies() {
    let redis = common::Redis::start();
    let config = "[cluster]\nmode = \"lease\"\nlease_period = \"3s\"\nrenew_interval = \"1s\"\n\
                  sync_interval = \"500ms\"\n";
    let mut fleet = Fleet::new("lease", 2, MasterMode::Lease(redis.address), Some(config));
    for agent in 1..=2 {
        fleet.start_agent(&format!("agent-{agent}"));
    }
    let holder = fleet.wait_for_leader(Duration::from_secs(10), None);
    fleet.wait_for_agents_at(&holder, 2, Duration::from_secs(10));
    let killed_at = Instant::now();
    fleet.signal(&holder.name, "KILL");
    let next = fleet.wait_for_leader(Duration::from_secs(10), Some(&holder));
    eprintln!(
        "lease takeover: {} holds {:?} after the kill",
        next.name,
        killed_at.elapsed()
    );
    fleet.wait_for_agents_at(&next, 2, Duration::from_secs(10));
    let cluster = fleet.get(&next.name, "/api/cluster").unwrap();
    assert_eq!(cluster["mode"], "lease");
    assert!(next.term > holder.term, "a higher fencing token: {cluster}");
    let id = fleet.submit(&next.name, "agent-1");
    assert_eq!(
        fleet.wait_for_result(&id, Duration::from_secs(5))["outcome"],
        "ok"
    );
}
