//! Judges a timeline against a scenario's `[[expect]]` entries.
//!
//! "Online" is what the masters believe, read off their events: `node_registered` and
//! `node_online` make an agent online, `node_offline` and `node_unregistered` make it offline,
//! and a crash or restart of its master makes it offline (the registry died with it).

use crate::scenario::{Check, Scenario};
use crate::selector::Topology;
use crate::trace::Event;
use fleet_core::backoff::BackoffPolicy;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// `h:mm:ss.mmm`, the timeline's clock.
pub fn fmt_time(t_ms: u64) -> String {
    let (hours, rest) = (t_ms / 3_600_000, t_ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    format!("{hours}:{minutes:02}:{:02}.{:03}", rest / 1000, rest % 1000)
}

fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

fn show(duration: Duration) -> String {
    fleet_core::fmt_duration(duration)
}

/// The nodes a `sim` fault event hit: its `nodes` field (written for `leader` and `followers`),
/// or else the nodes its `target` names.
pub fn fault_nodes(event: &Event, topology: &Topology) -> Vec<String> {
    if let Some(nodes) = event.str_field("nodes") {
        return nodes
            .split(',')
            .filter(|node| !node.is_empty())
            .map(str::to_string)
            .collect();
    }
    event
        .str_field("target")
        .and_then(|target| topology.select(target).ok())
        .map(|selector| selector.nodes().to_vec())
        .unwrap_or_default()
}

fn is_fault(event: &Event, kinds: &[&str]) -> bool {
    event.node == "sim" && kinds.contains(&event.kind.as_str())
}

/// Each agent's registrations as the masters saw them, in time order: `Some(master)` while
/// online at that master, `None` while offline.
pub struct OnlineHistory {
    transitions: BTreeMap<String, Vec<(u64, Option<String>)>>,
}

impl OnlineHistory {
    pub fn from_events(events: &[Event], topology: &Topology) -> OnlineHistory {
        let mut transitions: BTreeMap<String, Vec<(u64, Option<String>)>> = BTreeMap::new();
        // Which master last accepted each agent.
        let mut registered_at: BTreeMap<String, String> = BTreeMap::new();
        let mut set = |agent: &str, t_ms: u64, master: Option<String>| {
            let history = transitions.entry(agent.to_string()).or_default();
            if history.last().map(|(_, state)| state) != Some(&master) {
                history.push((t_ms, master));
            }
        };
        for event in events {
            match event.kind.as_str() {
                "node_registered" | "node_online" | "node_offline" | "node_unregistered" => {
                    let Some(agent) = event.str_field("agent") else {
                        continue;
                    };
                    if event.kind == "node_registered" {
                        registered_at.insert(agent.to_string(), event.node.clone());
                    }
                    let online = matches!(event.kind.as_str(), "node_registered" | "node_online");
                    set(agent, event.t_ms, online.then(|| event.node.clone()));
                }
                // The registry of a crashed master, or of one that stopped leading, is gone.
                "registry_cleared" | "crash" | "restart" => {
                    let masters = if event.kind == "registry_cleared" {
                        vec![event.node.clone()]
                    } else if is_fault(event, &["crash", "restart"]) {
                        fault_nodes(event, topology)
                    } else {
                        continue;
                    };
                    for (agent, master) in &registered_at {
                        if masters.contains(master) {
                            set(agent, event.t_ms, None);
                        }
                    }
                }
                _ => {}
            }
        }
        OnlineHistory { transitions }
    }

    /// The master `agent` was online at, at `t_ms` (after every event at that millisecond).
    pub fn master_at(&self, agent: &str, t_ms: u64) -> Option<&str> {
        self.transitions
            .get(agent)
            .and_then(|history| history.iter().take_while(|(t, _)| *t <= t_ms).last())
            .and_then(|(_, master)| master.as_deref())
    }

    pub fn online_at(&self, agent: &str, t_ms: u64) -> bool {
        self.master_at(agent, t_ms).is_some()
    }

    /// The first moment in `[from, to]` at which `agent` was offline.
    pub fn first_offline(&self, agent: &str, from: u64, to: u64) -> Option<u64> {
        if !self.online_at(agent, from) {
            return Some(from);
        }
        self.transitions.get(agent).and_then(|history| {
            history
                .iter()
                .find(|(t, master)| *t > from && *t <= to && master.is_none())
                .map(|(t, _)| *t)
        })
    }
}

/// One master's time in office: from `became_leader` until it steps down, follows another,
/// crashes or is restarted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderSpan {
    pub node: String,
    pub term: u64,
    pub from_ms: u64,
    pub to_ms: Option<u64>,
}

