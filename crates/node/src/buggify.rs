//! Fault points in the shell (FoundationDB's BUGGIFY): places where a deployment now and then
//! sees something slow or wrong that no network fault makes, fired at random when the node's
//! machine has them on ([`Machine::buggify`]), and never otherwise (a deployment, a test).
//!
//! Each point a run turns on or leaves off as a whole, with even odds (so runs differ in which
//! kinds of trouble they see, as in swarm testing), and an enabled point fires at
//! [`FIRE_RATE`] of its chances. Every draw comes from the machine's own generator, seeded by
//! the run: the same seed fires the same points. A point that fires says so on the timeline
//! (`fault_point`).

use crate::machine::Machine;
use crate::report::emit;
use fleet_core::timeline::ShellEvent;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// A place in the shell where trouble can be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// A write to a socket waits up to [`SEND_DELAY`] first: one message late enough to arrive
    /// after messages of a later term, as a slow retransmission would deliver it.
    DelayedSend,
    /// A record written to disk takes up to [`DISK_DELAY`]: a slow fsync.
    DelayedDiskWrite,
    /// A connection that opened is dropped at once, before anything crosses it.
    DroppedConnection,
    /// A master refuses a registration as busy though it is not.
    SpuriousBusy,
}

const POINTS: [Point; 4] = [
    Point::DelayedSend,
    Point::DelayedDiskWrite,
    Point::DroppedConnection,
    Point::SpuriousBusy,
];

/// How often an enabled point fires, of its chances.
pub const FIRE_RATE: f64 = 0.01;
/// The longest delay a delayed send waits: past a raft election timeout, so a vote reply can
/// come back after the next election started.
pub const SEND_DELAY: Duration = Duration::from_secs(3);
/// The longest delay a delayed disk write waits.
pub const DISK_DELAY: Duration = Duration::from_millis(500);

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::DelayedSend => "delayed_send",
            Point::DelayedDiskWrite => "delayed_disk_write",
            Point::DroppedConnection => "dropped_connection",
            Point::SpuriousBusy => "spurious_busy",
        }
    }

    fn longest(self) -> Option<Duration> {
        match self {
            Point::DelayedSend => Some(SEND_DELAY),
            Point::DelayedDiskWrite => Some(DISK_DELAY),
            Point::DroppedConnection | Point::SpuriousBusy => None,
        }
    }

    fn index(self) -> usize {
        POINTS
            .iter()
            .position(|point| *point == self)
            .expect("listed")
    }
}

/// A machine's fault points: which are on, and the generator that fires them.
pub struct Buggify {
    enabled: [bool; POINTS.len()],
    rng: ChaCha8Rng,
}

impl Buggify {
    pub fn new(seed: u64) -> Buggify {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let enabled = POINTS.map(|_| rng.gen_bool(0.5));
        Buggify { enabled, rng }
    }

    /// Whether `point` fires this time; for a delay, how long.
    fn draw(&mut self, point: Point) -> Option<Duration> {
        if !self.enabled[point.index()] || !self.rng.gen_bool(FIRE_RATE) {
            return None;
        }
        Some(match point.longest() {
            Some(longest) => {
                let ms = self.rng.gen_range(1..=longest.as_millis() as u64);
                Duration::from_millis(ms)
            }
            None => Duration::ZERO,
        })
    }
}

/// Whether `point` fires now, on the current machine; for a delay, how long. Says so on the
/// timeline when it does.
pub fn fires(point: Point) -> Option<Duration> {
    let fired = Machine::with_current(|machine| machine.with_buggify(|b| b.draw(point)))???;
    let delay_ms = point.longest().map(|_| fired.as_millis() as u64);
    emit(ShellEvent::FaultPoint {
        point: point.name().to_string(),
        delay_ms,
    });
    Some(fired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_unless_the_machine_has_it_and_the_same_seed_fires_the_same_points() {
        assert_eq!(fires(Point::SpuriousBusy), None, "no machine");
        let quiet = Machine::default();
        assert!(quiet.enter(|| (0..1000).all(|_| fires(Point::SpuriousBusy).is_none())));
        let drawn = |seed| {
            let machine = Machine::default();
            machine.buggify(seed);
            machine.enter(|| {
                (0..4000)
                    .map(|i| fires(POINTS[i % POINTS.len()]).map(|d| (i, d)))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(drawn(7), drawn(7));
        let fired: usize = (0..20)
            .map(|seed| drawn(seed).iter().flatten().count())
            .sum();
        // 20 runs × 1000 chances per point × 4 points, half of them on, 1% each: about 400.
        assert!((200..700).contains(&fired), "{fired}");
        for (_, delay) in drawn(3).into_iter().flatten() {
            assert!(delay <= SEND_DELAY);
        }
    }
}
