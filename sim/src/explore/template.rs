//! A scenario with an `[explore]` table, and the scenario each run becomes.
//!
//! A run is the template's scenario with the run's seed, its drawn faults, the liveness phase
//! and the liveness check added, built directly from the drawn
//! [`FaultAction`](crate::scenario::faults::FaultAction)s. Written out
//! (a failure to replay), it is the template's text (comments and all) without its `[explore]`
//! table, with the same additions as `[[faults]]` and `[[expect]]` entries; a test holds that
//! the written file reads back as the scenario that ran.

use crate::explore::plan::{Ground, Schedule, Step};
use crate::scenario::expect::ExpectSpec;
use crate::scenario::explore::ExploreSpec;
use crate::scenario::faults::Fault;
use crate::scenario::overrides::Override;
use crate::scenario::source::{error_at, ConfigError, Located, Position};
use crate::scenario::Scenario;
use crate::Loaded;
use fleet_core::fmt_duration;
use fleet_node::sync::lock;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};

pub struct Template {
    /// The file, as errors and reproduce commands name it.
    pub path: String,
    pub scenario: Scenario,
    /// Its text (with `--set` applied), for the runs that vary it.
    text: String,
    document: DocumentMut,
    /// The scenario with each combination of `[explore.vary]` values runs drew so far.
    varied: Mutex<BTreeMap<Vec<usize>, Scenario>>,
}

impl Template {
    /// Reads a template: an ordinary scenario file that has an `[explore]` table.
    pub fn load(path: &Path) -> Result<Template, ConfigError> {
        Template::load_with(path, &[])
    }

    /// [`Template::load`] with `--set` overrides applied first: every run's file carries them.
    pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Template, ConfigError> {
        let shown = path.display().to_string();
        let text = crate::scenario::source::read(path)?;
        let (text, _) = crate::parse_with(&shown, &text, overrides)?;
        Template::parse(&shown, &text)
    }

    /// [`Template::load`] for text in hand; `path` only labels errors.
    pub fn parse(path: &str, text: &str) -> Result<Template, ConfigError> {
        let loaded = crate::parse(path, text)?;
        let whole = |message: &str| error_at(path, Position::default(), message);
        if loaded.scenario.explore.is_none() {
            return Err(whole(
                "`sim explore` needs an [explore] table: faults, targets, mean_gap, until and \
                 liveness (see scenarios/explore/raft.toml)",
            ));
        }
        let document: DocumentMut = text
            .parse()
            .map_err(|error| whole(&format!("cannot edit the file as TOML: {error}")))?;
        for key in ["faults", "expect"] {
            if document
                .get(key)
                .is_some_and(|item| !item.is_array_of_tables())
            {
                return Err(whole(&format!(
                    "write `{key}` as [[{key}]] tables, so runs can add theirs"
                )));
            }
        }
        let template = Template {
            path: path.to_string(),
            scenario: loaded.scenario,
            text: text.to_string(),
            document,
            varied: Mutex::new(BTreeMap::new()),
        };
        template.check_vary()?;
        Ok(template)
    }

    /// Every `[explore.vary]` value must make a valid file: refused now, not in some run.
    fn check_vary(&self) -> Result<(), ConfigError> {
        let vary = &self.ground().spec.vary;
        for (key, values) in vary {
            for value in 0..values.len() {
                let mut choices = vec![0; vary.len()];
                choices[vary.iter().position(|(k, _)| k == key).expect("listed")] = value;
                self.varied(&choices)?;
            }
        }
        Ok(())
    }

    /// The `--set` each knob's chosen value is.
    fn knobs(&self, choices: &[usize]) -> Result<Vec<Override>, ConfigError> {
        let vary = &self.ground().spec.vary;
        (vary.iter().zip(choices))
            .map(|((key, values), &choice)| {
                Override::parse(&format!("{key}={}", values[choice])).map_err(|why| {
                    let message = format!("[explore.vary] {key:?}: {why}");
                    error_at(&self.path, Position::default(), &message)
                })
            })
            .collect()
    }

