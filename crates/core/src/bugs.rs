//! Planted bugs: realistic slips, a line or a few each, that the harness must catch (`sim zoo`
//! measures how fast it does). A build with the `bugs` feature switches each on by name at run
//! time, through the [`Bugs`] its configs carry; every other build has no bugs to switch on:
//! there [`Bugs`] holds nothing and [`Bugs::has`] is a constant `false`, so each planted branch
//! compiles away.
//!
//! A bug is planted where the code it breaks lives, as `if config.bugs.has(Bug::Name) { the slip }`
//! beside the correct line, so reading one shows both.

use std::fmt;
use std::str::FromStr;

macro_rules! zoo {
    ($( $bug:ident $name:literal $area:literal $seen:literal; )*) => {
        /// Every planted bug.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Bug {
            $( $bug, )*
        }

        impl Bug {
            /// Every bug, in the zoo's order.
            pub const ALL: &'static [Bug] = &[$( Bug::$bug, )*];

            /// Its name on the command line (`--bug NAME`) and in scenario files.
            pub fn name(self) -> &'static str {
                match self {
                    $( Bug::$bug => $name, )*
                }
            }

            /// The part of the control plane it lives in.
            pub fn area(self) -> &'static str {
                match self {
                    $( Bug::$bug => $area, )*
                }
            }

            /// The slip, and what a user of the control plane would have seen.
            pub fn seen(self) -> &'static str {
                match self {
                    $( Bug::$bug => $seen, )*
                }
            }
        }
    };
}

zoo! {
    RaftVoteTwice "raft_vote_twice" "raft"
        "a node grants a second vote in a term it already voted in: two leaders in one term";
    RaftVoteNotSaved "raft_vote_not_saved" "raft"
        "the hard state saved holds the term but not the vote: a node that restarts votes again in the same term";
    RaftTermNotRestored "raft_term_not_restored" "raft"
        "a restarted node restores its vote but not its term: it starts over from term 0";
    RaftNoElectionRestriction "raft_no_election_restriction" "raft"
        "votes go to candidates whose log is behind: a new leader lacks commands a majority accepted";
    LeaseFromReply "lease_from_reply" "lease"
        "a renewal counts from when its answer arrived, not when it was sent: a slow answer makes the holder outlive the store's lease";
    LeaseNoDriftMargin "lease_no_drift_margin" "lease"
        "the holder counts its lease as the full period, with no margin for clock rates: a slow clock keeps it past the store's expiry";
    LeaseStaleGrant "lease_stale_grant" "lease"
        "a grant answered before a pause counts when it is read after it: the woken holder leads on an expired lease";
    LeaseRenewLoop "lease_renew_loop" "lease"
        "after a renewal the next one is not put off: the holder renews in a tight loop (a livelock)";
    BackoffExponentOffByOne "backoff_exponent_off_by_one" "backoff"
        "the first retry already waits base × multiplier: every delay is one step too long";
    BackoffNotReset "backoff_not_reset" "backoff"
        "a successful connection does not reset the retry count: after a later failure the agent starts at its longest delays";
    ReconnectAuthBackoff "reconnect_auth_backoff" "reconnection"
        "refused credentials are retried on the backoff schedule instead of after reauth_delay";
    ReconnectIgnoreRetryAfter "reconnect_ignore_retry_after" "reconnection"
        "a busy master's retry_after is ignored: the agent comes back on its own schedule, sooner than told";
    ReconnectGoingAwayWaits "reconnect_going_away_waits" "reconnection"
        "a master that says it is going away is treated as a failure: the agent backs off instead of moving on at once";
    LivenessOneMissEarly "liveness_one_miss_early" "liveness"
        "offline after max_miss − 1 missed heartbeats: agents are marked offline a heartbeat early";
    LivenessKeepsLastHeard "liveness_keeps_last_heard" "liveness"
        "a re-registration keeps the silence of the old session: an agent back after a long cut is marked offline at once";
    CommandsCommitOffByOne "commands_commit_off_by_one" "commands"
        "the newest committed command is not sent until another commits after it: the last command of a burst waits forever";
    CommandsReplicateDropsLast "commands_replicate_drops_last" "commands"
        "the state replicated to the other masters leaves out the newest pending command: it is lost when the leader is";
    CommandsRunDuplicate "commands_run_duplicate" "commands"
        "an agent runs a command sent again while its first copy still runs, instead of waiting for that result";
    AuthRevocationIgnored "auth_revocation_ignored" "auth"
        "a master admits an agent whose credentials were revoked";
    AdmissionUnlimited "admission_unlimited" "admission"
        "the admission limit counts only refused registrations: a burst of reconnecting agents is all admitted at once";
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Bug {
    type Err = String;

    /// A bug by name; the error lists every name.
    fn from_str(name: &str) -> Result<Bug, String> {
        Bug::ALL
            .iter()
            .copied()
            .find(|bug| bug.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Bug::ALL.iter().map(|bug| bug.name()).collect();
                format!("unknown bug {name:?}; the zoo has {}", names.join(", "))
            })
    }
}

/// Whether this build can plant bugs (the `bugs` feature).
pub const PLANTABLE: bool = cfg!(feature = "bugs");

/// The bugs switched on for one run: none, in every build without the `bugs` feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    #[cfg(feature = "bugs")]
    set: u64,
}

impl Bugs {
    /// No bugs: the control plane as shipped.
    pub const NONE: Bugs = Bugs {
        #[cfg(feature = "bugs")]
        set: 0,
    };

    /// These bugs switched on; an error in a build that cannot plant them.
    pub fn of(bugs: &[Bug]) -> Result<Bugs, String> {
        #[cfg(feature = "bugs")]
        {
            const { assert!(Bug::ALL.len() <= 64, "one bit per bug") };
            let set = bugs.iter().fold(0, |set, bug| set | 1 << *bug as u64);
            Ok(Bugs { set })
        }
        #[cfg(not(feature = "bugs"))]
        match bugs {
            [] => Ok(Bugs::NONE),
            _ => Err("this build plants no bugs: build it with `--features bugs`".into()),
        }
    }

    /// Whether `bug` is switched on: always false in a build without the `bugs` feature.
    #[inline(always)]
    pub fn has(self, bug: Bug) -> bool {
        #[cfg(feature = "bugs")]
        {
            self.set & 1 << bug as u64 != 0
        }
        #[cfg(not(feature = "bugs"))]
        {
            let _ = bug;
            false
        }
    }

    /// The bugs switched on, in the zoo's order.
    pub fn list(self) -> Vec<Bug> {
        Bug::ALL
            .iter()
            .copied()
            .filter(|&bug| self.has(bug))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bug_is_found_by_its_name_and_unknown_names_list_the_zoo() {
        for &bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>(), Ok(bug));
        }
        let error = "no_such_bug".parse::<Bug>().unwrap_err();
        assert!(error.contains("raft_vote_twice"), "{error}");
    }

    #[test]
    fn a_build_without_the_feature_switches_nothing_on() {
        let planted = Bugs::of(&[Bug::RaftVoteTwice]);
        if PLANTABLE {
            let bugs = planted.unwrap();
            assert!(bugs.has(Bug::RaftVoteTwice));
            assert!(!bugs.has(Bug::RaftVoteNotSaved));
            assert_eq!(bugs.list(), [Bug::RaftVoteTwice]);
        } else {
            assert!(planted.unwrap_err().contains("--features bugs"));
        }
        assert_eq!(Bugs::of(&[]), Ok(Bugs::NONE));
        assert!(Bugs::NONE.list().is_empty());
    }
}
