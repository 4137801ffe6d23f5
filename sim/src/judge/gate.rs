//! The rules of a master's gate, held on every run whose scenario has one:
//!
//! - `revoked_agents_refused` (with `[params.auth]`): no master registers an agent after its
//!   credentials were revoked there and before they were restored. A revocation reaches a
//!   master when the fault fires, or when the master wakes if it was paused then.
//! - `admission_within_capacity` (with `[params.master] capacity = C`): each master process
//!   admits at most `C` registrations at once and `C` a second after that, by its own clock
//!   (a token bucket whose burst is its rate): over any stretch of its registrations, at most
//!   `C + C·seconds` of them.

use crate::history::{fmt_time, Entry};
use crate::judge::Evidence;
use crate::scenario::faults::FaultAction;
use fleet_core::timeline::{Event, MasterEvent};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) const REVOKED: &str = "revoked_agents_refused";
pub(crate) const ADMISSION: &str = "admission_within_capacity";

/// Every master registration of an agent between its revocation and its restoring there.
pub(crate) fn revoked_agents_refused(evidence: &Evidence) -> Result<String, String> {
    let masters = evidence.scenario.topology.masters();
    let mut paused: BTreeSet<&str> = BTreeSet::new();
    // Revoked agents at each master, and those whose revocation waits for it to wake.
    let mut revoked: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut registrations = 0;
    for entry in evidence.entries {
        if let Some(fired) = entry.fault().and_then(|fault| fault.fired()) {
            let nodes = fired.nodes();
            match &fired.action {
                FaultAction::Pause(_) => paused.extend(nodes.iter().map(String::as_str)),
                FaultAction::Resume(_) => {
                    for node in nodes {
                        paused.remove(node.as_str());
                        let woke = waiting.remove(node.as_str()).unwrap_or_default();
                        revoked.entry(node).or_default().extend(woke);
                    }
                }
                FaultAction::Revoke(_) | FaultAction::Restore(_) => {
                    let revoke = matches!(fired.action, FaultAction::Revoke(_));
                    for master in &masters {
                        let asleep = paused.contains(master.as_str());
                        for agent in nodes {
                            revise(&mut revoked, master, agent, revoke && !asleep);
                            revise(&mut waiting, master, agent, revoke && asleep);
                        }
                    }
                }
                _ => {}
            }
            continue;
        }
        let Some(Event::Master(MasterEvent::NodeRegistered { agent, .. })) = entry.system() else {
            continue;
        };
        let barred = revoked.get(entry.node.as_str());
        if barred.is_some_and(|agents| agents.contains(agent.as_str())) {
            return Err(format!(
                "{} registered {agent} at {}, while its credentials were revoked",
                entry.node,
                fmt_time(entry.t_ms)
            ));
        }
        registrations += 1;
    }
    Ok(format!(
        "{registrations} registrations, none of a revoked agent"
    ))
}

fn revise<'a>(
    sets: &mut BTreeMap<&'a str, BTreeSet<&'a str>>,
    master: &'a str,
    agent: &'a str,
    add: bool,
) {
    let set = sets.entry(master).or_default();
    if add {
        set.insert(agent);
    } else {
        set.remove(agent);
    }
}

/// Over every stretch of one master process's registrations, at most `C + C·seconds`.
pub(crate) fn admission_within_capacity(
    evidence: &Evidence,
    capacity: u32,
) -> Result<String, String> {
    let capacity = f64::from(capacity);
    // Each master process's registrations, by its clock; `None` once its clock went back (a
    // bucket refills twice over the time it lived again, which this bound does not model).
    let mut times: BTreeMap<&str, Option<Vec<i64>>> = BTreeMap::new();
    let mut admitted = 0;
    for entry in evidence.entries {
        for node in entry
            .fault()
            .and_then(|f| f.processes_ended())
            .unwrap_or_default()
        {
            times.remove(node.as_str());
        }
        let Some(Event::Master(MasterEvent::NodeRegistered { .. })) = entry.system() else {
            continue;
        };
        admitted += 1;
        let local_ms = entry.t_ms as i64 + entry.clock_ms;
        let Some(seen) = times.entry(&entry.node).or_insert(Some(Vec::new())) else {
            continue;
        };
        if seen.last().is_some_and(|&last| local_ms < last) {
            times.insert(&entry.node, None);
            continue;
        }
        seen.push(local_ms);
        over_capacity(seen, capacity, entry)?;
    }
    Ok(format!(
        "{admitted} registrations, within {capacity} a second"
    ))
}