pub struct LeaderHistory {
    pub spans: Vec<LeaderSpan>,
}

impl LeaderHistory {
    pub fn from_events(events: &[Event], topology: &Topology) -> LeaderHistory {
        let mut spans: Vec<LeaderSpan> = Vec::new();
        let close = |spans: &mut Vec<LeaderSpan>, node: &str, t_ms: u64| {
            for span in spans.iter_mut() {
                if span.node == node && span.to_ms.is_none() {
                    span.to_ms = Some(t_ms);
                }
            }
        };
        for event in events {
            match event.kind.as_str() {
                "became_leader" => {
                    close(&mut spans, &event.node, event.t_ms);
                    spans.push(LeaderSpan {
                        node: event.node.clone(),
                        term: event.u64_field("term").unwrap_or(0),
                        from_ms: event.t_ms,
                        to_ms: None,
                    });
                }
                "stepped_down" | "became_follower" => close(&mut spans, &event.node, event.t_ms),
                "crash" | "restart" if event.node == "sim" => {
                    for node in fault_nodes(event, topology) {
                        close(&mut spans, &node, event.t_ms);
                    }
                }
                _ => {}
            }
        }
        LeaderHistory { spans }
    }

    /// Who leads at `t_ms`: of the masters that believe they lead, the one in the highest term.
    pub fn leader_at(&self, t_ms: u64) -> Option<&LeaderSpan> {
        self.spans
            .iter()
            .filter(|span| span.from_ms <= t_ms && span.to_ms.is_none_or(|to| t_ms < to))
            .max_by_key(|span| span.term)
    }

    /// The first time in office that overlaps `[from, to]`.
    pub fn first_in(&self, from: u64, to: u64) -> Option<&LeaderSpan> {
        self.spans
            .iter()
            .filter(|span| span.from_ms <= to && span.to_ms.is_none_or(|end| end > from))
            .min_by_key(|span| span.from_ms.max(from))
    }
}

/// Connect attempts per whole second of the run: the busiest second in `[from, to]`.
pub fn peak_connect_rate(events: &[Event], from: u64, to: u64) -> Option<(u64, u64)> {
    let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
    for event in events {
        if event.kind == "connect_attempt" && (from..=to).contains(&event.t_ms) {
            *per_second.entry(event.t_ms / 1000).or_default() += 1;
        }
    }
    // The earliest second wins a tie, so the answer never depends on map order.
    per_second
        .into_iter()
        .fold(
            None,
            |best: Option<(u64, u64)>, (second, count)| match best {
                Some((_, best_count)) if best_count >= count => best,
                _ => Some((second, count)),
            },
        )
        .map(|(second, count)| (count, second * 1000))
}

/// Every expectation's verdict, then (in a cluster) every invariant's.
pub fn evaluate(scenario: &Scenario, events: &[Event]) -> Vec<Verdict> {
    let histories = Histories {
        online: OnlineHistory::from_events(events, &scenario.topology),
        leaders: LeaderHistory::from_events(events, &scenario.topology),
    };
    let mut verdicts: Vec<Verdict> = scenario
        .expectations
        .iter()
        .map(|expectation| {
            let verdict = evaluate_one(&expectation.check, scenario, &histories, events);
            if expectation.holds {
                verdict
            } else {
                Verdict {
                    check: format!("{} (expected to fail)", verdict.check),
                    ok: !verdict.ok,
                    detail: if verdict.ok {
                        format!(
                            "held, though the scenario says it should not: {}",
                            verdict.detail
                        )
                    } else {
                        format!("fails as expected: {}", verdict.detail)
                    },
                }
            }
        })
        .collect();
    verdicts.extend(crate::invariants::check(scenario, events));
    verdicts
}

