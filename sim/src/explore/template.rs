//! A scenario with an `[explore]` table, and the standalone scenario file each run becomes.
//!
//! A run is an ordinary scenario file: the template's text (comments and all) without its
//! `[explore]` table, with the run's seed, its drawn faults, the liveness phase and the
//! liveness check appended. That file is what runs, so a written one replays exactly.

use crate::explore::plan::{compact, end, Draw, Ground, Schedule, Step};
use crate::scenario::overrides::Override;
use crate::scenario::source::{error_at, Position, ScenarioError};
use crate::scenario::Scenario;
use fleet_core::fmt_duration;
use std::path::Path;
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

pub struct Template {
    /// The file, as errors and reproduce commands name it.
    pub path: String,
    pub scenario: Scenario,
    document: DocumentMut,
}

impl Template {
    /// Reads a template: an ordinary scenario file that has an `[explore]` table.
    pub fn load(path: &Path) -> Result<Template, ScenarioError> {
        Template::load_with(path, &[])
    }

    /// [`Template::load`] with `--set` overrides applied first: every run's file carries them.
    pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Template, ScenarioError> {
        let shown = path.display().to_string();
        let text = crate::scenario::source::read(path)?;
        let (text, _) = crate::parse_with(&shown, &text, overrides)?;
        Template::parse(&shown, &text)
    }

    /// [`Template::load`] for text in hand; `path` only labels errors.
    pub fn parse(path: &str, text: &str) -> Result<Template, ScenarioError> {
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
        Ok(Template {
            path: path.to_string(),
            scenario: loaded.scenario,
            document,
        })
    }

    pub fn ground(&self) -> Ground<'_> {
        let scenario = &self.scenario;
        Ground {
            spec: scenario.explore.as_ref().expect("checked in parse"),
            topology: &scenario.topology,
            latency: scenario.network.latency,
            loss: scenario.network.loss,
        }
    }

    /// The name a run's files start with: the template's file name without `.toml`.
    pub fn stem(&self) -> String {
        Path::new(&self.path)
            .file_stem()
            .map_or("explore".into(), |stem| stem.to_string_lossy().into_owned())
    }

    /// Run `seed` with `schedule`, as a scenario file that starts with `header` (comment lines).
    pub fn render(&self, seed: u64, schedule: &Schedule, header: &[String]) -> String {
        let ground = self.ground();
        let mut document = self.document.clone();
        document.remove("explore");
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
            for step in ground.liveness_steps(&schedule.steps) {
                faults.push(fault_table(&step, note.take()));
            }
            let mut check = Table::new();
            check.decor_mut().set_prefix(
                "\n# liveness: once the faults stop, a leader leads every agent within the bound\n",
            );
            check["check"] = value("agents_follow_leader");
            check["after"] = value(fmt_duration(ground.spec.until));
            check["within"] = value(fmt_duration(ground.spec.liveness));
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

fn fault_table(step: &Step, note: Option<&str>) -> Table {
    let mut table = Table::new();
    if let Some(note) = note {
        table.decor_mut().set_prefix(format!("\n# {note}\n"));
    }
    table["at"] = value(fmt_duration(step.at));
    match &step.draw {
        Draw::Crash(node) => table["crash"] = value(node.as_str()),
        Draw::Restart(node) => table["restart"] = value(node.as_str()),
        Draw::Wipe(node) => table["wipe"] = value(node.as_str()),
        Draw::Isolate(node) => table["isolate"] = value(node.as_str()),
        Draw::Heal => table["heal"] = value("all"),
        Draw::Partition { groups, oneway } => {
            let mut array = Array::new();
            for group in groups {
                array.push(compact(group).into_iter().collect::<Array>());
            }
            table["partition"] = value(array);
            if *oneway {
                table["oneway"] = value(true);
            }
        }
        Draw::Latency(low, high) => {
            table["latency"] = value(format!("{}..{}", fmt_duration(*low), fmt_duration(*high)));
        }
        Draw::Loss(rate) => table["loss"] = value(*rate),
        Draw::Revoke(node) => table["revoke"] = value(node.as_str()),
        Draw::Restore(node) => table["restore"] = value(node.as_str()),
        Draw::Force(node) => {
            table["admin"] = value("force");
            table["agent"] = value(node.as_str());
        }
        Draw::Shutdown(node) => table["shutdown"] = value(node.as_str()),
        Draw::Hold(groups) | Draw::Release(groups) => {
            let key = if matches!(step.draw, Draw::Hold(_)) {
                "hold"
            } else {
                "release"
            };
            table[key] = value(groups.iter().map(|group| end(group)).collect::<Array>());
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let schedule = Schedule {
            steps: vec![
                Step {
                    at: Duration::from_millis(2500),
                    draw: Draw::Crash("master-2".into()),
                },
                Step {
                    at: Duration::from_secs(4),
                    draw: Draw::Partition {
                        groups: [
                            vec!["master-1".into()],
                            vec!["master-3".into(), "agent-1".into(), "agent-2".into()],
                        ],
                        oneway: true,
                    },
                },
            ],
            liveness: true,
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
            },
            &[],
        );
        assert_eq!(crate::parse("q.toml", &quiet).unwrap().scenario.faults, []);
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
}
