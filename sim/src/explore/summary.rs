//! What exploration reports: the lines a worker process prints, and the summary `--json`
//! prints and `--merge` adds up.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// A rule a run broke: the verdict's check, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Broken {
    pub check: String,
    pub detail: String,
}

/// One line of a worker's output, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
pub(crate) enum WorkerLine {
    /// A run: the first rule it broke, if any, and the scenario file written for it.
    Ran {
        seed: u64,
        broken: Option<Broken>,
        file: Option<String>,
        /// The template's `[[sometimes]]` entries it reached, by index.
        #[serde(default)]
        reached: Vec<usize>,
        /// The abstract states it reached, when the parent asked for them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        states: Vec<u64>,
    },
    /// A failing run's schedule, shrunk while `check` kept breaking.
    Shrunk {
        seed: u64,
        check: String,
        file: String,
        faults: usize,
        from: usize,
        runs: usize,
    },
}

/// A failing run in the summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    pub seed: u64,
    pub check: String,
    pub detail: String,
    /// A command that replays the run and prints its timeline.
    pub reproduce: String,
    /// The shrunk scenario file, for the first failure of each rule; `null` for the others.
    pub shrunk: Option<String>,
    /// How many faults the shrunk file kept.
    #[serde(default)]
    pub shrunk_faults: Option<usize>,
}

/// How many runs reached one `[[sometimes]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    /// The entry, as `kind` or `kind on SELECTOR`.
    pub sometimes: String,
    pub runs: u64,
}

/// What `--json` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub runs: u64,
    /// By seed.
    pub failed: Vec<Failed>,
    pub wall_ms: u64,
    /// Each `[[sometimes]]` entry of the template, in file order, with the runs that reached it.
    #[serde(default)]
    pub reached: Vec<Reach>,
    /// The abstract states the runs reached (`--coverage`, and always when guided); not added
    /// up by `--merge`, since shards' states overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
}

/// How many distinct abstract states the runs reached, and how that grew.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub states: u64,
    /// Schedules kept because they reached something new (guided runs mutate them).
    pub corpus: u64,
    /// `[runs, states]` after each tenth of the runs.
    pub growth: Vec<[u64; 2]>,
}

impl Summary {
    /// The `[[sometimes]]` entries no run reached.
    pub fn unreached(&self) -> Vec<&str> {
        (self.reached.iter())
            .filter(|reach| reach.runs == 0)
            .map(|reach| reach.sometimes.as_str())
            .collect()
    }

    /// Whether exploration passed: no run failed, and every entry was reached.
    pub fn passed(&self) -> bool {
        self.failed.is_empty() && self.unreached().is_empty()
    }
}

/// `explored N runs in X s (R runs/s): K failed`: the last line of every exploration.
pub fn last_line(runs: u64, wall_ms: u64, failed: usize) -> String {
    let seconds = wall_ms as f64 / 1000.0;
    let rate = if wall_ms == 0 {
        0.0
    } else {
        runs as f64 / seconds
    };
    format!("explored {runs} runs in {seconds:.1} s ({rate:.0} runs/s): {failed} failed")
}

/// Adds shards' summaries into one. The shards ran side by side, so the merged wall time is
/// the slowest shard's.
pub fn merge(files: &[impl AsRef<Path>]) -> Result<Summary, String> {
    let mut merged = Summary::default();
    for file in files {
        let file = file.as_ref();
        let text = std::fs::read_to_string(file)
            .map_err(|error| format!("{}: cannot read: {error}", file.display()))?;
        let shard: Summary = serde_json::from_str(&text).map_err(|error| {
            format!(
                "{}: not the JSON of `sim explore --json`: {error}",
                file.display()
            )
        })?;
        merged.runs += shard.runs;
        merged.failed.extend(shard.failed);
        if merged.reached.is_empty() {
            merged.reached = shard.reached;
        } else if (merged.reached.iter().map(|r| &r.sometimes))
            .eq(shard.reached.iter().map(|r| &r.sometimes))
        {
            for (total, more) in merged.reached.iter_mut().zip(shard.reached) {
                total.runs += more.runs;
            }
        } else {
            return Err(format!(
                "{}: its [[sometimes]] entries differ from the other shards': another template?",
                file.display()
            ));
        }
        merged.wall_ms = merged.wall_ms.max(shard.wall_ms);
    }
    merged.failed.sort_by_key(|failed| failed.seed);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_merge_into_one_summary() {
        let dir = std::env::temp_dir().join(format!("sim-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let reach = |sometimes: &str, runs| Reach {
            sometimes: sometimes.into(),
            runs,
        };
        let failed = |seed| Failed {
            seed,
            check: "invariant x".into(),
            detail: "seen".into(),
            reproduce: "sim run f.toml".into(),
            shrunk: None,
            shrunk_faults: None,
        };
        let shards = [
            Summary {
                runs: 50,
                failed: vec![failed(9)],
                wall_ms: 800,
                reached: vec![reach("stepped_down", 0), reach("gave_up", 0)],
                coverage: None,
            },
            Summary {
                runs: 50,
                failed: vec![failed(4)],
                wall_ms: 1200,
                reached: vec![reach("stepped_down", 7), reach("gave_up", 0)],
                coverage: None,
            },
        ];
        let paths: Vec<_> = (shards.iter().enumerate())
            .map(|(i, shard)| {
                let path = dir.join(format!("{i}.json"));
                std::fs::write(&path, serde_json::to_string(shard).unwrap()).unwrap();
                path
            })
            .collect();
        let merged = merge(&paths).unwrap();
        assert_eq!((merged.runs, merged.wall_ms), (100, 1200));
        assert_eq!(merged.reached[0], reach("stepped_down", 7));
        assert_eq!(merged.unreached(), ["gave_up"], "no shard reached it");
        assert!(!merged.passed());
        let seeds: Vec<u64> = merged.failed.iter().map(|f| f.seed).collect();
        assert_eq!(seeds, [4, 9]);
        std::fs::write(dir.join("bad.json"), "{\"runs\": 1}").unwrap();
        let error = merge(&[dir.join("bad.json")]).unwrap_err();
        assert!(error.contains("bad.json"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_last_line_gives_the_rate() {
        assert_eq!(
            last_line(300, 1500, 2),
            "explored 300 runs in 1.5 s (200 runs/s): 2 failed"
        );
    }
}
