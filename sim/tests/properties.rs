//! The format's words for properties, each run for real: captures, selector expressions,
//! isolate and heal, `when`, `every`, `among`, the election checks and structured verdicts.
#![cfg(madsim)]

use sim::history::{Entry, FaultEvent};
use sim::judge::Verdict;
use sim::scenario::faults::FaultAction;

const RAFT: &str = r#"
name = "t"
seed = 3
duration = "20s"
[topology]
masters = 3
agents = 2
[cluster]
mode = "raft"
election_timeout = "300ms..600ms"
heartbeat_interval = "100ms"
"#;

fn run(text: &str) -> (Vec<Entry>, Vec<Verdict>) {
    let loaded = sim::parse("t.toml", text).unwrap_or_else(|error| panic!("{error}"));
    let judged = loaded.run(loaded.scenario.seed);
    (judged.output.timeline.entries, judged.verdicts)
}

fn faults(entries: &[Entry]) -> Vec<(u64, FaultEvent)> {
    (entries.iter())
        .filter_map(|entry| entry.fault().map(|fault| (entry.t_ms, fault.clone())))
        .collect()
}

fn verdict<'a>(verdicts: &'a [Verdict], starts: &str) -> &'a Verdict {
    (verdicts.iter())
        .find(|verdict| verdict.check.starts_with(starts))
        .unwrap_or_else(|| panic!("no verdict {starts}: {verdicts:#?}"))
}

#[test]
fn a_capture_names_the_nodes_its_fault_hit_when_it_fired() {
    let (entries, _) = run(&format!(
        "{RAFT}[[faults]]\nat = \"5s\"\ncrash = \"leader\"\nas = \"old\"\n\
         [[faults]]\nat = \"8s\"\nrestart = \"@old\"\n"
    ));
    let faults = faults(&entries);
    let Some(crashed) = faults.first().and_then(|(_, fault)| match fault.fired() {
        Some(fired) if matches!(fired.action, FaultAction::Crash(_)) => {
            Some(fired.nodes().to_vec())
        }
        _ => None,
    }) else {
        panic!("{faults:?}")
    };
    let crashed = &crashed;
    let captured = faults.iter().find_map(|(_, fault)| match fault {
        FaultEvent::Captured { name, nodes } if name == "old" => Some(nodes.clone()),
        _ => None,
    });
    assert_eq!(captured.as_ref(), Some(crashed));
    let restarted = faults.iter().find_map(|(t, fault)| match fault.fired() {
        Some(fired) if matches!(fired.action, FaultAction::Restart(_)) => {
            Some((*t, fired.nodes().to_vec()))
        }
        _ => None,
    });
    assert_eq!(restarted, Some((8000, crashed.clone())));
}

#[test]
fn any_draws_from_the_seed_and_expressions_subtract() {
    let text = format!(
        "{RAFT}[[faults]]\nat = \"5s\"\ncrash = \"any(masters - master-1, 2)\"\nas = \"two\"\n"
    );
    let drawn = |seed: u64| {
        let text = text.replace("seed = 3", &format!("seed = {seed}"));
        let (entries, _) = run(&text);
        faults(&entries)
            .into_iter()
            .find_map(|(_, fault)| match fault.fired() {
                Some(fired) if matches!(fired.action, FaultAction::Crash(_)) => {
                    Some(fired.nodes().to_vec())
                }
                _ => None,
            })
    };
    assert_eq!(drawn(3), drawn(3), "the same seed draws the same nodes");
    for seed in 1..6 {
        assert_eq!(
            drawn(seed),
            Some(vec!["master-2".into(), "master-3".into()])
        );
    }
    let one = text.replace("any(masters - master-1, 2)", "any(agents + masters)");
    let picks: std::collections::BTreeSet<String> = (1..12)
        .map(|seed| {
            let (entries, _) = run(&one.replace("seed = 3", &format!("seed = {seed}")));
            format!("{:?}", faults(&entries)[0].1)
        })
        .collect();
    assert!(picks.len() >= 3, "any() drew {picks:?}");
}

#[test]
fn isolate_cuts_a_node_off_and_heal_brings_it_back() {
    // One master: isolated, its agents lose it; healed, they come back.
    let text = "name = \"t\"\nseed = 1\nduration = \"30s\"\n[topology]\nagents = 2\n\
                [[faults]]\nat = \"5s\"\nisolate = \"master-1\"\nas = \"cut\"\n\
                [[faults]]\nat = \"15s\"\nheal = \"@cut\"\n\
                [[expect]]\ncheck = \"offline_within\"\nafter = \"5s\"\nwithin = \"6s\"\n\
                [[expect]]\ncheck = \"all_online\"\nat = \"25s\"\n";
    let (_, verdicts) = run(text);
    assert!(verdicts.iter().all(|v| v.ok), "{verdicts:#?}");
    // Measured numbers are values, not only prose: each agent's detection time, the count online.
    let detected = verdict(&verdicts, "offline_within").value.clone().unwrap();
    let times: Vec<u64> = (detected.as_array().unwrap().iter())
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(times.len(), 2);
    assert!(
        times.iter().all(|&t| (1000..=6000).contains(&t)),
        "{times:?}"
    );
    assert_eq!(verdict(&verdicts, "all_online").value, Some(2.into()));
}

