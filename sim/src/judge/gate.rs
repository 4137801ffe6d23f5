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
