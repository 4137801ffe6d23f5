//! Plots as SVG files (plotters): a sweep's values against its grid points, a run's connect
//! attempts and agents online over time with the faults shaded, and histograms of failover
//! times. Every plot is a pure function of numbers a run or sweep already measured.

use crate::history::metrics::quantile;
use crate::history::online::OnlineHistory;
use crate::history::{Entry, Happening};
use crate::scenario::Scenario;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 480;
const BAND: RGBColor = RGBColor(120, 160, 220);
const LINE: RGBColor = RGBColor(30, 70, 160);
const FAULT: RGBColor = RGBColor(230, 120, 90);

/// What a plot could not do: draw, or write its file.
pub(crate) type PlotError = String;

fn failed(what: &str, error: impl std::fmt::Display) -> PlotError {
    format!("cannot draw {what}: {error}")
}

type Canvas<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// A white SVG canvas at `path`.
fn canvas<'a>(path: &'a Path, title: &str) -> Result<Canvas<'a>, PlotError> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(title, e))?;
    Ok(root)
}

/// Every plot's frame: its title and the room its axis labels need.
fn frame<'a, 'b>(root: &'a Canvas<'b>, title: &str) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64);
    builder
}

/// One grid point's spread of a value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Spread {
    pub p10: f64,
    pub median: f64,
    pub p90: f64,
}

impl Spread {
    /// Nearest-rank p10, median and p90 of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Spread {
            p10: quantile(&sorted, 0.1)?,
            median: quantile(&sorted, 0.5)?,
            p90: quantile(&sorted, 0.9)?,
        })
    }
}

/// A sweep's value against its grid points: the median as a line, p10–p90 as a band.
pub(crate) fn sweep_value(
    path: &Path,
    title: &str,
    x_label: &str,
    labels: &[String],
    points: &[Option<Spread>],
) -> Result<(), PlotError> {
    let high = (points.iter().flatten())
        .map(|spread| spread.p90)
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.1;
    let count = labels.len().max(1);
    let root = canvas(path, title)?;
    let mut chart = frame(&root, title)
        .build_cartesian_2d(-1i32..count as i32, 0.0..high)
        .map_err(|e| failed(title, e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .x_labels(count + 2)
        .x_label_formatter(&|&x| {
            usize::try_from(x)
                .ok()
                .and_then(|index| labels.get(index).cloned())
                .unwrap_or_default()
        })
        .draw()
        .map_err(|e| failed(title, e))?;
    let present: Vec<(i32, &Spread)> = (points.iter().enumerate())
        .filter_map(|(i, spread)| Some((i as i32, spread.as_ref()?)))
        .collect();
    let mut band: Vec<(i32, f64)> = present.iter().map(|(x, s)| (*x, s.p90)).collect();
    band.extend(present.iter().rev().map(|(x, s)| (*x, s.p10)));
    if band.len() >= 2 {
        chart
            .draw_series(std::iter::once(Polygon::new(band, BAND.mix(0.35).filled())))
            .map_err(|e| failed(title, e))?
            .label("p10–p90")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], BAND.mix(0.35).filled())
            });
    }
    chart
        .draw_series(LineSeries::new(
            present.iter().map(|(x, s)| (*x, s.median)),
            LINE.stroke_width(2),
        ))
        .map_err(|e| failed(title, e))?
        .label("median")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], LINE.stroke_width(2)));
    chart
        .draw_series(
            present
                .iter()
                .map(|(x, s)| Circle::new((*x, s.median), 3, LINE.filled())),
        )
        .map_err(|e| failed(title, e))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| failed(title, e))?;
    root.present().map_err(|e| failed(title, e))
}

/// The periods faults were in force, as `(from_ms, to_ms, the fault that opened it)`: from
/// each fault that cuts, slows or takes down, to the next heal, latency or loss reset, or
/// restart (or the end).
pub(crate) fn fault_periods(entries: &[Entry], end_ms: u64) -> Vec<(u64, u64, String)> {
    use crate::scenario::faults::FaultAction;
    let mut periods = Vec::new();
    let mut open: Option<(u64, String)> = None;
    for entry in entries {
        let Happening::Fault(fault) = &entry.event else {
            continue;
        };
        let Some(fired) = fault.fired() else {
            continue;
        };
        let (opens, closes) = match &fired.action {
            FaultAction::Crash(_)
            | FaultAction::Partition { .. }
            | FaultAction::Isolate(_)
            | FaultAction::Shutdown(_)
            | FaultAction::Stop(_)
            | FaultAction::Revoke(_)
            | FaultAction::Hold(_)
            | FaultAction::Pause(_)
            | FaultAction::PowerFail(_)
            | FaultAction::Ring(_)
            | FaultAction::Stall { .. } => (true, false),
            FaultAction::Latency(..) | FaultAction::LinkLatency { .. } | FaultAction::Loss(_) => {
                (open.is_none(), open.is_some())
            }
            FaultAction::Heal(_)
            | FaultAction::Restart(_)
            | FaultAction::Restore(_)
            | FaultAction::Release(_)
            | FaultAction::Resume(_) => (false, true),
            FaultAction::Wipe(_)
            | FaultAction::Admin(_)
            | FaultAction::Clock { .. }
            | FaultAction::Corrupt(_) => (false, false),
        };
        if closes {
            if let Some((from, label)) = open.take() {
                periods.push((from, entry.t_ms, label));
            }
        }
        if opens && open.is_none() {
            open = Some((entry.t_ms, entry.parts().0 + " " + &entry.parts().1));
        }
    }
    if let Some((from, label)) = open {
        periods.push((from, end_ms, label));
    }
    periods
}