#[test]
fn heal_leaves_a_node_cut_from_others_still_isolated() {
    // agent-1 and the master are both isolated; healing the master reconnects it to agent-2,
    // not to agent-1, which is still isolated.
    let text = "name = \"t\"\nseed = 1\nduration = \"20s\"\n[topology]\nagents = 2\n\
                [[faults]]\nat = \"2s\"\nisolate = \"agent-1 + master-1\"\n\
                [[faults]]\nat = \"5s\"\nheal = \"master-1\"\n\
                [[expect]]\ncheck = \"all_online\"\nagents = \"agent-2\"\nat = \"19s\"\n\
                [[expect]]\ncheck = \"all_online\"\nagents = \"agent-1\"\nat = \"19s\"\nholds = false\n";
    let (_, verdicts) = run(text);
    assert!(verdicts.iter().all(|v| v.ok), "{verdicts:#?}");
    let healed_both = text.replace("heal = \"master-1\"", "heal = \"master-1 + agent-1\"");
    let (_, verdicts) = run(&healed_both);
    assert!(
        !verdict(&verdicts, "all_online agent-1").ok,
        "healed, agent-1 is back"
    );
}

#[test]
fn when_waits_for_its_condition_and_an_unmet_one_fails_the_run() {
    let (entries, verdicts) = run(&format!(
        "{RAFT}[[faults]]\nat = \"0s\"\nwhen = \"all_online\"\ncrash = \"leader\"\n"
    ));
    let (t, _) = faults(&entries)[0].clone();
    assert!(t > 0, "fired at {t}ms, before the agents were online");
    assert!(verdicts.iter().all(|v| v.ok), "{verdicts:#?}");

    let single = "name = \"t\"\nseed = 1\nduration = \"10s\"\n[topology]\nagents = 1\n\
                  [[faults]]\nat = \"1s\"\ncrash = \"master-1\"\n\
                  [[faults]]\nat = \"2s\"\nwhen = \"leader_exists\"\nrestart = \"agent-1\"\n\
                  [[faults]]\nat = \"3s\"\nheal = \"all\"\n";
    let (entries, verdicts) = run(single);
    let unfired = verdict(&verdicts, "faults fired");
    assert!(!unfired.ok);
    assert!(
        unfired
            .detail
            .contains("restart agent-1 (when leader_exists)"),
        "{}",
        unfired.detail
    );
    assert!(unfired.detail.contains("heal all"), "{}", unfired.detail);
    assert!(!faults(&entries).iter().any(|(_, f)| f
        .fired()
        .is_some_and(|fired| matches!(fired.action, FaultAction::Restart(_)))));
}

#[test]
fn every_repeats_faults_and_checks_until_their_end() {
    let text = format!(
        "{RAFT}[[faults]]\nat = \"2s\"\nevery = \"3s\"\nuntil = \"15s\"\nloss = 0.0\n\
         [[expect]]\ncheck = \"leader_exists\"\nat = \"3s\"\nevery = \"4s\"\n"
    );
    let (entries, verdicts) = run(&text);
    let times: Vec<u64> = faults(&entries).iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [2000, 5000, 8000, 11000, 14000]);
    let titles: Vec<&str> = (verdicts.iter())
        .filter(|v| v.check.starts_with("leader_exists"))
        .map(|v| v.check.as_str())
        .collect();
    assert_eq!(
        titles,
        [
            "leader_exists at 3s",
            "leader_exists at 7s",
            "leader_exists at 11s",
            "leader_exists at 15s",
            "leader_exists at 19s"
        ]
    );
}

#[test]
fn election_checks_see_an_isolated_textbook_follower_inflate_its_term() {
    let textbook = RAFT.replace(
        "heartbeat_interval = \"100ms\"\n",
        "heartbeat_interval = \"100ms\"\npre_vote = false\ncheck_quorum = false\n",
    );
    let text = format!(
        "{textbook}[[faults]]\nat = \"3s\"\nwhen = \"leader_exists\"\nisolate = \"any(followers)\"\nas = \"cut\"\n\
         [[expect]]\ncheck = \"terms_agree\"\nat = \"2s\"\n\
         [[expect]]\ncheck = \"terms_agree\"\nat = \"10s\"\n\
         [[expect]]\ncheck = \"terms_agree\"\nat = \"10s\"\namong = \"masters - @cut\"\n\
         [[expect]]\ncheck = \"no_election\"\nduring = \"4s..10s\"\namong = \"@cut\"\n\
         [[expect]]\ncheck = \"term_unchanged\"\nduring = \"4s..10s\"\namong = \"masters - @cut\"\n\
         [[expect]]\ncheck = \"leader_exists\"\nat = \"10s\"\namong = \"@cut\"\n"
    );
    let (_, verdicts) = run(&text);
    let ok: Vec<(&str, bool)> = (verdicts.iter())
        .filter(|v| !v.check.starts_with("invariant"))
        .map(|v| (v.check.as_str(), v.ok))
        .collect();
    assert_eq!(
        ok,
        [
            ("terms_agree at 2s", true),
            ("terms_agree at 10s", false),
            ("terms_agree at 10s among masters - @cut", true),
            ("no_election during 4s..10s among @cut", false),
            ("term_unchanged during 4s..10s among masters - @cut", true),
            ("leader_exists at 10s among @cut", false),
        ]
    );
    let elections = verdict(&verdicts, "no_election");
    assert!(
        elections.value.as_ref().and_then(|v| v.as_u64()).unwrap() >= 5,
        "{elections:?}"
    );
}