    /// The template's scenario with the knobs at `choices`.
    fn varied(&self, choices: &[usize]) -> Result<Scenario, ConfigError> {
        if choices.is_empty() {
            return Ok(self.scenario.clone());
        }
        if let Some(scenario) = lock(&self.varied).get(choices) {
            return Ok(scenario.clone());
        }
        let knobs = self.knobs(choices)?;
        let (_, loaded) = crate::parse_with(&self.path, &self.text, &knobs).map_err(|error| {
            let shown: Vec<String> = knobs.iter().map(ToString::to_string).collect();
            let message = format!("[explore.vary] {}: {}", shown.join(" "), error.message);
            ConfigError { message, ..error }
        })?;
        let mut scenario = loaded.scenario;
        scenario.overrides = self.scenario.overrides.clone();
        lock(&self.varied).insert(choices.to_vec(), scenario.clone());
        Ok(scenario)
    }

    /// What the template, its knobs at their first values, gives a schedule.
    pub(crate) fn ground(&self) -> Ground {
        Ground::of(&self.scenario)
    }

    /// What the template with its knobs at `choices` gives a schedule: a knob may change the
    /// topology the faults are drawn on.
    pub(crate) fn ground_at(&self, choices: &[usize]) -> Result<Ground, ConfigError> {
        Ok(Ground::of(&self.varied(choices)?))
    }

    /// The name a run's files start with: the template's file name without `.toml`.
    pub(crate) fn stem(&self) -> String {
        Path::new(&self.path)
            .file_stem()
            .map_or("explore".into(), |stem| stem.to_string_lossy().into_owned())
    }

    /// Run `seed` with `schedule`, ready to run: the scenario [`render`](Self::render) writes,
    /// without the round trip through its text.
    pub fn loaded(&self, seed: u64, schedule: &Schedule) -> Result<Loaded, ConfigError> {
        let mut scenario = self.varied(&schedule.vary)?;
        let ground = Ground::of(&scenario);
        let spec = scenario.explore.take().expect("a varied template explores");
        scenario.name = format!("{}-seed-{seed}", self.scenario.name);
        scenario.seed = seed;
        // The fault points stop with the faults: the liveness phase judges a quiet cluster.
        if spec.buggify {
            scenario.buggify = Some(spec.until);
        }
        let mut steps = schedule.steps.clone();
        if schedule.liveness {
            steps.extend(ground.liveness_steps(schedule));
            scenario.expectations.push(liveness_check(&spec));
        }
        scenario.faults.extend(steps.into_iter().map(|step| Fault {
            at: step.at,
            action: step.action,
            captures: Vec::new(),
            when: None,
        }));
        // Stable, as a file's faults: those at the same moment fire in file order.
        scenario.faults.sort_by_key(|fault| fault.at);
        let expectations = crate::judge::compile(&scenario)?;
        Ok(Loaded {
            scenario,
            expectations,
        })
    }

    /// Run `seed` with `schedule`, as a scenario file that starts with `header` (comment lines).
    pub(crate) fn render(&self, seed: u64, schedule: &Schedule, header: &[String]) -> String {
        // A run that ran had its knobs' scenario made: it is cached.
        let ground = self
            .ground_at(&schedule.vary)
            .unwrap_or_else(|_| self.ground());
        let mut document = self.document.clone();
        // Checked when the template was read, so they write.
        for knob in self.knobs(&schedule.vary).unwrap_or_default() {
            let _ = knob.write(&mut document);
        }
        let liveness = ground.spec.liveness;
        document.remove("explore");
        if ground.spec.buggify {
            document["buggify"] = value(fmt_duration(ground.spec.until));
        }
        // The template's opening comment describes the template, not this run: the header does.
        let first = document.iter().next().map(|(key, _)| key.to_string());
        if let Some(mut key) = first.and_then(|first| document.key_mut(&first)) {
            key.leaf_decor_mut().set_prefix("");
        }
        document["name"] = value(format!("{}-seed-{seed}", self.scenario.name));
        document["seed"] = value(i64::try_from(seed).unwrap_or(i64::MAX));
        let faults = document
            .entry("faults")
            .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
            .as_array_of_tables_mut()
            .expect("checked in parse");
        let mut note = Some("drawn faults");
        for step in &schedule.steps {
            faults.push(fault_table(step, note.take()));
        }
        if schedule.liveness {
            let mut note = Some("liveness phase: heal, restore the network, restart what is down");
            for step in ground.liveness_steps(schedule) {
                faults.push(fault_table(&step, note.take()));
            }
            let mut check = Table::new();
            check.decor_mut().set_prefix(
                "\n# liveness: once the faults stop, a leader leads every agent within the bound\n",
            );
            check["check"] = value("agents_follow_leader");
            check["after"] = value(fmt_duration(ground.spec.until));
            check["within"] = value(fmt_duration(liveness));
            document
                .entry("expect")
                .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
                .as_array_of_tables_mut()
                .expect("checked in parse")
                .push(check);
        }
        let mut text: String = header.iter().map(|line| format!("# {line}\n")).collect();
        text.push_str(&document.to_string());
        text
    }
}

