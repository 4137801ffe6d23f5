//! The HTML timeline in a real browser: headless Chromium loads the page, runs its script, and
//! the rendered DOM has a lane per node, the fault bands and the leader band. `.ci/run`
//! installs Chromium from Debian's packages; without it (and outside CI) the test says so and
//! passes, so `cargo test` works on a machine that has none.
#![cfg(madsim)]

use std::path::PathBuf;
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    let named = std::env::var_os("CHROMIUM").map(PathBuf::from);
    let found = [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|path| path.exists());
    named.or(found)
}

#[test]
fn the_page_renders_a_lane_per_node_the_faults_and_who_leads() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install Chromium (.ci/run does)"
        );
        eprintln!("no Chromium here (set CHROMIUM=path): the browser test did not run");
        return;
    };
    let loaded = sim::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/raft-leader-crash.toml"
    )))
    .unwrap();
    let run = loaded.run(loaded.scenario.seed);
    let page = sim::report::html::page(&loaded.scenario, 8, &run.output.timeline.entries);
    let dir = std::env::temp_dir().join(format!("sim-html-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("timeline.html");
    std::fs::write(&path, page).unwrap();
    let output = Command::new(&browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", path.display()))
        .output()
        .expect("Chromium runs");
    let dom = String::from_utf8_lossy(&output.stdout);
    let count = |needle: &str| dom.matches(needle).count();
    // The harness's lane and one per node: 3 masters, 10 agents.
    assert_eq!(count(r#"class="lane""#), 14, "{dom:.2000}");
    for node in ["sim", "master-1", "master-3", "agent-10"] {
        assert!(
            dom.contains(&format!(r#"data-node="{node}""#)),
            "lane for {node}"
        );
    }
    // The leader's crash opens a fault period, shaded on every lane.
    assert_eq!(count(r#"class="fault""#), 14, "{dom:.2000}");
    // Two terms of office: before the crash and after.
    assert_eq!(count(r#"class="leader""#), 2);
    assert!(dom.contains("leads (term 2)"));
    // Every event is placed, with its fields for the hover.
    let events = count(r#"class="event"#);
    assert_eq!(events, run.output.timeline.entries.len());
    assert!(dom.contains(r#"data-kind="became_leader""#));
}
