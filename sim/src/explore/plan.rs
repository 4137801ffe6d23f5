//! A run's fault schedule: drawn from its seed, and shrunk by simplifying it. Pure: the same
//! seed and template always draw the same schedule.

use crate::scenario::explore::{ExploreSpec, FaultKind};
use crate::scenario::selector::{NodeKind, Topology};
use fleet_core::fmt_duration;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// Keeps the schedule's randomness apart from madsim's, which uses the same seed.
const STREAM: u64 = 0x6578_706c_6f72_6521;

/// One drawn fault. Nodes are named, never `leader`: a shrunk file must replay what ran.
#[derive(Clone, Debug, PartialEq)]
pub enum Draw {
    Crash(String),
    Restart(String),
    Wipe(String),
    /// Cuts the node off from every other node.
    Isolate(String),
    /// Cuts every link between the two groups; `oneway` cuts only the first's traffic to the
    /// second.
    Partition {
        groups: [Vec<String>; 2],
        oneway: bool,
    },
    Heal,
    Latency(Duration, Duration),
    Loss(f64),
    /// Revokes an agent's credentials.
    Revoke(String),
    /// Restores them: the liveness phase's answer to `Revoke`.
    Restore(String),
    /// `admin = "force"` on an agent.
    Force(String),
    /// A master shuts down gracefully.
    Shutdown(String),
    /// Holds every message between the two groups (turmoil only).
    Hold([Vec<String>; 2]),
    /// Delivers what was held between the two groups: the liveness phase's answer to `Hold`.
    Release([Vec<String>; 2]),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub draw: Draw,
}

/// What a run does to a template: its drawn faults, and whether the liveness phase follows.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub steps: Vec<Step>,
    /// At `until`: heal, restore the network, restart what is down, then check that a leader
    /// leads every agent `liveness` later. Shrinking drops it when the broken rule does not
    /// need it.
    pub liveness: bool,
}

/// What a template gives the schedule: the explore table, the nodes, the network's latency.
pub struct Ground<'a> {
    pub spec: &'a ExploreSpec,
    pub topology: &'a Topology,
    pub latency: (Duration, Duration),
    pub loss: f64,
}

