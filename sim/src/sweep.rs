//! `sim sweep`: one scenario over a grid of parameter values × seeds. Each grid point is a set
//! of `--set` overrides; each run is judged and measured. The table has a row per point: the
//! values, the pass rate, and every measured number's median, p90 and max over the seeds.

use crate::history::metrics::Metrics;
use crate::judge::Verdict;
use crate::report::plot::{self, Spread};
use crate::report::spread::{numbers, show_spread};
use crate::scenario::overrides::Override;
use crate::scenario::ConfigError;
use crate::seeds::{cores, parallel};
use crate::{report, Loaded};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `--grid KEY=V1,V2,...`: one parameter and the values it takes.
#[derive(Clone, Debug)]
pub struct Grid {
    pub key: String,
    pub values: Vec<Override>,
}

impl Grid {
    /// Reads `KEY=V1,V2,...` (a clap value parser); each value must make a valid override.
    pub fn parse(text: &str) -> Result<Grid, String> {
        let (key, values) = text.split_once('=').ok_or_else(|| {
            format!("{text:?} is not KEY=V1,V2,..., like params.heartbeat.max_miss=2,3,4")
        })?;
        let values = (values.split(','))
            .map(|value| Override::parse(&format!("{key}={}", value.trim())))
            .collect::<Result<Vec<_>, _>>()?;
        if values.iter().any(|value| value.raw.is_empty()) {
            return Err(format!("{text:?}: a grid value is empty"));
        }
        Ok(Grid {
            key: key.trim().to_string(),
            values,
        })
    }
}

/// Every combination of the grids' values, the first grid varying slowest.
pub fn points(grids: &[Grid]) -> Vec<Vec<Override>> {
    let mut points = vec![Vec::new()];
    for grid in grids {
        points = (points.iter())
            .flat_map(|point| {
                grid.values.iter().map(move |value| {
                    let mut point = point.clone();
                    point.push(value.clone());
                    point
                })
            })
            .collect();
    }
    points
}

/// A sweep ready to run: every grid point's scenario, loaded and checked before anything runs.
#[derive(Debug)]
pub struct Sweep {
    pub grids: Vec<Grid>,
    pub points: Vec<Vec<Override>>,
    /// A point's scenario: the file with `overrides`, then the point's values.
    pub loaded: Vec<Loaded>,
}

impl Sweep {
    /// Loads `file` once per grid point; the first point the checks refuse is the error.
    pub fn load(file: &Path, overrides: &[Override], grids: &[Grid]) -> Result<Sweep, ConfigError> {
        let points = points(grids);
        let loaded = (points.iter())
            .map(|point| {
                let all: Vec<Override> = overrides.iter().chain(point).cloned().collect();
                crate::load_with(file, &all)
            })
            .collect::<Result<_, _>>()?;
        Ok(Sweep {
            grids: grids.to_vec(),
            points,
            loaded,
        })
    }

    /// Runs every point on every seed, side by side on every core, judged and measured;
    /// `done` is told after each run. Runs come back point by point, seeds in order.
    pub fn run(&self, seeds: &[u64], done: impl Fn() + Sync) -> Vec<Run> {
        let jobs: Vec<u64> = (0..(self.points.len() * seeds.len()) as u64).collect();
        parallel(&jobs, cores(), |job| {
            let (point, seed) = (
                (job as usize) / seeds.len(),
                seeds[job as usize % seeds.len()],
            );
            let one = &self.loaded[point];
            let crate::Judged { output, verdicts } = one.run(seed);
            let mut metrics = report::measure(&one.scenario, &output.timeline.entries);
            metrics.wire_bytes = output.timeline.wire_bytes;
            done();
            Run {
                point,
                seed,
                verdicts,
                metrics,
            }
        })
    }

    /// `FILE: 2 points × 50 seeds = 100 runs in 3.2 s`.
    pub fn summary(&self, file: &Path, seeds: usize, wall: Duration) -> String {
        format!(
            "{}: {} points × {seeds} seeds = {} runs in {:.1} s",
            file.display(),
            self.points.len(),
            self.points.len() * seeds,
            wall.as_secs_f64()
        )
    }
}

