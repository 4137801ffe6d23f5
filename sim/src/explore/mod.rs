//! `sim explore`: runs a template scenario under fault schedules drawn from each run's seed,
//! checks every run, and shrinks what fails into a standalone scenario file.
//!
//! - [`plan`] draws a run's schedule and the simpler schedules shrinking tries (pure);
//! - [`template`] turns a template and a schedule into the scenario file that runs;
//! - [`worker`] runs seeds and shrinks failures, in a worker process;
//! - [`pool`] hands seeds to worker processes and gathers what they find;
//! - [`summary`] is what they say to each other and to the user.

pub mod coverage;
pub mod guide;
pub mod mutate;
pub mod plan;
pub mod pool;
pub mod summary;
pub mod template;
pub mod worker;

pub use template::Template;
