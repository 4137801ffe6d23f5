//! The `sim` command as a user meets it: exit codes, error positions, the reproduce line.
#![cfg(madsim)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn scratch_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sim-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(args)
        .output()
        .expect("sim runs")
}

const SMALL: &str = r#"
name = "small"
seed = 9
duration = "20s"
[topology]
agents = 2
"#;

#[test]
fn a_bad_scenario_exits_2_naming_file_line_and_column() {
    let path = scratch_file(
        "bad.toml",
        &format!("{SMALL}[[faults]]\nat = \"5s\"\ncrash = \"agent-7\"\n"),
    );
    let output = sim(&["run", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:9:9:"), "{stderr}");
    assert!(stderr.contains("agent-1..agent-2"), "{stderr}");
}

#[test]
fn a_missing_file_exits_2() {
    let output = sim(&["run", "no/such/scenario.toml"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_failed_expectation_exits_1_and_prints_the_reproduce_command() {
    // The agents are online, so claiming they are offline must fail.
    let path = scratch_file(
        "fails.toml",
        &format!(
            "{SMALL}[[expect]]\ncheck = \"offline_within\"\nafter = \"5s\"\nwithin = \"5s\"\n"
        ),
    );
    let output = sim(&["run", path.to_str().unwrap(), "--seed", "77"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL  offline_within"), "{stdout}");
    assert!(
        stdout.ends_with("\n") && stdout.lines().last().unwrap().starts_with("wall "),
        "the report ends with a whole wall-time line: {stdout:?}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("reproduce: "), "{stderr}");
    assert!(stderr.contains("--seed 77"), "{stderr}");
}

/// Each of these was a panic, a hang or a silent pass; each must be exit 2 with a position.
#[test]
fn bad_input_exits_2_with_a_clear_error() {
    let cases = [
        (
            "masters.toml",
            SMALL.replace("agents = 2", "masters = 257\nagents = 2"),
            "masters.toml:6:11: a topology has 1 to 254 masters",
        ),
        (
            "long.toml",
            SMALL.replace("\"20s\"", "\"1000000h\""),
            "long.toml:4:12: duration 1000000h is longer than the limit",
        ),
        (
            "late.toml",
            format!("{SMALL}[[expect]]\ncheck = \"all_online\"\nat = \"1h\"\n"),
            "late.toml:9:6: `at` reaches 1h, past the end of the run (20s)",
        ),
        (
            "extra.toml",
            format!("{SMALL}[[expect]]\ncheck = \"all_online\"\nat = \"5s\"\nmax = 3\n"),
            "extra.toml:10:7: check \"all_online\" does not take `max`",
        ),
        (
            "range.toml",
            format!("{SMALL}[[faults]]\nat = \"5s\"\ncrash = \"agent-01\"\n"),
            "range.toml:9:9: unknown node \"agent-01\"",
        ),
    ];
    for (name, text, expected) in cases {
        let path = scratch_file(name, &text);
        let output = sim(&["run", path.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

#[test]
fn an_endless_file_is_refused_at_the_size_limit() {
    let output = sim(&["run", "/dev/zero"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("larger than 1024 KiB"), "{stderr}");
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let path = scratch_file("pipe.toml", SMALL);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["run", path.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -c0`: the reader closes its end before anything is written.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

#[test]
fn json_output_is_one_document_with_the_documented_keys() {
    let path = scratch_file("json.toml", SMALL);
    let output = sim(&["run", path.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(0));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["scenario"], "small");
    assert_eq!(document["seed"], 9);
    let first = &document["events"][0];
    for key in ["t_ms", "node", "kind"] {
        assert!(!first[key].is_null(), "event lacks {key}: {first}");
    }
    assert_eq!(document["stats"]["sim_ms"], 20_000);
    // No [[expect]]: only the rules every run with agents is held to, each holding.
    let verdicts = document["expectations"].as_array().unwrap();
    let rules: Vec<&str> = verdicts
        .iter()
        .map(|v| v["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "invariant backoff_follows_policy",
            "invariant offline_not_early"
        ]
    );
    assert!(
        verdicts.iter().all(|verdict| verdict["ok"] == true),
        "{verdicts:?}"
    );
}

#[test]
fn check_confirms_determinism() {
    let path = scratch_file("check.toml", SMALL);
    let output = sim(&["check", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("identical in two runs"));
}

#[test]
fn many_seeds_print_each_failing_seed_then_a_summary() {
    // The agents are online, so claiming they are offline fails on every seed.
    let path = scratch_file(
        "seeds.toml",
        &format!(
            "{SMALL}[[expect]]\ncheck = \"offline_within\"\nafter = \"5s\"\nwithin = \"5s\"\n"
        ),
    );
    let file = path.to_str().unwrap();
    let output = sim(&["run", file, "--seeds", "3..5"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for seed in 3..=5 {
        assert!(
            stdout.contains(&format!("FAIL seed {seed}: offline_within")),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("--seed {seed}\n")), "{stdout}");
    }
    assert!(
        stdout.contains("3 of 3 seeds failed: [3, 4, 5]"),
        "{stdout}"
    );

    let json = sim(&["run", file, "--seeds", "1,2", "--json"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let seeds: Vec<u64> = lines
        .iter()
        .map(|doc| doc["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, [1, 2]);

    let fine = scratch_file("fine.toml", SMALL);
    let output = sim(&["run", fine.to_str().unwrap(), "--seeds", "1..4"]);
    assert_eq!(output.status.code(), Some(0));
    let check = sim(&["check", fine.to_str().unwrap(), "--seeds", "1..3"]);
    assert_eq!(check.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&check.stdout).contains("3 seeds, each identical"));

    let pinned = scratch_file(
        "pinned.toml",
        &SMALL.replace("seed = 9\n", "seed = 9\nseeds = [7]\n"),
    );
    let output = sim(&["run", pinned.to_str().unwrap(), "--seeds", "1..4"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("pins its seeds to [7]"));
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 of 1 seeds failed"));

    let bad = sim(&["run", fine.to_str().unwrap(), "--seeds", "5..1"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// `--set` changes the file before its checks: a good one shows in the header and in the
/// reproduce command; a bad one exits 2 naming the flag.
#[test]
fn overrides_are_checked_like_the_file_and_repeated_in_the_reproduce_command() {
    let path = scratch_file(
        "set.toml",
        &format!("{SMALL}[[expect]]\ncheck = \"no_offline\"\nduring = \"1s..20s\"\n"),
    );
    let file = path.to_str().unwrap();
    let output = sim(&["run", file, "--set", "params.heartbeat.max_miss=5"]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("overrides  --set params.heartbeat.max_miss=5"),
        "{stdout}"
    );
    assert!(stdout.contains("max_miss 5"), "{stdout}");

    let crash = ["--set", "duration=30s", "--set", "faults.0.at=2s"];
    let bad = sim(&[&["run", file][..], &crash[..]].concat());
    assert_eq!(bad.status.code(), Some(2), "there is no [[faults]] entry 0");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--set faults.0.at=2s"), "{stderr}");

    let bad = sim(&["run", file, "--set", "params.heartbeat.max_miss=0"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--set params.heartbeat.max_miss=0: heartbeat interval"),
        "{stderr}"
    );
}

/// A sweep prints a row per grid point with its pass rate, and the CSV a row per run.
#[test]
fn a_sweep_tabulates_each_point_and_writes_a_row_per_run() {
    let path = scratch_file(
        "sweep.toml",
        &format!(
            "{SMALL}[[faults]]\nat = \"5s\"\ncrash = \"agent-1\"\n[[expect]]\n\
             check = \"offline_within\"\nagents = \"agent-1\"\nafter = \"5s\"\nwithin = \"1500ms\"\n"
        ),
    );
    let csv = path.with_extension("csv");
    let output = sim(&[
        "sweep",
        path.to_str().unwrap(),
        "--grid",
        "params.heartbeat.max_miss=2,3",
        "--seeds",
        "1..4",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(
        rows[0].starts_with("params.heartbeat.max_miss  pass"),
        "{stdout}"
    );
    // Offline after 2 missed 1s beats: found within 1.5s of the crash. After 3: never.
    assert!(
        rows[1].starts_with("2") && rows[1].contains("4/4"),
        "{stdout}"
    );
    assert!(
        rows[2].starts_with("3") && rows[2].contains("0/4"),
        "{stdout}"
    );
    let written = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(written.lines().count(), 1 + 2 * 4, "{written}");
    assert!(
        written.lines().nth(1).unwrap().starts_with("2,1,true"),
        "{written}"
    );
}

/// Long output made readable: a filtered timeline, verdicts only, and the seed from
/// madsim's own environment variables.
#[test]
fn filters_verdicts_only_and_madsim_seed_variables() {
    let path = scratch_file("read.toml", SMALL);
    let file = path.to_str().unwrap();
    let filtered = sim(&["run", file, "--filter", "node=agent-2,kind=registered"]);
    let stdout = String::from_utf8_lossy(&filtered.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("0:")).collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].contains("agent-2") && lines[0].contains("registered"),
        "{stdout}"
    );

    let quiet = sim(&["run", file, "--verdicts-only"]);
    let stdout = String::from_utf8_lossy(&quiet.stdout);
    assert!(!stdout.lines().any(|l| l.starts_with("0:")), "{stdout}");
    assert!(stdout.contains("simulated 20s"), "{stdout}");

    let seeded = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["run", file])
        .env("MADSIM_TEST_SEED", "31")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&seeded.stdout).contains("seed       31"));
    let many = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["run", file])
        .env("MADSIM_TEST_SEED", "31")
        .env("MADSIM_TEST_NUM", "3")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&many.stdout).contains("0 of 3 seeds failed"));

    let bad = sim(&["run", file, "--filter", "node=agent-9"]);
    assert_eq!(bad.status.code(), Some(2));
    let version = sim(&["--version"]);
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(version.starts_with("sim "), "{version}");
    assert!(version.contains("(madsim)"), "names its engine: {version}");
}

/// Plots are SVG files: a run's rates, a sweep's values against the grid.
#[test]
fn runs_and_sweeps_draw_svg_plots() {
    let path = scratch_file(
        "plot.toml",
        &format!("{SMALL}[[faults]]\nat = \"5s\"\ncrash = \"agent-1\"\n"),
    );
    let dir = path.with_extension("plots");
    let run = sim(&[
        "run",
        path.to_str().unwrap(),
        "--plot",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0));
    let rates = std::fs::read_to_string(dir.join("rates.svg")).unwrap();
    assert!(
        rates.starts_with("<svg") && rates.contains("agents online"),
        "{rates:.200}"
    );

    let swept = dir.join("sweep");
    let sweep = sim(&[
        "sweep",
        path.to_str().unwrap(),
        "--grid",
        "params.heartbeat.max_miss=2,3",
        "--seeds",
        "1..3",
        "--plot",
        swept.to_str().unwrap(),
    ]);
    assert_eq!(sweep.status.code(), Some(0));
    let detection = std::fs::read_to_string(swept.join("detection-ms.svg")).unwrap();
    assert!(
        detection.contains("params.heartbeat.max_miss"),
        "{detection:.300}"
    );
    assert!(
        detection.contains("median") && detection.contains("p10"),
        "{detection:.300}"
    );
}

/// RUST_LOG adds log lines on stderr, stamped with simulated time and node, and changes
/// nothing in the run.
#[test]
fn rust_log_stamps_simulated_time_and_leaves_the_run_alone() {
    let path = scratch_file("log.toml", SMALL);
    let plain = sim(&["run", path.to_str().unwrap()]);
    let logged = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["run", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let without_wall = |out: &[u8]| -> String {
        let text = String::from_utf8_lossy(out);
        text.lines()
            .filter(|l| !l.starts_with("wall"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_wall(&plain.stdout), without_wall(&logged.stdout));
    let stderr = String::from_utf8_lossy(&logged.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("0:00:00.100 agent-1 ")),
        "{stderr:.500}"
    );
    assert!(String::from_utf8_lossy(&plain.stderr).is_empty());
}

#[test]
fn turmoil_only_faults_are_refused_on_madsim_naming_the_engine_that_has_them_and_holds_run() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/turmoil/slow-link.toml");
    let output = sim(&["run", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`between`"), "{stderr}");
    assert!(stderr.contains("needs the turmoil engine"), "{stderr}");
    assert!(
        stderr.contains("cargo native run --release -p sim"),
        "{stderr}"
    );
    // A hold is no longer turmoil's alone: madsim holds at the shell's link gates.
    let held = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/hold-release.toml");
    let output = sim(&["run", held.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An output file that cannot be written is not bad input: the runs happened and were printed,
/// so the command ends with its own code, 3, naming the file.
#[test]
fn an_unwritable_output_exits_3_after_printing_the_run() {
    let path = scratch_file("unwritable.toml", SMALL);
    let file = path.to_str().unwrap();
    let missing = std::env::temp_dir().join(format!("sim-no-such-dir-{}", std::process::id()));
    let html = missing.join("run.html");
    let output = sim(&["run", file, "--html", html.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.lines().last().unwrap().starts_with("wall "),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!("error: cannot write {}: ", html.display());
    assert!(stderr.starts_with(&expected), "{stderr}");

    let csv = missing.join("runs.csv");
    let grid = "params.heartbeat.max_miss=2,3";
    let sweep = ["sweep", file, "--grid", grid, "--seeds", "1..2", "--csv"];
    let output = sim(&[&sweep[..], &[csv.to_str().unwrap()]].concat());
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stdout).contains("2 points × 2 seeds"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot write {}", csv.display())),
        "{stderr}"
    );
}

/// `check` is one code path for one seed and many; it takes the seed as `run` does, from
/// `--seed`, `--seeds` or madsim's variables, and one seed says how many events matched.
#[test]
fn check_takes_its_seeds_as_run_does() {
    let path = scratch_file("check-seeds.toml", SMALL);
    let file = path.to_str().unwrap();
    let one = sim(&["check", file, "--seed", "4"]);
    assert_eq!(one.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&one.stdout);
    assert!(stdout.starts_with("deterministic  "), "{stdout}");
    assert!(
        stdout.contains("  seed 4: ") && stdout.contains(" events identical in two runs"),
        "{stdout}"
    );
    let seeded = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["check", file])
        .env("MADSIM_TEST_SEED", "31")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&seeded.stdout).contains("seed 31: "));
    let many = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["check", file])
        .env("MADSIM_TEST_SEED", "31")
        .env("MADSIM_TEST_NUM", "2")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&many.stdout).contains("2 seeds, each identical"));
    let both = sim(&["check", file, "--seed", "4", "--seeds", "1..2"]);
    assert_eq!(both.status.code(), Some(2), "--seed and --seeds conflict");
}
