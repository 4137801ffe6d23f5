//! A command submitted to a running master reaches its agent over the simulated network, runs
//! once, and its result comes back: the shell's path from `MasterState::submit` to the agent's
//! executor and back.
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