/// Whether the newest of `seen` (local ms, in order) makes a stretch hold too many.
fn over_capacity(seen: &[i64], capacity: f64, entry: &Entry) -> Result<(), String> {
    let newest = *seen.last().expect("a registration was just added");
    for (back, &first) in seen.iter().rev().enumerate() {
        let count = back as f64 + 1.0;
        // Clock offsets are whole ms, rounded down: a ms each way.
        let seconds = (newest - first + 2) as f64 / 1000.0;
        if count > capacity + capacity * seconds + 1e-9 {
            return Err(format!(
                "{} admitted {count} registrations in {}ms up to {}; capacity {capacity} \
                 allows {:.1}",
                entry.node,
                newest - first,
                fmt_time(entry.t_ms),
                capacity + capacity * seconds
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{fault, fired, registered};
    use crate::history::{FaultEvent, Fired};
    use crate::scenario::Scenario;

    /// A fault that fired, written as a `[[faults]]` entry's action, where agents have
    /// credentials.
    fn with_auth(action: &str) -> FaultEvent {
        let text = format!(
            "name = \"t\"\nduration = \"1h\"\n[topology]\nmasters = 3\nagents = 10\n\
             [params.auth]\n[[faults]]\nat = \"1s\"\n{action}\n"
        );
        let scenario = Scenario::parse("t.toml", &text).unwrap();
        FaultEvent::Fired(Box::new(Fired::fixed(scenario.faults[0].action.clone())))
    }

    fn scenario() -> Scenario {
        Scenario::parse(
            "t.toml",
            "name = \"t\"\nduration = \"1m\"\n[topology]\nmasters = 3\nagents = 10\n\
             [params.auth]\n[params.master]\ncapacity = 2\n",
        )
        .unwrap()
    }

    #[test]
    fn a_revoked_agent_registered_is_caught_and_a_restored_one_is_not() {
        let scenario = scenario();
        let judge = |entries: &[Entry]| revoked_agents_refused(&Evidence::new(&scenario, entries));
        let revoke = fault(100, with_auth(r#"revoke = "agent-1""#));
        let restore = fault(900, with_auth(r#"restore = "agent-1""#));
        let error = judge(&[revoke.clone(), registered(500, "master-2", "agent-1")]).unwrap_err();
        assert!(error.contains("master-2 registered agent-1"), "{error}");
        assert!(judge(&[revoke.clone(), registered(500, "master-2", "agent-2")]).is_ok());
        let back = [
            revoke.clone(),
            restore,
            registered(950, "master-2", "agent-1"),
        ];
        assert!(judge(&back).is_ok());
        // Paused when it fired, a master learns of it when it wakes.
        let pause = fault(50, fired(r#"pause = "master-2""#, &[]));
        let resume = fault(700, fired(r#"resume = "master-2""#, &[]));
        let asleep = [
            pause.clone(),
            revoke.clone(),
            registered(700, "master-2", "agent-1"),
        ];
        assert!(judge(&asleep).is_ok());
        let woke = [
            pause,
            revoke,
            resume,
            registered(701, "master-2", "agent-1"),
        ];
        assert!(judge(&woke).is_err());
    }

    #[test]
    fn a_master_admitting_past_its_bucket_is_caught() {
        let scenario = scenario();
        let judge = |times: &[u64]| {
            let entries: Vec<Entry> = (times.iter().enumerate())
                .map(|(i, &t)| registered(t, "master-1", &format!("agent-{}", i + 1)))
                .collect();
            admission_within_capacity(&Evidence::new(&scenario, &entries), 2)
        };
        assert!(judge(&[0, 0]).is_ok(), "a burst of the capacity");
        assert!(
            judge(&[0, 0, 500, 1000, 1500, 2000]).is_ok(),
            "then two a second"
        );
        let error = judge(&[0, 0, 10]).unwrap_err();
        assert!(
            error.contains("master-1 admitted 3 registrations in 10ms"),
            "{error}"
        );
        assert!(
            judge(&[0, 0, 400, 450]).is_err(),
            "three in 450ms after a burst"
        );
        let restart = fault(600, fired(r#"restart = "master-1""#, &[]));
        let entries = vec![
            registered(0, "master-1", "agent-1"),
            registered(0, "master-1", "agent-2"),
            restart,
            registered(600, "master-1", "agent-3"),
            registered(600, "master-1", "agent-4"),
        ];
        let fresh = admission_within_capacity(&Evidence::new(&scenario, &entries), 2);
        assert!(fresh.is_ok(), "a new process, a full bucket: {fresh:?}");
    }
}
