//! A master and an agent core wired directly, after quinn-proto's test `Pair`: no network, no
//! async, no runtime. The pair steps both cores at one instant, hands each the other's frames,
//! and jumps its clock to the earlier of their wake-ups.

use crate::agent::{AgentAction, AgentConfig, Connector};
use crate::backoff::BackoffPolicy;
use crate::command::ExecutorConfig;
use crate::master::{MasterAction, MasterConfig, Registry};
use crate::wire::{BuildInfo, Register};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The one session the pair's agent speaks on.
const SESSION: u64 = 1;

/// One agent (`agent-1`) and one master, and the instant both were last stepped at.
pub(super) struct Pair {
    pub(super) agent: Connector<ChaCha8Rng>,
    pub(super) master: Registry,
    /// Where the last run stopped: the first wake-up at or after the instant it ran to.
    pub(super) now: Instant,
}

impl Pair {
    /// `master` and an agent that has not connected yet, its backoff the default one.
    pub(super) fn new(master: Registry) -> Pair {
        let now = Instant::now();
        let agent = Connector::new(agent_config(), ChaCha8Rng::seed_from_u64(1), now);
        Pair { agent, master, now }
    }

    /// Runs both cores for `duration` from where the last run stopped.
    pub(super) fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        let mut steps = 0;
        while self.now < until {
            steps += 1;
            assert!(steps < 10_000, "the pair makes progress");
            self.step();
            self.now = [self.agent.poll_timeout(), self.master.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
        }
    }

    /// Hands both cores the instant, then each the other's frames until neither has more.
    fn step(&mut self) {
        let (agent, master, now) = (&mut self.agent, &mut self.master, self.now);
        agent.handle_timeout(now);
        master.handle_timeout(now);
        while let Some(action) = agent.poll_action() {
            match action {
                AgentAction::Connect { .. } => agent.handle_connected(now),
                AgentAction::Send(message) => master.handle_message(now, SESSION, message),
                AgentAction::Close => panic!("the session should hold"),
                AgentAction::RunExternal(command) => panic!("no external commands: {command:?}"),
                AgentAction::RefreshToken => {}
            }
            while let Some(MasterAction::Send { message, .. }) = master.poll_action() {
                agent.handle_message(now, message);
            }
        }
    }
}

/// A master's registry with 1s heartbeats and 3 misses.
pub(super) fn master(name: &str) -> Registry {
    Registry::new(MasterConfig {
        name: name.into(),
        heartbeat_interval: Duration::from_secs(1),
        max_miss: 3,
        ..MasterConfig::default()
    })
}

/// `agent-1`, beating every second, its connection lost after 3s without an ack.
pub(crate) fn agent_config() -> AgentConfig {
    agent_config_with(BackoffPolicy::default())
}

/// [`agent_config`] with `backoff`.
pub(crate) fn agent_config_with(backoff: BackoffPolicy) -> AgentConfig {
    AgentConfig {
        masters: vec!["master-1".into()],
        heartbeat_interval: Duration::from_secs(1),
        heartbeat_timeout: Duration::from_secs(3),
        backoff,
        register: Register {
            node_name: "agent-1".into(),
            instance_id: "agent-1-host-1".into(),
            version: "test".into(),
            pid: 1,
            start_time_ms: 0,
            capabilities: vec![],
            metadata: BTreeMap::new(),
            build: BuildInfo::default(),
            token: String::new(),
        },
        commands: ExecutorConfig::default(),
        reauth_delay: Duration::from_secs(5),
        bugs: Default::default(),
    }
}
