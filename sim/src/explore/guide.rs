//! Guided exploration: learns from the runs so far which schedules reached something new (see
//! [`coverage`](super::coverage)), keeps them as a corpus, and spends a share of the next runs
//! on mutations of them (see [`mutate`](super::mutate)), the rest on fresh draws. A corpus
//! entry is picked in proportion to how rare the rarest state it found still is: a schedule
//! that reached what hundreds of runs reach since is worth less than one that reached what
//! nothing else did.
//!
//! Runs go in generations: a generation's runs are chosen from what the generations before it
//! reached, read in seed order, so the same first seed and run count choose the same runs
//! whatever `--jobs` is.

use crate::explore::mutate::Recipe;
use crate::explore::worker::RunSpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Runs per generation: big enough to keep the workers busy between barriers.
pub const GENERATION: usize = 400;
/// The share of runs that mutate a corpus entry, once there is one.
const MUTATE_SHARE: f64 = 0.5;
/// The share of mutations run with a seed of their own rather than their base's.
const RESEED_SHARE: f64 = 0.25;
/// A recipe mutated this many times is not mutated again: a fresh draw goes instead.
const MAX_MUTATIONS: usize = 8;
/// Keeps the guide's choices apart from every other stream drawn from a run's seed.
const GUIDE_STREAM: u64 = 0x6775_6964_6521_2121;

/// The abstract states seen so far, and the corpus of recipes that first reached some.
#[derive(Debug, Default)]
pub struct Guide {
    /// Each state seen, and how many runs reached it.
    seen: BTreeMap<u64, u32>,
    /// Each kept recipe, and the states it was first to reach.
    corpus: Vec<(Recipe, Vec<u64>)>,
}

impl Guide {
    /// What run `seed` runs: a mutation of a corpus entry, or a fresh draw.
    pub fn choose(&self, seed: u64) -> RunSpec {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ GUIDE_STREAM);
        if self.corpus.is_empty() || !rng.gen_bool(MUTATE_SHARE) {
            return RunSpec::drawn(seed);
        }
        let weights: Vec<f64> = (self.corpus.iter())
            .map(|(_, found)| {
                let hits = found
                    .iter()
                    .map(|state| self.seen.get(state).copied().unwrap_or(1));
                1.0 / f64::from(hits.min().unwrap_or(1).max(1))
            })
            .collect();
        let mut pick = rng.gen::<f64>() * weights.iter().sum::<f64>();
        let index = (weights.iter())
            .position(|weight| {
                pick -= weight;
                pick < 0.0
            })
            .unwrap_or(weights.len() - 1);
        let parent = &self.corpus[index].0;
        if parent.mutations.len() >= MAX_MUTATIONS {
            return RunSpec::drawn(seed);
        }
        let mutation = rng.gen();
        RunSpec {
            seed,
            recipe: parent.then(mutation, rng.gen_bool(RESEED_SHARE)),
        }
    }

    /// Learns what `run` reached: the states not seen before join the seen, and the run's
    /// recipe the corpus if there were any. Returns how many were new.
    pub fn learn(&mut self, run: &RunSpec, states: &[u64]) -> usize {
        let mut found = Vec::new();
        for &state in states {
            let hits = self.seen.entry(state).or_default();
            if *hits == 0 {
                found.push(state);
            }
            *hits += 1;
        }
        let new = found.len();
        if new > 0 {
            self.corpus.push((run.recipe.clone(), found));
        }
        new
    }

    /// How many distinct states the runs reached.
    pub fn states(&self) -> usize {
        self.seen.len()
    }

    pub fn corpus(&self) -> usize {
        self.corpus.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_reaches_something_new_joins_the_corpus_and_is_mutated_after() {
        let mut guide = Guide::default();
        assert!((1..100).all(|seed| guide.choose(seed) == RunSpec::drawn(seed)));
        assert_eq!(guide.learn(&RunSpec::drawn(7), &[1, 2, 3]), 3);
        assert_eq!(guide.learn(&RunSpec::drawn(8), &[2, 3]), 0, "nothing new");
        assert_eq!(guide.corpus(), 1);
        let chosen: Vec<RunSpec> = (100..200).map(|seed| guide.choose(seed)).collect();
        let mutated = chosen.iter().filter(|run| run.recipe.base == 7).count();
        assert!((30..70).contains(&mutated), "about half: {mutated}");
        assert_eq!(
            chosen,
            (100..200)
                .map(|seed| guide.choose(seed))
                .collect::<Vec<_>>()
        );
    }
}
