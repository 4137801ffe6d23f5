//! Safety rules checked on every cluster run, whatever its expectations say. A broken rule is
//! a failed verdict that names the rule and the events that break it.
//!
//! - `at_most_one_leader_per_term`: two masters never take office in the same term (a raft
//!   term, or a lease grant's fencing token).
//! - `one_lease_holder_at_a_time` (lease mode): no master acquires or renews the lease while
//!   another still believes it holds it (from `lease_acquired` until `lease_lost`, a crash or a
//!   pause: a paused process acts on nothing, and must check its lease when it wakes). This
//!   holds while the timing assumptions do: every clock's rate is within `max_drift` of true
//!   time, so the holder lets go before the store expires the lease.
//! - `fencing_tokens_increase` (lease mode): each grant's token is above every earlier one, and
//!   a renewal carries the token of its grant.
//! - `backoff_follows_policy` (with agents): every delay an agent chose before a connect
//!   attempt is one its reason's strategy allows, by the README's formulas (written again in
//!   the harness, not taken from the policy's code).
//! - `offline_not_early` (with agents): no master marks an agent offline before `max_miss`
//!   heartbeat intervals of silence, counted from its registration at the latest; over MQTT,
//!   sooner only on a will the broker published, and the broker publishes one for a silent
//!   client only after 1.5 keepalives of silence (its connection closing needs no wait).
//! - `revoked_agents_refused`, `admission_within_capacity`: the gate's (see `gate`).
//! - `timeline_readable` (only shown when broken): every event an emitter sent parses back.

use crate::history::leaders::LeaderSpan;
use crate::history::terms::raft_term;
use crate::history::{fmt_time, Entry, FaultEvent, Happening};
use crate::judge::{attempts, commands, gate, ms, Check, CheckSpec, Evidence, Verdict};
use crate::scenario::faults::FaultAction;
use crate::scenario::{ClusterSpec, Scenario};
use fleet_core::timeline::{Event, LeaseEvent, MasterEvent, ShellEvent};
use fleet_core::transport::Transport;
use std::collections::BTreeMap;

fn rule(name: &str, result: Result<String, String>) -> Verdict {
    let (ok, detail) = match result {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    let mut args = serde_json::Map::new();
    args.insert("rule".into(), name.into());
    Verdict {
        check: format!("invariant {name}"),
        args,
        ok,
        detail,
        value: None,
    }
}

const ONE_LEADER: &str = "at_most_one_leader_per_term";
const ONE_HOLDER: &str = "one_lease_holder_at_a_time";
const FENCING: &str = "fencing_tokens_increase";
const TERMS_KEPT: &str = "terms_never_go_back";
const RUNS_ONCE: &str = "no_command_runs_twice";
const SENT_FIRST: &str = "no_result_without_command";
const CONFIG_FORWARD: &str = "config_versions_monotonic";
const BACKOFF: &str = "backoff_follows_policy";
const OFFLINE_LATE: &str = "offline_not_early";

/// The rules every run of this cluster mode is held to, and those of commands and config when
/// the scenario sends any. A raft master that keeps its term on disk never goes back to an
/// older one; without the disk (`persist = false`) it does on every restart, so that rule holds
/// only with it.
pub(crate) fn rules(scenario: &Scenario) -> Vec<&'static str> {
    let mut rules = match &scenario.cluster {
        ClusterSpec::Single => vec![],
        ClusterSpec::Raft { persist: true, .. } => vec![ONE_LEADER, TERMS_KEPT],
        ClusterSpec::Raft { persist: false, .. } => vec![ONE_LEADER],
        ClusterSpec::Lease(_) => vec![ONE_LEADER, ONE_HOLDER, FENCING],
    };
    if !scenario.operations.is_empty() {
        rules.extend([RUNS_ONCE, SENT_FIRST, CONFIG_FORWARD]);
    }
    if scenario.topology.agents > 0 {
        rules.extend([BACKOFF, OFFLINE_LATE]);
    }
    if scenario.auth.is_some() {
        rules.push(gate::REVOKED);
    }
    if scenario.master.admission.is_some() {
        rules.push(gate::ADMISSION);
    }
    rules
}

