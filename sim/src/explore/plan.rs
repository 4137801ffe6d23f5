//! A run's fault schedule: drawn from its seed, and shrunk by simplifying it. Pure: the same
//! seed and template always draw the same schedule. Faults are drawn as the scenario's own
//! [`FaultAction`]s, by the fault table's [`DrawSpec`]s.

use crate::scenario::explore::ExploreSpec;
use crate::scenario::faults::kinds::{DrawSpec, Drawing};
use crate::scenario::faults::FaultAction;
use crate::scenario::selector::{NodeKind, Topology};
use crate::scenario::Scenario;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::time::Duration;

/// Keeps the schedule's randomness apart from madsim's, which uses the same seed.
const STREAM: u64 = 0x6578_706c_6f72_6521;
/// Keeps the knobs' draws apart from the faults': adding a knob changes no fault schedule.
const VARY_STREAM: u64 = 0x7661_7279_5f6b_6e6f;

/// One drawn fault. Its selectors name nodes, never `leader`: a shrunk file must replay what
/// ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub action: FaultAction,
}

/// What a run does to a template: its drawn faults, and whether the liveness phase follows.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub steps: Vec<Step>,
    /// At `until`: heal, restore the network, restart what is down (but what is `gone`), then
    /// check that a leader leads every agent `liveness` later. Shrinking drops it when the
    /// broken rule does not need it.
    pub liveness: bool,
    /// Masters lost for good (`[explore] lose`): crashed, and never restarted.
    pub gone: Vec<String>,
    /// The value each `[explore.vary]` key took, by its index in the key's list.
    pub vary: Vec<usize>,
}

/// A master that loses its state in a run: when, and whether it is wiped and rejoins empty
/// (a replaced disk) or crashes for good.
struct Loss {
    at: Duration,
    node: String,
    wiped: bool,
}

/// What a template gives the schedule: the explore table, the nodes, the network's latency.
/// A run whose knobs change the template (its topology among them) draws on its own.
pub(crate) struct Ground {
    pub spec: ExploreSpec,
    pub topology: Topology,
    pub latency: (Duration, Duration),
    pub loss: f64,
}

impl Ground {
    /// What `scenario`, a template with an `[explore]` table, gives the schedule.
    pub(crate) fn of(scenario: &Scenario) -> Ground {
        Ground {
            spec: scenario.explore.clone().expect("a template explores"),
            topology: scenario.topology,
            latency: scenario.network.latency,
            loss: scenario.network.loss,
        }
    }

    /// The value each `[explore.vary]` knob takes in run `seed`, by its index in the knob's
    /// list: drawn apart from the faults, which are drawn on the scenario these values make.
    pub fn draw_vary(&self, seed: u64) -> Vec<usize> {
        let mut knobs = ChaCha8Rng::seed_from_u64(seed ^ VARY_STREAM);
        (self.spec.vary.iter())
            .map(|(_, values)| knobs.gen_range(0..values.len()))
            .collect()
    }

