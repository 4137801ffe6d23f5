//! Differential verdicts: every shipped scenario, run on turmoil with its snapshot seed, must
//! reach the verdicts madsim reached (its reviewed snapshot in `snapshots/`, which the
//! simulation build's scenario test keeps true). Timelines differ between engines; verdicts
//! should not. A verdict that differs must be in the README's table of known engine
//! differences, with the reason, and every row there must still differ.
//!
//! Native build only: `cargo native test --release -p sim --test engines` (`just engines`).
//! The hour-long fleet scenarios are left out; they take minutes each on turmoil.
#![cfg(not(madsim))]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Too long to run on turmoil in a test: each simulates an hour of a 100-agent fleet.
const LEFT_OUT: &[&str] = &["fleet-1h", "fleet-3m-1h"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The README's known engine differences: `(scenario, check)` rows between the markers.
fn known_differences() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme
        .find("<!-- engine-differences -->")
        .expect("the README marks its table of engine differences");
    let end = readme[start..]
        .find("<!-- /engine-differences -->")
        .map(|end| start + end)
        .expect("the table of engine differences ends with its marker");
    readme[start..end]
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let unquote = |cell: &str| cell.trim_matches('`').to_string();
            (unquote(cells[1]), unquote(cells[2]))
        })
        .collect()
}

/// madsim's verdict on `check` in the scenario's snapshot: `Some(ok)`, or `None` if absent.
fn madsim_verdict(snapshot: &str, check: &str) -> Option<bool> {
    snapshot.lines().find_map(|line| {
        let rest = line.strip_prefix("  ok    ").map(|rest| (true, rest));
        let rest = rest.or_else(|| line.strip_prefix("  FAIL  ").map(|rest| (false, rest)));
        let (ok, rest) = rest?;
        rest.strip_prefix(check)?.starts_with(':').then_some(ok)
    })
}

#[test]
fn every_scenario_reaches_madsims_verdicts_on_turmoil() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("scenarios"))
        .expect("scenarios/")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .filter(|path| {
            !LEFT_OUT
                .iter()
                .any(|name| path.file_stem().unwrap() == *name)
        })
        .collect();
    files.sort();
    let known = known_differences();
    let differences = Mutex::new(BTreeSet::new());
    let problems = Mutex::new(Vec::new());
    let next = Mutex::new(files.iter());
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let Some(path) = next.lock().unwrap().next() else {
                    return;
                };
                let name = path.file_stem().unwrap().to_string_lossy().to_string();
                let loaded = sim::load(path).unwrap_or_else(|error| panic!("{error}"));
                let snapshot = root().join(format!("snapshots/scenario@{name}.toml.snap"));
                let snapshot = std::fs::read_to_string(&snapshot)
                    .unwrap_or_else(|error| panic!("{}: {error}", snapshot.display()));
                let run = loaded.run(loaded.scenario.seed);
                let wall = run.output.wall.as_secs_f64();
                eprintln!(
                    "{name}: {} verdicts on turmoil in {wall:.1}s",
                    run.verdicts.len()
                );
                for verdict in &run.verdicts {
                    match madsim_verdict(&snapshot, &verdict.check) {
                        Some(ok) if ok == verdict.ok => {}
                        Some(ok) => {
                            let shown = |ok| if ok { "ok" } else { "FAIL" };
                            let key = (name.clone(), verdict.check.clone());
                            if !known.contains(&key) {
                                problems.lock().unwrap().push(format!(
                                    "{name}: {}: madsim {}, turmoil {}: {}",
                                    verdict.check,
                                    shown(ok),
                                    shown(verdict.ok),
                                    verdict.detail
                                ));
                            }
                            differences.lock().unwrap().insert(key);
                        }
                        None => problems.lock().unwrap().push(format!(
                            "{name}: {}: not in madsim's snapshot",
                            verdict.check
                        )),
                    }
                }
            });
        }
    });
    let differences = differences.into_inner().unwrap();
    let mut problems = problems.into_inner().unwrap();
    for (scenario, check) in known.difference(&differences) {
        problems.push(format!(
            "{scenario}: {check}: listed as an engine difference in the README, but both \
             engines agree now: remove the row"
        ));
    }
    problems.sort();
    assert!(
        problems.is_empty(),
        "verdicts differ between madsim and turmoil:\n{}",
        problems.join("\n")
    );
}

/// Scenarios of faults only turmoil has (`scenarios/turmoil/`): every expectation holds, and
/// the timeline matches its reviewed snapshot in `snapshots/turmoil/`.
#[test]
fn turmoil_only_scenarios_hold_and_keep_their_snapshots() {
    let failures = Mutex::new(Vec::new());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/turmoil");
    let mut files: Vec<_> = (std::fs::read_dir(&dir).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    // Each named after its file, as `insta::glob!` would (it leaves the name out for one file).
    for path in &files {
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("../../snapshots/turmoil");
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.set_snapshot_suffix(path.file_name().unwrap().to_string_lossy());
        settings.set_input_file(path);
        settings.bind(|| {
            let loaded = sim::load(path).unwrap_or_else(|error| panic!("{error}"));
            let scenario = &loaded.scenario;
            let run = loaded.run(scenario.seed);
            for verdict in run.failures() {
                let shown = format!("{}: {}: {}", path.display(), verdict.check, verdict.detail);
                failures.lock().unwrap().push(shown);
            }
            insta::assert_snapshot!(
                "scenario",
                sim::report::deterministic_text(
                    scenario,
                    scenario.seed,
                    &run.output.timeline.entries,
                    &run.verdicts
                )
            );
        });
    }
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "expectations failed:\n{}",
        failures.join("\n")
    );
}
