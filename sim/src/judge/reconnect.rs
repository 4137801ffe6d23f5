//! Checks on how agents end and why they disconnect.
//!
//! - `gave_up_after {agents, attempts}`: each selected agent gave up, having made exactly
//!   `attempts` attempts (the first and `max_retries` retries).
//! - `no_reconnect_after {agents, after}`: no selected agent makes a connect attempt after
//!   `after`.
//! - `disconnect_reason {agents, reason, during}`: each selected agent lost a connection for
//!   `reason` at some moment of `during`.

use crate::history::attempts::connect_attempts;
use crate::history::fmt_time;
use crate::judge::{ms, Check, CheckSpec, Evidence};
use crate::scenario::selector::Selector;
use fleet_core::fmt_duration as show;
use fleet_core::timeline::{AgentEvent, DisconnectReason, Event};
use std::time::Duration;

/// Every reason an agent names, as the timeline writes it.
const REASONS: [DisconnectReason; 14] = DisconnectReason::ALL;

/// Every selected agent is back online within `within` after `after` (a restart, a heal),
/// having made at most `max_attempts` connect attempts between them if given. Its value is how
/// long the last one took and how many attempts the selected agents made until then: the two
/// figures a reconnect storm is judged by.
pub(crate) const ALL_BACK_WITHIN: CheckSpec = CheckSpec {
    name: "all_back_within",
    fields: &["agents", "after", "within", "max_attempts"],
    parse: |fields| {
        let (after, within) = fields.window()?;
        Ok(Box::new(AllBackWithin {
            agents: fields.agents()?,
            after,
            within,
            max_attempts: fields.count("max_attempts")?.map(|(max, _)| max),
        }))
    },
};

#[derive(Debug)]
struct AllBackWithin {
    agents: Selector,
    after: Duration,
    within: Duration,
    max_attempts: Option<u64>,
}

impl AllBackWithin {
    /// When the last selected agent was back (`None`: one never was), and the attempts the
    /// selected agents made from `after` until then (or the end).
    fn measure(&self, evidence: &Evidence) -> (Option<u64>, u64, Option<&str>) {
        let from = ms(self.after);
        let mut last: Option<(u64, &str)> = Some((from, ""));
        for agent in self.agents.nodes() {
            let back = evidence.online.next_online(agent, from);
            last = match (last, back) {
                (Some(latest), Some(t)) if t > latest.0 => Some((t, agent.as_str())),
                (Some(latest), Some(_)) => Some(latest),
                _ => None,
            };
        }
        let until = last.map_or(u64::MAX, |(t, _)| t);
        let agents = self.agents.members();
        let attempts = connect_attempts(evidence.entries)
            .filter(|&(t, node)| (from..=until).contains(&t) && agents.contains(node))
            .count() as u64;
        (last.map(|(t, _)| t), attempts, last.map(|(_, agent)| agent))
    }
}

impl Check for AllBackWithin {
    fn title(&self) -> String {
        let (agents, after, within) = (&self.agents, show(self.after), show(self.within));
        let attempts = match self.max_attempts {
            Some(max) => format!(" in <= {max} attempts"),
            None => String::new(),
        };
        format!("all_back_within {agents} {within} after {after}{attempts}")
    }

    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        let (back, attempts, _) = self.measure(evidence);
        let ms_back = back.map(|t| t - ms(self.after));
        Some(serde_json::json!({ "ms": ms_back, "attempts": attempts }))
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let (back, attempts, slowest) = self.measure(evidence);
        let Some(back) = back else {
            return (
                false,
                format!("not all back by the end; {attempts} attempts"),
            );
        };
        let took = back - ms(self.after);
        let slowest = slowest.filter(|agent| !agent.is_empty()).unwrap_or("none");
        let detail = format!(
            "all back {took}ms after {} (last {slowest}); {attempts} connect attempts until then",
            show(self.after)
        );
        let few_enough = self.max_attempts.is_none_or(|max| attempts <= max);
        (took <= ms(self.within) && few_enough, detail)
    }
}

pub(crate) const GAVE_UP_AFTER: CheckSpec = CheckSpec {
    name: "gave_up_after",
    fields: &["agents", "attempts"],
    parse: |fields| {
        let (attempts, _) = fields
            .count("attempts")?
            .ok_or_else(|| fields.missing("attempts"))?;
        Ok(Box::new(GaveUpAfter {
            agents: fields.agents()?,
            attempts,
        }))
    },
};

#[derive(Debug)]
struct GaveUpAfter {
    agents: Selector,
    attempts: u64,
}

