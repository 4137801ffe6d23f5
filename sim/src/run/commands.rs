//! Sends a scenario's `[[commands]]` and `[[config]]` to the leader, as an operator's client
//! would: at each one's moment, to whichever master the timeline says leads, waiting for one
//! while there is none, until the leader says it accepted it (the cluster committed it). A
//! leader lost before that leaves the outcome unknown, so the client submits again to the next
//! leader under the same key, which finds the command if it survived. The call runs on that
//! master's node, so what it emits is its own.

use crate::history::captures::Captures;
use crate::history::{Entry, FaultEvent, Happening, Timeline, HARNESS};
use crate::run::engine::{sleep_until, Engine};
use crate::run::faults::{leader_now, Now};
use crate::run::nodes::MasterSlot;
use crate::scenario::commands::Operation;
use crate::scenario::selector::{NodeKind, Topology};
use fleet_core::wire::ConfigId;
use fleet_node::sync::lock;
use fleet_node::MasterState;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a command waiting for a leader looks again.
const RETRY: Duration = Duration::from_millis(10);

/// Keeps `any(...)` draws of commands apart from the faults' and the seed's other uses.
const COMMAND_STREAM: u64 = 0x636f_6d6d_616e_6473;

pub(crate) struct Commander<E> {
    pub engine: E,
    pub masters: BTreeMap<String, MasterSlot>,
    pub topology: Topology,
    pub timeline: Arc<Mutex<Timeline>>,
    rng: ChaCha8Rng,
}

/// What is left to send of one operation.
#[derive(Clone)]
enum Left {
    /// The agents a command has not been accepted for yet.
    Agents(Vec<String>),
    /// A config not yet accepted, and the master process and id it was last pushed as.
    Config(Option<(MasterState, ConfigId)>),
    Done,
}

impl<E: Engine> Commander<E> {
    pub fn new(
        engine: E,
        masters: BTreeMap<String, MasterSlot>,
        topology: Topology,
        timeline: Arc<Mutex<Timeline>>,
        seed: u64,
    ) -> Commander<E> {
        Commander {
            engine,
            masters,
            topology,
            timeline,
            rng: ChaCha8Rng::seed_from_u64(seed ^ COMMAND_STREAM),
        }
    }

    /// Sends every operation at its moment, waiting for a leader as long as it takes; `sent`
    /// counts those done, so the runner can record the rest as never sent when the run ends.
    pub async fn run(mut self, operations: &[Operation], sent: Arc<AtomicUsize>) {
        for (number, operation) in operations.iter().enumerate() {
            sleep_until(&self.engine, operation.at()).await;
            let mut left = self.targets(operation);
            loop {
                left = self.try_send(number, operation, left).await;
                if matches!(&left, Left::Done) {
                    break;
                }
                tokio::time::sleep(RETRY).await;
            }
            sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn targets(&mut self, operation: &Operation) -> Left {
        let Operation::Command(command) = operation else {
            return Left::Config(None);
        };
        if !command.to.is_dynamic() {
            return left_of(command.to.nodes().to_vec());
        }
        let captures = {
            let timeline = lock(&self.timeline);
            Captures::from_entries(&timeline.entries)
        };
        let mut now = Now {
            leader: leader_now(&self.timeline),
            captures: &captures,
            rng: &mut self.rng,
        };
        let agents = command.to.resolve(&self.topology, &mut now);
        let prefix = NodeKind::Agent.prefix();
        left_of(
            agents
                .into_iter()
                .filter(|n| n.starts_with(prefix))
                .collect(),
        )
    }

    /// Hands what is left to the leader, on the leader's node; returns what is still left.
    async fn try_send(&self, number: usize, operation: &Operation, left: Left) -> Left {
        let Some(leader) = leader_now(&self.timeline) else {
            return left;
        };
        let state = self.masters.get(&leader).and_then(|slot| {
            let slot = lock(slot);
            slot.clone()
        });
        let Some(state) = state else {
            return left;
        };
        let (operation, asked) = (operation.clone(), left.clone());
        let job = move || send(&state, number, &operation, asked);
        // The node went down before the call ran: all of it goes to the next leader.
        self.engine.run_on(&leader, job).await.unwrap_or(left)
    }
}

fn left_of(agents: Vec<String>) -> Left {
    if agents.is_empty() {
        Left::Done
    } else {
        Left::Agents(agents)
    }
}

/// Runs on the leader's node: submits each agent's command (under a key naming the
/// operation and the agent, so submitting it again finds it), or raises the config, and keeps
/// what the master has not accepted yet for the next try.
fn send(state: &MasterState, number: usize, operation: &Operation, left: Left) -> Left {
    match (operation, left) {
        (Operation::Command(command), Left::Agents(agents)) => left_of(
            agents
                .into_iter()
                .filter(|agent| {
                    let key = format!("{number}/{agent}");
                    let args = command.args.clone();
                    let name = &command.name;
                    let submitted = state.submit(Some(&key), agent, name, args, command.timeout);
                    !submitted.is_ok_and(|request_id| state.is_accepted(&request_id))
                })
                .collect(),
        ),
        (Operation::Config(config), Left::Config(pushed)) => {
            // Pushed again unless this master process may still commit the last push.
            let waiting = pushed
                .filter(|(master, id)| master.is(state) && state.config_accepted(*id).is_some());
            let id = match waiting {
                Some((_, id)) => Some(id),
                None => state.push_config(config.values.clone()).ok(),
            };
            match id {
                Some(id) if state.config_accepted(id) == Some(true) => Left::Done,
                Some(id) => Left::Config(Some((state.clone(), id))),
                None => Left::Config(None),
            }
        }
        (_, left) => left,
    }
}

/// Records every operation from `sent` on as unfired: the run ended before a leader took it
/// (or before its moment came), which fails the run.
pub(crate) fn record_unsent(
    timeline: &Mutex<Timeline>,
    operations: &[Operation],
    sent: usize,
    end: Duration,
) {
    let mut timeline = lock(timeline);
    for operation in operations.iter().skip(sent) {
        let event = FaultEvent::Unfired {
            fault: operation.to_string(),
            when: "a leader to accept it".into(),
        };
        timeline.entries.push(Entry {
            t_ms: end.as_millis() as u64,
            node: HARNESS.to_string(),
            clock_ms: 0,
            event: Happening::Fault(event),
        });
    }
}
