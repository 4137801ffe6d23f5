//! The simulation harness: scenario files in, a deterministic timeline and verdicts out.
//!
//! - [`scenario`] reads and checks a scenario file;
//! - `runner` (simulation build only) runs it inside madsim and captures the [`trace`];
//! - [`expect`] judges the timeline; [`report`] prints it.

pub mod duration;
pub mod expect;
pub mod invariants;
pub mod report;
#[cfg(madsim)]
pub mod runner;
pub mod scenario;
pub mod selector;
pub mod trace;

/// Exit codes of the `sim` command.
pub mod exit {
    pub const OK: i32 = 0;
    pub const EXPECTATION_FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
}
