//! Checks on commands, config and status, and the rules every run that sends them is held to.
//!
//! - `commands_completed {within, allow_lost}`: every command a master accepted is finished
//!   by its agent (once per agent process: an agent keeps no disk, so one that crashes may run
//!   a command again) and its result reaches a master within `within` of its last sending (a
//!   master sends a command again each time its agent registers, so this is "of its sending or
//!   of the agent's return"). A command reported lost fails it, unless `allow_lost = true`
//!   (random faults can lose one; none may vanish unreported). `value`: `{sent, completed,
//!   duplicates_suppressed, lost}`, where `sent` counts every command a master accepted.
//! - `config_converged {version, within, agents}`: each agent applies `version` (the last one
//!   pushed by default) or newer within `within` of its push, or of the agent's return if it
//!   was offline then.
//! - `status_is {agents, at, status}`: each agent last reported `status` at `at`.
//!
//! Rules: `no_command_runs_twice` (no agent process finishes a request twice),
//! `no_result_without_command` (nothing is started, finished or answered that no master sent,
//! and only by the agent it was sent to), `config_versions_monotonic` (each agent process
//! applies ever newer versions).

use crate::history::commands::CommandHistory;
use crate::history::fmt_time;
use crate::judge::{ms, Check, CheckSpec, Evidence};
use crate::scenario::duration::parse_duration;
use crate::scenario::selector::Selector;
use fleet_core::fmt_duration as show;
use fleet_core::wire::ConfigId;
use std::collections::BTreeMap;
use std::time::Duration;

