//! A scenario built in code is the scenario its file would be: the same `Scenario` once
//! parsed, the same run, the same verdicts; and a mistake in it is told as the call that made it.
#![cfg(madsim)]

use sim::scenario::source::Position;
use sim::scenario::ConfigError;
use sim::{Scenario, ScenarioBuilder};
use std::path::Path;

/// `scenarios/raft-leader-crash.toml`, call for key.
fn raft_leader_crash() -> ScenarioBuilder {
    let old = "masters - @old";
    Scenario::builder("raft-leader-crash")
        .description("the leader crashes at 30s, a new one is elected, the old one rejoins quietly")
        .seed(8)
        .duration("2m")
        .masters(3)
        .agents(10)
        .cluster_mode("raft")
        .election_timeout("1500ms..3000ms")
        .leader_heartbeat_interval("500ms")
        .crash_at("30s", "leader")
        .with("as", "old")
        .restart_at("1m", "@old")
        .expect_leader_elected("30s", "8s")
        .with("among", old)
        .expect_agents_follow_leader("30s", "25s")
        .expect_no_election("38s..2m")
        .expect("term_unchanged", &[("during", "38s..2m"), ("among", old)])
        .expect_leader_exists("2m")
        .with("among", old)
}

/// The scenario without where things were written: a file's positions are in the file, a
/// built one's in the document its calls wrote.
fn unplaced(mut scenario: Scenario) -> Scenario {
    scenario.path.clear();
    for spec in &mut scenario.expectations {
        spec.at = Position::default();
        spec.check.at = Position::default();
        let fields = spec.fields.values_mut();
        for field in fields.chain(spec.every.as_mut()).chain(spec.until.as_mut()) {
            field.at = Position::default();
        }
    }
    scenario
}

#[test]
fn the_builder_makes_the_scenario_its_file_makes() -> Result<(), ConfigError> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/raft-leader-crash.toml"
    );
    let file = sim::load(Path::new(path))?;
    let built = raft_leader_crash().build()?;
    assert_eq!(
        built.scenario.path, "raft-leader-crash",
        "errors name the builder"
    );
    assert_eq!(
        unplaced(built.scenario.clone()),
        unplaced(file.scenario.clone())
    );

    let run = raft_leader_crash().run(8)?;
    assert!(run.passed(), "{:?}", run.failures());
    let from_file = file.run(8);
    assert_eq!(run.verdicts, from_file.verdicts);
    assert_eq!(
        run.output.timeline.entries,
        from_file.output.timeline.entries
    );
    // A property, as `--seeds` runs it.
    for seed in 1..=4 {
        let run = built.run(seed);
        assert!(run.passed(), "seed {seed}: {:?}", run.failures());
    }
    Ok(())
}

