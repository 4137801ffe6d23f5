//! Commands end to end in the simulated network: from `MasterState::submit` to the agent's
//! executor and back; through a leader crash, where the next leader finishes them; through a
//! cut-off leader, which returns what it accepted to the next; and answers to names and
//! arguments no handler takes.
#![cfg(madsim)]

mod common;

use fleet_core::timeline::{CommandEvent, Event};
use madsim::runtime::Runtime;
use sim::history::{FaultEvent, Happening};
use sim::run::record::{CaptureLayer, Locate};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn a_submitted_command_runs_on_its_agent_and_its_result_comes_back() {
    let runtime = Runtime::with_seed_and_config(5, madsim::Config::default());
    let state = common::master_and_agent(&runtime);

    let locate: Locate = Arc::new(|| (0, String::new()));
    let (layer, recorder) = CaptureLayer::new(locate, sim::run::budget::Budget::unlimited());
    let events = recorder.timeline;
    let subscriber = tracing_subscriber::registry().with(layer);
    let submitted = state.clone();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let master = submitted
                .lock()
                .unwrap()
                .clone()
                .expect("the master started");
            let args = BTreeMap::from([("ms".to_string(), "500".to_string())]);
            let second = Duration::from_secs(1);
            let echo = master.submit(None, "agent-1", "echo", BTreeMap::new(), second);
            let sleep = master.submit(None, "agent-1", "sleep", args, second);
            assert_eq!(echo.as_deref(), Ok("master-1-1"));
            assert_eq!(sleep.as_deref(), Ok("master-1-2"));
            tokio::time::sleep(Duration::from_secs(2)).await;
        })
    });
    let master = state.lock().unwrap().clone().unwrap();
    assert_eq!(master.with_registry(|r| r.pending_commands()), 0);
    let seen: Vec<String> = (events.lock().unwrap().entries.iter())
        .filter_map(|entry| match &entry.event {
            Happening::System(Event::Command(event)) => Some(match event {
                CommandEvent::CommandSent { request_id, .. } => format!("sent {request_id}"),
                CommandEvent::CommandStarted { request_id, .. } => {
                    format!("started {request_id}")
                }
                CommandEvent::CommandFinished {
                    request_id,
                    outcome,
                } => format!("finished {request_id} {outcome}"),
                CommandEvent::CommandResult { request_id, .. } => format!("result {request_id}"),
                other => format!("{other:?}"),
            }),
            _ => None,
        })
        .collect();
    assert_eq!(
        seen,
        [
            "sent master-1-1",
            "sent master-1-2",
            "started master-1-1",
            "finished master-1-1 ok",
            "started master-1-2",
            "result master-1-1",
            "finished master-1-2 ok",
            "result master-1-2",
        ]
    );
}

/// A scenario's run: its timeline and verdicts.
fn run(text: &str, seed: u64) -> (Vec<sim::history::Entry>, Vec<sim::judge::Verdict>) {
    let loaded = sim::parse("t.toml", text).unwrap_or_else(|error| panic!("{error}"));
    let judged = loaded.run(seed);
    (judged.output.timeline.entries, judged.verdicts)
}

fn command_events(entries: &[sim::history::Entry]) -> Vec<(String, CommandEvent)> {
    (entries.iter())
        .filter_map(|entry| match &entry.event {
            Happening::System(Event::Command(event)) => Some((entry.node.clone(), event.clone())),
            _ => None,
        })
        .collect()
}

/// A leader cut off from the other masters cannot have a command accepted: no majority holds
/// it. The client hears nothing back, submits it again under the same key to the leader the
/// others elect, and that one accepts it (the agent is down, so it waits) and sends it when the
/// agent is back. It runs once, and the cut-off leader's proposal vanishes when it rejoins.
#[test]
fn a_command_a_cut_off_leader_cannot_commit_is_accepted_by_the_next_and_runs_once() {
    let text = r#"
name = "t"
duration = "40s"
[topology]
masters = 3
agents = 2
[cluster]
mode = "raft"
election_timeout = "300ms..600ms"
heartbeat_interval = "100ms"
[[faults]]
at = "5s"
crash = "agent-2"
[[faults]]
at = "8s"
partition = [["leader"], ["followers"]]
as = ["old", "rest"]
[[commands]]
at = "8001ms"
to = "agent-2"
name = "echo"
[[faults]]
at = "15s"
heal = "all"
[[faults]]
at = "20s"
restart = "agent-2"
[[expect]]
check = "commands_completed"
within = "30s"
"#;
    for seed in 1..=5 {
        let (entries, verdicts) = run(text, seed);
        assert!(
            verdicts.iter().all(|verdict| verdict.ok),
            "seed {seed}: {verdicts:#?}"
        );
        let events = command_events(&entries);
        let accepted: Vec<(String, String)> = (events.iter())
            .filter_map(|(master, event)| match event {
                CommandEvent::CommandQueued { request_id, .. } => {
                    Some((master.clone(), request_id.clone()))
                }
                _ => None,
            })
            .collect();
        let [(master, request_id)] = accepted.as_slice() else {
            panic!("seed {seed}: accepted once: {events:?}")
        };
        let old = entries.iter().find_map(|entry| match &entry.event {
            Happening::Fault(FaultEvent::Captured { name, nodes }) if name == "old" => {
                nodes.first().cloned()
            }
            _ => None,
        });
        assert_ne!(Some(master), old.as_ref(), "seed {seed}: by the new leader");
        let started: Vec<&String> = (events.iter())
            .filter_map(|(_, event)| match event {
                CommandEvent::CommandStarted { request_id, .. } => Some(request_id),
                _ => None,
            })
            .collect();
        assert_eq!(started, [request_id], "seed {seed}: it ran once");
    }
}