struct Histories {
    online: OnlineHistory,
    leaders: LeaderHistory,
}

fn verdict(check: String, ok: bool, detail: String) -> Verdict {
    Verdict { check, ok, detail }
}

fn evaluate_one(
    check: &Check,
    scenario: &Scenario,
    histories: &Histories,
    events: &[Event],
) -> Verdict {
    let history = &histories.online;
    match check {
        Check::LeaderElected { after, within } => {
            let name = format!("leader_elected {} after {}", show(*within), show(*after));
            let (from, to) = (ms(*after), ms(*after + *within));
            let elected = events
                .iter()
                .find(|event| event.kind == "became_leader" && (from..=to).contains(&event.t_ms));
            match elected {
                Some(event) => verdict(
                    name,
                    true,
                    format!(
                        "{} elected at {} ({}ms after {})",
                        event.node,
                        fmt_time(event.t_ms),
                        event.t_ms - from,
                        show(*after)
                    ) + &event
                        .u64_field("term")
                        .map_or(String::new(), |term| format!(", term {term}")),
                ),
                None => verdict(name, false, "no master became leader in that window".into()),
            }
        }
        Check::LeaderIs { node, at } => {
            let name = format!("leader_is {node} at {}", show(*at));
            match histories.leaders.leader_at(ms(*at)) {
                Some(span) => verdict(
                    name,
                    span.node == *node,
                    format!("{} leads (term {})", span.node, span.term),
                ),
                None => verdict(name, false, "no master leads".into()),
            }
        }
        Check::NoLeader { during } => {
            let name = format!("no_leader during {}..{}", show(during.0), show(during.1));
            match histories.leaders.first_in(ms(during.0), ms(during.1)) {
                None => verdict(name, true, "no master led".into()),
                Some(span) => verdict(
                    name,
                    false,
                    format!(
                        "{} led from {} (term {})",
                        span.node,
                        fmt_time(span.from_ms),
                        span.term
                    ),
                ),
            }
        }
        Check::TermAtMost { max } => {
            let name = format!("term_at_most {max}");
            let highest = events
                .iter()
                .filter(|event| matches!(event.kind.as_str(), "became_leader" | "election_started"))
                .filter_map(|event| event.u64_field("term").map(|term| (term, event)))
                .max_by_key(|(term, _)| *term);
            match highest {
                None => verdict(name, true, "no election".into()),
                Some((term, event)) => verdict(
                    name,
                    term <= *max,
                    format!(
                        "highest term {term} ({} at {})",
                        event.node,
                        fmt_time(event.t_ms)
                    ),
                ),
            }
        }
        Check::AgentsFollowLeader {
            agents,
            after,
            within,
        } => {
            let at = ms(*after + *within);
            let name = format!(
                "agents_follow_leader {agents} {} after {}",
                show(*within),
                show(*after)
            );
            let Some(leader) = histories.leaders.leader_at(at) else {
                return verdict(name, false, format!("no master leads at {}", fmt_time(at)));
            };
            let strays: Vec<&str> = agents
                .nodes()
                .iter()
                .filter(|agent| history.master_at(agent, at) != Some(leader.node.as_str()))
                .map(String::as_str)
                .collect();
            let total = agents.nodes().len();
            verdict(
                name,
                strays.is_empty(),
                if strays.is_empty() {
                    format!("{total}/{total} registered with {}", leader.node)
                } else {
                    format!(
                        "{}/{total} registered with {}; elsewhere: {}",
                        total - strays.len(),
                        leader.node,
                        abbreviate(&strays)
                    )
                },
            )
        }
        Check::AllOnline { agents, at } => {
            let name = format!("all_online {agents} at {}", show(*at));
            let offline: Vec<&str> = agents
                .nodes()
                .iter()
                .filter(|agent| !history.online_at(agent, ms(*at)))
                .map(String::as_str)
                .collect();
            let total = agents.nodes().len();
            if offline.is_empty() {
                verdict(name, true, format!("{total}/{total} online"))
            } else {
                verdict(
                    name,
                    false,
                    format!(
                        "{}/{total} online; not online: {}",
                        total - offline.len(),
                        abbreviate(&offline)
                    ),
                )
            }
        }
        Check::OfflineWithin {
            agents,
            after,
            within,
        } => {
            let name = format!(
                "offline_within {agents} {} after {}",
                show(*within),
                show(*after)
            );
            let (from, to) = (ms(*after), ms(*after + *within));
            let mut slowest = (0u64, "");
            let mut never = Vec::new();
            for agent in agents.nodes() {
                match history.first_offline(agent, from, to) {
                    Some(t) if t - from >= slowest.0 => slowest = (t - from, agent),
                    Some(_) => {}
                    None => never.push(agent.as_str()),
                }
            }
            if never.is_empty() {
                verdict(
                    name,
                    true,
                    format!(
                        "all {} offline; slowest {} after {}ms",
                        agents.nodes().len(),
                        slowest.1,
                        slowest.0
                    ),
                )
            } else {
                verdict(
                    name,
                    false,
                    format!("still online at {}: {}", fmt_time(to), abbreviate(&never)),
                )
            }
        }
        Check::BackoffFollowsPolicy { agents, after } => {
            let name = format!("backoff_follows_policy {agents} after {}", show(*after));
            check_backoff(&scenario.backoff, agents.nodes(), ms(*after), events).map_or_else(
                |failure| verdict(name.clone(), false, failure),
                |detail| verdict(name.clone(), true, detail),
            )
        }
        Check::MaxConnectAttempts {
            agents,
            during,
            max,
        } => {
            let name = format!(
                "max_connect_attempts {agents} during {}..{} <= {max}",
                show(during.0),
                show(during.1)
            );
            let count = events
                .iter()
                .filter(|event| {
                    event.kind == "connect_attempt"
                        && (ms(during.0)..=ms(during.1)).contains(&event.t_ms)
                        && agents.contains(&event.node)
                })
                .count() as u64;
            verdict(name, count <= *max, format!("{count} attempts"))
        }
        Check::NoOffline { agents, during } => {
            let name = format!(
                "no_offline {agents} during {}..{}",
                show(during.0),
                show(during.1)
            );
            let offline: Vec<String> = agents
                .nodes()
                .iter()
                .filter_map(|agent| {
                    history
                        .first_offline(agent, ms(during.0), ms(during.1))
                        .map(|t| format!("{agent} at {}", fmt_time(t)))
                })
                .collect();
            if offline.is_empty() {
                verdict(
                    name,
                    true,
                    format!("{} agents stayed online", agents.nodes().len()),
                )
            } else {
                let names: Vec<&str> = offline.iter().map(String::as_str).collect();
                verdict(name, false, format!("offline: {}", abbreviate(&names)))
            }
        }
        Check::PeakConnectRate { during, min, max } => {
            let bound = match (*min, *max) {
                (0, max) => format!("<= {max}/s"),
                (min, u64::MAX) => format!(">= {min}/s"),
                (min, max) => format!("in {min}..={max}/s"),
            };
            let name = format!(
                "peak_connect_rate during {}..{} {bound}",
                show(during.0),
                show(during.1)
            );
            let (count, detail) = match peak_connect_rate(events, ms(during.0), ms(during.1)) {
                None => (0, "no connect attempts".to_string()),
                Some((count, at)) => (count, format!("peak {count}/s at {}", fmt_time(at))),
            };
            verdict(name, (*min..=*max).contains(&count), detail)
        }
    }
}