    /// The schedule of run `seed`. Like swarm testing, each run first draws which of the
    /// listed kinds it uses (each with even odds, at least one), then faults at exponential gaps
    /// of mean `mean_gap` until `until`.
    pub fn draw(&self, seed: u64) -> Schedule {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ STREAM);
        let possible: Vec<&DrawSpec> = (self.spec.kinds.iter().copied())
            .filter(|kind| self.can_draw(kind))
            .collect();
        let mut kinds: Vec<&DrawSpec> = possible
            .iter()
            .copied()
            .filter(|_| rng.gen_bool(0.5))
            .collect();
        if kinds.is_empty() && !possible.is_empty() {
            kinds.push(possible[rng.gen_range(0..possible.len())]);
        }
        let mut steps: Vec<Step> = Vec::new();
        let until = self.spec.until.as_secs_f64();
        let mean = self.spec.mean_gap.as_secs_f64();
        let mut at = 0.0;
        while !kinds.is_empty() {
            at += -mean * (1.0 - rng.gen::<f64>()).ln();
            if at >= until {
                break;
            }
            let kind = kinds[rng.gen_range(0..kinds.len())];
            let mut drawing = Drawing {
                targets: self.spec.targets.nodes(),
                topology: &self.topology,
                latency: self.latency,
                rng: &mut rng,
            };
            let at = Duration::from_millis((at * 1000.0) as u64);
            let action = (kind.draw)(&mut drawing);
            let back = self.back_up(kind, &action, at, &mut rng);
            steps.push(Step { at, action });
            steps.extend(back);
        }
        // Stable: a reboot's restart moves after the faults drawn before it comes.
        steps.sort_by_key(|step| step.at);
        let losses = self.draw_losses(&mut rng);
        let steps = self.keep_losses(steps, &losses, &mut rng);
        let gone = (losses.iter())
            .filter(|loss| !loss.wiped)
            .map(|loss| loss.node.clone())
            .collect();
        Schedule {
            steps,
            liveness: true,
            gone,
            vary: self.draw_vary(seed),
        }
    }

    /// The restart that brings back what a kind like `reboot` took down, within its
    /// `back_within`, if that is before the faults stop.
    pub(crate) fn back_up(
        &self,
        kind: &DrawSpec,
        action: &FaultAction,
        at: Duration,
        rng: &mut ChaCha8Rng,
    ) -> Option<Step> {
        let within = kind.back_within?.as_millis() as u64;
        let target = match action {
            FaultAction::Crash(target) | FaultAction::PowerFail(target) => target.clone(),
            _ => return None,
        };
        let at = at + Duration::from_millis(rng.gen_range(0..=within));
        (at < self.spec.until).then_some(Step {
            at,
            action: FaultAction::Restart(target),
        })
    }

    /// Up to `lose` masters (how many drawn from 0..=lose), each at a drawn time before
    /// `until`, crashed for good or wiped; none when the template loses none.
    fn draw_losses(&self, rng: &mut ChaCha8Rng) -> Vec<Loss> {
        if self.spec.lose == 0 {
            return Vec::new();
        }
        let mut masters: Vec<String> = (self.topology.nodes().into_iter())
            .filter(|node| node.starts_with(NodeKind::Master.prefix()))
            .collect();
        let count = rng.gen_range(0..=self.spec.lose.min(masters.len()));
        let until = self.spec.until.as_millis() as u64;
        (0..count)
            .map(|_| {
                let node = masters.remove(rng.gen_range(0..masters.len()));
                let at = Duration::from_millis(rng.gen_range(0..until));
                let wiped = rng.gen_bool(0.5);
                Loss { at, node, wiped }
            })
            .collect()
    }

    /// The drawn faults with the losses among them. A master's disk is wiped or damaged only
    /// where the run loses that master (a drawn wipe or corrupt of another master goes to one
    /// of those, or is dropped): more would lose a majority's state. Nothing restarts a master lost for good.
    fn keep_losses(&self, steps: Vec<Step>, losses: &[Loss], rng: &mut ChaCha8Rng) -> Vec<Step> {
        let is_master = |node: &String| node.starts_with(NodeKind::Master.prefix());
        let one = |node: &str| self.topology.select_nodes(&[node.to_string()], "");
        let mut kept = Vec::new();
        for step in steps {
            let action = match step.action {
                FaultAction::Wipe(target) if target.nodes().iter().any(is_master) => {
                    if losses.is_empty() {
                        continue;
                    }
                    FaultAction::Wipe(one(&losses[rng.gen_range(0..losses.len())].node))
                }
                // A damaged disk reads as a lost one: the same budget.
                FaultAction::Corrupt(_) => {
                    if losses.is_empty() {
                        continue;
                    }
                    FaultAction::Corrupt(one(&losses[rng.gen_range(0..losses.len())].node))
                }
                FaultAction::Restart(target) => {
                    let resurrects = (losses.iter()).any(|loss| {
                        !loss.wiped && loss.at <= step.at && target.nodes().contains(&loss.node)
                    });
                    if resurrects {
                        continue;
                    }
                    FaultAction::Restart(target)
                }
                action => action,
            };
            kept.push(Step {
                at: step.at,
                action,
            });
        }
        for loss in losses {
            let actions = if loss.wiped {
                vec![
                    FaultAction::Wipe(one(&loss.node)),
                    FaultAction::Restart(one(&loss.node)),
                ]
            } else {
                vec![FaultAction::Crash(one(&loss.node))]
            };
            kept.extend(actions.into_iter().map(|action| Step {
                at: loss.at,
                action,
            }));
        }
        // Stable: a wipe stays before its restart.
        kept.sort_by_key(|step| step.at);
        kept
    }

    /// A link fault needs a node to cut off and one to cut it from; a ring needs enough targets.
    fn can_draw(&self, kind: &DrawSpec) -> bool {
        let links = !kind.link || self.topology.nodes().len() > 1;
        links && self.spec.targets.nodes().len() >= kind.nodes
    }

    fn in_topology_order(&self, nodes: &BTreeSet<String>) -> Vec<String> {
        (self.topology.nodes().into_iter())
            .filter(|node| nodes.contains(node))
            .collect()
    }

    /// The liveness phase, at `until`: heal every link, put latency and loss back as the
    /// template had them, release what was held, resume what is paused, restore revoked
    /// credentials, and restart every node a crash, a power failure or a shutdown left down,
    /// but those the run lost for good.
    pub(crate) fn liveness_steps(&self, schedule: &Schedule) -> Vec<Step> {
        let steps = &schedule.steps;
        let at = self.spec.until;
        let mut phase = vec![FaultAction::Heal(None)];
        let drew = |f: fn(&FaultAction) -> bool| steps.iter().any(|step| f(&step.action));
        if drew(|action| matches!(action, FaultAction::Latency(..))) {
            phase.push(FaultAction::Latency(self.latency.0, self.latency.1));
        }
        if drew(|action| matches!(action, FaultAction::Loss(_))) {
            phase.push(FaultAction::Loss(self.loss));
        }
        let mut left = LeftOver::default();
        for step in steps {
            left.apply(&step.action);
        }
        phase.extend(left.held.into_iter().map(FaultAction::Release));
        let one = |node: String| self.topology.select_nodes(&[node], "");
        let paused = self.in_topology_order(&left.paused).into_iter();
        phase.extend(paused.map(|node| FaultAction::Resume(one(node))));
        let revoked = self.in_topology_order(&left.revoked).into_iter();
        phase.extend(revoked.map(|node| FaultAction::Restore(one(node))));
        for gone in &schedule.gone {
            left.down.remove(gone);
        }
        let down = self.in_topology_order(&left.down).into_iter();
        phase.extend(down.map(|node| FaultAction::Restart(one(node))));
        phase
            .into_iter()
            .map(|action| Step { at, action })
            .collect()
    }

    /// Milder versions of `action`, for shrinking: a partition one node smaller, half the
    /// latency, half the loss.
    fn milder(&self, action: &FaultAction) -> Vec<FaultAction> {
        match action {
            FaultAction::Partition { groups, oneway } => {
                let nodes: Vec<Vec<String>> = (groups.iter())
                    .map(|group| group.iter().flat_map(|s| s.nodes().to_vec()).collect())
                    .collect();
                let mut out = Vec::new();
                for g in 0..nodes.len() {
                    if nodes[g].len() < 2 {
                        continue;
                    }
                    for i in 0..nodes[g].len() {
                        let mut smaller = nodes.clone();
                        smaller[g].remove(i);
                        let groups = (smaller.iter())
                            .map(|group| self.topology.select_runs(group))
                            .collect();
                        out.push(FaultAction::Partition {
                            groups,
                            oneway: *oneway,
                        });
                    }
                }
                out
            }
            FaultAction::Latency(low, high) if *high > *low + Duration::from_millis(10) => {
                let half = (*high - *low) / 2;
                let high = *low + Duration::from_millis(half.as_millis() as u64);
                vec![FaultAction::Latency(*low, high)]
            }
            FaultAction::Loss(rate) if *rate > 0.02 => {
                vec![FaultAction::Loss((rate * 50.0).round() / 100.0)]
            }
            _ => Vec::new(),
        }
    }

    /// Simpler schedules to try, simplest first: fewer faults (all, halves, ..., one at a time),
    /// no liveness phase, then each fault made milder: a smaller partition, less latency or
    /// loss, a round time.
    pub(crate) fn simpler(&self, schedule: &Schedule) -> Vec<Schedule> {
        let n = schedule.steps.len();
        let mut out = Vec::new();
        let mut chunk = n;
        while chunk >= 1 {
            for start in (0..n).step_by(chunk) {
                let mut steps = schedule.steps.clone();
                steps.drain(start..(start + chunk).min(n));
                out.push(schedule.with(steps));
            }
            chunk /= 2;
        }
        if schedule.liveness {
            out.push(Schedule {
                liveness: false,
                ..schedule.clone()
            });
        }
        // Each knob at its first value, but those that shape the topology the faults name.
        for (i, _) in schedule.vary.iter().enumerate().filter(|(_, &v)| v != 0) {
            if !turnable(&self.spec.vary[i].0) {
                continue;
            }
            let mut vary = schedule.vary.clone();
            vary[i] = 0;
            out.push(Schedule {
                vary,
                ..schedule.clone()
            });
        }
        for (i, step) in schedule.steps.iter().enumerate() {
            for action in self.milder(&step.action) {
                let mut steps = schedule.steps.clone();
                steps[i].action = action;
                out.push(schedule.with(steps));
            }
            let second = Duration::from_secs(step.at.as_secs());
            if second != step.at {
                let mut steps = schedule.steps.clone();
                steps[i].at = second;
                out.push(schedule.with(steps));
            }
        }
        out
    }
}

