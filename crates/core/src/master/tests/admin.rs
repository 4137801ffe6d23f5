//! What an operator does through a master: force, decommission, shut down.

use super::*;

#[test]
fn force_lets_an_agent_straight_back_and_decommission_closes_it_for_good() {
    let t0 = Instant::now();
    let mut registry = enforcing();
    registry.handle_message(t0, 1, register("agent-1", 7));
    drain(&mut registry);
    registry.admin_force("agent-1");
    let actions = drain(&mut registry);
    assert_eq!(goodbye_on(&actions, 1), Some(CloseCode::GoingAway));
    registry.handle_session_closed(t0, 1);
    registry.handle_message(t0, 2, register("agent-1", 7));
    assert_eq!(
        refusal_on(&drain(&mut registry), 2),
        None,
        "no record: let in"
    );
    registry.admin_decommission("agent-1");
    assert_eq!(
        goodbye_on(&drain(&mut registry), 2),
        Some(CloseCode::Normal)
    );
    assert_eq!(registry.nodes().count(), 0);
}

#[test]
fn a_master_shutting_down_says_goodbye_and_takes_no_one() {
    let t0 = Instant::now();
    let mut registry = Registry::new(config());
    registry.handle_message(t0, 1, register("agent-1", 7));
    registry.handle_message(t0, 2, register("agent-2", 8));
    drain(&mut registry);
    registry.shutdown(t0, Some("master-2"));
    let actions = drain(&mut registry);
    let named = actions.iter().all(|action| match action {
        MasterAction::Send {
            message: Message::Goodbye(goodbye),
            ..
        } => goodbye.leader.as_deref() == Some("master-2"),
        _ => true,
    });
    assert!(named, "the goodbyes name the successor: {actions:?}");
    assert_eq!(goodbye_on(&actions, 1), Some(CloseCode::GoingAway));
    assert_eq!(goodbye_on(&actions, 2), Some(CloseCode::GoingAway));
    // A newcomer is sent to the successor; with none, refused.
    registry.handle_message(t0, 3, register("agent-1", 7));
    assert!(matches!(
        &drain(&mut registry)[..],
        [MasterAction::Send { message: Message::Redirect(redirect), .. }, MasterAction::Close { .. }]
            if redirect.leader == "master-2"
    ));
    let mut alone = Registry::new(config());
    alone.shutdown(t0, None);
    alone.handle_message(t0, 1, register("agent-1", 7));
    assert_eq!(
        refusal_on(&drain(&mut alone), 1),
        Some((Refusal::ShuttingDown, 0))
    );
}