impl Ground<'_> {
    /// The schedule of run `seed`. Like swarm testing, each run first draws which of the
    /// listed kinds it uses (each with even odds, at least one), then faults at exponential gaps
    /// of mean `mean_gap` until `until`.
    pub fn draw(&self, seed: u64) -> Schedule {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ STREAM);
        let possible: Vec<FaultKind> = (self.spec.kinds.iter().copied())
            .filter(|kind| self.can_draw(*kind))
            .collect();
        let mut kinds: Vec<FaultKind> = possible
            .iter()
            .copied()
            .filter(|_| rng.gen_bool(0.5))
            .collect();
        if kinds.is_empty() && !possible.is_empty() {
            kinds.push(possible[rng.gen_range(0..possible.len())]);
        }
        let mut steps = Vec::new();
        let until = self.spec.until.as_secs_f64();
        let mean = self.spec.mean_gap.as_secs_f64();
        let mut at = 0.0;
        while !kinds.is_empty() {
            at += -mean * (1.0 - rng.gen::<f64>()).ln();
            if at >= until {
                break;
            }
            let kind = kinds[rng.gen_range(0..kinds.len())];
            steps.push(Step {
                at: Duration::from_millis((at * 1000.0) as u64),
                draw: self.draw_one(kind, &mut rng),
            });
        }
        Schedule {
            steps,
            liveness: true,
        }
    }

    /// A partition needs a node to cut off and one to cut it from.
    fn can_draw(&self, kind: FaultKind) -> bool {
        match kind {
            FaultKind::Partition | FaultKind::Oneway | FaultKind::Isolate => {
                self.topology.nodes().len() > 1
            }
            // madsim cannot hold messages: a template lists `hold` for turmoil's runs.
            FaultKind::Hold => !cfg!(madsim) && self.topology.nodes().len() > 1,
            _ => true,
        }
    }

    fn draw_one(&self, kind: FaultKind, rng: &mut ChaCha8Rng) -> Draw {
        let targets = self.spec.targets.nodes();
        let pick = |rng: &mut ChaCha8Rng| targets[rng.gen_range(0..targets.len())].clone();
        let pick_of = |kind: NodeKind, rng: &mut ChaCha8Rng| {
            let of: Vec<&String> = (targets.iter())
                .filter(|node| node.starts_with(kind.prefix()))
                .collect();
            of[rng.gen_range(0..of.len())].clone()
        };
        match kind {
            FaultKind::Revoke => Draw::Revoke(pick_of(NodeKind::Agent, rng)),
            FaultKind::Force => Draw::Force(pick_of(NodeKind::Agent, rng)),
            FaultKind::Shutdown => Draw::Shutdown(pick_of(NodeKind::Master, rng)),
            FaultKind::Crash => Draw::Crash(pick(rng)),
            FaultKind::Restart => Draw::Restart(pick(rng)),
            FaultKind::Wipe => Draw::Wipe(pick(rng)),
            FaultKind::Isolate => Draw::Isolate(pick(rng)),
            FaultKind::Heal => Draw::Heal,
            FaultKind::Hold => Draw::Hold(self.split(targets, rng)),
            FaultKind::Partition | FaultKind::Oneway => {
                let [side, rest] = self.split(targets, rng);
                // One way, either direction: the side's traffic out, or everyone's traffic in.
                let groups = if kind == FaultKind::Oneway && rng.gen_bool(0.5) {
                    [rest, side]
                } else {
                    [side, rest]
                };
                Draw::Partition {
                    groups,
                    oneway: kind == FaultKind::Oneway,
                }
            }
            FaultKind::Latency => {
                let low = self.latency.0;
                let high = Duration::from_millis(rng.gen_range(20..=1000)).max(low);
                Draw::Latency(low, high)
            }
            FaultKind::Loss => Draw::Loss(f64::from(rng.gen_range(5u32..=50)) / 100.0),
        }
    }

    /// Some of `targets` on one side, every other node on the other.
    fn split(&self, targets: &[String], rng: &mut ChaCha8Rng) -> [Vec<String>; 2] {
        let all = self.topology.nodes();
        let most = targets.len().min(all.len() - 1);
        let size = rng.gen_range(1..=most);
        let mut pool = targets.to_vec();
        for i in 0..size {
            let j = rng.gen_range(i..pool.len());
            pool.swap(i, j);
        }
        pool.truncate(size);
        let side: BTreeSet<String> = pool.into_iter().collect();
        let rest: Vec<String> = all.into_iter().filter(|n| !side.contains(n)).collect();
        [self.in_topology_order(&side), rest]
    }

    fn in_topology_order(&self, nodes: &BTreeSet<String>) -> Vec<String> {
        (self.topology.nodes().into_iter())
            .filter(|node| nodes.contains(node))
            .collect()
    }

    /// The liveness phase, at `until`: heal every link, put latency and loss back as the
    /// template had them, restore revoked credentials, and restart every node a crash or a
    /// shutdown left down.
    pub fn liveness_steps(&self, steps: &[Step]) -> Vec<Step> {
        let at = self.spec.until;
        let mut phase = vec![Step {
            at,
            draw: Draw::Heal,
        }];
        let drew = |f: fn(&Draw) -> bool| steps.iter().any(|step| f(&step.draw));
        if drew(|draw| matches!(draw, Draw::Latency(..))) {
            let (low, high) = self.latency;
            phase.push(Step {
                at,
                draw: Draw::Latency(low, high),
            });
        }
        if drew(|draw| matches!(draw, Draw::Loss(_))) {
            phase.push(Step {
                at,
                draw: Draw::Loss(self.loss),
            });
        }
        let mut down = BTreeSet::new();
        let mut revoked = BTreeSet::new();
        for step in steps {
            match &step.draw {
                Draw::Hold(groups) => phase.push(Step {
                    at,
                    draw: Draw::Release(groups.clone()),
                }),
                Draw::Crash(node) | Draw::Shutdown(node) => {
                    down.insert(node.clone());
                }
                Draw::Restart(node) => {
                    down.remove(node);
                }
                Draw::Revoke(node) => {
                    revoked.insert(node.clone());
                }
                _ => {}
            }
        }
        for node in self.in_topology_order(&revoked) {
            phase.push(Step {
                at,
                draw: Draw::Restore(node),
            });
        }
        for node in self.in_topology_order(&down) {
            phase.push(Step {
                at,
                draw: Draw::Restart(node),
            });
        }
        phase
    }
}

