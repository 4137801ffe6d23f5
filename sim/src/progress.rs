//! Progress on stderr for what takes a while: a long run's simulated time, a sweep's runs.
//! Wall time is read here, outside any simulation, and only decides what the bar shows.

use crate::{judge, run, Judged, Loaded};
use fleet_core::fmt_duration;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A run draws its bar only once it has taken this long.
const QUIET_FOR: Duration = Duration::from_secs(2);

/// How often the watcher reads the simulated clock.
const POLL: Duration = Duration::from_millis(100);

/// A bar counting `total` runs.
pub fn runs_bar(total: u64) -> ProgressBar {
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} runs · {elapsed} · eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(total).with_style(style)
}

/// Runs `loaded` with `seed` and judges it, drawing a bar of simulated time on stderr once the
/// run has taken more than 2 s of wall time (a thread outside the simulation watches the
/// simulated clock). The run is the same with or without the bar.
pub fn run_with_progress(loaded: &Loaded, seed: u64) -> Judged {
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let end_ms = loaded.scenario.duration.as_millis() as u64;
    let watcher = {
        let (progress, done) = (progress.clone(), done.clone());
        std::thread::spawn(move || watch(&progress, &done, end_ms))
    };
    let output = run::run_watched(&loaded.scenario, seed, Some(progress));
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let verdicts = judge::evaluate(&loaded.scenario, &loaded.expectations, &output.timeline);
    Judged { output, verdicts }
}

/// Until `done`: after [`QUIET_FOR`], a bar of `progress` (simulated ms) out of `end_ms`.
fn watch(progress: &AtomicU64, done: &AtomicBool, end_ms: u64) {
    let start = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
        if start.elapsed() < QUIET_FOR {
            continue;
        }
        let bar = bar.get_or_insert_with(|| {
            let style =
                ProgressStyle::with_template("{bar:40} {msg} simulated · {elapsed} · eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(end_ms).with_style(style)
        });
        let at = progress.load(Ordering::Relaxed).min(end_ms);
        bar.set_position(at);
        bar.set_message(fmt_duration(Duration::from_millis(at)));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}