/// `sim run --plot DIR`: the run's rates, and histograms of its failover and election times
/// when it has any.
pub fn run_plots(dir: &Path, scenario: &Scenario, entries: &[Entry]) -> Result<(), PlotError> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    run_rates(&dir.join("rates.svg"), scenario, entries)?;
    let metrics = super::measure(scenario, entries);
    if !metrics.failover_ms.is_empty() {
        let title = format!("{}: failover ms", scenario.name);
        histogram(
            &dir.join("failover-histogram.svg"),
            &title,
            &metrics.failover_ms,
        )?;
    }
    if !metrics.election_ms.is_empty() {
        let title = format!("{}: election ms", scenario.name);
        histogram(
            &dir.join("election-histogram.svg"),
            &title,
            &metrics.election_ms,
        )?;
    }
    Ok(())
}

/// A run's connect attempts per second and agents online, over time, with faults shaded.
pub(crate) fn run_rates(
    path: &Path,
    scenario: &Scenario,
    entries: &[Entry],
) -> Result<(), PlotError> {
    let title = format!("{}: connect attempts/s and agents online", scenario.name);
    let end_ms = scenario.duration.as_millis() as u64;
    let seconds = end_ms.div_ceil(1000).max(1);
    let mut attempts: BTreeMap<u64, u64> = BTreeMap::new();
    for (t_ms, _) in crate::history::attempts::connect_attempts(entries) {
        *attempts.entry(t_ms / 1000).or_default() += 1;
    }
    let online = OnlineHistory::from_entries(entries);
    let agents = scenario.topology.agents();
    let online_at = |second: u64| {
        (agents.iter())
            .filter(|agent| online.online_at(agent, second * 1000))
            .count() as f64
    };
    let peak = attempts.values().copied().max().unwrap_or(0) as f64;
    let high = peak.max(agents.len() as f64).max(1.0) * 1.1;
    let root = canvas(path, &title)?;
    let mut chart = frame(&root, &title)
        .build_cartesian_2d(0.0..seconds as f64, 0.0..high)
        .map_err(|e| failed(&title, e))?;
    chart
        .configure_mesh()
        .x_desc("simulated seconds")
        .draw()
        .map_err(|e| failed(&title, e))?;
    chart
        .draw_series(
            fault_periods(entries, end_ms)
                .into_iter()
                .map(|(from, to, _)| {
                    let (from, to) = (from as f64 / 1000.0, to as f64 / 1000.0);
                    Rectangle::new([(from, 0.0), (to, high)], FAULT.mix(0.18).filled())
                }),
        )
        .map_err(|e| failed(&title, e))?
        .label("faults")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], FAULT.mix(0.18).filled()));
    chart
        .draw_series(LineSeries::new(
            (0..seconds).map(|s| (s as f64, attempts.get(&s).copied().unwrap_or(0) as f64)),
            LINE.stroke_width(1),
        ))
        .map_err(|e| failed(&title, e))?
        .label("connect attempts per second")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], LINE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            (0..seconds).map(|s| (s as f64, online_at(s))),
            GREEN.stroke_width(2),
        ))
        .map_err(|e| failed(&title, e))?
        .label("agents online")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], GREEN.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| failed(&title, e))?;
    root.present().map_err(|e| failed(&title, e))
}

/// A histogram of times in ms (elections, failovers), in bins of `bin_ms`.
pub fn histogram(path: &Path, title: &str, values_ms: &[u64]) -> Result<(), PlotError> {
    let max = values_ms.iter().copied().max().unwrap_or(0);
    let bin_ms = (max / 30).max(1).next_power_of_two().max(10);
    let mut bins: BTreeMap<u64, u64> = BTreeMap::new();
    for &value in values_ms {
        *bins.entry(value / bin_ms).or_default() += 1;
    }
    let last = bins.keys().copied().max().unwrap_or(0) + 1;
    let high = bins.values().copied().max().unwrap_or(1) as f64 * 1.1;
    let root = canvas(path, title)?;
    let mut chart = frame(&root, title)
        .build_cartesian_2d(0.0..(last * bin_ms) as f64, 0.0..high.max(1.0))
        .map_err(|e| failed(title, e))?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "ms ({} in all, bins of {bin_ms}ms)",
            values_ms.len()
        ))
        .y_desc("count")
        .draw()
        .map_err(|e| failed(title, e))?;
    chart
        .draw_series(bins.iter().map(|(&bin, &count)| {
            let from = (bin * bin_ms) as f64;
            Rectangle::new(
                [(from, 0.0), (from + bin_ms as f64, count as f64)],
                LINE.mix(0.6).filled(),
            )
        }))
        .map_err(|e| failed(title, e))?;
    root.present().map_err(|e| failed(title, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_take_nearest_ranks() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(
            Spread::of(&values),
            Some(Spread {
                p10: 1.0,
                median: 5.0,
                p90: 9.0
            })
        );
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn plots_are_svg_with_their_titles_and_labels() {
        let dir = std::env::temp_dir().join(format!("sim-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("value.svg");
        let labels = vec!["2".to_string(), "3".to_string(), "4".to_string()];
        let spread = |m: f64| {
            Some(Spread {
                p10: m - 10.0,
                median: m,
                p90: m + 10.0,
            })
        };
        sweep_value(
            &path,
            "detection ms",
            "max_miss",
            &labels,
            &[spread(600.0), None, spread(1600.0)],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("detection ms") && svg.contains("max_miss"));
        assert!(
            svg.contains("\n3\n</text>"),
            "the grid values label the axis"
        );
        let path = dir.join("histogram.svg");
        histogram(&path, "failover ms", &[100, 150, 900]).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("3 in all"));
    }
}
