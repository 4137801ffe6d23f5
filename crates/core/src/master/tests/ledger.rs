//! What the masters replicate: a change counts (a command is sent, a config pushed) only once
//! the cluster commits the index it was proposed at, and a new leader accepts what it
//! inherited with its first commit.

use super::*;
use crate::timeline::{CommandEvent, Event};

/// A registry that waits for the cluster to commit, as a cluster member does.
fn replicating(name: &str) -> Registry {
    let mut registry = master(name);
    registry.replicate();
    registry
}

/// Registers `agent` on `session` and drops what the registry sent.
fn registered(registry: &mut Registry, agent: &str, session: SessionId) {
    registry.handle_message(Instant::now(), session, register(agent, 1));
    drain(registry);
}

fn commands_sent(registry: &mut Registry) -> Vec<String> {
    drain(registry)
        .into_iter()
        .filter_map(|action| match action {
            MasterAction::Send {
                message: Message::Command(command),
                ..
            } => Some(command.request_id),
            _ => None,
        })
        .collect()
}

fn command_events(registry: &mut Registry) -> Vec<CommandEvent> {
    std::iter::from_fn(|| registry.poll_event())
        .filter_map(|event| match event {
            Event::Command(event) => Some(event),
            _ => None,
        })
        .collect()
}

#[test]
fn a_command_is_sent_only_once_the_cluster_commits_it() {
    let mut leader = replicating("master-1");
    leader.handle_commit(Some(0));
    registered(&mut leader, "agent-1", 1);
    let second = Duration::from_secs(1);
    let id = (leader.submit("agent-1", "echo", BTreeMap::new(), second)).unwrap();
    assert!(!leader.is_accepted(&id));
    assert_eq!(commands_sent(&mut leader), Vec::<String>::new(), "not yet");
    let (index, state) = leader.take_proposal().expect("a change to propose");
    assert_eq!(index, 1);
    assert_eq!(leader.take_proposal(), None, "nothing new since");
    leader.handle_commit(Some(index));
    assert!(leader.is_accepted(&id));
    assert_eq!(commands_sent(&mut leader), std::slice::from_ref(&id));
    // A follower installs the state and holds the command for when it leads.
    let mut follower = replicating("master-2");
    follower.handle_leadership(Instant::now(), Leadership::Follower { leader: None });
    follower.install(index, &state).unwrap();
    assert_eq!(follower.replicated(), leader.replicated());
    assert_eq!(follower.pending_commands(), 1);
}

#[test]
fn a_key_submitted_again_finds_its_command() {
    let mut leader = master("master-1");
    let second = Duration::from_secs(1);
    let submit = |leader: &mut Registry| {
        leader.submit_once(
            Some("op-1/agent-1"),
            "agent-1",
            "echo",
            BTreeMap::new(),
            second,
        )
    };
    let first = submit(&mut leader).unwrap();
    let again = submit(&mut leader).unwrap();
    assert_eq!(first, again);
    assert_eq!(leader.pending_commands(), 1);
    // Answered, it is still found: a client that missed the answer does not run it twice.
    registered(&mut leader, "agent-1", 1);
    let result = crate::command::CommandResult {
        request_id: first.clone(),
        outcome: crate::command::Outcome::Ok,
        output: String::new(),
        duration_ms: 0,
    };
    leader.handle_message(Instant::now(), 1, Message::CommandResult(result));
    assert_eq!(leader.pending_commands(), 0);
    assert_eq!(submit(&mut leader).unwrap(), first);
    assert!(leader.is_accepted(&first));
}

