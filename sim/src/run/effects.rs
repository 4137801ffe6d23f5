//! What each fault did, counted while the run goes and written onto its timeline line when the
//! run ends: a fault on the links counts what was sent across them for as long as it stood
//! (a heal or release ends it, or the run's end), the rest count at once what they hit.

use crate::history::links::{Link, LinkOp};
use crate::history::Effect;
use crate::history::{FaultEvent, Happening, Timeline};
use std::collections::BTreeMap;

/// How a link stands in the way of what is sent across it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stand {
    /// Cut one way: the first node's sends go nowhere.
    Cut,
    /// Held both ways: what either sends waits.
    Held,
    /// The second node reads nothing the first sends.
    Stalled,
}

/// Counts what every fault of a run did, by its line on the timeline.
#[derive(Default)]
pub(crate) struct Effects {
    counts: BTreeMap<usize, Effect>,
    /// The links a fault stands on: whose (its line) and what had been sent across by then.
    standing: BTreeMap<(Stand, Link), (usize, u64)>,
}

impl Effects {
    /// Adds `count` to what the fault on line `line` did.
    pub(crate) fn add(&mut self, line: usize, what: &'static str, count: u64) {
        self.counts.entry(line).or_default().add(what, count);
    }

    /// Follows the link operations of the fault on line `line`: a link it cuts, holds or
    /// stalls counts for it what is sent across until the link is mended, released or
    /// unstalled, and that counts as `mended` for the fault that does it. `sent(from, to)` is
    /// what `from` has sent towards `to` so far.
    pub(crate) fn follow(&mut self, line: usize, ops: &[LinkOp], sent: impl Fn(&Link) -> u64) {
        for op in ops {
            match op {
                LinkOp::Cut(link) => self.stand(line, Stand::Cut, link, &sent),
                LinkOp::Hold(link) => self.stand(line, Stand::Held, link, &sent),
                LinkOp::Stall(link) => self.stand(line, Stand::Stalled, link, &sent),
                LinkOp::Mend(link) => self.end(line, Stand::Cut, link, &sent),
                LinkOp::Release(link) => self.end(line, Stand::Held, link, &sent),
                LinkOp::Unstall(link) => self.end(line, Stand::Stalled, link, &sent),
                LinkOp::Slow(..) => {}
            }
        }
        let (starts, ends) = ops
            .iter()
            .fold((false, false), |(starts, ends), op| match op {
                LinkOp::Cut(_) | LinkOp::Hold(_) | LinkOp::Stall(_) => (true, ends),
                LinkOp::Mend(_) | LinkOp::Release(_) | LinkOp::Unstall(_) => (starts, true),
                LinkOp::Slow(..) => (starts, ends),
            });
        // Shown, even at zero, by the faults that act on links.
        if starts {
            self.add(line, "blocked", 0);
        }
        if ends {
            self.add(line, "mended", 0);
        }
    }

    /// What crosses `link` the way `stand` blocks it, so far.
    fn across(stand: Stand, link: &Link, sent: &impl Fn(&Link) -> u64) -> u64 {
        match stand {
            Stand::Cut | Stand::Stalled => sent(link),
            Stand::Held => sent(link) + sent(&(link.1.clone(), link.0.clone())),
        }
    }

    fn stand(&mut self, line: usize, stand: Stand, link: &Link, sent: &impl Fn(&Link) -> u64) {
        (self.standing.entry((stand, link.clone())))
            .or_insert_with(|| (line, Effects::across(stand, link, sent)));
    }

    fn end(&mut self, line: usize, stand: Stand, link: &Link, sent: &impl Fn(&Link) -> u64) {
        if let Some((owner, from)) = self.standing.remove(&(stand, link.clone())) {
            let blocked = Effects::across(stand, link, sent) - from;
            self.add(owner, "blocked", blocked);
            self.add(line, "mended", 1);
        }
    }

    /// Ends every link fault still standing, and writes each fault's effect onto its line.
    pub(crate) fn settle(mut self, timeline: &mut Timeline, sent: impl Fn(&Link) -> u64) {
        for ((stand, link), (owner, from)) in std::mem::take(&mut self.standing) {
            let blocked = Effects::across(stand, &link, &sent) - from;
            self.add(owner, "blocked", blocked);
        }
        for (line, effect) in self.counts {
            let entry = timeline.entries.get_mut(line);
            if let Some(Happening::Fault(FaultEvent::Fired(fired))) = entry.map(|e| &mut e.event) {
                fired.effect = effect;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn link(a: &str, b: &str) -> Link {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn a_cut_counts_what_was_sent_across_until_mended() {
        let sent = RefCell::new(BTreeMap::from([
            (link("a", "b"), 5u64),
            (link("b", "a"), 2),
        ]));
        let read = |l: &Link| sent.borrow().get(l).copied().unwrap_or(0);
        let mut effects = Effects::default();
        effects.follow(0, &[LinkOp::Cut(link("a", "b"))], read);
        // Cut again by a later fault: it stands for the first one still.
        effects.follow(1, &[LinkOp::Cut(link("a", "b"))], read);
        *sent.borrow_mut().get_mut(&link("a", "b")).unwrap() += 7;
        *sent.borrow_mut().get_mut(&link("b", "a")).unwrap() += 100;
        effects.follow(2, &[LinkOp::Mend(link("a", "b"))], read);
        effects.follow(3, &[LinkOp::Mend(link("a", "b"))], read);
        let count = |line: usize| effects.counts[&line].0.clone();
        assert_eq!(count(0), vec![("blocked", 7)], "one way only");
        assert_eq!(count(1), vec![("blocked", 0)], "it cut nothing new");
        assert_eq!(count(2), vec![("mended", 1)]);
        assert_eq!(count(3), vec![("mended", 0)], "nothing left to mend");
    }

    #[test]
    fn a_hold_counts_both_ways_and_the_end_settles_what_stands() {
        use crate::history::tests::{fault, fired};
        let sent = RefCell::new(BTreeMap::from([(link("a", "b"), 1u64)]));
        let read = |l: &Link| sent.borrow().get(l).copied().unwrap_or(0);
        let mut effects = Effects::default();
        effects.follow(0, &[LinkOp::Hold(link("a", "b"))], read);
        sent.borrow_mut().insert(link("a", "b"), 4);
        sent.borrow_mut().insert(link("b", "a"), 2);
        let hold = fired(r#"hold = ["master-1", "master-2"]"#, &[]);
        let mut timeline = Timeline::default();
        timeline.entries.push(fault(1000, hold));
        effects.settle(&mut timeline, read);
        let Some(FaultEvent::Fired(held)) = timeline.entries[0].fault() else {
            unreachable!("a fault")
        };
        assert_eq!(held.effect.0, vec![("blocked", 5)], "3 one way, 2 back");
        assert!(!held.did_nothing());
    }
}