/// Judges one rule by name; `None` for a name that is no rule.
pub(crate) fn judge_rule(name: &str, evidence: &Evidence) -> Option<Result<String, String>> {
    Some(match name {
        ONE_LEADER => one_leader_per_term(&evidence.leaders.spans),
        ONE_HOLDER => one_lease_holder(evidence),
        FENCING => fencing_tokens_increase(evidence.entries),
        TERMS_KEPT => terms_never_go_back(evidence),
        RUNS_ONCE => commands::no_command_runs_twice(&evidence.commands),
        SENT_FIRST => commands::no_result_without_command(&evidence.commands),
        CONFIG_FORWARD => commands::config_versions_monotonic(&evidence.commands),
        BACKOFF => backoff_follows_policy(evidence),
        OFFLINE_LATE => offline_not_early(evidence),
        gate::REVOKED => gate::revoked_agents_refused(evidence),
        gate::ADMISSION => {
            let admission = evidence.scenario.master.admission?;
            gate::admission_within_capacity(evidence, admission.capacity)
        }
        _ => return None,
    })
}

/// Every rule of the mode, but those an expectation names (it judges them itself, `holds`
/// included), then `timeline_readable` if any event did not parse back.
pub fn check(evidence: &Evidence, unreadable: &[String], named: &[&str]) -> Vec<Verdict> {
    let mut verdicts: Vec<Verdict> = rules(evidence.scenario)
        .iter()
        .filter(|name| !named.contains(name))
        .filter_map(|name| Some(rule(name, judge_rule(name, evidence)?)))
        .collect();
    if !unreadable.is_empty() {
        let detail = format!(
            "{} events did not parse back; first: {}",
            unreadable.len(),
            unreadable[0]
        );
        verdicts.push(rule("timeline_readable", Err(detail)));
    }
    verdicts
}

/// `check = "invariant"` with `rule = NAME`: one of the mode's rules as an expectation, so a
/// scenario can state `holds = false` for a rule it exists to show broken.
pub(crate) const INVARIANT: CheckSpec = CheckSpec {
    name: "invariant",
    fields: &["rule"],
    parse: |fields| {
        let (name, at) = fields
            .text(
                "rule",
                r#"a rule's name, like "at_most_one_leader_per_term""#,
            )?
            .ok_or_else(|| fields.missing("rule"))?;
        let rules = rules(fields.scenario());
        match rules.iter().find(|rule| **rule == name) {
            Some(rule) => Ok(Box::new(Invariant { rule })),
            None => Err(fields.error(
                at,
                format!(
                    "{name:?} is no rule of mode {:?}; its rules: {}",
                    fields.scenario().cluster.mode(),
                    rules.join(", ")
                ),
            )),
        }
    },
};

#[derive(Debug)]
struct Invariant {
    rule: &'static str,
}

impl Check for Invariant {
    fn title(&self) -> String {
        format!("invariant {}", self.rule)
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        match judge_rule(self.rule, evidence).expect("a rule of this mode") {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        }
    }

    fn invariant(&self) -> Option<&'static str> {
        Some(self.rule)
    }
}

fn describe_span(span: &LeaderSpan) -> String {
    format!("{} took office at {}", span.node, fmt_time(span.from_ms))
}

fn one_leader_per_term(spans: &[LeaderSpan]) -> Result<String, String> {
    let mut leaders: BTreeMap<u64, &LeaderSpan> = BTreeMap::new();
    for span in spans {
        match leaders.get(&span.term) {
            Some(first) if first.node != span.node => {
                return Err(format!(
                    "term {} has two leaders: {} and {}",
                    span.term,
                    describe_span(first),
                    describe_span(span)
                ))
            }
            Some(_) => {}
            None => {
                leaders.insert(span.term, span);
            }
        }
    }
    Ok(format!("{} terms with a leader, one each", leaders.len()))
}