/// One run of one point.
#[derive(Clone, Debug)]
pub struct Run {
    pub point: usize,
    pub seed: u64,
    pub verdicts: Vec<Verdict>,
    pub metrics: Metrics,
}

/// The metrics a sweep's table shows, as `(column, values of one run)`.
const METRIC_COLUMNS: usize = 7;

fn metric_columns(metrics: &Metrics) -> [(&'static str, Vec<f64>); METRIC_COLUMNS] {
    let each = |values: &[u64]| values.iter().map(|&v| v as f64).collect::<Vec<_>>();
    [
        ("detection ms", each(&metrics.detection_ms)),
        ("false offlines", vec![metrics.false_offlines as f64]),
        (
            "recovery ms",
            metrics
                .recovered_ms
                .map(|ms| ms as f64)
                .into_iter()
                .collect(),
        ),
        (
            "peak attempts/s",
            vec![metrics.peak_connect_attempts as f64],
        ),
        ("failover ms", each(&metrics.failover_ms)),
        ("command start ms", each(&metrics.command_start_ms)),
        ("wire bytes", vec![metrics.wire_bytes as f64]),
    ]
}

/// The columns a check's values give: its name, with the field for an object's numbers.
fn check_columns(runs: &[Run]) -> Vec<(usize, String, String)> {
    let mut columns = Vec::new();
    let Some(first) = runs.first() else {
        return columns;
    };
    for (index, verdict) in first.verdicts.iter().enumerate() {
        let name = verdict.check.split_whitespace().next().unwrap_or("check");
        let fields = (runs.iter())
            .find_map(|run| run.verdicts.get(index)?.value.as_ref())
            .map(numbers)
            .unwrap_or_default();
        for (field, _) in fields {
            let label = if field.is_empty() {
                name.to_string()
            } else {
                format!("{name} {field}")
            };
            columns.push((index, field, label));
        }
    }
    columns
}

fn check_values(runs: &[&Run], index: usize, field: &str) -> Vec<f64> {
    (runs.iter())
        .filter_map(|run| run.verdicts.get(index)?.value.as_ref())
        .flat_map(numbers)
        .filter(|(name, _)| name == field)
        .map(|(_, x)| x)
        .collect()
}

/// The table: a row per point, its values, the pass rate, then each measured number as
/// `median/p90/max` over its seeds.
pub fn table(grids: &[Grid], points: &[Vec<Override>], runs: &[Run]) -> String {
    let checks = check_columns(runs);
    let mut header: Vec<String> = grids.iter().map(|grid| grid.key.clone()).collect();
    header.push("pass".into());
    header.extend(checks.iter().map(|(_, _, label)| label.clone()));
    let metric_names = runs
        .first()
        .map(|run| metric_columns(&run.metrics).map(|(name, _)| name));
    header.extend(metric_names.into_iter().flatten().map(str::to_string));
    let mut rows = vec![header];
    for (index, point) in points.iter().enumerate() {
        let mine: Vec<&Run> = runs.iter().filter(|run| run.point == index).collect();
        let mut row: Vec<String> = point.iter().map(|value| value.raw.clone()).collect();
        let passed = (mine.iter())
            .filter(|run| run.verdicts.iter().all(|verdict| verdict.ok))
            .count();
        row.push(format!("{passed}/{}", mine.len()));
        for (check, field, _) in &checks {
            row.push(show_spread(check_values(&mine, *check, field), "/"));
        }
        let mut metrics: Vec<Vec<f64>> = vec![Vec::new(); METRIC_COLUMNS];
        for run in &mine {
            for (column, (_, values)) in metric_columns(&run.metrics).into_iter().enumerate() {
                metrics[column].extend(values);
            }
        }
        row.extend(metrics.into_iter().map(|values| show_spread(values, "/")));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = (row.iter().zip(&widths))
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    let _ = writeln!(
        out,
        "(numbers: median/p90/max over the seeds; pass: seeds where every expectation held)"
    );
    out
}

/// One CSV row per run: the point's values, the seed, each check's `ok` and value (a column per
/// field of an object value), then the metrics.
pub fn csv(grids: &[Grid], points: &[Vec<Override>], runs: &[Run]) -> String {
    let checks = check_columns(runs);
    let mut out = csv_line(&csv_header(grids, runs, &checks));
    for run in runs {
        out.push_str(&csv_line(&csv_row(&points[run.point], run, &checks)));
    }
    out
}

/// The CSV's column names: the grid's keys, `seed`, `ok`, each check's `ok` and values, and the
/// metrics.
fn csv_header(grids: &[Grid], runs: &[Run], checks: &[(usize, String, String)]) -> Vec<String> {
    let mut header: Vec<String> = grids.iter().map(|grid| grid.key.clone()).collect();
    header.push("seed".into());
    header.push("ok".into());
    if let Some(first) = runs.first() {
        for (index, verdict) in first.verdicts.iter().enumerate() {
            let name = verdict.check.split_whitespace().next().unwrap_or("check");
            header.push(format!("{index}:{name} ok"));
        }
    }
    header.extend(
        checks
            .iter()
            .map(|(index, _, label)| format!("{index}:{label}")),
    );
    header.extend(
        [
            "detection_ms_median",
            "false_offlines",
            "recovered_ms",
            "connect_attempts",
            "peak_connect_attempts",
            "registrations",
            "peak_registrations",
            "failover_ms_median",
            "terms",
            "command_start_ms_median",
            "wire_bytes",
        ]
        .map(str::to_string),
    );
    header
}

/// One run's CSV cells, in [`csv_header`]'s order.
fn csv_row(point: &[Override], run: &Run, checks: &[(usize, String, String)]) -> Vec<String> {
    let mut row: Vec<String> = point.iter().map(|value| value.raw.clone()).collect();
    row.push(run.seed.to_string());
    row.push(run.verdicts.iter().all(|verdict| verdict.ok).to_string());
    row.extend(run.verdicts.iter().map(|verdict| verdict.ok.to_string()));
    for (index, field, _) in checks {
        let value = check_values(&[run], *index, field).first().copied();
        row.push(value.map_or(String::new(), |x| x.to_string()));
    }
    let metrics = &run.metrics;
    let median = |values: &[u64]| {
        crate::history::metrics::median(values).map_or(String::new(), |m| m.to_string())
    };
    row.extend([
        median(&metrics.detection_ms),
        metrics.false_offlines.to_string(),
        metrics
            .recovered_ms
            .map_or(String::new(), |ms| ms.to_string()),
        metrics.connect_attempts.to_string(),
        metrics.peak_connect_attempts.to_string(),
        metrics.registrations.to_string(),
        metrics.peak_registrations.to_string(),
        median(&metrics.failover_ms),
        metrics.terms.to_string(),
        median(&metrics.command_start_ms),
        metrics.wire_bytes.to_string(),
    ]);
    row
}

/// Cells joined by commas, each quoted when it must be, and a newline.
fn csv_line(cells: &[String]) -> String {
    let quoted: Vec<String> = cells.iter().map(|cell| quote(cell)).collect();
    format!("{}\n", quoted.join(","))
}

/// `--plot DIR`: one SVG per measured number (each check's value, each run measure) against the
/// grid points, median line and p10–p90 band; and a histogram of every failover time. Returns
/// the files written.
pub fn plot(
    dir: &Path,
    grids: &[Grid],
    points: &[Vec<Override>],
    runs: &[Run],
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let labels: Vec<String> = (points.iter())
        .map(|point| {
            point
                .iter()
                .map(|v| v.raw.as_str())
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .collect();
    let x_label: String = grids
        .iter()
        .map(|grid| grid.key.as_str())
        .collect::<Vec<_>>()
        .join(" · ");
    let per_point = |values: &dyn Fn(&Run) -> Vec<f64>| -> Vec<Option<Spread>> {
        (0..points.len())
            .map(|index| {
                let all: Vec<f64> = (runs.iter())
                    .filter(|run| run.point == index)
                    .flat_map(values)
                    .collect();
                Spread::of(&all)
            })
            .collect()
    };
    let mut written = Vec::new();
    let mut draw = |name: &str, spreads: Vec<Option<Spread>>| -> Result<(), String> {
        if spreads.iter().all(Option::is_none) {
            return Ok(());
        }
        let slug: String = (name.chars())
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = dir.join(format!("{slug}.svg"));
        plot::sweep_value(&path, name, &x_label, &labels, &spreads)?;
        written.push(path);
        Ok(())
    };
    for (check, field, label) in check_columns(runs) {
        let values = |run: &Run| check_values(&[run], check, &field);
        draw(&label, per_point(&values))?;
    }
    for column in 0..5 {
        let name = runs
            .first()
            .map_or("", |run| metric_columns(&run.metrics)[column].0);
        let values = |run: &Run| metric_columns(&run.metrics)[column].1.clone();
        draw(name, per_point(&values))?;
    }
    let failovers: Vec<u64> = runs
        .iter()
        .flat_map(|run| run.metrics.failover_ms.clone())
        .collect();
    if !failovers.is_empty() {
        let path = dir.join("failover-histogram.svg");
        plot::histogram(&path, "failover ms, every run of the sweep", &failovers)?;
        written.push(path);
    }
    Ok(written)
}

/// A CSV cell, quoted when it must be.
fn quote(cell: &str) -> String {
    if cell.contains([',', '"', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_is_every_combination_first_grid_slowest() {
        let grids = [
            Grid::parse("params.heartbeat.max_miss=2,3").unwrap(),
            Grid::parse("params.heartbeat.interval=500ms,1s").unwrap(),
        ];
        let shown: Vec<String> = points(&grids)
            .iter()
            .map(|point| {
                point
                    .iter()
                    .map(|o| o.raw.clone())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(shown, ["2 500ms", "2 1s", "3 500ms", "3 1s"]);
        assert!(Grid::parse("max_miss").is_err());
        assert!(Grid::parse("a=1,,2").is_err());
    }

    fn run(point: usize, seed: u64, ok: bool, value: u64, detection: Vec<u64>) -> Run {
        Run {
            point,
            seed,
            verdicts: vec![Verdict {
                check: "offline_within agents 5s after 10s".into(),
                args: serde_json::Map::new(),
                ok,
                detail: String::new(),
                value: Some(value.into()),
            }],
            metrics: Metrics {
                detection_ms: detection,
                ..Metrics::default()
            },
        }
    }

    #[test]
    fn the_table_has_a_row_per_point_and_the_csv_a_row_per_run() {
        let grids = [Grid::parse("params.heartbeat.max_miss=2,3").unwrap()];
        let points = points(&grids);
        let runs = vec![
            run(0, 1, true, 100, vec![2000]),
            run(0, 2, false, 300, vec![2100, 2200]),
            run(1, 1, true, 200, vec![3000]),
            run(1, 2, true, 200, vec![3100]),
        ];
        let table = table(&grids, &points, &runs);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("params.heartbeat.max_miss  pass"),
            "{table}"
        );
        assert!(
            lines[1].contains("1/2") && lines[1].contains("100/300/300"),
            "{table}"
        );
        assert!(lines[1].contains("2100/2200/2200"), "{table}");
        assert!(
            lines[2].contains("2/2") && lines[2].contains("3000/3100/3100"),
            "{table}"
        );
        let csv = csv(&grids, &points, &runs);
        assert_eq!(csv.lines().count(), 5);
        assert!(
            csv.lines()
                .nth(2)
                .unwrap()
                .starts_with("2,2,false,false,300,2100"),
            "{csv}"
        );
    }
}