impl Schedule {
    /// Simpler schedules to try, simplest first: fewer faults (all, halves, ..., one at a time),
    /// no liveness phase, then each fault made milder: a smaller partition, less latency or
    /// loss, a round time.
    pub fn simpler(&self) -> Vec<Schedule> {
        let n = self.steps.len();
        let mut out = Vec::new();
        let mut chunk = n;
        while chunk >= 1 {
            for start in (0..n).step_by(chunk) {
                let mut steps = self.steps.clone();
                steps.drain(start..(start + chunk).min(n));
                out.push(self.with(steps));
            }
            chunk /= 2;
        }
        if self.liveness {
            out.push(Schedule {
                steps: self.steps.clone(),
                liveness: false,
            });
        }
        for (i, step) in self.steps.iter().enumerate() {
            for draw in step.draw.milder() {
                let mut steps = self.steps.clone();
                steps[i].draw = draw;
                out.push(self.with(steps));
            }
            let second = Duration::from_secs(step.at.as_secs());
            if second != step.at {
                let mut steps = self.steps.clone();
                steps[i].at = second;
                out.push(self.with(steps));
            }
        }
        out
    }

    fn with(&self, steps: Vec<Step>) -> Schedule {
        Schedule {
            steps,
            liveness: self.liveness,
        }
    }
}

impl Draw {
    fn milder(&self) -> Vec<Draw> {
        match self {
            Draw::Partition { groups, oneway } => {
                let mut out = Vec::new();
                for g in 0..2 {
                    if groups[g].len() < 2 {
                        continue;
                    }
                    for i in 0..groups[g].len() {
                        let mut groups = groups.clone();
                        groups[g].remove(i);
                        out.push(Draw::Partition {
                            groups,
                            oneway: *oneway,
                        });
                    }
                }
                out
            }
            Draw::Latency(low, high) if *high > *low + Duration::from_millis(10) => {
                let half = (*high - *low) / 2;
                let high = *low + Duration::from_millis(half.as_millis() as u64);
                vec![Draw::Latency(*low, high)]
            }
            Draw::Loss(rate) if *rate > 0.02 => vec![Draw::Loss((rate * 50.0).round() / 100.0)],
            _ => Vec::new(),
        }
    }
}

/// As the scenario file would say it: `crash master-2`, `partition master-1 | master-2,agents`.
impl fmt::Display for Draw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Draw::Crash(node) => write!(f, "crash {node}"),
            Draw::Restart(node) => write!(f, "restart {node}"),
            Draw::Wipe(node) => write!(f, "wipe {node}"),
            Draw::Isolate(node) => write!(f, "isolate {node}"),
            Draw::Partition { groups, oneway } => {
                let [a, b] = groups.clone().map(|group| compact(&group).join(","));
                let arrow = if *oneway { " (one way)" } else { "" };
                write!(f, "partition {a} | {b}{arrow}")
            }
            Draw::Heal => f.write_str("heal all"),
            Draw::Latency(low, high) => {
                write!(f, "latency {}..{}", fmt_duration(*low), fmt_duration(*high))
            }
            Draw::Loss(rate) => write!(f, "loss {rate}"),
            Draw::Revoke(node) => write!(f, "revoke {node}"),
            Draw::Restore(node) => write!(f, "restore {node}"),
            Draw::Force(node) => write!(f, "admin force {node}"),
            Draw::Shutdown(node) => write!(f, "shutdown {node}"),
            Draw::Hold(groups) => write!(f, "hold {}", show_ends(groups)),
            Draw::Release(groups) => write!(f, "release {}", show_ends(groups)),
        }
    }
}

/// The two ends of a link fault as one selector each: `agent-1 + master-2 | agent-2..agent-3`.
pub fn show_ends(groups: &[Vec<String>; 2]) -> String {
    let [a, b] = groups.clone().map(|group| end(&group));
    format!("{a} | {b}")
}

/// A group of nodes as one selector: their compact names joined as a union.
pub fn end(group: &[String]) -> String {
    compact(group).join(" + ")
}

