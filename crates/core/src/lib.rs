//! The fleet control plane's cores. Each one is a pure state machine: it takes `now` and inputs,
//! returns the actions to perform and its next deadline, and never touches a socket, a clock or
//! a global RNG. The async shell (`fleet-node`) runs them over TCP; the tests here drive them
//! directly.

pub mod agent;
pub mod attempts;
pub mod auth;
pub mod backoff;
pub mod bugs;
pub mod cluster;
pub mod command;
pub mod master;
pub mod resp;
pub mod timeline;
pub mod transport;
pub mod wire;

use std::time::Duration;

/// Formats a duration the way scenario files write them: `250ms`, `3s`, `1m30s`, `1h`.
pub fn fmt_duration(duration: Duration) -> String {
    let total_ms = duration.as_millis();
    if total_ms == 0 {
        return "0s".into();
    }
    let (hours, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    let mut out = String::new();
    for (value, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    //! Besides the crate's own, the harness in `tests/` that drives a master and an agent core
    //! together with no runtime, and the tests that use it.

    use super::*;

    mod agent_and_master;
    pub(crate) mod pair;

    #[test]
    fn durations_print_as_scenarios_write_them() {
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(fmt_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(fmt_duration(Duration::ZERO), "0s");
    }
}