#[test]
fn a_new_leader_accepts_what_it_inherited_with_its_first_commit() {
    let second = Duration::from_secs(1);
    let mut old = replicating("master-1");
    old.handle_commit(Some(0));
    let committed = old
        .submit("agent-1", "echo", BTreeMap::new(), second)
        .unwrap();
    let (index, state) = old.take_proposal().unwrap();
    old.handle_commit(Some(index));
    // This one the old leader proposes but never gets committed: it dies with it.
    let lost = old
        .submit("agent-2", "echo", BTreeMap::new(), second)
        .unwrap();
    let (_, uncommitted) = old.take_proposal().unwrap();
    assert!(!old.is_accepted(&lost));

    let mut new = replicating("master-2");
    new.handle_leadership(Instant::now(), Leadership::Follower { leader: None });
    new.install(index, &state).unwrap();
    new.handle_leadership(Instant::now(), Leadership::Leader);
    registered(&mut new, "agent-1", 1);
    assert!(
        !new.is_accepted(&committed),
        "not before its own first commit"
    );
    command_events(&mut new);
    new.handle_commit(Some(index));
    assert!(new.is_accepted(&committed));
    assert_eq!(commands_sent(&mut new), [committed]);
    assert_eq!(
        command_events(&mut new),
        [
            CommandEvent::CommandsAdopted { count: 1 },
            CommandEvent::CommandSent {
                request_id: "master-1-1".into(),
                agent: "agent-1".into(),
                name: "echo".into()
            }
        ]
    );
    // The old leader, now a follower, takes the new leader's state: its uncommitted proposal
    // is gone, never having been accepted.
    old.handle_leadership(Instant::now(), Leadership::Follower { leader: None });
    assert_ne!(uncommitted, state);
    let (_, replicated) = (index, serde_json::to_vec(&new.replicated()).unwrap());
    old.install(index, &replicated).unwrap();
    assert!(!old.replicated().outbox.knows(&lost));
}

#[test]
fn a_config_is_pushed_once_committed_and_a_client_learns_when() {
    let mut leader = replicating("master-1");
    leader.handle_commit(Some(0));
    registered(&mut leader, "agent-1", 1);
    let id = leader
        .push_config(BTreeMap::from([("k".into(), "v".into())]))
        .unwrap();
    assert_eq!(leader.config_accepted(id), Some(false));
    assert_eq!(leader.config_id().version, 0, "agents are not told yet");
    let (index, _) = leader.take_proposal().unwrap();
    leader.handle_commit(Some(index));
    assert_eq!(leader.config_accepted(id), Some(true));
    assert_eq!(leader.config_id(), id);
    assert!(matches!(
        command_events(&mut leader).as_slice(),
        [CommandEvent::ConfigPushed {
            version: 1,
            agents: 1,
            ..
        }]
    ));
    leader.handle_leadership(Instant::now(), Leadership::Follower { leader: None });
    assert_eq!(
        leader.config_accepted(id),
        None,
        "no longer leads: ask the next"
    );
}

#[test]
fn an_unreadable_state_is_refused_and_changes_nothing() {
    let mut registry = master("master-1");
    registry
        .submit("agent-1", "echo", BTreeMap::new(), Duration::from_secs(1))
        .unwrap();
    let before = registry.replicated();
    assert!(registry.install(7, b"{not json").is_err());
    assert_eq!(registry.replicated(), before);
}

/// What an operator reads of a command: pending and accepted, then answered with its result on
/// the master that received it, and answered without one on a successor.
#[test]
fn a_commands_state_is_pending_then_completed_with_its_result() {
    let mut leader = master("master-1");
    let id = (leader.submit("agent-1", "echo", BTreeMap::new(), Duration::from_secs(1))).unwrap();
    assert_eq!(
        leader.command_state(&id),
        Some(CommandState::Pending {
            agent: "agent-1".into(),
            name: "echo".into(),
            accepted: true,
        })
    );
    assert_eq!(leader.command_state("master-1-99"), None);
    registered(&mut leader, "agent-1", 1);
    let result = crate::command::CommandResult {
        request_id: id.clone(),
        outcome: crate::command::Outcome::Ok,
        output: "hi".into(),
        duration_ms: 3,
    };
    leader.handle_message(Instant::now(), 1, Message::CommandResult(result.clone()));
    assert_eq!(
        leader.command_state(&id),
        Some(CommandState::Completed(Some(result)))
    );
    let state = serde_json::to_vec(&leader.replicated()).unwrap();
    let mut successor = master("master-2");
    successor.install(1, &state).unwrap();
    assert_eq!(
        successor.command_state(&id),
        Some(CommandState::Completed(None))
    );
}
