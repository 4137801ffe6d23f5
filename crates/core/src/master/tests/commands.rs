//! Commands a master accepts: only what fits a frame, and no more than its outbox holds.

use super::*;
use crate::wire::MAX_FRAME_DEFAULT;

#[test]
fn a_master_holds_a_bounded_outbox_so_its_replicated_state_always_fits() {
    let mut master = master("master-1");
    let blob = BTreeMap::from([("blob".to_string(), "x".repeat(60_000))]);
    let second = Duration::from_secs(1);
    let mut accepted = 0;
    let refused = loop {
        match master.submit("agent-1", "echo", blob.clone(), second) {
            Ok(_) => accepted += 1,
            Err(error) => break error,
        }
    };
    assert!(
        matches!(refused, SubmitError::OutboxFull { .. }),
        "{refused}"
    );
    assert!((30..40).contains(&accepted), "{accepted} accepted");
    let state = serde_json::to_vec(&master.replicated()).unwrap();
    assert!(state.len() < 4 << 20, "{} bytes", state.len());
}

#[test]
fn a_command_too_large_for_a_frame_is_refused_and_not_kept() {
    let mut master = master("master-1");
    let big = BTreeMap::from([("blob".to_string(), "x".repeat(MAX_FRAME_DEFAULT))]);
    let refused = master.submit("agent-1", "echo", big, Duration::from_secs(1));
    assert!(
        matches!(refused, Err(SubmitError::TooLarge { max, .. }) if max == MAX_FRAME_DEFAULT),
        "{refused:?}"
    );
    assert_eq!(master.pending_commands(), 0);
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("exceeds the frame limit"), "{message}");
}