fn within(fields: &crate::judge::fields::Fields) -> Result<Duration, crate::scenario::ConfigError> {
    let (text, at) = (fields.text("within", r#"a duration like "10s""#)?)
        .ok_or_else(|| fields.missing("within"))?;
    parse_duration(text).map_err(|why| fields.error(at, why))
}

pub(crate) const COMMANDS_COMPLETED: CheckSpec = CheckSpec {
    name: "commands_completed",
    fields: &["within", "allow_lost"],
    parse: |fields| {
        Ok(Box::new(CommandsCompleted {
            within: within(fields)?,
            allow_lost: fields.flag("allow_lost")?,
        }))
    },
};

#[derive(Debug)]
struct CommandsCompleted {
    within: Duration,
    allow_lost: bool,
}

/// What `commands_completed` counted.
struct Tally {
    sent: usize,
    completed: usize,
    lost: usize,
    problems: Vec<String>,
    /// The longest wait from the last sending to the result.
    slowest: Option<(u64, String)>,
    /// Without a result when the run ended, but sent (or accepted) less than `within` before:
    /// still in their window, neither completed nor late.
    open: usize,
}

fn tally(history: &CommandHistory, within_ms: u64, allow_lost: bool, end_ms: u64) -> Tally {
    let mut tally = Tally {
        sent: 0,
        completed: 0,
        lost: 0,
        problems: Vec::new(),
        slowest: None,
        open: 0,
    };
    for (id, story) in &history.commands {
        tally.sent += 1;
        let agent = &story.agent;
        if let Some((t, taker, _)) = &story.result {
            tally.completed += 1;
            // Timed from its last sending before the result, or from the last time the agent
            // or the master that took the result woke from a pause, if later: a paused node
            // holds the command up as a down one would.
            let sending = story.sent.iter().copied().filter(|s| s <= t).max();
            let woke = history.last_resumed(&[agent, taker], *t);
            let sent = sending.max(woke.filter(|_| sending.is_some()));
            let waited = t - sent.unwrap_or(*t);
            if tally.slowest.as_ref().is_none_or(|(w, _)| waited > *w) {
                tally.slowest = Some((waited, id.clone()));
            }
            if waited > within_ms {
                let sent = fmt_time(sent.unwrap_or(*t));
                let problem = format!(
                    "{id}: result {waited}ms after it was sent (or its node woke) at {sent}"
                );
                tally.problems.push(problem);
            }
            if let Some((t, master, reason)) = &story.lost {
                let when = fmt_time(*t);
                let problem =
                    format!("{id} completed, yet {master} reported it lost at {when}: {reason}");
                tally.problems.push(problem);
            }
            let finishes = story.finished.len();
            let mut processes: Vec<u32> = story.finished.iter().map(|f| f.2).collect();
            processes.dedup();
            if finishes == 0 || processes.len() != finishes {
                let problem = format!("{id}: finished {finishes} times by {agent}");
                tally.problems.push(problem);
            }
        } else if let Some((t, master, reason)) = &story.lost {
            tally.lost += 1;
            if !allow_lost {
                let when = fmt_time(*t);
                let problem = format!("{id} lost at {when} by {master}: {reason}");
                tally.problems.push(problem);
            }
        } else if (story.sent.last().copied())
            .or(story.queued)
            .is_some_and(|last| last + within_ms > end_ms)
        {
            tally.open += 1;
        } else if story.sent.is_empty() {
            let problem = format!("{id} to {agent}: accepted, never sent, never reported lost");
            tally.problems.push(problem);
        } else {
            let (copies, finishes) = (story.sent.len(), story.finished.len());
            tally.problems.push(format!(
                "{id} to {agent}: no result and never reported lost (sent {copies} times, finished {finishes})"
            ));
        }
    }
    tally
}

impl Check for CommandsCompleted {
    fn title(&self) -> String {
        let lost = if self.allow_lost {
            ", lost allowed"
        } else {
            ""
        };
        format!("commands_completed within {}{lost}", show(self.within))
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let end = ms(evidence.scenario.duration);
        let tally = tally(&evidence.commands, ms(self.within), self.allow_lost, end);
        if tally.sent == 0 {
            return (false, "no command was sent".into());
        }
        let slowest = match &tally.slowest {
            Some((waited, id)) => format!("; slowest {waited}ms ({id})"),
            None => String::new(),
        };
        let open = match tally.open {
            0 => String::new(),
            n => format!(
                ", {n} still within {} of their sending at the end",
                show(self.within)
            ),
        };
        let summary = format!(
            "{}/{} completed{open}, {} duplicates suppressed, {} lost{slowest}",
            tally.completed, tally.sent, evidence.commands.duplicates, tally.lost
        );
        match tally.problems.first() {
            None => (true, summary),
            Some(first) => (
                false,
                format!(
                    "{summary}; {} problems, first: {first}",
                    tally.problems.len()
                ),
            ),
        }
    }

    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        let end = ms(evidence.scenario.duration);
        let tally = tally(&evidence.commands, ms(self.within), self.allow_lost, end);
        Some(serde_json::json!({
            "sent": tally.sent,
            "completed": tally.completed,
            "duplicates_suppressed": evidence.commands.duplicates,
            "lost": tally.lost,
        }))
    }
}

pub(crate) const CONFIG_CONVERGED: CheckSpec = CheckSpec {
    name: "config_converged",
    fields: &["version", "within", "agents"],
    parse: |fields| {
        Ok(Box::new(ConfigConverged {
            version: fields.count("version")?.map(|(version, _)| version),
            within: within(fields)?,
            agents: fields.agents()?,
        }))
    },
};

#[derive(Debug)]
struct ConfigConverged {
    /// `None`: the last version pushed.
    version: Option<u64>,
    within: Duration,
    agents: Selector,
}

impl Check for ConfigConverged {
    fn title(&self) -> String {
        let version = self
            .version
            .map_or("the last config".into(), |v| format!("config version {v}"));
        format!(
            "config_converged {} on {} within {}",
            version,
            self.agents,
            show(self.within)
        )
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let history = &evidence.commands;
        // The first push of `version` or later, or the newest config pushed.
        let target = match self.version {
            Some(version) => (history.pushes.iter().copied()).find(|(_, id)| id.version >= version),
            None => history.last_push(),
        };
        let Some((pushed, id)) = target else {
            let version = self
                .version
                .map_or(String::new(), |v| format!(" version {v}"));
            return (false, format!("no config{version} was pushed"));
        };
        let version = id.version;
        let mut slowest = 0;
        for agent in self.agents.nodes() {
            // Its last process is the one that must run the config: from the later of the
            // push and that process's start, and from when it is back if it was offline then.
            let (process, began) = history.last_process(agent);
            let from = pushed.max(began);
            let Some(start) = evidence.online.next_online(agent, from) else {
                let since = fmt_time(from);
                return (false, format!("{agent} was never online after {since}"));
            };
            let mine = (history.applied.get(agent).into_iter().flatten())
                .filter(|(_, applied_by, applied)| *applied_by == process && *applied >= id);
            let took = match mine.map(|(t, _, _)| *t).min() {
                Some(t) => t.saturating_sub(start),
                None => {
                    let when = fmt_time(pushed);
                    return (
                        false,
                        format!("{agent} never applied version {version} (pushed at {when})"),
                    );
                }
            };
            if took > ms(self.within) {
                let since = fmt_time(start);
                return (
                    false,
                    format!("{agent} applied version {version} {took}ms after {since}"),
                );
            }
            slowest = slowest.max(took);
        }
        let count = self.agents.nodes().len();
        (true, format!("{count} agents on version {version}; slowest {slowest}ms after the push or its return"))
    }
}

pub(crate) const STATUS_IS: CheckSpec = CheckSpec {
    name: "status_is",
    fields: &["agents", "at", "status"],
    parse: |fields| {
        let (status, at) = (fields.text("status", r#""online", "degraded" or "busy""#)?)
            .ok_or_else(|| fields.missing("status"))?;
        if !["online", "degraded", "busy"].contains(&status) {
            return Err(fields.error(
                at,
                format!("unknown status {status:?}; expected online, degraded or busy"),
            ));
        }
        Ok(Box::new(StatusIs {
            agents: fields.agents()?,
            at: fields.required_time("at")?,
            status: status.to_string(),
        }))
    },
};

#[derive(Debug)]
struct StatusIs {
    agents: Selector,
    at: Duration,
    status: String,
}

impl Check for StatusIs {
    fn title(&self) -> String {
        format!(
            "status_is {} {} at {}",
            self.status,
            self.agents,
            show(self.at)
        )
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let at = ms(self.at);
        let others: Vec<String> = (self.agents.nodes().iter())
            .filter_map(|agent| {
                let status = evidence.commands.status_at(agent, at);
                (status != self.status).then(|| format!("{agent} {status}"))
            })
            .collect();
        let count = self.agents.nodes().len();
        match others.first() {
            None => (true, format!("{count}/{count} {}", self.status)),
            Some(_) => (
                false,
                format!(
                    "{}/{count} {}; {}",
                    count - others.len(),
                    self.status,
                    others.join(", ")
                ),
            ),
        }
    }
}

/// No agent process finishes one request twice.
pub(crate) fn no_command_runs_twice(history: &CommandHistory) -> Result<String, String> {
    let mut runs = 0;
    for (id, story) in &history.commands {
        let mut seen: BTreeMap<(&str, u32), u64> = BTreeMap::new();
        for (t, agent, incarnation, _) in &story.finished {
            runs += 1;
            if let Some(first) = seen.insert((agent, *incarnation), *t) {
                return Err(format!(
                    "{agent} finished {id} at {} and again at {}",
                    fmt_time(first),
                    fmt_time(*t)
                ));
            }
        }
    }
    Ok(format!("{runs} runs, none twice"))
}

/// Nothing starts, finishes or is answered that no master sent, and only its agent runs it.
pub(crate) fn no_result_without_command(history: &CommandHistory) -> Result<String, String> {
    if let Some((t, node, id)) = history.strangers.first() {
        return Err(format!(
            "{node} reported {id} at {}, which no master sent",
            fmt_time(*t)
        ));
    }
    for (id, story) in &history.commands {
        let runs = story.started.iter().map(|(t, agent, _)| (t, agent));
        let finishes = story.finished.iter().map(|(t, agent, _, _)| (t, agent));
        if let Some((t, agent)) = runs
            .chain(finishes)
            .find(|(_, agent)| **agent != story.agent)
        {
            return Err(format!(
                "{agent} ran {id} at {}, which was sent to {}",
                fmt_time(*t),
                story.agent
            ));
        }
        if let (Some((t, _, _)), Some(&first)) = (&story.result, story.sent.first()) {
            if *t < first {
                return Err(format!(
                    "{id} answered at {} before it was sent at {}",
                    fmt_time(*t),
                    fmt_time(first)
                ));
            }
        }
    }
    Ok(format!(
        "{} commands, each answered only after it was sent",
        history.commands.len()
    ))
}

/// `version 3 (term 2)`.
fn show_id(id: ConfigId) -> String {
    format!("version {} (term {})", id.version, id.term)
}

/// Each agent process applies ever newer configs: by term, then version.
pub(crate) fn config_versions_monotonic(history: &CommandHistory) -> Result<String, String> {
    for (agent, applied) in &history.applied {
        for pair in applied.windows(2) {
            let ((_, inc_a, a), (t, inc_b, b)) = (pair[0], pair[1]);
            if inc_a == inc_b && b <= a {
                let (a, b) = (show_id(a), show_id(b));
                return Err(format!("{agent} applied {b} at {} after {a}", fmt_time(t)));
            }
        }
    }
    let count: usize = history.applied.values().map(Vec::len).sum();
    Ok(format!("{count} config versions applied, each newer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::fired;
    use crate::history::tests::{entry, fault};
    use crate::history::Entry;
    use fleet_core::timeline::CommandEvent as C;

    fn s(text: &str) -> String {
        text.to_string()
    }

    fn sent(t: u64, id: &str, agent: &str) -> Entry {
        let name = s("echo");
        let (request_id, agent) = (s(id), s(agent));
        entry(
            t,
            "master-1",
            C::CommandSent {
                request_id,
                agent,
                name,
            },
        )
    }

    fn finished(t: u64, agent: &str, id: &str) -> Entry {
        let (request_id, outcome) = (s(id), s("ok"));
        entry(
            t,
            agent,
            C::CommandFinished {
                request_id,
                outcome,
            },
        )
    }

    fn result(t: u64, id: &str, agent: &str) -> Entry {
        let (request_id, agent, outcome) = (s(id), s(agent), s("ok"));
        entry(
            t,
            "master-1",
            C::CommandResult {
                request_id,
                agent,
                outcome,
            },
        )
    }

    fn history(entries: &[Entry]) -> CommandHistory {
        CommandHistory::from_entries(entries)
    }

    #[test]
    fn a_command_finished_once_and_answered_in_time_completes() {
        let entries = [
            sent(0, "m-1", "agent-1"),
            finished(5, "agent-1", "m-1"),
            result(9, "m-1", "agent-1"),
        ];
        let counted = tally(&history(&entries), 10, false, 1_000);
        assert_eq!((counted.sent, counted.completed, counted.lost), (1, 1, 0));
        assert!(counted.problems.is_empty(), "{:?}", counted.problems);
        assert_eq!(
            tally(&history(&entries), 8, false, 1_000).problems.len(),
            1,
            "9ms is over 8ms"
        );
    }

    #[test]
    fn the_clock_restarts_when_a_master_sends_the_command_again() {
        let entries = [
            sent(0, "m-1", "agent-1"),
            sent(1000, "m-1", "agent-1"),
            finished(1005, "agent-1", "m-1"),
            result(1009, "m-1", "agent-1"),
        ];
        assert!(tally(&history(&entries), 10, false, 1_000)
            .problems
            .is_empty());
    }

    #[test]
    fn no_result_lost_and_finished_twice_are_each_a_problem() {
        let lost = entry(
            50,
            "master-1",
            C::CommandLost {
                request_id: s("m-2"),
                reason: s("why"),
            },
        );
        let entries = [
            sent(0, "m-1", "agent-1"),
            sent(0, "m-2", "agent-1"),
            sent(0, "m-3", "agent-2"),
            finished(5, "agent-2", "m-3"),
            finished(6, "agent-2", "m-3"),
            result(9, "m-3", "agent-2"),
            lost,
        ];
        let history = history(&entries);
        let counted = tally(&history, 100, false, 1_000);
        assert_eq!((counted.sent, counted.completed, counted.lost), (3, 1, 1));
        let problems = counted.problems.join("\n");
        assert!(problems.contains("m-1 to agent-1: no result"), "{problems}");
        assert!(
            problems.contains("m-2 lost at 0:00:00.050 by master-1: why"),
            "{problems}"
        );
        assert!(problems.contains("m-3: finished 2 times"), "{problems}");
        let allowed = tally(&history, 100, true, 1_000).problems.join("\n");
        // A run that ends within `within` of m-1's sending cannot say it is late.
        let early = tally(&history, 100, false, 50);
        assert_eq!(early.open, 1);
        assert!(!early.problems.join("\n").contains("m-1"));
        assert!(
            !allowed.contains("m-2") && allowed.contains("m-1"),
            "{allowed}"
        );
        let twice = no_command_runs_twice(&history).unwrap_err();
        assert!(twice.contains("agent-2 finished m-3"), "{twice}");
    }

    #[test]
    fn a_restarted_agent_may_finish_a_command_again_but_one_process_never_does() {
        let crash = fired(r#"crash = "agent-1""#, &[]);
        let entries = [
            sent(0, "m-1", "agent-1"),
            finished(5, "agent-1", "m-1"),
            fault(6, crash),
            sent(2000, "m-1", "agent-1"),
            finished(2005, "agent-1", "m-1"),
        ];
        assert!(no_command_runs_twice(&history(&entries)).is_ok());
    }

    #[test]
    fn results_and_runs_need_a_command_sent_to_that_agent() {
        let stranger = [finished(5, "agent-1", "m-9")];
        let error = no_result_without_command(&history(&stranger)).unwrap_err();
        assert!(error.contains("agent-1 reported m-9"), "{error}");
        let wrong_agent = [sent(0, "m-1", "agent-1"), finished(5, "agent-2", "m-1")];
        let error = no_result_without_command(&history(&wrong_agent)).unwrap_err();
        assert!(error.contains("agent-2 ran m-1"), "{error}");
    }

    #[test]
    fn an_agent_never_applies_an_older_config_in_one_process() {
        let applied = |t, term, version| entry(t, "agent-1", C::ConfigApplied { version, term });
        let back = [applied(1, 1, 2), applied(2, 1, 1)];
        let error = config_versions_monotonic(&history(&back)).unwrap_err();
        assert!(
            error.contains("version 1 (term 1) at 0:00:00.002 after version 2 (term 1)"),
            "{error}"
        );
        let newer_term = [applied(1, 1, 3), applied(2, 2, 2)];
        assert!(config_versions_monotonic(&history(&newer_term)).is_ok());
        let restart = fired(r#"restart = "agent-1""#, &[]);
        let again = [applied(1, 1, 2), fault(2, restart), applied(3, 1, 2)];
        assert!(config_versions_monotonic(&history(&again)).is_ok());
    }

    #[test]
    fn an_agents_status_is_its_last_report_down_while_crashed_and_online_when_restarted() {
        let busy = entry(10, "agent-1", C::StatusChanged { status: s("busy") });
        let crash = fired(r#"crash = "agent-1""#, &[]);
        let restart = fired(r#"restart = "agent-1""#, &[]);
        let history = history(&[busy, fault(20, crash), fault(30, restart)]);
        let status = |t| history.status_at("agent-1", t).to_string();
        assert_eq!(
            [status(5), status(15), status(25), status(35)],
            ["online", "busy", "down", "online"]
        );
    }
}
