//! What outlives a leader: its disk, its handover, and what a deposed leader returns.

use super::*;
use crate::command::Pending;

#[test]
fn what_a_master_writes_to_disk_reads_back_as_its_durable_state() {
    let mut registry = Registry::new(config());
    registry
        .submit("agent-1", "echo", BTreeMap::new(), Duration::from_secs(1))
        .unwrap();
    registry
        .push_config(BTreeMap::from([("k".into(), "v".into())]))
        .unwrap();
    registry.handle_leadership(Leadership::Follower { leader: None });
    let back: Durable = serde_json::from_slice(&registry.durable_json()).unwrap();
    assert_eq!(back, registry.durable());
    assert_eq!(back.unconfirmed.len(), 1);
}

#[test]
fn a_leader_that_steps_down_returns_what_the_next_leader_lacks_until_it_holds_it() {
    let mut old = master("master-2");
    let no_args = BTreeMap::new;
    let second = Duration::from_secs(1);
    let handed = old.submit("agent-9", "echo", no_args(), second).unwrap();
    // master-3 follows master-2 and takes its handover.
    let mut next = master("master-3");
    next.handle_leadership(Leadership::Follower {
        leader: Some("master-2".into()),
    });
    next.handle_handover("master-2", old.handover().unwrap());
    let stranded = old.submit("agent-9", "echo", no_args(), second).unwrap();
    old.handle_leadership(Leadership::Follower { leader: None });
    let refused = old.submit("agent-9", "echo", no_args(), second);
    assert_eq!(refused, Err(SubmitError::NotLeader));
    assert_eq!(old.durable().unconfirmed.len(), 2, "kept, not yet lost");
    // A handover from a master it does not follow changes nothing.
    next.handle_leadership(Leadership::Leader);
    old.handle_handover("master-3", next.handover().unwrap());
    assert_eq!(old.durable().unconfirmed.len(), 2);
    // Once it follows master-3, the handover settles `handed` (master-3 has it) and
    // `stranded` goes back to master-3, which takes it over.
    old.handle_leadership(Leadership::Follower {
        leader: Some("master-3".into()),
    });
    let returned = old.handle_handover("master-3", next.handover().unwrap());
    let ids = |pending: &[Pending]| -> Vec<String> {
        pending
            .iter()
            .map(|p| p.command.request_id.clone())
            .collect()
    };
    assert_eq!(ids(&returned), std::slice::from_ref(&stranded));
    assert_eq!(
        old.durable().unconfirmed.len(),
        1,
        "until master-3 holds it"
    );
    next.handle_hand_back("master-2", returned);
    let pending: Vec<Pending> = (next.durable().handover.outbox.pending_commands())
        .cloned()
        .collect();
    assert_eq!(ids(&pending), [handed, stranded]);
    let returned = old.handle_handover("master-3", next.handover().unwrap());
    assert!(returned.is_empty() && old.durable().unconfirmed.is_empty());
}

#[test]
fn a_leader_with_a_full_outbox_reports_a_returned_command_lost_once() {
    let second = Duration::from_secs(1);
    let mut old = master("master-1");
    let stranded = old
        .submit("agent-1", "echo", BTreeMap::new(), second)
        .unwrap();
    old.handle_leadership(Leadership::Follower {
        leader: Some("master-2".into()),
    });
    let mut next = master("master-2");
    let blob = BTreeMap::from([("blob".to_string(), "x".repeat(60_000))]);
    while next.submit("agent-2", "echo", blob.clone(), second).is_ok() {}
    let returned = old.handle_handover("master-2", next.handover().unwrap());
    next.handle_hand_back("master-1", returned);
    assert!(!next
        .durable()
        .handover
        .outbox
        .pending_commands()
        .any(|p| p.command.request_id == stranded));
    let returned = old.handle_handover("master-2", next.handover().unwrap());
    assert!(
        returned.is_empty(),
        "settled: reported lost by master-2, not returned again"
    );
}

#[test]
fn after_a_restart_only_a_master_that_led_accounts_for_its_commands() {
    let second = Duration::from_secs(1);
    let mut leader = master("master-1");
    leader.observe_term(3);
    leader
        .submit("agent-1", "echo", BTreeMap::new(), second)
        .unwrap();
    let mut follower = master("master-2");
    follower.handle_leadership(Leadership::Follower {
        leader: Some("master-1".into()),
    });
    follower.observe_term(3);
    follower.handle_handover("master-1", leader.handover().unwrap());
    // Both crash and come back from their disks, then learn they do not lead.
    let reboot = |was: &Registry, name: &str| {
        let mut again = master(name);
        again.restore(was.durable());
        again.handle_leadership(Leadership::Follower { leader: None });
        again.durable().unconfirmed.len()
    };
    assert_eq!(reboot(&leader, "master-1"), 1, "its own, to account for");
    assert_eq!(reboot(&follower, "master-2"), 0, "a copy of its leader's");
}

#[test]
fn a_handover_from_an_older_term_settles_nothing() {
    let second = Duration::from_secs(1);
    let mut old = master("master-1");
    old.observe_term(4);
    old.submit("agent-1", "echo", BTreeMap::new(), second)
        .unwrap();
    old.handle_leadership(Leadership::Follower {
        leader: Some("master-2".into()),
    });
    old.observe_term(5);
    // master-2's handover from when it led in term 3, held on a cut link until now.
    let mut stale = master("master-2");
    stale.observe_term(3);
    old.handle_handover("master-2", stale.handover().unwrap());
    assert_eq!(
        old.durable().unconfirmed.len(),
        1,
        "not reported lost on old news"
    );
    stale.observe_term(5);
    let returned = old.handle_handover("master-2", stale.handover().unwrap());
    assert_eq!(returned.len(), 1, "returned to the current leader");
}

#[test]
fn a_master_that_leads_again_sends_what_it_gave_up() {
    let mut master = master("master-2");
    let no_args = BTreeMap::new;
    let id = (master.submit("agent-9", "echo", no_args(), Duration::from_secs(1))).unwrap();
    master.handle_leadership(Leadership::Follower { leader: None });
    master.handle_leadership(Leadership::Leader);
    assert!(master.durable().unconfirmed.is_empty());
    assert_eq!(master.pending_commands(), 1);
    let restored = master.durable().handover.outbox;
    assert!(restored.knows(&id));
}
