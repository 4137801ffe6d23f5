//! Real processes on loopback: `fleet` masters and agents started as an operator would, hurt with
//! signals, and watched only through the admin API.
//!
//! Native build only (`cargo native test -p fleet --test chaos`); lease mode needs `redis-server`
//! on the PATH, which `.ci/run` installs. Every process it starts is killed when the test ends,
//! however it ends.
#![cfg(not(madsim))]

mod common;

use common::{Fleet, MasterMode, Mosquitto};
use serde_json::json;
use std::time::{Duration, Instant};

/// The value of Prometheus metric `name` in `text`.
fn metric(text: &str, name: &str) -> u64 {
    (text.lines())
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn raft_masters_survive_kills_pauses_restarts_and_a_graceful_stop() {
    let mut fleet = Fleet::new("raft", 3, MasterMode::Raft, None);
    let agent_metrics = common::free_addresses(1)[0];
    fleet.start_agent_with("agent-1", &["--metrics".into(), agent_metrics.to_string()]);
    for agent in 2..=5 {
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

    // Config through the API; the leader's metrics count what it saw.
    let (status, answer) = fleet.post(
        &leader.name,
        "/api/config",
        &json!({"values": {"level": "debug"}}),
    );
    assert_eq!(status, 200, "{answer}");
    let started = Instant::now();
    let metrics = loop {
        // Agents beat every second; the first beats come a second after they registered.
        let metrics = fleet.text(&leader.name, "/metrics");
        if metric(&metrics, "fleet_heartbeats_total") >= 5 || started.elapsed().as_secs() > 5 {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(metric(&metrics, "fleet_heartbeats_total") >= 5, "{metrics}");
    assert_eq!(metric(&metrics, "fleet_agents_online"), 5, "{metrics}");

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
    let metrics = fleet.text(&next.name, "/metrics");
    assert!(
        metric(&metrics, "fleet_leader_changes_total") >= 2,
        "{metrics}"
    );
    assert!(metrics.contains("\nfleet_failover_seconds "), "{metrics}");
    let metrics = fleet.text_at(agent_metrics, "/metrics");
    assert!(
        metrics.contains("fleet_connect_attempts_total{reason=\"start\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fleet_connect_attempts_total{reason=\""),
        "{metrics}"
    );
    assert!(
        (metrics.lines())
            .any(|line| line.starts_with("fleet_connect_attempts_total")
                && !line.contains("\"start\"")),
        "an attempt after the leader died, by its reason: {metrics}"
    );

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
    let config = fleet.get(&leader.name, "/api/config").unwrap();
    assert_eq!(config["values"], json!({"level": "debug"}), "{config}");

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

/// `--transport http`: one master and three agents over the connector design's HTTP API.
/// Commands go through the admin API; the master is killed and restarted on its data, and the
/// agents, cut from their long polls, come back to it and run what they are sent.
#[test]
fn over_http_agents_come_back_to_a_restarted_master_and_run_its_commands() {
    agents_come_back_to_a_restarted_master("http");
}

/// The same over `--transport grpc`: the gRPC design's AgentService, the agents cut from their
/// HTTP/2 connections.
#[test]
fn over_grpc_agents_come_back_to_a_restarted_master_and_run_its_commands() {
    agents_come_back_to_a_restarted_master("grpc");
}

/// The same over `--transport mqtt` through a real mosquitto: the MQTT design's topics, the
/// killed master's will telling its agents at once.
#[test]
fn over_mqtt_agents_come_back_to_a_restarted_master_and_run_its_commands() {
    let dir = std::env::temp_dir().join(format!("fleet-mosquitto-{}", std::process::id()));
    let Some(mosquitto) = Mosquitto::start(&dir) else {
        return;
    };
    let broker = mosquitto.address.to_string();
    agents_come_back_to_a_restarted_master_with("mqtt", &["--broker", &broker]);
}

fn agents_come_back_to_a_restarted_master(transport: &str) {
    agents_come_back_to_a_restarted_master_with(transport, &[]);
}

fn agents_come_back_to_a_restarted_master_with(transport: &str, more: &[&str]) {
    let mut flags = vec!["--transport", transport];
    flags.extend(more);
    let mut fleet = Fleet::with_flags(transport, 1, MasterMode::Raft, None, &flags);
    for agent in 1..=3 {
        fleet.start_agent(&format!("agent-{agent}"));
    }
    let master = fleet.wait_for_leader(Duration::from_secs(10), None);
    fleet.wait_for_agents_at(&master, 3, Duration::from_secs(10));
    let id = fleet.submit(&master.name, "agent-1");
    assert_eq!(
        fleet.wait_for_result(&id, Duration::from_secs(5))["outcome"],
        "ok"
    );
    fleet.signal(&master.name, "KILL");
    let _ = fleet.wait_for_exit(&master.name, Duration::from_secs(5));
    let killed_at = Instant::now();
    fleet.start_master(&master.name);
    let master = fleet.wait_for_leader(Duration::from_secs(10), None);
    let back = fleet.wait_for_agents_at(&master, 3, Duration::from_secs(15));
    eprintln!(
        "over {transport}: 3 agents back {back:?} after the restart ({:?} after the kill)",
        killed_at.elapsed()
    );
    for agent in 1..=3 {
        let id = fleet.submit(&master.name, &format!("agent-{agent}"));
        assert_eq!(
            fleet.wait_for_result(&id, Duration::from_secs(5))["outcome"],
            "ok",
            "agent-{agent} ran a command after the restart"
        );
    }
    // Through a broker the master's will says it went away (`reset`); on a connection of its
    // own, the kill closes it.
    let reason = match transport {
        "mqtt" => "reason=reset",
        _ => "reason=closed",
    };
    let log = fleet.log_of("agent-1");
    let cut = log
        .lines()
        .any(|line| line.contains("disconnected") && line.contains(reason));
    assert!(
        cut,
        "agent-1 saw its session cut by the kill ({reason}): {log}"
    );
}

/// `--exec NAME=PROGRAM`: the program gets the args as JSON on stdin and its stdout is the
/// result; past the command's timeout the agent answers `timeout`; names not listed run nothing.
#[test]
fn an_agent_runs_the_programs_its_operator_listed_under_each_commands_timeout() {
    use std::os::unix::fs::PermissionsExt;
    let mut fleet = Fleet::new("exec", 1, MasterMode::Raft, None);
    let script = |name: &str, body: &str| {
        let path = fleet.dir().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        format!("{}={}", name.trim_end_matches(".sh"), path.display())
    };
    let upper = script("upper.sh", "tr a-z A-Z");
    let slow = script("slow.sh", "sleep 5");
    let fails = script("fails.sh", "echo 'no disk' >&2; exit 3");
    let flags: Vec<String> = [&upper, &slow, &fails]
        .iter()
        .flat_map(|exec| ["--exec".to_string(), exec.to_string()])
        .collect();
    fleet.start_agent_with("agent-1", &flags);
    let leader = fleet.wait_for_leader(Duration::from_secs(10), None);
    fleet.wait_for_agents_at(&leader, 1, Duration::from_secs(10));
    let run = |name: &str, timeout_ms: u64| {
        let body = json!({"agent": "agent-1", "name": name, "args": {"text": "hi"}, "timeout_ms": timeout_ms});
        let id = fleet.submit_body(&leader.name, &body);
        fleet.wait_for_result(&id, Duration::from_secs(5))
    };
    let answer = run("upper", 5000);
    assert_eq!(
        (&answer["outcome"], &answer["output"]),
        (&json!("ok"), &json!("{\"TEXT\":\"HI\"}"))
    );
    let answer = run("slow", 300);
    assert_eq!(answer["outcome"], "timeout", "{answer}");
    let answer = run("fails", 5000);
    assert_eq!(answer["outcome"], "error", "{answer}");
    assert!(
        answer["output"].as_str().unwrap().contains("no disk"),
        "{answer}"
    );
    let answer = run("rm", 5000);
    assert_eq!(answer["outcome"], "unknown_command", "{answer}");
}

/// `--token-file` is read again each time a master refuses the token, so an operator who
/// fixes the file lets the agent in on its next try, with no restart.
#[test]
fn an_agent_refused_its_token_reads_the_file_again() {
    let config = "[params.auth]\nsecret = \"s3cret\"\nreauth_delay = \"300ms\"\n";
    let mut fleet = Fleet::new("token", 1, MasterMode::Raft, Some(config));
    let file = fleet.dir().join("agent-1.token");
    std::fs::write(&file, "not-the-token\n").unwrap();
    let flags = ["--token-file".to_string(), file.display().to_string()];
    fleet.start_agent_with("agent-1", &flags);
    let leader = fleet.wait_for_leader(Duration::from_secs(10), None);
    std::thread::sleep(Duration::from_secs(1));
    let nodes = fleet.get(&leader.name, "/api/nodes").unwrap();
    assert_eq!(nodes, serde_json::json!([]), "refused: {nodes}");
    std::fs::write(&file, fleet_core::auth::token("s3cret", "agent-1")).unwrap();
    let back = fleet.wait_for_agents_at(&leader, 1, Duration::from_secs(5));
    eprintln!("token fixed: agent-1 online {back:?} later");
}

/// A raft master whose `--data` was lost rejoins carefully: without `--initial` an empty
/// directory is a lost disk, so it votes only once a leader brought it up to date, then follows.
#[test]
fn a_master_that_lost_its_data_rejoins_without_voting_blind() {
    let mut fleet = Fleet::new("wiped", 3, MasterMode::Raft, None);
    let leader = fleet.wait_for_leader(Duration::from_secs(10), None);
    let follower = ["master-1", "master-2", "master-3"]
        .into_iter()
        .find(|name| *name != leader.name)
        .unwrap();
    fleet.signal(follower, "KILL");
    let data = fleet.dir().join(follower);
    std::fs::remove_dir_all(&data).unwrap();
    // The directory is there and empty, as after a disk replaced: no --initial this time.
    std::fs::create_dir_all(&data).unwrap();
    fleet.start_master(follower);
    fleet.wait_for_follower(follower, &leader.name, Duration::from_secs(10));
    let log = std::fs::read_to_string(fleet.dir().join(format!("{follower}.log"))).unwrap();
    assert!(
        log.contains("rejoins as a master that lost its disk"),
        "{log}"
    );
    assert!(log.contains(" recovering"), "{log}");
}
