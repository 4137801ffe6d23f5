//! Registration: who is let in, who is refused, and which instance and session win.

use super::*;
use crate::wire::{Redirect, Unregister};

#[test]
fn register_is_acked_and_heartbeats_keep_a_node_online() {
    let t0 = Instant::now();
    let mut registry = Registry::new(config());
    registry.handle_message(t0, 1, register("agent-1", 7));
    let actions = drain(&mut registry);
    assert!(matches!(
        &actions[..],
        [MasterAction::Send { session: 1, message: Message::RegisterAck(ack) }] if ack.accepted()
    ));
    for second in 1..10 {
        let now = t0 + Duration::from_secs(second);
        registry.handle_message(now, 1, heartbeat(second));
        registry.handle_timeout(now);
    }
    assert_eq!(liveness(&registry), vec![Liveness::Online]);
}

#[test]
fn credentials_are_checked_revoked_and_restored() {
    let t0 = Instant::now();
    let mut registry = Registry::new(MasterConfig {
        auth_secret: Some("secret".into()),
        ..config()
    });
    registry.handle_message(t0, 1, register("agent-1", 7));
    assert_eq!(refusal_on(&drain(&mut registry), 1), None);
    let Message::Register(mut forged) = register("agent-2", 8) else {
        unreachable!()
    };
    forged.token = crate::auth::token("guess", "agent-2");
    registry.handle_message(t0, 2, Message::Register(forged));
    assert_eq!(
        refusal_on(&drain(&mut registry), 2),
        Some((Refusal::Unauthorized, 0))
    );

    registry.revoke_credentials("agent-1");
    let actions = drain(&mut registry);
    assert_eq!(goodbye_on(&actions, 1), Some(CloseCode::Unauthorized));
    registry.handle_message(t0, 3, register("agent-1", 7));
    assert_eq!(
        refusal_on(&drain(&mut registry), 3),
        Some((Refusal::Unauthorized, 0))
    );
    registry.restore_credentials("agent-1");
    registry.handle_message(t0, 4, register("agent-1", 7));
    assert_eq!(refusal_on(&drain(&mut registry), 4), None);
}

#[test]
fn admission_refuses_past_capacity_with_retry_after_only_when_set() {
    let t0 = Instant::now();
    for retry_after in [None, Some(Duration::from_secs(2))] {
        let mut registry = Registry::new(MasterConfig {
            admission: Some(Admission {
                capacity: 2,
                retry_after,
            }),
            ..config()
        });
        for session in 1..=3 {
            registry.handle_message(t0, session, register(&format!("agent-{session}"), 1));
        }
        let actions = drain(&mut registry);
        assert_eq!(refusal_on(&actions, 2), None);
        let expected = retry_after.map_or(0, |after| after.as_millis() as u64);
        assert_eq!(refusal_on(&actions, 3), Some((Refusal::Busy, expected)));
        let later = t0 + Duration::from_millis(500);
        registry.handle_message(later, 4, register("agent-3", 1));
        assert_eq!(refusal_on(&drain(&mut registry), 4), None, "refilled");
    }
}

#[test]
fn an_enforcing_master_makes_a_returning_agent_wait_its_backoff() {
    let t0 = Instant::now();
    let mut registry = enforcing();
    registry.handle_message(t0, 1, register("agent-1", 7));
    registry.handle_session_closed(t0, 1);
    let soon = t0 + Duration::from_millis(400);
    registry.handle_message(soon, 2, register("agent-1", 7));
    // Too soon (400ms of 1s), and that attempt counts: 2s from it.
    assert_eq!(
        refusal_on(&drain(&mut registry), 2),
        Some((Refusal::Busy, 2000))
    );
    registry.admin_status(soon, "agent-1");
    let ready = soon + Duration::from_secs(2);
    registry.handle_message(ready, 3, register("agent-1", 7));
    assert_eq!(refusal_on(&drain(&mut registry), 3), None);
    assert!(registry.gate.attempts.status("agent-1").is_none());
}

