//! Connect attempts: how many, and how fast.

use crate::history::Entry;
use fleet_core::timeline::{AgentEvent, Event};
use std::collections::BTreeMap;

/// Every connect attempt, as `(t_ms, agent)`.
pub(crate) fn connect_attempts(entries: &[Entry]) -> impl Iterator<Item = (u64, &str)> {
    entries.iter().filter_map(|entry| match entry.system() {
        Some(Event::Agent(AgentEvent::ConnectAttempt { .. })) => {
            Some((entry.t_ms, entry.node.as_str()))
        }
        _ => None,
    })
}

/// Connect attempts per whole second of the run: the busiest second in `[from, to]`, as
/// `(count, second start in ms)`.
pub(crate) fn peak_connect_rate(entries: &[Entry], from: u64, to: u64) -> Option<(u64, u64)> {
    let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
    for (t_ms, _) in connect_attempts(entries) {
        if (from..=to).contains(&t_ms) {
            *per_second.entry(t_ms / 1000).or_default() += 1;
        }
    }
    // The earliest second wins a tie, so the answer never depends on map order.
    per_second
        .into_iter()
        .fold(
            None,
            |best: Option<(u64, u64)>, (second, count)| match best {
                Some((_, best_count)) if best_count >= count => best,
                _ => Some((second, count)),
            },
        )
        .map(|(second, count)| (count, second * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::attempt;

    #[test]
    fn peak_rate_picks_the_busiest_second() {
        let entries = vec![attempt(100, 1, 0), attempt(2100, 1, 0), attempt(2900, 1, 0)];
        assert_eq!(peak_connect_rate(&entries, 0, 10_000), Some((2, 2000)));
        assert_eq!(peak_connect_rate(&entries, 0, 1000), Some((1, 0)));
        assert_eq!(peak_connect_rate(&entries, 5000, 6000), None);
    }
}