/// Every kind of call writes the key a file would: topology, cluster, heartbeat and backoff,
/// network, each fault, commands, config and expectations.
#[test]
fn each_call_writes_the_key_a_file_would() -> Result<(), ConfigError> {
    let built = Scenario::builder("everything")
        .description("every kind of call")
        .seed(3)
        .duration("3m")
        .masters(3)
        .agents(6)
        .cluster_mode("raft")
        .election_timeout("1500ms..3000ms")
        .leader_heartbeat_interval("500ms")
        .heartbeat_interval("2s")
        .max_miss(4)
        .backoff("full-jitter", "500ms", "10s")
        .set("params.backoff.max_retries", 8)
        .latency("2ms..20ms")
        .loss(0.01)
        .partition_at("20s", &[&["leader"], &["followers"]])
        .with("as", r#"["cut", "rest"]"#)
        .heal_at("40s", "all")
        .isolate_at("1m", "agent-1..2")
        .heal_at("1m20s", "agent-1..2")
        .fault_at("1m30s", "loss", "0.2")
        .restart_at("2m", "@cut")
        .command_at("25s", "agents", "sleep")
        .with("args", "{ ms = 1500 }")
        .config_at("50s", &[("log_level", "debug"), ("sample_rate", "0.5")])
        .expect_all_online("15s")
        .expect_no_offline("2s..20s")
        .expect_offline_within("agent-1..2", "1m", "10s")
        .expect(
            "commands_completed",
            &[("within", "30s"), ("allow_lost", "true")],
        )
        .build()?;
    let file = sim::parse(
        "everything",
        r#"
        name = "everything"
        description = "every kind of call"
        seed = 3
        duration = "3m"
        [topology]
        masters = 3
        agents = 6
        [cluster]
        mode = "raft"
        election_timeout = "1500ms..3000ms"
        heartbeat_interval = "500ms"
        [params.heartbeat]
        interval = "2s"
        max_miss = 4
        [params.backoff]
        strategy = "full-jitter"
        base = "500ms"
        max = "10s"
        max_retries = 8
        [network]
        latency = "2ms..20ms"
        loss = 0.01
        [[faults]]
        at = "20s"
        partition = [["leader"], ["followers"]]
        as = ["cut", "rest"]
        [[faults]]
        at = "40s"
        heal = "all"
        [[faults]]
        at = "1m"
        isolate = "agent-1..2"
        [[faults]]
        at = "1m20s"
        heal = "agent-1..2"
        [[faults]]
        at = "1m30s"
        loss = 0.2
        [[faults]]
        at = "2m"
        restart = "@cut"
        [[commands]]
        at = "25s"
        to = "agents"
        name = "sleep"
        args = { ms = 1500 }
        [[config]]
        at = "50s"
        values = { log_level = "debug", sample_rate = 0.5 }
        [[expect]]
        check = "all_online"
        at = "15s"
        [[expect]]
        check = "no_offline"
        during = "2s..20s"
        [[expect]]
        check = "offline_within"
        agents = "agent-1..2"
        after = "1m"
        within = "10s"
        [[expect]]
        check = "commands_completed"
        within = "30s"
        allow_lost = true
        "#,
    )?;
    assert_eq!(unplaced(built.scenario), unplaced(file.scenario));
    Ok(())
}

/// A mistake is the file's error, told as the call that wrote the value it is about.
#[test]
fn an_error_names_the_call_that_made_it() {
    let unknown = raft_leader_crash().restart_at("1m30s", "@gone").build();
    let error = unknown.expect_err("nothing captured @gone").to_string();
    assert!(
        error.starts_with(r#"raft-leader-crash: restart_at("1m30s", "@gone"): "#),
        "{error}"
    );
    let late = raft_leader_crash().crash_at("3m", "agent-1").build();
    let error = late.expect_err("3m is past the end").to_string();
    assert!(error.contains(r#"crash_at("3m", "agent-1"): "#), "{error}");
    let among = raft_leader_crash()
        .expect_leader_exists("1m")
        .with("among", "master-9");
    let error = among.build().expect_err("there are 3 masters").to_string();
    assert!(error.contains(r#"with("among", "master-9"): "#), "{error}");
}

/// The README's example, run.
#[test]
fn a_new_leader_within_5s() -> Result<(), ConfigError> {
    let run = Scenario::builder("leader-crash")
        .masters(3)
        .agents(10)
        .duration("2m")
        .election_timeout("1500ms..3000ms")
        .crash_at(
            std::time::Duration::from_secs(30),
            sim::builder::Sel::leader(),
        )
        .with("as", "old")
        .restart_at("1m", sim::builder::Sel::captured("old"))
        .expect_leader_elected("30s", "5s")
        .with("among", "masters - @old")
        .expect("no_election", &[("during", "35s..2m")])
        .set("params.backoff.max", "10s")
        .run(7)?;
    assert!(run.passed(), "{:?}", run.failures());
    let typo = Scenario::builder("leader-crash").agents(10).duration("2m");
    let error = typo.crash_at("30s", "agent-70").build().unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(r#"leader-crash: crash_at("30s", "agent-70"): unknown node "agent-70": "#),
        "{error}"
    );
    Ok(())
}

/// Typed values write exactly what their text does: a `Duration` as a file writes one, a
/// `Sel` as the selector it spells.
#[test]
fn typed_durations_and_selectors_write_what_their_text_does() -> Result<(), ConfigError> {
    use sim::builder::Sel;
    use std::time::Duration;
    let typed = Scenario::builder("typed")
        .masters(3)
        .agents(4)
        .duration(Duration::from_secs(90))
        .crash_at(Duration::from_secs(30), Sel::leader())
        .with("as", "old")
        .restart_at(Duration::from_millis(45_500), Sel::captured("old"))
        .isolate_at(
            "50s",
            Sel::any(Sel::masters().minus(Sel::captured("old")), 1),
        )
        .heal_at("55s", Sel::all())
        .command_at("60s", Sel::agent_range(1, 2).plus(Sel::agent(4)), "echo")
        .expect_offline_within(Sel::agent(3), Duration::from_secs(5), "20s")
        .expect_leader_elected(Duration::from_secs(30), Duration::from_secs(5))
        .with("among", Sel::masters().minus(Sel::captured("old")));
    let written = Scenario::builder("typed")
        .masters(3)
        .agents(4)
        .duration("1m30s")
        .crash_at("30s", "leader")
        .with("as", "old")
        .restart_at("45s500ms", "@old")
        .isolate_at("50s", "any(masters - @old, 1)")
        .heal_at("55s", "all")
        .command_at("60s", "agent-1..agent-2 + agent-4", "echo")
        .expect_offline_within("agent-3", "5s", "20s")
        .expect_leader_elected("30s", "5s")
        .with("among", "masters - @old");
    assert_eq!(typed.to_toml(), written.to_toml());
    assert_eq!(typed.build()?.scenario, written.build()?.scenario);
    Ok(())
}