/// Checks every connect attempt of `agents` at or after `after_ms` against the policy. Returns
/// a summary, or the first violation. The first attempt of a cycle goes out at once (or after a
/// `long_wait`), an attempt after `redirected` at once too, and every other attempt waits the
/// policy's delay for the next retry of the cycle (0, 1, 2, ...).
fn check_backoff(
    policy: &BackoffPolicy,
    agents: &[String],
    after_ms: u64,
    events: &[Event],
) -> Result<String, String> {
    #[derive(Default)]
    struct Seen {
        retries: u32,
        previous_delay: Duration,
        long_wait_ms: Option<u64>,
        redirected: bool,
    }
    let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
    let mut checked = 0u64;
    let mut longest = (0u64, 0u64);
    for event in events {
        if !agents.contains(&event.node) {
            continue;
        }
        let state = seen.entry(event.node.as_str()).or_default();
        match event.kind.as_str() {
            "long_wait" => state.long_wait_ms = event.u64_field("ms"),
            "redirected" => state.redirected = true,
            "connect_attempt" => {}
            _ => continue,
        }
        if event.kind != "connect_attempt" {
            continue;
        }
        let (Some(attempt), Some(delay_ms)) =
            (event.u64_field("attempt"), event.u64_field("delay_ms"))
        else {
            return Err(format!(
                "{} at {}: connect_attempt without attempt/delay_ms",
                event.node,
                fmt_time(event.t_ms)
            ));
        };
        let (allowed, is_retry) = if attempt <= 1 {
            state.retries = 0;
            state.previous_delay = policy.base;
            state.redirected = false;
            let expected = state.long_wait_ms.take().unwrap_or(0);
            (expected..=expected, false)
        } else if std::mem::take(&mut state.redirected) {
            (0..=0, false)
        } else {
            let bounds = policy.bounds(state.retries, state.previous_delay);
            state.retries += 1;
            state.previous_delay = Duration::from_millis(delay_ms);
            (ms(*bounds.start())..=ms(*bounds.end()), true)
        };
        if event.t_ms < after_ms {
            continue;
        }
        if !allowed.contains(&delay_ms) {
            return Err(format!(
                "{} attempt {attempt} at {} waited {delay_ms}ms; the policy allows {}..{}ms",
                event.node,
                fmt_time(event.t_ms),
                allowed.start(),
                allowed.end()
            ));
        }
        if is_retry {
            checked += 1;
            longest = longest.max((delay_ms, attempt));
        }
    }
    if checked == 0 {
        return Err(format!(
            "no retry after {} to check: the policy was never exercised",
            fmt_time(after_ms)
        ));
    }
    Ok(format!(
        "{checked} retry delays within bounds; longest {}ms (attempt {})",
        longest.0, longest.1
    ))
}

