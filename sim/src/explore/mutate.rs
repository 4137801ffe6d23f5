//! Guided exploration's mutations: a schedule that reached something new is changed a little
//! (a fault added, dropped, moved, aimed elsewhere, or a knob turned) and run again with
//! another seed. A run is named by a [`Recipe`]: the seed its schedule was first drawn from,
//! then each mutation's own seed, so a worker rebuilds exactly the schedule the parent chose,
//! and a file written for it replays it.

use crate::explore::plan::{turnable, Ground, Schedule, Step};
use crate::explore::Template;
use crate::scenario::faults::kinds::{DrawSpec, Drawing};
use crate::scenario::faults::FaultAction;
use crate::scenario::selector::NodeKind;
use crate::scenario::source::ConfigError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::time::Duration;

/// Keeps mutations' draws apart from the schedule's and the knobs'.
const MUTATE_STREAM: u64 = 0x6d75_7461_7465_2121;

/// How far a moved fault moves, at most, each way.
const SHIFT_MS: u64 = 2_000;

/// How to build a run's schedule: drawn from `base`, then mutated by each of `mutations`. A
/// mutated schedule runs with its base's seed, so everything before its first change replays
/// what the base run did and the run branches off there; `reseed` runs it with the run's own
/// seed instead, a different story from the start.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Recipe {
    pub base: u64,
    pub mutations: Vec<u64>,
    pub reseed: bool,
}

impl Recipe {
    /// The schedule a fresh run `seed` draws.
    pub fn drawn(seed: u64) -> Recipe {
        Recipe {
            base: seed,
            mutations: Vec::new(),
            reseed: false,
        }
    }

    /// This recipe, mutated once more by `mutation`, run with the run's own seed if `reseed`.
    pub fn then(&self, mutation: u64, reseed: bool) -> Recipe {
        let mut mutations = self.mutations.clone();
        mutations.push(mutation);
        Recipe {
            base: self.base,
            mutations,
            reseed: self.reseed || reseed,
        }
    }

    /// The seed run `run_seed` simulates with.
    pub fn sim_seed(&self, run_seed: u64) -> u64 {
        match self.mutations.is_empty() || self.reseed {
            true => run_seed,
            false => self.base,
        }
    }

    /// Its schedule in `template`: the knobs drawn first, then the faults on the scenario
    /// they make, then each mutation on the scenario its schedule's knobs make.
    pub(crate) fn schedule(&self, template: &Template) -> Result<Schedule, ConfigError> {
        let vary = template.ground().draw_vary(self.base);
        let mut schedule = template.ground_at(&vary)?.draw(self.base);
        for &mutation in &self.mutations {
            schedule = mutate(&template.ground_at(&schedule.vary)?, &schedule, mutation);
        }
        Ok(schedule)
    }

    /// Reads `BASE` or `BASE+M1+M2` (`~` at the end: reseeded), as
    /// [`Display`](fmt::Display) writes it.
    pub fn parse(text: &str) -> Result<Recipe, String> {
        let (text, reseed) = match text.strip_suffix('~') {
            Some(text) => (text, true),
            None => (text, false),
        };
        let mut parts = text.split('+').map(|part| {
            part.parse::<u64>()
                .map_err(|_| format!("{text:?} is not a recipe like 7 or 7+912+33"))
        });
        let base = parts.next().unwrap_or(Ok(0))?;
        let mutations = parts.collect::<Result<Vec<u64>, String>>()?;
        Ok(Recipe {
            base,
            mutations,
            reseed,
        })
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.base)?;
        for mutation in &self.mutations {
            write!(f, "+{mutation}")?;
        }
        if self.reseed {
            write!(f, "~")?;
        }
        Ok(())
    }
}

/// `schedule` changed once, as `mutation` draws: a fault added, dropped, moved or replaced by
/// another, or one knob turned. Never a change the schedule's own rules forbid: no master wiped or
/// damaged but one the run loses, none lost for good brought back.
pub(crate) fn mutate(ground: &Ground, schedule: &Schedule, mutation: u64) -> Schedule {
    let mut rng = ChaCha8Rng::seed_from_u64(mutation ^ MUTATE_STREAM);
    let mut next = schedule.clone();
    let steps = &mut next.steps;
    let until_ms = ground.spec.until.as_millis() as u64;
    // The crashes and restarts of a master lost for good stay as drawn: moved, a restart could
    // bring it back.
    let free: Vec<usize> = (0..steps.len())
        .filter(|&i| !touches_gone(&steps[i].action, &schedule.gone))
        .collect();
    match rng.gen_range(0..5) {
        0 if !free.is_empty() => {
            steps.remove(free[rng.gen_range(0..free.len())]);
        }
        1 if !free.is_empty() => {
            let index = free[rng.gen_range(0..free.len())];
            let step = &mut steps[index];
            let at = step.at.as_millis() as u64;
            let moved = (at + rng.gen_range(0..=2 * SHIFT_MS)).saturating_sub(SHIFT_MS);
            step.at = Duration::from_millis(moved.min(until_ms.saturating_sub(1)));
        }
        2 if !free.is_empty() && !ground.spec.kinds.is_empty() => {
            let index = free[rng.gen_range(0..free.len())];
            let kinds = &ground.spec.kinds;
            let kind = kinds[rng.gen_range(0..kinds.len())];
            if let Some(action) = draw(ground, kind, &mut rng, schedule) {
                steps[index].action = action;
            }
        }
        3 if !turnable_knobs(ground).is_empty() => {
            let knobs = turnable_knobs(ground);
            let knob = knobs[rng.gen_range(0..knobs.len())];
            let values = ground.spec.vary[knob].1.len();
            next.vary[knob] = rng.gen_range(0..values);
        }
        _ => {
            let kinds = &ground.spec.kinds;
            if !kinds.is_empty() {
                let kind = kinds[rng.gen_range(0..kinds.len())];
                let at = Duration::from_millis(rng.gen_range(0..until_ms.max(1)));
                if let Some(action) = draw(ground, kind, &mut rng, schedule) {
                    let back = (ground.back_up(kind, &action, at, &mut rng))
                        .filter(|step| !touches_gone(&step.action, &schedule.gone));
                    steps.push(Step { at, action });
                    steps.extend(back);
                }
            }
        }
    }
    // Stable: what happens at one moment keeps its order (a wipe before its restart).
    next.steps.sort_by_key(|step| step.at);
    next
}