/// Node names as selectors, as short as they go: every agent is `agents`, a run of
/// neighbours `agent-2..agent-5`.
pub fn compact(nodes: &[String]) -> Vec<String> {
    let split = |node: &String| -> Option<(String, u32)> {
        let (prefix, index) = node.rsplit_once('-')?;
        Some((prefix.to_string(), index.parse().ok()?))
    };
    let mut out = Vec::new();
    let mut run: Option<(String, u32, u32)> = None;
    let flush = |run: Option<(String, u32, u32)>, out: &mut Vec<String>| {
        if let Some((prefix, first, last)) = run {
            out.push(if first == last {
                format!("{prefix}-{first}")
            } else {
                format!("{prefix}-{first}..{prefix}-{last}")
            });
        }
    };
    for node in nodes {
        match (split(node), &mut run) {
            (Some((prefix, index)), Some((p, _, last))) if *p == prefix && *last + 1 == index => {
                *last = index;
            }
            (Some((prefix, index)), _) => {
                flush(run.take(), &mut out);
                run = Some((prefix, index, index));
            }
            (None, _) => {
                flush(run.take(), &mut out);
                out.push(node.clone());
            }
        }
    }
    flush(run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn template(kinds: &str) -> Scenario {
        Scenario::parse(
            "t.toml",
            &format!(
                "name = \"t\"\nduration = \"30s\"\n[topology]\nmasters = 3\nagents = 4\n\
                 [explore]\nfaults = {kinds}\ntargets = \"all\"\nmean_gap = \"2s\"\n\
                 until = \"20s\"\nliveness = \"10s\"\n"
            ),
        )
        .unwrap()
    }

    fn ground(scenario: &Scenario) -> Ground<'_> {
        Ground {
            spec: scenario.explore.as_ref().unwrap(),
            topology: &scenario.topology,
            latency: scenario.network.latency,
            loss: scenario.network.loss,
        }
    }

    #[test]
    fn a_seed_always_draws_the_same_schedule_and_seeds_differ() {
        let scenario = template(r#"["crash", "restart", "partition", "oneway", "latency"]"#);
        let ground = ground(&scenario);
        assert_eq!(ground.draw(7), ground.draw(7));
        let distinct: BTreeSet<String> = (0..20)
            .map(|seed| format!("{:?}", ground.draw(seed)))
            .collect();
        assert!(distinct.len() > 15, "{}", distinct.len());
    }

    #[test]
    fn draws_stay_inside_the_fault_phase_and_the_listed_kinds() {
        let scenario = template(r#"["crash", "heal"]"#);
        let ground = ground(&scenario);
        let mut counts = 0;
        for seed in 0..50 {
            let schedule = ground.draw(seed);
            let times: Vec<Duration> = schedule.steps.iter().map(|s| s.at).collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
            for step in &schedule.steps {
                assert!(step.at < Duration::from_secs(20));
                assert!(matches!(step.draw, Draw::Crash(_) | Draw::Heal), "{step:?}");
            }
            counts += schedule.steps.len();
        }
        // 20s at a mean gap of 2s: about 10 faults a run.
        assert!((300..700).contains(&counts), "{counts}");
    }

    #[test]
    fn holds_are_drawn_only_where_the_engine_can_hold_and_the_liveness_phase_releases_them() {
        let scenario = template(r#"["hold", "crash"]"#);
        let ground = ground(&scenario);
        let mut holds = 0;
        for seed in 0..40 {
            let schedule = ground.draw(seed);
            let held: Vec<&[Vec<String>; 2]> = (schedule.steps.iter())
                .filter_map(|step| match &step.draw {
                    Draw::Hold(groups) => Some(groups),
                    _ => None,
                })
                .collect();
            let liveness = ground.liveness_steps(&schedule.steps);
            for groups in &held {
                assert!(groups.iter().all(|group| !group.is_empty()), "{groups:?}");
                let released = Draw::Release((*groups).clone());
                assert!(
                    liveness.iter().any(|step| step.draw == released),
                    "{groups:?}"
                );
            }
            holds += held.len();
        }
        // madsim cannot hold messages, so it never draws a hold; turmoil does.
        assert_eq!(holds == 0, cfg!(madsim), "{holds} holds drawn");
    }

    #[test]
    fn credentials_force_and_shutdown_hit_their_kind_and_the_liveness_phase_undoes_them() {
        let scenario = Scenario::parse(
            "t.toml",
            "name = \"t\"\nduration = \"30s\"\n[topology]\nmasters = 3\nagents = 4\n\
             [params.auth]\n[explore]\nfaults = [\"revoke\", \"force\", \"shutdown\"]\n\
             targets = \"all\"\nmean_gap = \"2s\"\nuntil = \"20s\"\nliveness = \"10s\"\n",
        )
        .unwrap();
        let ground = ground(&scenario);
        let mut seen = BTreeSet::new();
        for seed in 0..40 {
            let schedule = ground.draw(seed);
            for step in &schedule.steps {
                let (kind, node) = match &step.draw {
                    Draw::Revoke(node) => ("revoke", node),
                    Draw::Force(node) => ("force", node),
                    Draw::Shutdown(node) => ("shutdown", node),
                    other => panic!("{other:?}"),
                };
                let prefix = if kind == "shutdown" {
                    "master-"
                } else {
                    "agent-"
                };
                assert!(node.starts_with(prefix), "{kind} {node}");
                seen.insert(kind);
            }
            let phase = ground.liveness_steps(&schedule.steps);
            for step in &schedule.steps {
                let undo = match &step.draw {
                    Draw::Revoke(node) => Draw::Restore(node.clone()),
                    Draw::Shutdown(node) => Draw::Restart(node.clone()),
                    _ => continue,
                };
                assert!(phase.iter().any(|s| s.draw == undo), "{undo:?} missing");
            }
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        let unauthenticated = Scenario::parse(
            "t.toml",
            "name = \"t\"\nduration = \"30s\"\n[topology]\nagents = 4\n[explore]\n\
             faults = [\"revoke\"]\ntargets = \"all\"\nmean_gap = \"2s\"\nuntil = \"20s\"\n\
             liveness = \"10s\"\n",
        )
        .unwrap_err();
        assert!(
            unauthenticated.message.contains("[params.auth]"),
            "{}",
            unauthenticated.message
        );
    }

    #[test]
    fn partitions_split_every_node_into_two_groups() {
        let scenario = template(r#"["partition", "oneway"]"#);
        let ground = ground(&scenario);
        for seed in 0..30 {
            for step in ground.draw(seed).steps {
                let Draw::Partition { groups, .. } = step.draw else {
                    panic!("{step:?}")
                };
                assert!(!groups[0].is_empty() && !groups[1].is_empty());
                let mut all = [groups[0].clone(), groups[1].clone()].concat();
                all.sort();
                let mut nodes = scenario.topology.nodes();
                nodes.sort();
                assert_eq!(all, nodes);
            }
        }
    }

    #[test]
    fn the_liveness_phase_restarts_what_is_still_down() {
        let scenario = template(r#"["crash"]"#);
        let ground = ground(&scenario);
        let step = |at: u64, draw: Draw| Step {
            at: Duration::from_secs(at),
            draw,
        };
        let steps = vec![
            step(1, Draw::Crash("master-2".into())),
            step(2, Draw::Crash("agent-1".into())),
            step(3, Draw::Restart("master-2".into())),
            step(4, Draw::Loss(0.3)),
        ];
        let phase: Vec<String> = ground
            .liveness_steps(&steps)
            .iter()
            .map(|s| format!("{} {}", fmt_duration(s.at), s.draw))
            .collect();
        assert_eq!(phase, ["20s heal all", "20s loss 0", "20s restart agent-1"]);
    }

    #[test]
    fn simpler_schedules_drop_faults_then_soften_them() {
        let schedule = Schedule {
            steps: vec![
                Step {
                    at: Duration::from_millis(1500),
                    draw: Draw::Partition {
                        groups: [
                            vec!["master-1".into()],
                            vec!["master-2".into(), "master-3".into()],
                        ],
                        oneway: false,
                    },
                },
                Step {
                    at: Duration::from_secs(2),
                    draw: Draw::Latency(Duration::from_millis(1), Duration::from_millis(401)),
                },
            ],
            liveness: true,
        };
        let simpler = schedule.simpler();
        assert!(simpler[0].steps.is_empty());
        assert_eq!(simpler[1].steps.len(), 1);
        assert_eq!(simpler[2].steps.len(), 1);
        assert!(!simpler[3].liveness);
        let shown: Vec<String> = simpler[4..]
            .iter()
            .map(|s| format!("{}@{:?}", s.steps[0].draw, s.steps[0].at))
            .collect();
        assert!(
            shown.contains(&"partition master-1 | master-3@1.5s".to_string()),
            "{shown:?}"
        );
        assert!(
            shown.contains(&"partition master-1 | master-2..master-3@1s".to_string()),
            "{shown:?}"
        );
        assert!(simpler.iter().any(|s| s.steps.get(1).map(|s| &s.draw)
            == Some(&Draw::Latency(
                Duration::from_millis(1),
                Duration::from_millis(201)
            ))));
    }

    #[test]
    fn compact_names_ranges_of_neighbours() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            compact(&names(&[
                "master-1", "master-3", "agent-1", "agent-2", "agent-3", "store-1"
            ])),
            ["master-1", "master-3", "agent-1..agent-3", "store-1"]
        );
    }
}
