//! The parent side of `sim explore`: hands seeds to worker processes (`sim explore-worker`),
//! reads their lines, shows progress on stderr, then has the first failure of each rule shrunk.

use crate::explore::guide::{Guide, GENERATION};
use crate::explore::summary::{last_line, Broken, Coverage, Failed, Reach, Summary, WorkerLine};
use crate::explore::worker::RunSpec;
use crate::run::SIM;
use fleet_node::sync::lock;
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A worker leaves once it holds this much memory, and a fresh one takes over its seeds.
pub const WORKER_MAX_RSS: u64 = 256 * 1024 * 1024;

/// Which seeds to run: `runs` seeds from `first`, of which this process takes every `of`-th,
/// starting at the `index`-th (`--shard index/of`, 1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seeds {
    pub first: u64,
    pub runs: u64,
    pub shard: (u64, u64),
}

impl Seeds {
    pub fn list(&self) -> Vec<u64> {
        let (index, of) = self.shard;
        (0..self.runs)
            .filter(|i| i % of == index - 1)
            .map(|i| self.first + i)
            .collect()
    }
}

/// Parses `K/N` with 1 <= K <= N.
pub fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("--shard takes K/N with 1 <= K <= N, like 2/4; got {text:?}");
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let (k, n): (u64, u64) = (k.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

pub struct Options {
    pub file: PathBuf,
    /// The template's `[[sometimes]]` entries, as the summary names them.
    pub sometimes: Vec<String>,
    /// `--set` flags, passed on to every worker.
    pub overrides: Vec<crate::scenario::overrides::Override>,
    pub seeds: Seeds,
    pub jobs: usize,
    pub out: PathBuf,
    /// Steer by what runs reached (see [`guide`](crate::explore::guide)) instead of drawing
    /// every schedule afresh.
    pub guided: bool,
    /// Count the abstract states the runs reached, and how that grew.
    pub coverage: bool,
    /// Stop after the generation in which a run first fails (`sim zoo`).
    pub stop_early: bool,
}

#[derive(Clone, Debug)]
enum Job {
    Runs(Vec<RunSpec>),
    Shrink { run: RunSpec, check: String },
}

impl Options {
    fn worker_args(&self) -> Vec<String> {
        let mut args = vec![
            "explore-worker".to_string(),
            self.file.display().to_string(),
            "--out".into(),
            self.out.display().to_string(),
        ];
        for one in &self.overrides {
            args.push("--set".into());
            args.push(one.to_string());
        }
        if self.guided || self.coverage {
            args.push("--states".into());
        }
        args
    }
}

impl Job {
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        match self {
            Job::Runs(runs) => {
                let runs: Vec<String> = runs.iter().map(RunSpec::to_string).collect();
                args.extend(["--seeds".into(), runs.join(",")]);
            }
            Job::Shrink { run, check } => {
                args.extend(["--shrink".into(), run.to_string()]);
                args.extend(["--check".into(), check.clone()]);
            }
        }
        args
    }
}

/// The jobs not yet taken, how many are not yet done, and the first error.
struct Board {
    queue: VecDeque<Job>,
    outstanding: usize,
    error: Option<String>,
}

/// How a worker process ended.
enum Ended {
    Done,
    /// Left early, past its memory budget: these runs go to a fresh worker.
    Left(Vec<RunSpec>),
    Failed(String),
}

/// Runs every job on `options.jobs` worker processes at once; `seen` gets each line as it
/// comes.
fn run_jobs(
    options: &Options,
    jobs: Vec<Job>,
    mut seen: impl FnMut(&WorkerLine),
) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|error| format!("cannot find sim: {error}"))?;
    let board = Arc::new((
        Mutex::new(Board {
            outstanding: jobs.len(),
            queue: jobs.into(),
            error: None,
        }),
        Condvar::new(),
    ));
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = (0..options.jobs.max(1))
        .map(|_| {
            let (board, tx, exe) = (board.clone(), tx.clone(), exe.clone());
            let args = options.worker_args();
            std::thread::spawn(move || worker_thread(&exe, &args, &board, &tx))
        })
        .collect();
    drop(tx);
    for line in rx {
        seen(&line);
    }
    for thread in threads {
        let _ = thread.join();
    }
    let board = lock(&board.0);
    board.error.clone().map_or(Ok(()), Err)
}