#[test]
fn a_new_instance_of_an_agent_replaces_the_old_one_and_its_session() {
    let t0 = Instant::now();
    let mut registry = Registry::new(config());
    registry.handle_message(t0, 1, register("agent-1", 101));
    drain(&mut registry);
    let later = t0 + Duration::from_secs(1);
    registry.handle_message(later, 2, register("agent-1", 102));
    let actions = drain(&mut registry);
    assert!(
        actions.iter().any(|action| matches!(
            action,
            MasterAction::Close {
                session: 1,
                reason: "replaced by a new instance"
            }
        )),
        "{actions:?}"
    );
    let instances: Vec<&str> = registry.nodes().map(|(id, _)| id).collect();
    assert_eq!(instances, ["agent-1-host-102"]);
    // The old instance never goes offline in the new one's name.
    registry.handle_timeout(t0 + Duration::from_millis(3500));
    assert_eq!(liveness(&registry), vec![Liveness::Online]);
    // Its session closing later changes nothing either.
    registry.handle_session_closed(t0, 1);
    assert_eq!(registry.online_count(), 1);
}

#[test]
fn the_newest_session_of_an_instance_wins() {
    let t0 = Instant::now();
    let mut registry = Registry::new(config());
    registry.handle_message(t0, 1, register("agent-1", 7));
    drain(&mut registry);
    registry.handle_message(t0, 2, register("agent-1", 7));
    let actions = drain(&mut registry);
    assert!(actions.contains(&MasterAction::Close {
        session: 1,
        reason: "superseded by a newer session"
    }));
    assert_eq!(registry.nodes().count(), 1);
    assert_eq!(registry.nodes().next().unwrap().1.session, Some(2));
    // The old session no longer speaks for the node.
    registry.handle_message(t0, 1, heartbeat(1));
    assert!(matches!(
        drain(&mut registry)[..],
        [MasterAction::Close { session: 1, .. }]
    ));
}

#[test]
fn unregister_removes_the_node_and_closes_the_session() {
    let t0 = Instant::now();
    let mut registry = Registry::new(config());
    registry.handle_message(t0, 1, register("agent-1", 7));
    drain(&mut registry);
    registry.handle_message(
        t0,
        1,
        Message::Unregister(Unregister {
            reason: "shutdown".into(),
        }),
    );
    assert_eq!(registry.nodes().count(), 0);
    assert_eq!(
        drain(&mut registry),
        vec![MasterAction::Close {
            session: 1,
            reason: "unregistered"
        }]
    );
}

#[test]
fn a_follower_redirects_and_a_leader_that_steps_down_lets_go() {
    let t0 = Instant::now();
    let mut registry = Registry::new(config());
    registry.handle_leadership(
        Instant::now(),
        Leadership::Follower {
            leader: Some("master-2".into()),
        },
    );
    registry.handle_message(t0, 1, register("agent-1", 7));
    assert_eq!(
        drain(&mut registry),
        vec![
            MasterAction::Send {
                session: 1,
                message: Message::Redirect(Redirect {
                    leader: "master-2".into()
                })
            },
            MasterAction::Close {
                session: 1,
                reason: "redirected to the leader"
            }
        ]
    );
    // Knowing no leader, it holds a registration until it learns one, or for the leader wait.
    registry.handle_leadership(t0, Leadership::Follower { leader: None });
    registry.handle_message(t0, 2, register("agent-1", 7));
    assert_eq!(drain(&mut registry), [], "held");
    let wait = config().leader_wait;
    assert_eq!(registry.poll_timeout(), Some(t0 + wait));
    registry.handle_timeout(t0 + wait);
    assert!(matches!(
        &drain(&mut registry)[..],
        [MasterAction::Send { message: Message::RegisterAck(ack), .. }, MasterAction::Close { .. }]
            if ack.refusal == Refusal::NoLeader && ack.retry_after_ms == 1500
    ));
    // One held when it becomes the leader is admitted then.
    registry.handle_message(t0, 3, register("agent-1", 7));
    registry.handle_message(t0, 4, register("agent-2", 8));
    assert_eq!(drain(&mut registry), [], "held");
    registry.handle_leadership(t0, Leadership::Leader);
    let acks = drain(&mut registry)
        .into_iter()
        .filter(|action| matches!(action, MasterAction::Send { message: Message::RegisterAck(ack), .. } if ack.accepted()))
        .count();
    assert_eq!(acks, 2);
    registry.handle_leadership(t0, Leadership::Follower { leader: None });
    assert_eq!(registry.nodes().count(), 0);
    let closed: Vec<_> = drain(&mut registry)
        .into_iter()
        .filter_map(|action| match action {
            MasterAction::Close { session, .. } => Some(session),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![3, 4]);
    assert_eq!(registry.poll_timeout(), None);
}
