//! Commands end to end in the simulated network: from `MasterState::submit` to the agent's
//! executor and back; through a leader crash, where the next leader finishes them; the one way
//! a command is lost, and that it is reported; and answers to names and arguments no handler
//! takes.
#![cfg(madsim)]

mod common;

use fleet_core::timeline::{CommandEvent, Event};
use madsim::runtime::Runtime;
use sim::history::Happening;
use sim::run::capture::{CaptureLayer, Locate};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn a_submitted_command_runs_on_its_agent_and_its_result_comes_back() {
    let runtime = Runtime::with_seed_and_config(5, madsim::Config::default());
    let state = common::master_and_agent(&runtime);

    let locate: Locate = Arc::new(|| (0, String::new()));
    let (layer, events) = CaptureLayer::new(locate);
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
            let echo = master.submit("agent-1", "echo", BTreeMap::new(), second);
            let sleep = master.submit("agent-1", "sleep", args, second);
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
    let output = sim::run::run(&loaded.scenario, seed);
    let verdicts = sim::judge::evaluate(&loaded.scenario, &loaded.expectations, &output.timeline);
    (output.timeline.entries, verdicts)
}

fn command_events(entries: &[sim::history::Entry]) -> Vec<(String, CommandEvent)> {
    (entries.iter())
        .filter_map(|entry| match &entry.event {
            Happening::System(Event::Command(event)) => Some((entry.node.clone(), event.clone())),
            _ => None,
        })
        .collect()
}

/// The one way a command is lost: a leader accepts it while cut off from the other masters,
/// so its handover reaches nobody, and then loses office. The next leader never had it. When
/// the old leader hears from the new one, it reports the command lost, naming why; the check
/// counts it, and nothing vanishes silently.
#[test]
fn a_command_no_other_master_ever_had_is_reported_lost_by_the_master_that_accepted_it() {
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
holds = false
"#;
    for seed in 1..=5 {
        let (entries, verdicts) = run(text, seed);
        let events = command_events(&entries);
        let sent = events.iter().find_map(|(master, event)| match event {
            CommandEvent::CommandSent { .. } => Some(master.clone()),
            _ => None,
        });
        let lost = events.iter().find_map(|(master, event)| match event {
            CommandEvent::CommandLost { request_id, reason } => {
                Some((master.clone(), request_id.clone(), reason.clone()))
            }
            _ => None,
        });
        let (by, request_id, reason) = lost.unwrap_or_else(|| panic!("seed {seed}: {events:?}"));
        assert!(
            request_id.starts_with(&by),
            "seed {seed}: {request_id} lost by {by}"
        );
        assert!(reason.contains("never had it"), "seed {seed}: {reason}");
        assert!(sent.is_none(), "agent-2 was down: nothing was sent");
        let check = (verdicts.iter())
            .find(|verdict| verdict.check.starts_with("commands_completed"))
            .unwrap();
        assert!(check.ok, "seed {seed}: {check:?}");
        assert_eq!(check.value.as_ref().unwrap()["lost"], 1, "seed {seed}");
        assert!(
            verdicts.iter().all(|verdict| verdict.ok),
            "seed {seed}: {verdicts:#?}"
        );
    }
}

/// A leader that crashes hands over what it had as it accepted it: the next leader sends each
/// unanswered command again and the agent answers from memory, so every command runs once.
/// The crashed leader comes back, finds its commands on disk, and reports none lost.
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