impl Check for GaveUpAfter {
    fn title(&self) -> String {
        format!(
            "gave_up_after {} after {} attempts",
            self.agents, self.attempts
        )
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        for agent in self.agents.nodes() {
            let gave_up = (evidence.entries.iter())
                .filter(|entry| entry.node == *agent)
                .find_map(|entry| match entry.system() {
                    Some(Event::Agent(AgentEvent::GaveUp { attempts })) => {
                        Some((entry.t_ms, *attempts))
                    }
                    _ => None,
                });
            match gave_up {
                None => return (false, format!("{agent} never gave up")),
                Some((t, attempts)) if u64::from(attempts) != self.attempts => {
                    let when = fmt_time(t);
                    return (
                        false,
                        format!("{agent} gave up at {when} after {attempts} attempts"),
                    );
                }
                Some(_) => {}
            }
        }
        let count = self.agents.nodes().len();
        (
            true,
            format!("{count} agents gave up after {} attempts", self.attempts),
        )
    }
}

pub(crate) const NO_RECONNECT_AFTER: CheckSpec = CheckSpec {
    name: "no_reconnect_after",
    fields: &["agents", "after"],
    parse: |fields| {
        Ok(Box::new(NoReconnectAfter {
            agents: fields.agents()?,
            after: fields.required_time("after")?,
        }))
    },
};

#[derive(Debug)]
struct NoReconnectAfter {
    agents: Selector,
    after: Duration,
}

impl Check for NoReconnectAfter {
    fn title(&self) -> String {
        format!(
            "no_reconnect_after {} after {}",
            self.agents,
            show(self.after)
        )
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let after = ms(self.after);
        let agents = self.agents.members();
        let attempt = (evidence.entries.iter()).find(|entry| {
            entry.t_ms > after
                && agents.contains(entry.node.as_str())
                && matches!(
                    entry.system(),
                    Some(Event::Agent(AgentEvent::ConnectAttempt { .. }))
                )
        });
        match attempt {
            None => (true, format!("no attempt after {}", fmt_time(after))),
            Some(entry) => {
                let when = fmt_time(entry.t_ms);
                (false, format!("{} tried to connect at {when}", entry.node))
            }
        }
    }
}

pub(crate) const DISCONNECT_REASON: CheckSpec = CheckSpec {
    name: "disconnect_reason",
    fields: &["agents", "reason", "during"],
    parse: |fields| {
        let (text, at) = (fields.text("reason", r#"a reason like "heartbeat_timeout""#)?)
            .ok_or_else(|| fields.missing("reason"))?;
        let Some(reason) = REASONS.into_iter().find(|reason| reason.as_str() == text) else {
            let names: Vec<&str> = REASONS.iter().map(|reason| reason.as_str()).collect();
            let known = names.join(", ");
            return Err(fields.error(
                at,
                format!("unknown reason {text:?}; expected one of {known}"),
            ));
        };
        Ok(Box::new(DisconnectReasonIs {
            agents: fields.agents()?,
            reason,
            during: fields.during(false)?,
        }))
    },
};

#[derive(Debug)]
struct DisconnectReasonIs {
    agents: Selector,
    reason: DisconnectReason,
    during: (Duration, Duration),
}

impl Check for DisconnectReasonIs {
    fn title(&self) -> String {
        let (from, to) = (show(self.during.0), show(self.during.1));
        format!(
            "disconnect_reason {} {} during {from}..{to}",
            self.reason, self.agents
        )
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let (from, to) = (ms(self.during.0), ms(self.during.1));
        let missing: Vec<&str> = (self.agents.nodes().iter())
            .filter(|agent| {
                !evidence.entries.iter().any(|entry| {
                    let reason = match entry.system() {
                        Some(Event::Agent(AgentEvent::Disconnected { reason, .. }))
                        | Some(Event::Agent(AgentEvent::ConnectFailed { reason })) => Some(*reason),
                        _ => None,
                    };
                    entry.node == **agent
                        && (from..=to).contains(&entry.t_ms)
                        && reason == Some(self.reason)
                })
            })
            .map(String::as_str)
            .collect();
        let count = self.agents.nodes().len();
        match missing.first() {
            None => (
                true,
                format!("{count}/{count} lost a connection for {}", self.reason),
            ),
            Some(_) => (
                false,
                format!("not for {}: {}", self.reason, missing.join(", ")),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::judge::tests::compile_text;

    const HEAD: &str = "name = \"t\"\nduration = \"1m\"\n[topology]\nagents = 3\n[[expect]]\n";

    #[test]
    fn a_reason_must_be_one_an_agent_names() {
        let error = compile_text(&format!(
            "{HEAD}check = \"disconnect_reason\"\nreason = \"timeout\"\n"
        ))
        .unwrap_err();
        assert!(
            error.message.contains("heartbeat_timeout"),
            "{}",
            error.message
        );
        assert_eq!(error.line, 7);
        let error = compile_text(&format!("{HEAD}check = \"gave_up_after\"\n")).unwrap_err();
        assert!(
            error.message.contains("needs `attempts`"),
            "{}",
            error.message
        );
    }
}