/// `a, b, c` or `a, b, c and 7 more`.
fn abbreviate(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::FieldValue;

    fn event(t_ms: u64, node: &str, kind: &str, fields: &[(&str, FieldValue)]) -> Event {
        Event {
            t_ms,
            node: node.into(),
            kind: kind.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    fn agent(name: &str) -> (&'static str, FieldValue) {
        ("agent", FieldValue::Str(name.into()))
    }

    fn attempt(t_ms: u64, attempt: u64, delay_ms: u64) -> Event {
        event(
            t_ms,
            "agent-1",
            "connect_attempt",
            &[
                ("attempt", FieldValue::U64(attempt)),
                ("delay_ms", FieldValue::U64(delay_ms)),
            ],
        )
    }

    const TOPOLOGY: Topology = Topology {
        masters: 1,
        agents: 2,
        store: false,
    };

    fn term(value: u64) -> (&'static str, FieldValue) {
        ("term", FieldValue::U64(value))
    }

    #[test]
    fn leader_history_opens_and_closes_terms_of_office() {
        let topology = Topology {
            masters: 3,
            ..TOPOLOGY
        };
        let events = vec![
            event(2000, "master-2", "became_leader", &[term(1)]),
            event(
                9000,
                "sim",
                "crash",
                &[
                    ("target", FieldValue::Str("leader".into())),
                    ("nodes", FieldValue::Str("master-2".into())),
                ],
            ),
            event(12_000, "master-3", "became_leader", &[term(2)]),
            event(20_000, "master-3", "stepped_down", &[term(2)]),
        ];
        let history = LeaderHistory::from_events(&events, &topology);
        assert_eq!(history.leader_at(1999), None);
        assert_eq!(history.leader_at(2000).unwrap().node, "master-2");
        assert_eq!(history.leader_at(9000), None, "crashed");
        assert_eq!(history.leader_at(15_000).unwrap().term, 2);
        assert_eq!(history.leader_at(20_000), None);
        assert_eq!(history.first_in(9000, 11_999), None);
        assert_eq!(history.first_in(9000, 12_000).unwrap().node, "master-3");
        assert_eq!(history.first_in(0, 5000).unwrap().node, "master-2");
    }

    #[test]
    fn online_history_follows_master_events_and_master_crashes() {
        let events = vec![
            event(100, "master-1", "node_registered", &[agent("agent-1")]),
            event(100, "master-1", "node_registered", &[agent("agent-2")]),
            event(5000, "master-1", "node_offline", &[agent("agent-2")]),
            event(
                9000,
                "sim",
                "crash",
                &[("target", FieldValue::Str("master-1".into()))],
            ),
        ];
        let history = OnlineHistory::from_events(&events, &TOPOLOGY);
        assert_eq!(history.master_at("agent-1", 100), Some("master-1"));
        assert!(!history.online_at("agent-1", 99));
        assert!(history.online_at("agent-1", 100));
        assert!(history.online_at("agent-2", 4999));
        assert!(!history.online_at("agent-2", 5000));
        assert!(!history.online_at("agent-1", 9000), "its master crashed");
        assert_eq!(history.first_offline("agent-1", 1000, 10_000), Some(9000));
        assert_eq!(history.first_offline("agent-1", 1000, 8000), None);
    }

    #[test]
    fn backoff_check_accepts_the_schedule_and_rejects_a_short_wait() {
        let policy = BackoffPolicy::default(); // 1s ×2 ±25%
        let agents = vec!["agent-1".to_string()];
        let good = vec![
            attempt(0, 1, 0),
            attempt(1100, 2, 1100),
            attempt(3000, 3, 1900),
        ];
        assert!(check_backoff(&policy, &agents, 0, &good).is_ok());
        let bad = vec![
            attempt(0, 1, 0),
            attempt(1100, 2, 1100),
            attempt(2000, 3, 900),
        ];
        let error = check_backoff(&policy, &agents, 0, &bad).unwrap_err();
        assert!(error.contains("attempt 3"), "{error}");
        assert!(error.contains("1500..2500ms"), "{error}");
    }

    #[test]
    fn an_attempt_after_a_redirect_waits_nothing_and_keeps_the_retry_count() {
        let policy = BackoffPolicy::default();
        let agents = vec!["agent-1".to_string()];
        let redirected = event(1100, "agent-1", "redirected", &[]);
        let events = vec![
            attempt(0, 1, 0),
            attempt(1100, 2, 1100),
            redirected,
            attempt(1100, 3, 0),
            attempt(3000, 4, 1900),
        ];
        assert!(check_backoff(&policy, &agents, 0, &events).is_ok());
    }

    #[test]
    fn backoff_check_with_nothing_to_check_fails() {
        let agents = vec!["agent-1".to_string()];
        let events = vec![attempt(0, 1, 0)];
        assert!(check_backoff(&BackoffPolicy::default(), &agents, 0, &events).is_err());
    }

    #[test]
    fn peak_rate_picks_the_busiest_second() {
        let events = vec![attempt(100, 1, 0), attempt(2100, 1, 0), attempt(2900, 1, 0)];
        assert_eq!(peak_connect_rate(&events, 0, 10_000), Some((2, 2000)));
        assert_eq!(peak_connect_rate(&events, 0, 1000), Some((1, 0)));
        assert_eq!(peak_connect_rate(&events, 5000, 6000), None);
    }

    #[test]
    fn clock_format() {
        assert_eq!(fmt_time(0), "0:00:00.000");
        assert_eq!(fmt_time(3_723_456), "1:02:03.456");
    }
}
