//! How the `sim` command ends: its exit codes, and the one error a command can end with, which
//! knows its code.
//!
//! - [`OK`], 0: every expectation held (`check`: the runs matched; `explore`: no run failed);
//! - [`EXPECTATION_FAILED`], 1: one failed (`check`: two runs of a seed differed);
//! - [`BAD_INPUT`], 2: a scenario file, flag or override the command cannot use, and nothing
//!   ran (or one of `explore`'s workers would not start or stopped with an error);
//! - [`CANNOT_WRITE`], 3: the runs happened and were printed, but an output file (`--csv`,
//!   `--html`, `--plot`) could not be written.

use crate::scenario::ConfigError;
use std::path::PathBuf;

pub const OK: i32 = 0;
pub const EXPECTATION_FAILED: i32 = 1;
pub const BAD_INPUT: i32 = 2;
pub const CANNOT_WRITE: i32 = 3;

/// The code of a command that ran: [`OK`] if everything `passed`, else [`EXPECTATION_FAILED`].
pub fn passed(passed: bool) -> i32 {
    if passed {
        OK
    } else {
        EXPECTATION_FAILED
    }
}

/// Why a command stopped short: bad input before it ran, or an output it could not write after.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scenario file or `--set` override the checks refuse, with where.
    #[error(transparent)]
    Scenario(#[from] ConfigError),
    /// A flag's value the command cannot use (`--filter`, a seed range, shards to merge).
    #[error("{0}")]
    BadFlag(String),
    /// An exploration that could not finish: a worker that would not start, or stopped with an
    /// error (a template it could not use, mostly).
    #[error("{0}")]
    Explore(String),
    /// An output file (`--csv`, `--html`) that could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A plot (`--plot`) that could not be drawn into its folder.
    #[error("{0}")]
    Plot(String),
}

impl Error {
    /// The exit code this error ends the command with.
    pub fn code(&self) -> i32 {
        match self {
            Error::Scenario(_) | Error::BadFlag(_) | Error::Explore(_) => BAD_INPUT,
            Error::Write { .. } | Error::Plot(_) => CANNOT_WRITE,
        }
    }

    /// `std::fs::write`, its failure named by the file.
    pub fn write(path: &std::path::Path, contents: impl AsRef<[u8]>) -> Result<(), Error> {
        std::fs::write(path, contents).map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_and_unwritable_output_end_with_their_own_codes() {
        let bad = Error::BadFlag("--seeds 5..1: the range ends before it starts".into());
        assert_eq!(bad.code(), BAD_INPUT);
        let unwritable = Error::write(std::path::Path::new("/no/such/dir/out.csv"), "x");
        let unwritable = unwritable.expect_err("the folder does not exist");
        assert_eq!(unwritable.code(), CANNOT_WRITE);
        assert!(
            unwritable
                .to_string()
                .starts_with("cannot write /no/such/dir/out.csv: "),
            "{unwritable}"
        );
    }
}