fn worker_thread(
    exe: &Path,
    args: &[String],
    board: &(Mutex<Board>, Condvar),
    tx: &mpsc::Sender<WorkerLine>,
) {
    let (board, wake) = board;
    loop {
        let job = {
            let mut state = lock(board);
            loop {
                if state.outstanding == 0 || state.error.is_some() {
                    return;
                }
                if let Some(job) = state.queue.pop_front() {
                    break job;
                }
                state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        let ended = run_worker(exe, args, &job, tx);
        let mut state = lock(board);
        match ended {
            Ended::Done => state.outstanding -= 1,
            Ended::Left(seeds) => state.queue.push_back(Job::Runs(seeds)),
            Ended::Failed(why) => state.error = state.error.take().or(Some(why)),
        }
        wake.notify_all();
    }
}

/// Runs one worker process for `job` and forwards its lines.
fn run_worker(exe: &Path, args: &[String], job: &Job, tx: &mpsc::Sender<WorkerLine>) -> Ended {
    let child = Command::new(exe)
        .args(args)
        .args(job.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => return Ended::Failed(format!("cannot start a worker: {error}")),
    };
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut remaining: Vec<RunSpec> = match job {
        Job::Runs(runs) => runs.clone(),
        Job::Shrink { .. } => Vec::new(),
    };
    let mut shrunk = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(parsed) = serde_json::from_str::<WorkerLine>(&line) else {
            continue;
        };
        match &parsed {
            WorkerLine::Ran { seed, .. } => remaining.retain(|run| run.seed != *seed),
            WorkerLine::Shrunk { .. } => shrunk = true,
        }
        let _ = tx.send(parsed);
    }
    let status = child.wait();
    let errors = errors.join().unwrap_or_default();
    let progressed = match job {
        Job::Runs(seeds) => remaining.len() < seeds.len(),
        Job::Shrink { .. } => shrunk,
    };
    match (remaining.is_empty(), progressed) {
        (true, true) => Ended::Done,
        (false, true) if status.as_ref().is_ok_and(|s| s.success()) => Ended::Left(remaining),
        _ => {
            let status = status.map_or_else(|e| e.to_string(), |status| status.to_string());
            Ended::Failed(format!("a worker stopped ({status}): {}", errors.trim()))
        }
    }
}

/// At most this many rules get a failure shrunk, one each.
const MAX_SHRUNK: usize = 8;

/// Counts runs as they finish and shows the count on stderr: in place on a terminal, a line
/// every few seconds elsewhere.
struct Progress {
    total: usize,
    done: usize,
    failed: usize,
    start: Instant,
    shown: Instant,
    terminal: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        let now = Instant::now();
        Progress {
            total,
            done: 0,
            failed: 0,
            start: now,
            shown: now,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn ran(&mut self, failed: bool) {
        self.done += 1;
        self.failed += usize::from(failed);
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.shown.elapsed() >= every {
            self.shown = Instant::now();
            let rate = self.done as f64 / self.start.elapsed().as_secs_f64();
            let text = format!(
                "explored {}/{} runs ({rate:.0} runs/s), {} failed",
                self.done, self.total, self.failed
            );
            let mut stderr = std::io::stderr().lock();
            let _ = if self.terminal {
                write!(stderr, "\r{text}  ")
            } else {
                writeln!(stderr, "{text}")
            };
        }
    }

    fn finish(&self) {
        if self.terminal {
            eprint!("\r{:60}\r", "");
        }
    }
}

/// What exploration saw of each run, read in seed order.
struct Seen {
    progress: Progress,
    /// Each failing run: the rule, its file, and what it ran.
    ran: BTreeMap<u64, (Broken, Option<String>, RunSpec)>,
    reached: Vec<Reach>,
    guide: Guide,
    /// Distinct states after so many runs.
    growth: Vec<[u64; 2]>,
    done: u64,
}

impl Seen {
    /// Takes one generation's results, in seed order.
    fn take(&mut self, runs: &[RunSpec], lines: BTreeMap<u64, WorkerLine>, total: u64) {
        for run in runs {
            let Some(WorkerLine::Ran {
                broken,
                file,
                reached,
                states,
                ..
            }) = lines.get(&run.seed)
            else {
                continue;
            };
            for &index in reached {
                if let Some(reach) = self.reached.get_mut(index) {
                    reach.runs += 1;
                }
            }
            if let Some(broken) = broken {
                (self.ran).insert(run.seed, (broken.clone(), file.clone(), run.clone()));
            }
            self.guide.learn(run, states);
            self.done += 1;
            // Ten points of growth, and the last.
            if self.done * 10 % total.max(1) < 10 || self.done == total {
                let point = [self.done, self.guide.states() as u64];
                if self.growth.last() != Some(&point) {
                    self.growth.push(point);
                }
            }
        }
    }
}

/// Explores: every seed in its own run, spread over worker processes, then the first failure
/// of each broken rule shrunk. Returns the summary, failures by seed. Guided, each generation
/// of runs is chosen from what the ones before reached.
pub fn explore(options: &Options) -> Result<Summary, String> {
    let seeds = options.seeds.list();
    let jobs = options.jobs.max(1);
    let total = seeds.len() as u64;
    let mut seen = Seen {
        progress: Progress::new(seeds.len()),
        ran: BTreeMap::new(),
        reached: (options.sometimes.iter())
            .map(|sometimes| Reach {
                sometimes: sometimes.clone(),
                runs: 0,
            })
            .collect(),
        guide: Guide::default(),
        growth: Vec::new(),
        done: 0,
    };
    // Random runs need no barrier but for counting coverage in seed order.
    let generation = match (options.guided, options.coverage || options.stop_early) {
        (true, _) => GENERATION,
        (false, true) => GENERATION,
        (false, false) => seeds.len().max(1),
    };
    for generation in seeds.chunks(generation) {
        let runs: Vec<RunSpec> = (generation.iter())
            .map(|&seed| match options.guided {
                true => seen.guide.choose(seed),
                false => RunSpec::drawn(seed),
            })
            .collect();
        let batch = (runs.len() / (jobs * 4)).clamp(1, 200);
        let batches = runs.chunks(batch).map(|runs| Job::Runs(runs.to_vec()));
        let mut lines: BTreeMap<u64, WorkerLine> = BTreeMap::new();
        run_jobs(options, batches.collect(), |line| {
            if let WorkerLine::Ran { seed, broken, .. } = line {
                seen.progress.ran(broken.is_some());
                lines.insert(*seed, line.clone());
            }
        })?;
        seen.take(&runs, lines, total);
        if options.stop_early && !seen.ran.is_empty() {
            break;
        }
    }
    seen.progress.finish();
    let wall = seen.progress.start.elapsed();

    let shrunk = shrink_firsts(options, &seen.ran)?;
    let failed = failures(options, seen.ran, shrunk);
    let coverage = (options.guided || options.coverage).then(|| Coverage {
        states: seen.guide.states() as u64,
        corpus: seen.guide.corpus() as u64,
        growth: seen.growth,
    });
    Ok(Summary {
        runs: seen.done,
        failed,
        wall_ms: wall.as_millis() as u64,
        reached: seen.reached,
        coverage,
    })
}

/// The summary's failing runs, by seed, with the files their shrinking wrote.
fn failures(
    options: &Options,
    ran: BTreeMap<u64, (Broken, Option<String>, RunSpec)>,
    mut shrunk: BTreeMap<u64, (String, usize)>,
) -> Vec<Failed> {
    (ran.into_iter())
        .map(|(seed, (broken, file, _))| Failed {
            seed,
            check: broken.check,
            detail: broken.detail,
            reproduce: match file {
                Some(file) => format!("{SIM} run {file}"),
                None => format!(
                    "{SIM} explore {} --seed {seed} --runs 1",
                    options.file.display()
                ),
            },
            shrunk_faults: shrunk.get(&seed).map(|(_, faults)| *faults),
            shrunk: shrunk.remove(&seed).map(|(file, _)| file),
        })
        .collect()
}

/// Has the first failing run of each broken rule shrunk (of the first [`MAX_SHRUNK`] rules);
/// returns each shrunk file, and the faults it kept, by seed.
fn shrink_firsts(
    options: &Options,
    ran: &BTreeMap<u64, (Broken, Option<String>, RunSpec)>,
) -> Result<BTreeMap<u64, (String, usize)>, String> {
    let mut first_of_rule: BTreeMap<&str, &RunSpec> = BTreeMap::new();
    for (broken, _, run) in ran.values() {
        if first_of_rule.len() < MAX_SHRUNK || first_of_rule.contains_key(broken.check.as_str()) {
            first_of_rule.entry(&broken.check).or_insert(run);
        }
    }
    let shrink_jobs: Vec<Job> = (first_of_rule.iter())
        .map(|(check, run)| Job::Shrink {
            run: (*run).clone(),
            check: check.to_string(),
        })
        .collect();
    let mut shrunk: BTreeMap<u64, (String, usize)> = BTreeMap::new();
    if !shrink_jobs.is_empty() {
        let count = shrink_jobs.len();
        let runs = if count == 1 { "run" } else { "runs" };
        eprintln!("shrinking {count} failing {runs}, one per broken rule");
        run_jobs(options, shrink_jobs, |line| {
            if let WorkerLine::Shrunk {
                seed, file, faults, ..
            } = line
            {
                shrunk.insert(*seed, (file.clone(), *faults));
            }
        })?;
    }
    Ok(shrunk)
}

/// The summary as text: each failing run (the first few of each rule), then the last line.
pub fn text(summary: &Summary) -> String {
    const SHOWN_PER_RULE: usize = 5;
    let mut out = String::new();
    let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
    for failed in &summary.failed {
        let count = shown.entry(&failed.check).or_default();
        *count += 1;
        if *count > SHOWN_PER_RULE {
            continue;
        }
        out.push_str(&format!(
            "FAIL seed {}: {}\n  {}\n  reproduce: {}\n",
            failed.seed, failed.check, failed.detail, failed.reproduce
        ));
        if let Some(file) = &failed.shrunk {
            out.push_str(&format!("  shrunk:    {SIM} run {file}\n"));
        }
    }
    for (check, count) in shown {
        if count > SHOWN_PER_RULE {
            out.push_str(&format!(
                "... and {} more runs that break {check} (--json lists them all)\n",
                count - SHOWN_PER_RULE
            ));
        }
    }
    if let Some(coverage) = &summary.coverage {
        let growth: Vec<String> = (coverage.growth.iter())
            .map(|[runs, states]| format!("{states} by {runs}"))
            .collect();
        out.push_str(&format!(
            "coverage: {} distinct states ({} schedules kept for reaching a new one); grew {}\n",
            coverage.states,
            coverage.corpus,
            growth.join(", ")
        ));
    }
    if !summary.reached.is_empty() {
        out.push_str("reached\n");
        for reach in &summary.reached {
            let mark = if reach.runs == 0 { "NEVER" } else { "ok   " };
            let (runs, of) = (reach.runs, summary.runs);
            out.push_str(&format!(
                "  {mark} {}: {runs} of {of} runs\n",
                reach.sometimes
            ));
        }
    }
    out.push_str(&last_line(
        summary.runs,
        summary.wall_ms,
        summary.failed.len(),
    ));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_every_seed() {
        let all = |of| {
            let mut seeds: Vec<u64> = (1..=of)
                .flat_map(|k| {
                    Seeds {
                        first: 10,
                        runs: 11,
                        shard: (k, of),
                    }
                    .list()
                })
                .collect();
            seeds.sort();
            seeds
        };
        let expected: Vec<u64> = (10..21).collect();
        assert_eq!(all(1), expected);
        assert_eq!(all(3), expected);
        assert_eq!(all(20), expected);
        assert_eq!(
            Seeds {
                first: 10,
                runs: 11,
                shard: (2, 3)
            }
            .list(),
            [11, 14, 17, 20]
        );
    }

    #[test]
    fn a_shard_is_k_of_n() {
        assert_eq!(parse_shard("2/4"), Ok((2, 4)));
        for bad in ["0/4", "5/4", "2", "a/b", "1/0"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
