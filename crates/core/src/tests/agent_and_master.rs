//! The agent and master cores together, driven by the [`Pair`]: sessions, commands and config
//! travel between them with no network and no async.

use super::pair::{master, Pair};
use crate::agent::{DisconnectReason, StateKind};
use crate::master::{Leadership, MasterConfig, Registry, SubmitError};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The agent and master cores wired directly, no network and no async: ten minutes of
/// heartbeats keep the node online and the agent connected.
#[test]
fn agent_and_master_cores_hold_a_session_together() {
    let mut pair = Pair::new(master("master-1"));
    pair.run_for(Duration::from_secs(600));
    assert_eq!(pair.agent.status().state, StateKind::Online);
    assert_eq!(pair.master.online_count(), 1);
}

#[test]
fn commands_go_out_on_registration_and_their_results_come_back() {
    let mut pair = Pair::new(master("master-1"));
    let args = |pairs: &[(&str, &str)]| {
        (pairs.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    // Accepted before the agent has ever registered: it goes out when it does.
    let early = (pair.master).submit("agent-1", "echo", args(&[]), Duration::from_secs(5));
    assert_eq!(early.as_deref(), Ok("master-1-1"));
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.master.pending_commands(), 0, "answered");
    // Accepted while online: sent at once; a sleep answers on the agent's clock.
    (pair.master)
        .submit(
            "agent-1",
            "sleep",
            args(&[("ms", "1500")]),
            Duration::from_secs(5),
        )
        .unwrap();
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.master.pending_commands(), 1, "still sleeping");
    pair.run_for(Duration::from_secs(2));
    assert_eq!(pair.master.pending_commands(), 0);
}

#[test]
fn a_config_push_reaches_the_agent_and_an_agent_that_was_away_pulls_it() {
    let mut pair = Pair::new(master("master-1"));
    let values = |v: &str| BTreeMap::from([("level".to_string(), v.to_string())]);
    // Pushed before the agent registered: it pulls it after its first heartbeat.
    assert_eq!(
        pair.master
            .push_config(values("debug"))
            .map(|id| id.version),
        Ok(1)
    );
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.agent.fleet_config().id.version, 1);
    assert_eq!(pair.agent.fleet_config().values, values("debug"));
    // Pushed while it is online: it applies it at once and acknowledges it.
    assert_eq!(
        pair.master.push_config(values("info")).map(|id| id.version),
        Ok(2)
    );
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.agent.fleet_config().values, values("info"));
    let acked: Vec<u64> = (pair.master.nodes())
        .map(|(_, e)| e.config.version)
        .collect();
    assert_eq!(acked, [2]);
    // The config is part of what the masters replicate.
    assert_eq!(pair.master.replicated().config.id.version, 2);
    let mut follower = Registry::new(MasterConfig {
        name: "master-9".into(),
        heartbeat_interval: Duration::from_secs(1),
        max_miss: 3,
        ..MasterConfig::default()
    });
    follower.handle_leadership(
        Instant::now(),
        Leadership::Follower {
            leader: Some("master-1".into()),
        },
    );
    copy(&pair.master, &mut follower);
    assert_eq!(follower.config_id().version, 2);
    assert_eq!(
        follower.push_config(values("x")),
        Err(SubmitError::NotLeader)
    );
}

#[test]
fn a_newer_leaders_config_wins_over_what_a_deposed_leader_pushed_meanwhile() {
    let values = |v: &str| BTreeMap::from([("level".to_string(), v.to_string())]);
    let mut old = master("master-1");
    old.observe_term(1);
    old.push_config(values("a")).unwrap();
    let mut new = master("master-2");
    new.handle_leadership(
        Instant::now(),
        Leadership::Follower {
            leader: Some("master-1".into()),
        },
    );
    copy(&old, &mut new);
    // master-2 is elected in term 2; master-1, cut off, does not know yet and pushes
    // twice, reaching a version number master-2 never sees.
    new.observe_term(2);
    new.handle_leadership(Instant::now(), Leadership::Leader);
    old.push_config(values("stale")).unwrap();
    old.push_config(values("staler")).unwrap();
    assert_eq!(new.push_config(values("fresh")).map(|id| id.version), Ok(2));
    assert!(
        new.config_id() > old.config_id(),
        "term first: (2, 2) > (1, 3)"
    );
    // An agent that took the deposed leader's config moves to the new leader's.
    let mut pair = Pair::new(old);
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.agent.fleet_config().values, values("staler"));
    pair.agent
        .handle_disconnected(pair.now, DisconnectReason::Closed);
    while pair.agent.poll_action().is_some() {}
    let mut old = std::mem::replace(&mut pair.master, new);
    pair.run_for(Duration::from_secs(5));
    assert_eq!(pair.agent.fleet_config().values, values("fresh"));
    // And the deposed leader, once it follows, takes it too.
    old.handle_leadership(
        Instant::now(),
        Leadership::Follower {
            leader: Some("master-2".into()),
        },
    );
    copy(&pair.master, &mut old);
    assert_eq!(old.config_id(), pair.master.config_id());
}

/// `to` installs what `from` holds, as a follower installs what its leader replicates.
fn copy(from: &Registry, to: &mut Registry) {
    let state = serde_json::to_vec(&from.replicated()).unwrap();
    to.install(1, &state).unwrap();
}