/// Every delay an agent chose before a connect attempt is one the reason table and the
/// strategy's formula allow (see `attempts::judge_backoff`).
fn backoff_follows_policy(evidence: &Evidence) -> Result<String, String> {
    let scenario = evidence.scenario;
    let rules = attempts::Rules {
        policy: &scenario.backoff,
        reauth_delay: scenario.reauth_delay,
        masters: scenario.topology.masters as usize,
    };
    let agents = scenario.topology.agents();
    let strict = attempts::Strictness::Invariant;
    attempts::judge_backoff(&rules, &agents, 0, evidence.entries, strict)
}

/// No master marks an agent offline before `max_miss` heartbeat intervals of silence: not
/// sooner than that after the instance registered with it (a registration is word from it),
/// by the master's own clock, and never saying it was silent for less.
/// The broker's wills (over MQTT), against the rules: one for a silent client only after 1.5
/// keepalives of silence by the broker's clock, and each offline a master marks by a will
/// backed by a will of its own.
struct Wills<'a> {
    /// 1.5 keepalives.
    silent_ms: u64,
    published: BTreeMap<&'a str, u32>,
    heeded: BTreeMap<(&'a str, &'a str), u32>,
}

impl<'a> Wills<'a> {
    fn new(transport: &Transport) -> Wills<'a> {
        let silent_ms = match transport {
            Transport::Mqtt(mqtt) => ms(mqtt.keepalive) * 3 / 2,
            _ => u64::MAX,
        };
        Wills {
            silent_ms,
            published: BTreeMap::new(),
            heeded: BTreeMap::new(),
        }
    }

    fn published(
        &mut self,
        entry: &Entry,
        client: &'a str,
        cause: &str,
        silent_ms: u64,
    ) -> Result<(), String> {
        if cause == "silent" && silent_ms + 1 < self.silent_ms {
            return Err(format!(
                "{} published {client}'s will at {} after {silent_ms}ms of silence; 1.5 × \
                 keepalive is {}ms",
                entry.node,
                fmt_time(entry.t_ms),
                self.silent_ms
            ));
        }
        *self.published.entry(client).or_default() += 1;
        Ok(())
    }

    fn heeded(&mut self, entry: &'a Entry, agent: &'a str) -> Result<(), String> {
        let heeded = self.heeded.entry((&entry.node, agent)).or_default();
        *heeded += 1;
        if *heeded > self.published.get(agent).copied().unwrap_or(0) {
            return Err(format!(
                "{} marked {agent} offline by a will at {} that the broker never published",
                entry.node,
                fmt_time(entry.t_ms)
            ));
        }
        Ok(())
    }
}