/// The knobs a mutation may turn, by index: not those that shape the topology.
fn turnable_knobs(ground: &Ground) -> Vec<usize> {
    (0..ground.spec.vary.len())
        .filter(|&knob| turnable(&ground.spec.vary[knob].0))
        .collect()
}

/// Whether `action` crashes or restarts a master the run loses for good.
fn touches_gone(action: &FaultAction, gone: &[String]) -> bool {
    match action {
        FaultAction::Crash(target) | FaultAction::Restart(target) => {
            target.nodes().iter().any(|node| gone.contains(node))
        }
        _ => false,
    }
}

/// A fresh fault of `kind`, unless it would wipe or damage a master the run does not lose, or
/// restart one it lost for good.
fn draw(
    ground: &Ground,
    kind: &DrawSpec,
    rng: &mut ChaCha8Rng,
    schedule: &Schedule,
) -> Option<FaultAction> {
    let mut drawing = Drawing {
        targets: ground.spec.targets.nodes(),
        topology: &ground.topology,
        latency: ground.latency,
        rng,
    };
    let action = (kind.draw)(&mut drawing);
    let master = |node: &String| node.starts_with(NodeKind::Master.prefix());
    let forbidden = match &action {
        FaultAction::Wipe(target) | FaultAction::Corrupt(target) => {
            target.nodes().iter().any(master)
        }
        FaultAction::Restart(target) => target.nodes().iter().any(|n| schedule.gone.contains(n)),
        _ => false,
    };
    (!forbidden).then_some(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template::parse(
            "t.toml",
            "name = \"t\"\nduration = \"40s\"\n[topology]\nmasters = 3\nagents = 2\n\
             [explore]\nfaults = [\"crash\", \"restart\", \"wipe\", \"partition\", \"pause\"]\n\
             targets = \"all\"\nmean_gap = \"2s\"\nuntil = \"20s\"\nliveness = \"10s\"\nlose = 1\n\
             [explore.vary]\n\"params.heartbeat.max_miss\" = [3, 2]\n",
        )
        .unwrap()
    }

    #[test]
    fn a_recipe_reads_back_as_written_and_builds_the_same_schedule() {
        let recipe = Recipe::drawn(7).then(912, false).then(33, true);
        assert_eq!(recipe.to_string(), "7+912+33~");
        assert_eq!(Recipe::parse("7+912+33~"), Ok(recipe.clone()));
        assert_eq!(Recipe::parse("7"), Ok(Recipe::drawn(7)));
        assert!(Recipe::parse("7+x").is_err());
        let template = template();
        assert_eq!(recipe.schedule(&template), recipe.schedule(&template));
        assert_eq!(recipe.sim_seed(40), 40, "reseeded: the run's own seed");
        assert_eq!(
            Recipe::drawn(7).then(912, false).sim_seed(40),
            7,
            "the base's"
        );
    }

    #[test]
    fn mutations_change_the_schedule_but_never_break_its_rules() {
        let template = template();
        let ground = template.ground();
        let mut changed = 0;
        for seed in 0..200 {
            let base = ground.draw(seed);
            let next = mutate(&ground, &base, seed * 7 + 1);
            changed += usize::from(next != base);
            assert!(
                next.steps.windows(2).all(|w| w[0].at <= w[1].at),
                "in time order"
            );
            assert!(next.steps.iter().all(|step| step.at < ground.spec.until));
            // A mutation adds no wipe of a master, and brings back no master lost for good.
            let master = |n: &String| n.starts_with("master");
            let wipes = |schedule: &Schedule| {
                (schedule.steps.iter())
                    .filter(|step| match &step.action {
                        FaultAction::Wipe(target) => target.nodes().iter().any(master),
                        _ => false,
                    })
                    .count()
            };
            assert!(wipes(&next) <= wipes(&base));
            let kept = |schedule: &Schedule| -> Vec<Step> {
                (schedule.steps.iter())
                    .filter(|step| matches!(step.action, FaultAction::Restart(_)))
                    .filter(|step| touches_gone(&step.action, &schedule.gone))
                    .cloned()
                    .collect()
            };
            assert_eq!(
                kept(&next),
                kept(&base),
                "a lost master's restarts stay as drawn"
            );
        }
        assert!(changed > 150, "most mutations change something: {changed}");
    }
}