/// Once the faults stop, a leader leads every agent within the bound.
fn liveness_check(spec: &ExploreSpec) -> ExpectSpec {
    let located = |text: String| Located {
        value: toml::Value::String(text),
        at: Position::default(),
    };
    ExpectSpec {
        at: Position::default(),
        check: Located {
            value: "agents_follow_leader".into(),
            at: Position::default(),
        },
        holds: true,
        every: None,
        until: None,
        fields: BTreeMap::from([
            ("after".to_string(), located(fmt_duration(spec.until))),
            ("within".to_string(), located(fmt_duration(spec.liveness))),
        ]),
    }
}

fn fault_table(step: &Step, note: Option<&str>) -> Table {
    let mut table = Table::new();
    if let Some(note) = note {
        table.decor_mut().set_prefix(format!("\n# {note}\n"));
    }
    table["at"] = value(fmt_duration(step.at));
    for (key, written) in step.action.keys() {
        table[key] = value(written);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::mutate::Recipe;
    use crate::scenario::faults::FaultAction;
    use std::collections::BTreeSet;
    use std::time::Duration;

    const TEMPLATE: &str = r#"# a template
name = "t"
seed = 1
duration = "30s"

[topology]
masters = 3
agents = 2

[[expect]]
check = "invariant"
rule = "at_most_one_leader_per_term"

[explore]
faults = ["crash", "partition", "loss"]
targets = "masters"
mean_gap = "2s"
until = "20s"
liveness = "10s"
"#;

    #[test]
    fn a_run_is_a_scenario_file_that_parses_back_with_its_faults() {
        let template = Template::parse("t.toml", TEMPLATE).unwrap();
        let node = |text: &str| template.scenario.topology.select(text).unwrap();
        let schedule = Schedule {
            steps: vec![
                Step {
                    at: Duration::from_millis(2500),
                    action: FaultAction::Crash(node("master-2")),
                },
                Step {
                    at: Duration::from_secs(4),
                    action: FaultAction::Partition {
                        groups: vec![
                            vec![node("master-1")],
                            vec![node("master-3"), node("agent-1..agent-2")],
                        ],
                        oneway: true,
                    },
                },
            ],
            liveness: true,
            gone: Vec::new(),
            vary: Vec::new(),
        };
        let text = template.render(42, &schedule, &["breaks: something".into()]);
        assert!(text.starts_with("# breaks: something\nname = "), "{text}");
        let run = crate::parse("run.toml", &text).unwrap();
        assert_eq!(run.scenario.seed, 42);
        assert_eq!(run.scenario.name, "t-seed-42");
        assert!(run.scenario.explore.is_none());
        let faults: Vec<String> = (run.scenario.faults.iter())
            .map(|fault| format!("{} {}", fmt_duration(fault.at), fault.action))
            .collect();
        assert_eq!(
            faults,
            [
                "2s500ms crash master-2",
                "4s partition master-1 | master-3,agent-1..agent-2 (one way)",
                "20s heal all",
                "20s restart master-2"
            ]
        );
        // The file it writes reads back as the scenario that ran.
        let ran = template.loaded(42, &schedule).unwrap();
        assert_eq!(ran.scenario.faults, run.scenario.faults);
        assert_eq!(ran.scenario.name, run.scenario.name);
        let titles = |loaded: &Loaded| -> Vec<String> {
            (loaded.expectations.iter())
                .map(|e| e.check.title())
                .collect()
        };
        assert_eq!(titles(&ran), titles(&run));
        assert_eq!(run.expectations.len(), 2);
        assert_eq!(
            run.expectations[1].check.title(),
            "agents_follow_leader agents 10s after 20s"
        );
        let quiet = template.render(
            42,
            &Schedule {
                steps: Vec::new(),
                liveness: false,
                gone: Vec::new(),
                vary: Vec::new(),
            },
            &[],
        );
        assert_eq!(crate::parse("q.toml", &quiet).unwrap().scenario.faults, []);
    }

    #[test]
    fn each_run_takes_one_value_per_knob_and_writes_it_into_its_file() {
        let text = format!(
            "{TEMPLATE}buggify = true\n[explore.vary]\n\
             \"params.heartbeat.max_miss\" = [3, 5]\n\"cluster.election_timeout\" = \
             [\"1s..2s\", \"2s..4s\"]\n"
        );
        let template = Template::parse("t.toml", &text).unwrap();
        let ground = template.ground();
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let schedule = ground.draw(seed);
            let ran = template.loaded(seed, &schedule).unwrap();
            let written = template.render(seed, &schedule, &[]);
            let replayed = crate::parse("run.toml", &written).unwrap();
            assert_eq!(ran.scenario.heartbeat, replayed.scenario.heartbeat);
            assert_eq!(ran.scenario.cluster, replayed.scenario.cluster);
            assert_eq!(ran.scenario.buggify, Some(Duration::from_secs(20)));
            assert_eq!(replayed.scenario.buggify, ran.scenario.buggify);
            seen.insert((ran.scenario.heartbeat.max_miss, schedule.vary.clone()));
            // Shrinking tries each knob at its first value.
            let firsts = ground
                .simpler(&schedule)
                .into_iter()
                .filter(|s| s.vary != schedule.vary);
            assert_eq!(
                firsts.count(),
                schedule.vary.iter().filter(|&&v| v != 0).count()
            );
        }
        let max_misses: std::collections::BTreeSet<u32> = seen.iter().map(|(m, _)| *m).collect();
        assert_eq!(max_misses, [3, 5].into(), "both values drawn");
        assert_eq!(seen.len(), 4, "every combination: {seen:?}");
        let bad = format!("{TEMPLATE}[explore.vary]\n\"params.heartbeat.max_miss\" = [3, -1]\n");
        let error = Template::parse("t.toml", &bad).err().unwrap();
        assert!(
            error.message.contains("[explore.vary]"),
            "{}",
            error.message
        );
    }

    /// A knob may draw the topology: the faults are drawn on the nodes its value makes, and
    /// neither shrinking nor a mutation turns it once they are.
    #[test]
    fn a_knob_may_draw_the_topology_and_faults_name_only_its_nodes() {
        let text = format!("{TEMPLATE}lose = 1\n[explore.vary]\n\"topology.masters\" = [3, 5]\n");
        let template = Template::parse("t.toml", &text).unwrap();
        let mut named = std::collections::BTreeMap::<u32, BTreeSet<String>>::new();
        for seed in 0..60 {
            let recipe = Recipe::drawn(seed).then(seed + 1000, false);
            for schedule in [Recipe::drawn(seed), recipe].map(|r| r.schedule(&template).unwrap()) {
                let ran = template.loaded(seed, &schedule).unwrap();
                let masters = ran.scenario.topology.masters;
                let written = template.render(seed, &schedule, &[]);
                let replayed = crate::parse("run.toml", &written).unwrap();
                assert_eq!(ran.scenario.faults, replayed.scenario.faults, "seed {seed}");
                assert_eq!(replayed.scenario.topology.masters, masters);
                let nodes = named.entry(masters).or_default();
                for fault in &ran.scenario.faults {
                    nodes.extend(
                        fault
                            .action
                            .to_string()
                            .split(['"', ' ', ',', '[', ']'])
                            .filter(|word| word.starts_with("master-"))
                            .map(String::from),
                    );
                }
                let ground = template.ground_at(&schedule.vary).unwrap();
                assert!(ground
                    .simpler(&schedule)
                    .iter()
                    .all(|s| s.vary == schedule.vary));
            }
        }
        assert!(named[&5].contains("master-5"), "{named:?}");
        assert!(
            !named[&3].iter().any(|n| n == "master-4" || n == "master-5"),
            "{named:?}"
        );
        // A value the template's other keys refuse is refused when it is read.
        let too_few =
            format!("{TEMPLATE}lose = 1\n[explore.vary]\n\"topology.masters\" = [3, 1]\n");
        let error = Template::parse("t.toml", &too_few).err().unwrap();
        assert!(error.message.contains("lose"), "{}", error.message);
    }

    #[test]
    fn a_file_without_an_explore_table_is_refused() {
        let plain = TEMPLATE.split("[explore]").next().unwrap();
        let error = Template::parse("t.toml", plain).err().unwrap();
        assert!(error.message.contains("[explore]"), "{}", error.message);
        let inline = Template::parse("t.toml", &format!("faults = []\n{TEMPLATE}"));
        let error = inline.err().unwrap();
        assert!(error.message.contains("[[faults]]"), "{}", error.message);
    }

    /// What runs is what a written run replays: for every kind exploration draws, over many
    /// seeds, the file `render` writes reads back as the scenario `loaded` ran.
    #[test]
    fn every_drawn_schedule_written_out_reads_back_as_what_ran() {
        let kinds: Vec<String> = crate::scenario::faults::kinds::draw_specs()
            .map(|kind| format!("{:?}", kind.name))
            .collect();
        let text = format!(
            "name = \"all\"\nduration = \"40s\"\n[topology]\nmasters = 3\nagents = 3\n\
             [params.auth]\n[[faults]]\nat = \"1s\"\nlatency = \"1ms..5ms\"\n\
             [explore]\nfaults = [{}]\ntargets = \"all\"\nmean_gap = \"1s\"\n\
             until = \"20s\"\nliveness = \"10s\"\nlose = 1\n",
            kinds.join(", ")
        );
        let template = Template::parse("all.toml", &text).unwrap();
        let ground = template.ground();
        let mut drawn = std::collections::BTreeSet::new();
        for seed in 0..150 {
            let schedule = ground.draw(seed);
            let simpler = ground.simpler(&schedule);
            for schedule in std::iter::once(&schedule).chain(simpler.iter().take(3)) {
                let ran = template.loaded(seed, schedule).unwrap();
                let written = crate::parse("run.toml", &template.render(seed, schedule, &[]));
                let written = written.unwrap();
                assert_eq!(ran.scenario.faults, written.scenario.faults, "seed {seed}");
                assert_eq!(ran.scenario.name, written.scenario.name);
                assert_eq!(ran.scenario.seed, written.scenario.seed);
                let titles = |loaded: &Loaded| -> Vec<String> {
                    (loaded.expectations.iter())
                        .map(|e| e.check.title())
                        .collect()
                };
                assert_eq!(titles(&ran), titles(&written), "seed {seed}");
            }
            drawn.extend(schedule.steps.iter().map(|step| {
                let shown = step.action.to_string();
                let kind = shown.split(' ').next().unwrap_or_default().to_string();
                (kind, shown.ends_with("(one way)"))
            }));
        }
        // Every kind, on either engine: a ring of the six targets too.
        let kinds: std::collections::BTreeSet<&str> =
            drawn.iter().map(|(k, _)| k.as_str()).collect();
        let expected = [
            "admin",
            "clock",
            "corrupt",
            "crash",
            "heal",
            "hold",
            "isolate",
            "latency",
            "loss",
            "partition",
            "pause",
            "power_fail",
            "restart",
            "resume",
            "revoke",
            "ring",
            "shutdown",
            "stall",
            "wipe",
        ];
        for kind in expected {
            assert!(kinds.contains(kind), "{kind} never drawn: {kinds:?}");
        }
        assert!(drawn.contains(&("partition".to_string(), true)), "one way");
    }
}
