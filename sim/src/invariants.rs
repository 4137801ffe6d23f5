//! Safety rules checked on every cluster run, whatever its expectations say. A broken rule is
//! a failed verdict that names the rule and the events that break it.
//!
//! - `at_most_one_leader_per_term`: two masters never become leader in the same term.
//! - `one_lease_holder_at_a_time` (lease mode): no master acquires the lease while another
//!   still believes it holds it (from `lease_acquired` until `lease_lost`, `stepped_down` or a
//!   crash). This holds while the timing assumptions do: clocks advance at the same rate and
//!   the holder lets go before the store expires the lease.
//! - `fencing_tokens_increase` (lease mode): each grant's token is above every earlier one, and
//!   a renewal carries the token of its grant.

use crate::expect::{fault_nodes, fmt_time, Verdict};
use crate::scenario::{ClusterSpec, Scenario};
use crate::trace::Event;
use std::collections::BTreeMap;

fn describe(event: &Event) -> String {
    format!(
        "{} {} at {} ({})",
        event.node,
        event.kind,
        fmt_time(event.t_ms),
        event.fields_text()
    )
}

fn rule(name: &str, result: Result<String, String>) -> Verdict {
    let (ok, detail) = match result {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    Verdict {
        check: format!("invariant {name}"),
        ok,
        detail,
    }
}

pub fn check(scenario: &Scenario, events: &[Event]) -> Vec<Verdict> {
    match scenario.cluster {
        ClusterSpec::Single => vec![],
        ClusterSpec::Raft(_) => vec![rule(
            "at_most_one_leader_per_term",
            one_leader_per_term(events),
        )],
        ClusterSpec::Lease(_) => vec![
            rule("at_most_one_leader_per_term", one_leader_per_term(events)),
            rule(
                "one_lease_holder_at_a_time",
                one_lease_holder(scenario, events),
            ),
            rule("fencing_tokens_increase", fencing_tokens_increase(events)),
        ],
    }
}

fn one_leader_per_term(events: &[Event]) -> Result<String, String> {
    let mut leaders: BTreeMap<u64, &Event> = BTreeMap::new();
    for event in events.iter().filter(|event| event.kind == "became_leader") {
        let term = event.u64_field("term").unwrap_or(0);
        match leaders.get(&term) {
            Some(first) if first.node != event.node => {
                return Err(format!(
                    "term {term} has two leaders: {} and {}",
                    describe(first),
                    describe(event)
                ))
            }
            Some(_) => {}
            None => {
                leaders.insert(term, event);
            }
        }
    }
    Ok(format!("{} terms with a leader, one each", leaders.len()))
}

fn one_lease_holder(scenario: &Scenario, events: &[Event]) -> Result<String, String> {
    let mut holder: Option<&Event> = None;
    let mut grants = 0;
    for event in events {
        match event.kind.as_str() {
            "lease_acquired" => {
                if let Some(current) = holder.filter(|current| current.node != event.node) {
                    return Err(format!(
                        "{} while {} still believed it held the lease",
                        describe(event),
                        describe(current)
                    ));
                }
                grants += 1;
                holder = Some(event);
            }
            "lease_lost" | "stepped_down"
                if holder.is_some_and(|current| current.node == event.node) =>
            {
                holder = None;
            }
            "crash" | "restart" if event.node == "sim" => {
                let hit = fault_nodes(event, &scenario.topology);
                if holder.is_some_and(|current| hit.contains(&current.node)) {
                    holder = None;
                }
            }
            _ => {}
        }
    }
    Ok(format!("{grants} grants, never overlapping"))
}

fn fencing_tokens_increase(events: &[Event]) -> Result<String, String> {
    let mut highest: Option<&Event> = None;
    let mut granted: BTreeMap<&str, u64> = BTreeMap::new();
    for event in events {
        let Some(token) = event.u64_field("token") else {
            continue;
        };
        match event.kind.as_str() {
            "lease_acquired" => {
                if let Some(previous) = highest {
                    if previous.u64_field("token").unwrap_or(0) >= token {
                        return Err(format!(
                            "token went backwards: {} after {}",
                            describe(event),
                            describe(previous)
                        ));
                    }
                }
                highest = Some(event);
                granted.insert(&event.node, token);
            }
            "lease_renewed" if granted.get(event.node.as_str()) != Some(&token) => {
                return Err(format!(
                    "{} renews a token it was not granted",
                    describe(event)
                ));
            }
            _ => {}
        }
    }
    Ok(match highest {
        Some(event) => format!("tokens rise to {}", event.u64_field("token").unwrap_or(0)),
        None => "no grants".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::FieldValue;

    fn event(t_ms: u64, node: &str, kind: &str, key: &str, value: u64) -> Event {
        Event {
            t_ms,
            node: node.into(),
            kind: kind.into(),
            fields: vec![(key.into(), FieldValue::U64(value))],
        }
    }

    #[test]
    fn two_leaders_in_one_term_are_named() {
        let events = vec![
            event(1, "master-1", "became_leader", "term", 2),
            event(5, "master-2", "became_leader", "term", 2),
        ];
        let error = one_leader_per_term(&events).unwrap_err();
        assert!(
            error.contains("master-1") && error.contains("master-2"),
            "{error}"
        );
        assert!(one_leader_per_term(&events[..1]).is_ok());
    }

    #[test]
    fn tokens_must_rise_and_renewals_must_match() {
        let good = vec![
            event(1, "master-1", "lease_acquired", "token", 1),
            event(2, "master-1", "lease_renewed", "token", 1),
            event(9, "master-2", "lease_acquired", "token", 2),
        ];
        assert!(fencing_tokens_increase(&good).is_ok());
        let backwards = vec![
            good[0].clone(),
            event(9, "master-2", "lease_acquired", "token", 1),
        ];
        assert!(fencing_tokens_increase(&backwards)
            .unwrap_err()
            .contains("backwards"));
        let forged = vec![
            good[0].clone(),
            event(2, "master-1", "lease_renewed", "token", 7),
        ];
        assert!(fencing_tokens_increase(&forged).is_err());
    }

    #[test]
    fn overlapping_holders_are_caught() {
        let scenario = crate::scenario::Scenario::parse(
            "t.toml",
            "name = \"t\"\nduration = \"1m\"\n[topology]\nmasters = 2\nagents = 1\n[cluster]\nmode = \"lease\"\n",
        )
        .unwrap();
        let overlapping = vec![
            event(1, "master-1", "lease_acquired", "token", 1),
            event(5, "master-2", "lease_acquired", "token", 2),
        ];
        assert!(one_lease_holder(&scenario, &overlapping).is_err());
        let handed_over = vec![
            overlapping[0].clone(),
            event(4, "master-1", "lease_lost", "token", 1),
            overlapping[1].clone(),
        ];
        assert!(one_lease_holder(&scenario, &handed_over).is_ok());
    }
}