/// Whether a drawn schedule may take another value of knob `key`: not when it shapes the
/// topology, since the drawn faults name the nodes the first value made.
pub(crate) fn turnable(key: &str) -> bool {
    !key.starts_with("topology.")
}

/// What a schedule's faults leave for the liveness phase to undo.
#[derive(Default)]
struct LeftOver {
    held: Vec<[crate::scenario::selector::Selector; 2]>,
    down: BTreeSet<String>,
    paused: BTreeSet<String>,
    revoked: BTreeSet<String>,
}

impl LeftOver {
    fn apply(&mut self, action: &FaultAction) {
        match action {
            FaultAction::Hold(ends) => self.held.push(ends.clone()),
            FaultAction::Crash(nodes)
            | FaultAction::Shutdown(nodes)
            | FaultAction::PowerFail(nodes) => {
                for node in nodes.nodes() {
                    self.down.insert(node.clone());
                    self.paused.remove(node);
                }
            }
            FaultAction::Restart(nodes) => {
                for node in nodes.nodes() {
                    self.down.remove(node);
                    self.paused.remove(node);
                }
            }
            FaultAction::Pause(nodes) => self.paused.extend(nodes.nodes().iter().cloned()),
            FaultAction::Resume(nodes) => {
                for node in nodes.nodes() {
                    self.paused.remove(node);
                }
            }
            FaultAction::Revoke(nodes) => self.revoked.extend(nodes.nodes().iter().cloned()),
            // Healed by the phase's `heal all`, or nothing to undo.
            FaultAction::Partition { .. }
            | FaultAction::Heal(_)
            | FaultAction::Isolate(_)
            | FaultAction::Latency(..)
            | FaultAction::LinkLatency { .. }
            | FaultAction::Loss(_)
            | FaultAction::Release(_)
            | FaultAction::Wipe(_)
            | FaultAction::Restore(_)
            | FaultAction::Stop(_)
            | FaultAction::Admin(_)
            | FaultAction::Clock { .. }
            | FaultAction::Corrupt(_)
            | FaultAction::Ring(_)
            | FaultAction::Stall { .. } => {}
        }
    }
}