/// A leader that crashes has had every command it accepted replicated to a majority: the next
/// leader sends each unanswered command again and the agent answers from memory, so every
/// command runs once, and none is lost.
#[test]
fn commands_survive_a_leader_crash_and_run_once() {
    let text = std::fs::read_to_string("../scenarios/commands-raft-failover.toml").unwrap();
    for seed in 1..=5 {
        let (entries, verdicts) = run(&text, seed);
        assert!(
            verdicts.iter().all(|verdict| verdict.ok),
            "seed {seed}: {verdicts:#?}"
        );
        let events = command_events(&entries);
        let adopted = events.iter().any(
            |(_, event)| matches!(event, CommandEvent::CommandsAdopted { count } if *count > 0),
        );
        assert!(adopted, "seed {seed}: the next leader took commands over");
        let lost = events
            .iter()
            .filter(|(_, e)| matches!(e, CommandEvent::CommandLost { .. }));
        assert_eq!(lost.count(), 0, "seed {seed}");
    }
}

/// Unknown names and bad arguments are answers, never panics: the agent says
/// `unknown_command` or `error`, and the command still completes.
#[test]
fn unknown_commands_and_bad_arguments_are_answered() {
    let text = r#"
name = "t"
duration = "10s"
[topology]
agents = 1
[[commands]]
at = "1s"
to = "agents"
name = "reboot"
[[commands]]
at = "1s"
to = "agents"
name = "sleep"
args = { ms = "soon" }
[[commands]]
at = "1s"
to = "agents"
name = "status"
[[expect]]
check = "commands_completed"
within = "1s"
"#;
    let (entries, verdicts) = run(text, 1);
    assert!(verdicts.iter().all(|verdict| verdict.ok), "{verdicts:#?}");
    let outcomes: Vec<String> = (command_events(&entries).into_iter())
        .filter_map(|(_, event)| match event {
            CommandEvent::CommandResult { outcome, .. } => Some(outcome),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes, ["unknown_command", "error", "ok"]);
}

/// A command still waiting for a leader when the run ends is recorded as never sent and
/// fails the run; so does a config an agent's last process never applied.
#[test]
fn what_never_happened_fails_the_run() {
    let text = r#"
name = "t"
duration = "20s"
[topology]
agents = 2
[[config]]
at = "2s"
values = { level = "debug" }
[[commands]]
at = "12s"
to = "agents"
name = "echo"
[[faults]]
at = "10s"
crash = "master-1"
[[faults]]
at = "11s"
restart = "agent-1"
[[expect]]
check = "config_converged"
within = "5s"
"#;
    let (_, verdicts) = run(text, 1);
    let fired = (verdicts.iter())
        .find(|verdict| verdict.check == "faults fired")
        .unwrap_or_else(|| panic!("{verdicts:#?}"));
    assert!(
        !fired.ok && fired.detail.contains("echo to agents"),
        "{fired:?}"
    );
    let converged = (verdicts.iter())
        .find(|verdict| verdict.check.starts_with("config_converged"))
        .unwrap();
    assert!(!converged.ok, "{converged:?}");
    assert!(converged.detail.contains("agent-1"), "{converged:?}");
}

/// A master that lost its disk names its commands afresh (`master-1.2-N` in its second
/// process), so a new command never meets an agent's memory of an old one with the same id:
/// it runs, rather than being answered with the old result.
#[test]
fn a_master_that_lost_its_disk_never_reuses_a_command_id() {
    let text = r#"
name = "t"
duration = "30s"
[topology]
agents = 1
[[commands]]
at = "2s"
to = "agents"
name = "echo"
args = { round = 1 }
[[faults]]
at = "4s"
crash = "master-1"
[[faults]]
at = "5s"
wipe = "master-1"
[[faults]]
at = "6s"
restart = "master-1"
[[commands]]
at = "20s"
to = "agents"
name = "echo"
args = { round = 2 }
[[expect]]
check = "commands_completed"
within = "5s"
"#;
    let (entries, verdicts) = run(text, 1);
    assert!(verdicts.iter().all(|verdict| verdict.ok), "{verdicts:#?}");
    let started: Vec<String> = (command_events(&entries).into_iter())
        .filter_map(|(_, event)| match event {
            CommandEvent::CommandStarted { request_id, .. } => Some(request_id),
            CommandEvent::CommandDuplicate { request_id } => {
                Some(format!("duplicate {request_id}"))
            }
            _ => None,
        })
        .collect();
    // Crash and restart make the third process (restart counts as a new one, after the crash's).
    assert_eq!(started.len(), 2, "{started:?}");
    assert_eq!(started[0], "master-1-1");
    assert!(
        started[1].starts_with("master-1.") && started[1].ends_with("-1"),
        "{started:?}"
    );
}
