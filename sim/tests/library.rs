//! The README's example of a test of your own: build a scenario in code, run it with a seed,
//! and assert on its verdicts and its typed events, without the `sim` command.
#![cfg(madsim)]

use fleet_core::timeline::{Event, MasterEvent};

#[test]
fn a_crashed_agent_is_marked_offline_once() -> Result<(), sim::scenario::ConfigError> {
    let loaded = sim::parse(
        "mine.toml",
        r#"
        name = "mine"
        duration = "30s"
        [topology]
        agents = 3
        [[faults]]
        at = "10s"
        crash = "agent-2"
        [[expect]]
        check = "offline_within"
        agents = "agent-2"
        after = "10s"
        within = "5s"
        "#,
    )?;
    let run = loaded.run(7);
    assert!(run.passed(), "{:?}", run.failures());
    assert!(run.verdict("offline_within").is_some_and(|v| v.ok));
    let offline = run.events().filter(|(_, node, event)| {
        *node == "master-1" && matches!(event, Event::Master(MasterEvent::NodeOffline { .. }))
    });
    assert_eq!(offline.count(), 1);
    assert_eq!(run.faults().count(), 1);
    // The same seed, the same run.
    assert_eq!(
        loaded.run(7).output.timeline.entries,
        run.output.timeline.entries
    );
    Ok(())
}