impl Schedule {
    fn with(&self, steps: Vec<Step>) -> Schedule {
        Schedule {
            steps,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::faults::AdminOp;
    use crate::scenario::selector::{compact, Selector};
    use crate::scenario::Scenario;
    use fleet_core::fmt_duration;

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

    fn ground(scenario: &Scenario) -> Ground {
        Ground::of(scenario)
    }

    /// A reboot is a crash and, within a second and before the faults stop, a restart of the
    /// same node.
    #[test]
    fn a_reboot_restarts_what_it_crashed_within_a_second() {
        let scenario = template(r#"["reboot"]"#);
        let ground = ground(&scenario);
        let (mut crashes, mut back) = (0, 0);
        for seed in 0..50 {
            let steps = ground.draw(seed).steps;
            assert!(
                steps.windows(2).all(|w| w[0].at <= w[1].at),
                "in time order"
            );
            for (i, step) in steps.iter().enumerate() {
                let FaultAction::Crash(target) = &step.action else {
                    continue;
                };
                crashes += 1;
                let restart = (steps[i + 1..].iter()).find(|later| {
                    later.action == FaultAction::Restart(target.clone())
                        && later.at <= step.at + Duration::from_secs(1)
                });
                match restart {
                    Some(_) => back += 1,
                    None => assert!(
                        step.at + Duration::from_secs(1) >= ground.spec.until,
                        "seed {seed}: {step:?} never restarted"
                    ),
                }
            }
            assert!(steps.iter().all(|step| step.at < ground.spec.until));
        }
        assert!(
            back > 0 && back * 10 >= crashes * 9,
            "{back} of {crashes} back"
        );
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
                assert!(
                    matches!(step.action, FaultAction::Crash(_) | FaultAction::Heal(None)),
                    "{step:?}"
                );
            }
            counts += schedule.steps.len();
        }
        // 20s at a mean gap of 2s: about 10 faults a run.
        assert!((300..700).contains(&counts), "{counts}");
    }

    #[test]
    fn holds_are_drawn_on_either_engine_and_the_liveness_phase_releases_them() {
        let scenario = template(r#"["hold", "crash"]"#);
        let ground = ground(&scenario);
        let mut holds = 0;
        for seed in 0..40 {
            let schedule = ground.draw(seed);
            let held: Vec<&[Selector; 2]> = (schedule.steps.iter())
                .filter_map(|step| match &step.action {
                    FaultAction::Hold(ends) => Some(ends),
                    _ => None,
                })
                .collect();
            let liveness = ground.liveness_steps(&schedule);
            for groups in &held {
                assert!(
                    groups.iter().all(|end| !end.nodes().is_empty()),
                    "{groups:?}"
                );
                let released = FaultAction::Release((*groups).clone());
                assert!(
                    liveness.iter().any(|step| step.action == released),
                    "{groups:?}"
                );
            }
            holds += held.len();
        }
        // Both engines hold messages (madsim at the shell's link gates), so both draw holds.
        assert!(holds > 0, "{holds} holds drawn");
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
                let (kind, node) = match &step.action {
                    FaultAction::Revoke(node) => ("revoke", node.to_string()),
                    FaultAction::Admin(AdminOp::Force(node)) => ("force", node.to_string()),
                    FaultAction::Shutdown(node) => ("shutdown", node.to_string()),
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
            let phase = ground.liveness_steps(&schedule);
            for step in &schedule.steps {
                let undo = match &step.action {
                    FaultAction::Revoke(node) => FaultAction::Restore(node.clone()),
                    FaultAction::Shutdown(node) => FaultAction::Restart(node.clone()),
                    _ => continue,
                };
                assert!(phase.iter().any(|s| s.action == undo), "{undo:?} missing");
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
                let FaultAction::Partition { groups, .. } = step.action else {
                    panic!("{step:?}")
                };
                let nodes = |group: &[Selector]| -> Vec<String> {
                    group.iter().flat_map(|s| s.nodes().to_vec()).collect()
                };
                assert_eq!(groups.len(), 2);
                assert!(!nodes(&groups[0]).is_empty() && !nodes(&groups[1]).is_empty());
                let mut all = [nodes(&groups[0]), nodes(&groups[1])].concat();
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
        let step = |at: u64, action: FaultAction| Step {
            at: Duration::from_secs(at),
            action,
        };
        let node = |name: &str| scenario.topology.select(name).unwrap();
        let steps = vec![
            step(1, FaultAction::Crash(node("master-2"))),
            step(2, FaultAction::Crash(node("agent-1"))),
            step(3, FaultAction::Restart(node("master-2"))),
            step(4, FaultAction::Loss(0.3)),
        ];
        let schedule = Schedule {
            steps,
            liveness: true,
            gone: Vec::new(),
            vary: Vec::new(),
        };
        let phase: Vec<String> = ground
            .liveness_steps(&schedule)
            .iter()
            .map(|s| format!("{} {}", fmt_duration(s.at), s.action))
            .collect();
        assert_eq!(phase, ["20s heal all", "20s loss 0", "20s restart agent-1"]);
    }

    /// `lose = 1` of three: at most one master a run loses its state, crashed for good (never
    /// restarted, by a drawn restart or the liveness phase) or wiped and restarted; no other
    /// master's disk is wiped.
    #[test]
    fn a_run_loses_at_most_lose_masters_and_never_brings_one_back() {
        let scenario = Scenario::parse(
            "t.toml",
            "name = \"t\"\nduration = \"30s\"\n[topology]\nmasters = 3\nagents = 2\n\
             [explore]\nfaults = [\"crash\", \"restart\", \"wipe\"]\ntargets = \"all\"\n\
             mean_gap = \"1s\"\nuntil = \"20s\"\nliveness = \"10s\"\nlose = 1\n",
        )
        .unwrap();
        let ground = ground(&scenario);
        let (mut lost, mut wiped) = (0, 0);
        for seed in 0..200 {
            let schedule = ground.draw(seed);
            assert!(schedule.gone.len() <= 1);
            let wipes: BTreeSet<&String> = (schedule.steps.iter())
                .filter_map(|step| match &step.action {
                    FaultAction::Wipe(target) => target.nodes().first(),
                    _ => None,
                })
                .filter(|node| node.starts_with("master-"))
                .collect();
            let mut losing = wipes.clone();
            losing.extend(schedule.gone.iter());
            assert!(losing.len() <= 1, "seed {seed}: {schedule:?}");
            let phase = ground.liveness_steps(&schedule);
            for gone in &schedule.gone {
                let crashed = (schedule.steps.iter())
                    .rposition(|step| matches!(&step.action, FaultAction::Crash(t) if t.nodes() == [gone.clone()]))
                    .unwrap_or_else(|| panic!("seed {seed}: {gone} crashed"));
                let back = (schedule.steps[crashed..].iter().chain(&phase))
                    .any(|step| matches!(&step.action, FaultAction::Restart(t) if t.nodes().contains(gone)));
                assert!(!back, "seed {seed}: {gone} came back");
            }
            lost += schedule.gone.len();
            wiped += wipes.len();
        }
        assert!(
            lost > 20 && wiped > 20,
            "both kinds drawn: {lost} lost, {wiped} wiped"
        );
    }

    #[test]
    fn liveness_auto_is_the_bound_the_parameters_give_and_must_fit() {
        let text = |liveness: &str, duration: &str| {
            format!(
                "name = \"t\"\nduration = \"{duration}\"\n[topology]\nmasters = 3\nagents = 2\n\
                 [params.backoff]\nmax = \"2s\"\n\
                 [explore]\nfaults = [\"crash\"]\ntargets = \"all\"\nmean_gap = \"1s\"\n\
                 until = \"20s\"\nliveness = \"{liveness}\"\n"
            )
        };
        // Raft with default timeouts, no credentials, no enforced backoff: 7s + 3s + 5s + 3s.
        let auto = Scenario::parse("t.toml", &text("auto", "40s")).unwrap();
        assert_eq!(auto.explore.unwrap().liveness, Duration::from_secs(18));
        let error = Scenario::parse("t.toml", &text("auto", "30s"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("until + liveness (20s + 18s)"), "{error}");
        let error = Scenario::parse("t.toml", &text("soon", "40s"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("t.toml:13:12") && error.contains("liveness"),
            "{error}"
        );
    }

    #[test]
    fn a_template_may_not_lose_a_majority() {
        let text = |lose: u32| {
            format!(
                "name = \"t\"\nduration = \"30s\"\n[topology]\nmasters = 5\nagents = 2\n\
                 [explore]\nfaults = [\"crash\"]\ntargets = \"all\"\nmean_gap = \"1s\"\n\
                 until = \"20s\"\nliveness = \"10s\"\nlose = {lose}\n"
            )
        };
        assert_eq!(
            Scenario::parse("t.toml", &text(2))
                .unwrap()
                .explore
                .unwrap()
                .lose,
            2
        );
        let error = Scenario::parse("t.toml", &text(3)).unwrap_err().to_string();
        assert!(
            error.contains("t.toml:12:8") && error.contains("at most 2"),
            "{error}"
        );
    }

    #[test]
    fn simpler_schedules_drop_faults_then_soften_them() {
        let scenario = template(r#"["partition", "latency"]"#);
        let ground = ground(&scenario);
        let node = |name: &str| scenario.topology.select(name).unwrap();
        let schedule = Schedule {
            steps: vec![
                Step {
                    at: Duration::from_millis(1500),
                    action: FaultAction::Partition {
                        groups: vec![vec![node("master-1")], vec![node("master-2..master-3")]],
                        oneway: false,
                    },
                },
                Step {
                    at: Duration::from_secs(2),
                    action: FaultAction::Latency(
                        Duration::from_millis(1),
                        Duration::from_millis(401),
                    ),
                },
            ],
            liveness: true,
            gone: Vec::new(),
            vary: Vec::new(),
        };
        let simpler = ground.simpler(&schedule);
        assert!(simpler[0].steps.is_empty());
        assert_eq!(simpler[1].steps.len(), 1);
        assert_eq!(simpler[2].steps.len(), 1);
        assert!(!simpler[3].liveness);
        let shown: Vec<String> = simpler[4..]
            .iter()
            .map(|s| format!("{}@{:?}", s.steps[0].action, s.steps[0].at))
            .collect();
        assert!(
            shown.contains(&"partition master-1 | master-3@1.5s".to_string()),
            "{shown:?}"
        );
        assert!(
            shown.contains(&"partition master-1 | master-2..master-3@1s".to_string()),
            "{shown:?}"
        );
        assert!(simpler.iter().any(|s| s.steps.get(1).map(|s| &s.action)
            == Some(&FaultAction::Latency(
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