fn offline_not_early(evidence: &Evidence) -> Result<String, String> {
    let heartbeat = &evidence.scenario.heartbeat;
    let least_ms = ms(heartbeat.interval) * u64::from(heartbeat.max_miss);
    let mut wills = Wills::new(&evidence.scenario.transport);
    // When each (master, instance) last registered, by the master's clock.
    let mut registered: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let (mut offline, mut by_will) = (0, 0);
    for entry in evidence.entries {
        let local_ms = entry.t_ms as i64 + entry.clock_ms;
        match entry.system() {
            Some(Event::Shell(ShellEvent::WillPublished {
                client,
                cause,
                silent_ms,
            })) => wills.published(entry, client, cause, *silent_ms)?,
            Some(Event::Master(MasterEvent::NodeRegistered { instance_id, .. })) => {
                registered.insert((&entry.node, instance_id), local_ms);
            }
            Some(Event::Master(MasterEvent::NodeOffline {
                agent,
                instance_id,
                silent_ms,
                will,
            })) => {
                offline += 1;
                if *will {
                    by_will += 1;
                    wills.heeded(entry, agent)?;
                    continue;
                }
                let since = registered.get(&(entry.node.as_str(), instance_id.as_str()));
                // The clock offset is whole milliseconds, rounded down: allow one each way.
                let heard_ms = since.map_or(i64::MAX, |at| local_ms - at + 2);
                if *silent_ms < least_ms || heard_ms < least_ms as i64 {
                    let silence = since.map_or(String::new(), |at| {
                        format!(", {}ms after it registered there", local_ms - at)
                    });
                    return Err(format!(
                        "{} marked {agent} offline at {} after {silent_ms}ms of silence{silence}; \
                         max_miss × interval is {least_ms}ms",
                        entry.node,
                        fmt_time(entry.t_ms)
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(match by_will {
        0 => format!("{offline} agents marked offline, none before {least_ms}ms of silence"),
        _ => format!(
            "{offline} agents marked offline: {by_will} on a will the broker published, the \
             rest none before {least_ms}ms of silence"
        ),
    })
}

fn describe(entry: &Entry) -> String {
    let (kind, fields) = entry.parts();
    format!(
        "{} {kind} at {} ({fields})",
        entry.node,
        fmt_time(entry.t_ms)
    )
}

fn lease_event(entry: &Entry) -> Option<&LeaseEvent> {
    match entry.system() {
        Some(Event::Lease(event)) => Some(event),
        _ => None,
    }
}

fn one_lease_holder(evidence: &Evidence) -> Result<String, String> {
    let mut holder: Option<&Entry> = None;
    let mut grants = 0;
    for entry in evidence.entries {
        if let Happening::Fault(fault) = &entry.event {
            // A paused process acts on nothing; once it wakes it must check its lease before
            // it acts again, and a renewal is the only act that says it still holds it.
            let paused = (fault.fired())
                .filter(|fired| matches!(fired.action, FaultAction::Pause(_)))
                .map(|fired| fired.nodes());
            let ended = fault.processes_ended().or(paused).unwrap_or_default();
            if holder.is_some_and(|current| ended.contains(&current.node)) {
                holder = None;
            }
            continue;
        }
        match lease_event(entry) {
            // Taking a lease back after a restart is taking it: nobody else may hold it then.
            Some(LeaseEvent::LeaseAcquired { .. } | LeaseEvent::LeaseResumed { .. }) => {
                if let Some(current) = holder.filter(|current| current.node != entry.node) {
                    return Err(format!(
                        "{} while {} still believed it held the lease",
                        describe(entry),
                        describe(current)
                    ));
                }
                grants += 1;
                holder = Some(entry);
            }
            Some(LeaseEvent::LeaseLost { .. })
                if holder.is_some_and(|current| current.node == entry.node) =>
            {
                holder = None;
            }
            Some(LeaseEvent::LeaseRenewed { .. }) => match holder {
                Some(current) if current.node != entry.node => {
                    return Err(format!(
                        "{} while {} still believed it held the lease",
                        describe(entry),
                        describe(current)
                    ))
                }
                Some(_) => {}
                None => holder = Some(entry),
            },
            Some(LeaseEvent::LeaseLost { .. } | LeaseEvent::LeaseHolderSeen { .. }) | None => {}
        }
    }
    Ok(format!("{grants} grants, never overlapping"))
}

/// No raft master reports a term below one it reported before, across crashes and restarts
/// (its term is on disk), unless its disk was wiped or damaged in between. Only the terms a node says it
/// is in count, not those it asked about or was asked for (pre-votes, denied votes).
fn terms_never_go_back(evidence: &Evidence) -> Result<String, String> {
    let mut last: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut reports = 0;
    for entry in evidence.entries {
        match &entry.event {
            Happening::Fault(FaultEvent::Fired(fired))
                if matches!(fired.action, FaultAction::Wipe(_) | FaultAction::Corrupt(_)) =>
            {
                for node in fired.nodes() {
                    last.retain(|kept, _| kept != node);
                }
            }
            Happening::System(Event::Raft(event)) => {
                let Some(term) = raft_term(event) else {
                    continue;
                };
                reports += 1;
                if let Some(&(before, at)) = last.get(entry.node.as_str()) {
                    if term < before {
                        return Err(format!(
                            "{} was in term {before} at {} and reported term {term} at {}",
                            entry.node,
                            fmt_time(at),
                            fmt_time(entry.t_ms)
                        ));
                    }
                }
                last.insert(&entry.node, (term, entry.t_ms));
            }
            _ => {}
        }
    }
    Ok(format!("{reports} term reports, none going back"))
}

fn fencing_tokens_increase(entries: &[Entry]) -> Result<String, String> {
    let mut highest: Option<(u64, &Entry)> = None;
    let mut granted: BTreeMap<&str, u64> = BTreeMap::new();
    for entry in entries {
        match lease_event(entry) {
            Some(LeaseEvent::LeaseAcquired { token }) => {
                if let Some((_, previous_entry)) = highest.filter(|(top, _)| top >= token) {
                    return Err(format!(
                        "token went backwards: {} after {}",
                        describe(entry),
                        describe(previous_entry)
                    ));
                }
                highest = Some((*token, entry));
                granted.insert(&entry.node, *token);
            }
            // Taking back the lease in our name: the same grant as before a restart, or a newer
            // one whose reply came late and was never logged. Never an older one.
            Some(LeaseEvent::LeaseResumed { token }) => {
                if let Some((_, previous_entry)) = highest.filter(|(top, _)| top > token) {
                    return Err(format!(
                        "resumed an old grant: {} after {}",
                        describe(entry),
                        describe(previous_entry)
                    ));
                }
                if highest.is_none_or(|(top, _)| top < *token) {
                    highest = Some((*token, entry));
                }
                granted.insert(&entry.node, *token);
            }
            Some(LeaseEvent::LeaseRenewed { token })
                if granted.get(entry.node.as_str()) != Some(token) =>
            {
                return Err(format!(
                    "{} renews a token it was not granted",
                    describe(entry)
                ));
            }
            Some(
                LeaseEvent::LeaseRenewed { .. }
                | LeaseEvent::LeaseLost { .. }
                | LeaseEvent::LeaseHolderSeen { .. },
            )
            | None => {}
        }
    }
    Ok(match highest {
        Some((token, _)) => format!("tokens rise to {token}"),
        None => "no grants".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::leaders::LeaderHistory;
    use crate::history::tests::fired;
    use crate::history::tests::{became_leader, entry};

    fn lease(t_ms: u64, node: &str, event: LeaseEvent) -> Entry {
        entry(t_ms, node, event)
    }

    #[test]
    fn a_term_going_back_is_caught_unless_the_disk_was_wiped() {
        use crate::history::tests::fault;
        use fleet_core::timeline::RaftEvent;
        let scenario = crate::scenario::Scenario::parse(
            "t.toml",
            "name = \"t\"\nduration = \"1m\"\n[topology]\nmasters = 3\nagents = 0\n",
        )
        .unwrap();
        let restored = |t, term| {
            let event = RaftEvent::StateRestored {
                term,
                voted_for: None,
            };
            entry(t, "master-1", event)
        };
        let denied = entry(
            6,
            "master-1",
            RaftEvent::VoteDenied {
                term: 1,
                candidate: "master-2".into(),
                reason: "stale term".into(),
            },
        );
        let forgot = vec![became_leader(1, "master-1", 3), denied, restored(9, 0)];
        let error = terms_never_go_back(&Evidence::new(&scenario, &forgot)).unwrap_err();
        assert!(
            error.contains("term 3") && error.contains("term 0"),
            "{error}"
        );
        assert!(terms_never_go_back(&Evidence::new(&scenario, &forgot[..2])).is_ok());
        let wipe = fault(5, fired(r#"wipe = "master-1""#, &[]));
        let wiped = vec![became_leader(1, "master-1", 3), wipe, restored(9, 0)];
        assert!(terms_never_go_back(&Evidence::new(&scenario, &wiped)).is_ok());
    }

    #[test]
    fn an_agent_marked_offline_too_soon_after_registering_is_caught() {
        use crate::history::tests::registered;
        let scenario = crate::scenario::Scenario::parse(
            "t.toml",
            "name = \"t\"\nduration = \"1m\"\n[topology]\nagents = 1\n",
        )
        .unwrap();
        let offline = |t, silent_ms| {
            let event = MasterEvent::NodeOffline {
                agent: "agent-1".into(),
                instance_id: "agent-1-sim-101".into(),
                silent_ms,
                will: false,
            };
            entry(t, "master-1", event)
        };
        let judge = |entries: &[Entry]| offline_not_early(&Evidence::new(&scenario, entries));
        // max_miss 3 × 1s.
        assert!(judge(&[
            registered(1_000, "master-1", "agent-1"),
            offline(4_000, 3_000)
        ])
        .is_ok());
        let early = judge(&[
            registered(1_000, "master-1", "agent-1"),
            offline(3_500, 3_000),
        ]);
        assert!(early.unwrap_err().contains("2500ms after it registered"));
        let short = judge(&[offline(9_000, 2_000)]).unwrap_err();
        assert!(short.contains("after 2000ms of silence"), "{short}");
        // By the master's clock: 3s on a clock 500ms ahead is 2.5s of true time.
        let mut skewed = offline(3_500, 3_000);
        skewed.clock_ms = 500;
        assert!(judge(&[registered(1_000, "master-1", "agent-1"), skewed]).is_ok());
    }

    #[test]
    fn two_leaders_in_one_term_are_named() {
        let entries = vec![
            became_leader(1, "master-1", 2),
            became_leader(5, "master-2", 2),
        ];
        let spans = LeaderHistory::from_entries(&entries).spans;
        let error = one_leader_per_term(&spans).unwrap_err();
        assert!(
            error.contains("master-1") && error.contains("master-2"),
            "{error}"
        );
        assert!(one_leader_per_term(&spans[..1]).is_ok());
    }

    #[test]
    fn tokens_must_rise_and_renewals_must_match() {
        let good = vec![
            lease(1, "master-1", LeaseEvent::LeaseAcquired { token: 1 }),
            lease(2, "master-1", LeaseEvent::LeaseRenewed { token: 1 }),
            lease(9, "master-2", LeaseEvent::LeaseAcquired { token: 2 }),
        ];
        assert!(fencing_tokens_increase(&good).is_ok());
        let backwards = vec![
            good[0].clone(),
            lease(9, "master-2", LeaseEvent::LeaseAcquired { token: 1 }),
        ];
        assert!(fencing_tokens_increase(&backwards)
            .unwrap_err()
            .contains("backwards"));
        let forged = vec![
            good[0].clone(),
            lease(2, "master-1", LeaseEvent::LeaseRenewed { token: 7 }),
        ];
        assert!(fencing_tokens_increase(&forged).is_err());
        let resumed = vec![
            good[0].clone(),
            lease(5, "master-1", LeaseEvent::LeaseResumed { token: 1 }),
            lease(6, "master-1", LeaseEvent::LeaseRenewed { token: 1 }),
        ];
        assert!(fencing_tokens_increase(&resumed).is_ok(), "the same grant");
        let stale = vec![
            good[0].clone(),
            good[2].clone(),
            lease(10, "master-1", LeaseEvent::LeaseResumed { token: 1 }),
        ];
        assert!(fencing_tokens_increase(&stale)
            .unwrap_err()
            .contains("resumed an old grant"));
    }

    #[test]
    fn overlapping_holders_are_caught() {
        let scenario = crate::scenario::Scenario::parse(
            "t.toml",
            "name = \"t\"\nduration = \"1m\"\n[topology]\nmasters = 2\nagents = 1\n[cluster]\nmode = \"lease\"\n",
        )
        .unwrap();
        let overlapping = vec![
            lease(1, "master-1", LeaseEvent::LeaseAcquired { token: 1 }),
            lease(5, "master-2", LeaseEvent::LeaseAcquired { token: 2 }),
        ];
        let evidence = Evidence::new(&scenario, &overlapping);
        assert!(one_lease_holder(&evidence).is_err());
        let handed_over = vec![
            overlapping[0].clone(),
            lease(
                4,
                "master-1",
                LeaseEvent::LeaseLost {
                    token: 1,
                    reason: "expired".into(),
                },
            ),
            overlapping[1].clone(),
        ];
        let evidence = Evidence::new(&scenario, &handed_over);
        assert!(one_lease_holder(&evidence).is_ok());
    }
}