#[test]
fn failover_within_measures_each_removal_of_the_leader() {
    let text = format!(
        "{RAFT}[[faults]]\nat = \"2s\"\nevery = \"4s\"\nuntil = \"18s\"\nwhen = \"leader_exists\"\ncrash = \"leader\"\nas = \"down\"\n\
         [[faults]]\nat = \"3s\"\nevery = \"4s\"\nuntil = \"18s\"\nrestart = \"@down\"\n\
         [[expect]]\ncheck = \"failover_within\"\nwithin = \"2s\"\nreference = \"a paper\"\n\
         [[expect]]\ncheck = \"failover_within\"\nwithin = \"1ms\"\n"
    );
    let (_, verdicts) = run(&text);
    let measured = verdict(&verdicts, "failover_within 2s");
    assert!(measured.ok, "{measured:?}");
    let times = measured.value.as_ref().and_then(|v| v.as_array()).unwrap();
    assert_eq!(times.len(), 4, "{measured:?}");
    assert!(measured.detail.contains("median") && measured.detail.contains("(reference: a paper)"));
    assert!(!verdict(&verdicts, "failover_within 1ms").ok);
    assert_eq!(measured.args["within"], "2s");
}

#[test]
fn keys_in_the_wrong_place_are_refused_where_they_are_written() {
    for (extra, says) in [
        ("[[faults]]\nat = \"1s\"\nrestart = \"@ghost\"\n", "no fault before this one captures @ghost"),
        ("[[faults]]\nat = \"1s\"\nloss = 0.1\nas = \"x\"\n", "hits no nodes"),
        ("[[faults]]\nat = \"1s\"\npartition = [[\"master-1\"], [\"master-2\"]]\nas = \"x\"\n", "one name per group"),
        ("[[faults]]\nat = \"1s\"\ncrash = \"leader\"\nwhen = \"sunny\"\n", "unknown condition"),
        ("[[faults]]\nat = \"1s\"\ncrash = \"leader\"\nuntil = \"5s\"\n", "only goes with `every`"),
        ("[[faults]]\nat = \"1s\"\ncrash = \"leader\"\nevery = \"0s\"\n", "greater than 0"),
        ("[[expect]]\ncheck = \"leader_exists\"\nat = \"1s\"\namong = \"@nobody\"\n", "no fault captures @nobody"),
        ("[[expect]]\ncheck = \"leader_exists\"\nat = \"1s\"\namong = \"any(masters)\"\n", "draws nothing"),
        ("[[expect]]\ncheck = \"no_election\"\nduring = \"1s..2s\"\nevery = \"5s\"\nuntil = \"1h\"\n", "past the end"),
    ] {
        let error = sim::parse("t.toml", &format!("{RAFT}{extra}")).unwrap_err();
        assert!(error.message.contains(says), "{extra}: {error}");
        assert!(error.line > 11, "{extra}: {error}");
    }
}

#[test]
fn the_json_verdict_carries_args_value_and_the_parameters() {
    let text = format!("{RAFT}[[expect]]\ncheck = \"terms_agree\"\nat = \"5s\"\n");
    let loaded = sim::parse("t.toml", &text).unwrap();
    let sim::Judged { output, verdicts } = loaded.run(3);
    let json = sim::report::json::json(
        &loaded.scenario,
        3,
        &output.timeline.entries,
        &verdicts,
        output.wall,
    );
    let document: serde_json::Value = serde_json::from_str(&json).unwrap();
    let first = &document["expectations"][0];
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["check", "args", "ok", "detail", "value"]);
    assert_eq!(first["args"]["at"], "5s");
    assert_eq!(first["value"].as_array().unwrap().len(), 3);
    let params = &document["params"];
    assert_eq!(
        params["cluster"]["election_timeout_ms"],
        serde_json::json!([300, 600])
    );
    assert_eq!(params["topology"]["masters"], 3);
    assert_eq!(params["heartbeat"]["interval_ms"], 1000);
}
