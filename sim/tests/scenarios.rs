//! Every scenario file keeps its timeline and verdicts as a reviewed snapshot in `snapshots/`,
//! and every expectation in it must hold. A changed timeline fails here until someone reviews
//! the diff (see the README).
#![cfg(madsim)]

use sim::{judge, report, run};
use std::sync::Mutex;

#[test]
fn scenario() {
    let failures = Mutex::new(Vec::new());
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        insta::glob!("../../scenarios", "*.toml", |path| {
            let loaded = sim::load(path).unwrap_or_else(|error| panic!("{error}"));
            let scenario = &loaded.scenario;
            let output = run::run(scenario, scenario.seed);
            let timeline = &output.timeline;
            let verdicts = judge::evaluate(scenario, &loaded.expectations, timeline);
            for verdict in verdicts.iter().filter(|verdict| !verdict.ok) {
                failures.lock().unwrap().push(format!(
                    "{}: {}: {}",
                    path.display(),
                    verdict.check,
                    verdict.detail
                ));
            }
            insta::assert_snapshot!(report::deterministic_text(
                scenario,
                scenario.seed,
                &timeline.entries,
                &verdicts
            ));
        });
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "expectations failed:\n{}",
        failures.join("\n")
    );
}
