//! `[[commands]]` and `[[config]]`: what the scenario asks the leader to do, and
//! `[params.executor]`, how agents run it.
//!
//! A command goes to the agents its `to` selector names when it fires (`agents`,
//! `agent-1..agent-5`, `any(agents, 3)`, `@NAME`...), each as its own command. Both wait for a
//! leader if there is none at their moment, as an operator's client would.

use crate::scenario::duration::Dur;
use crate::scenario::faults::{captured_before, repetition};
use crate::scenario::selector::{NodeKind, Selector, Topology};
use crate::scenario::source::Source;
use crate::scenario::ConfigError;
use fleet_core::command::Command;
use fleet_core::fmt_duration;
use fleet_core::wire::{payload_len, ConfigId, ConfigPush, Message, MAX_FRAME_DEFAULT};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;
use toml::Spanned;

/// How long an agent may take over a command unless `timeout` says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One firing of a `[[commands]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandSpec {
    pub at: Duration,
    pub to: Selector,
    pub name: String,
    pub args: BTreeMap<String, String>,
    pub timeout: Duration,
}

/// One `[[config]]` entry: the leader raises the config to a new version with `values`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigSpec {
    pub at: Duration,
    pub values: BTreeMap<String, String>,
}

/// What the harness asks of the leader at one moment.
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    Command(CommandSpec),
    Config(ConfigSpec),
}

impl Operation {
    pub fn at(&self) -> Duration {
        match self {
            Operation::Command(command) => command.at,
            Operation::Config(config) => config.at,
        }
    }
}

/// As the report's header lists it: `echo to agents`, `config level=debug`.
impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs = |args: &BTreeMap<String, String>| {
            let words: Vec<String> = args.iter().map(|(k, v)| format!(" {k}={v}")).collect();
            words.concat()
        };
        match self {
            Operation::Command(command) => {
                write!(
                    f,
                    "{}{} to {}",
                    command.name,
                    pairs(&command.args),
                    command.to
                )
            }
            Operation::Config(config) => write!(f, "config{}", pairs(&config.values)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCommand {
    at: Spanned<Dur>,
    to: Spanned<String>,
    name: Spanned<String>,
    #[serde(default = "no_args")]
    args: Spanned<BTreeMap<String, toml::Value>>,
    timeout: Option<Spanned<Dur>>,
    every: Option<Spanned<Dur>>,
    until: Option<Spanned<Dur>>,
}

fn no_args() -> Spanned<BTreeMap<String, toml::Value>> {
    Spanned::new(0..0, BTreeMap::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    at: Spanned<Dur>,
    values: Spanned<BTreeMap<String, toml::Value>>,
}

fn check_at(
    at: &Spanned<Dur>,
    what: &str,
    duration: Duration,
    source: &Source,
) -> Result<Duration, ConfigError> {
    let value = at.get_ref().0;
    if value > duration {
        return Err(source.error(
            at.span(),
            format!(
                "{what} at {} is after the end of the run ({})",
                fmt_duration(value),
                fmt_duration(duration)
            ),
        ));
    }
    Ok(value)
}

/// Values are written as TOML strings, numbers or booleans and sent as text.
fn texts(
    table: &Spanned<BTreeMap<String, toml::Value>>,
    source: &Source,
) -> Result<BTreeMap<String, String>, ConfigError> {
    table
        .get_ref()
        .iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(text) => text.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(source.error(
                        table.span(),
                        format!(
                            "`{key}` is a {}; values are strings, numbers or booleans",
                            other.type_str()
                        ),
                    ))
                }
            };
            Ok((key.clone(), text))
        })
        .collect()
}

/// Checks one `[[commands]]` entry; a repeated one gives one command per firing.
pub(crate) fn check_command(
    raw: Spanned<RawCommand>,
    topology: &Topology,
    duration: Duration,
    captured: &BTreeSet<String>,
    source: &Source,
) -> Result<Vec<Operation>, ConfigError> {
    let raw = raw.into_inner();
    let at = check_at(&raw.at, "a command", duration, source)?;
    let to = topology
        .select(raw.to.get_ref())
        .map_err(|message| source.error(raw.to.span(), message))?;
    let to = captured_before(to, captured, &raw.to, source)?;
    to.only_of(NodeKind::Agent, "commands go to agents")
        .map_err(|message| source.error(raw.to.span(), message))?;
    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty() {
        return Err(source.error(raw.name.span(), "a command needs a name, like \"echo\""));
    }
    let args = texts(&raw.args, source)?;
    let timeout = raw
        .timeout
        .as_ref()
        .map_or(DEFAULT_TIMEOUT, |t| t.get_ref().0);
    if timeout.is_zero() {
        let span = raw.timeout.as_ref().map(Spanned::span).unwrap_or_default();
        return Err(source.error(span, "`timeout` must be greater than 0"));
    }
    let sample = Command {
        request_id: format!(
            "{}-{}",
            Topology::node_name(NodeKind::Master, topology.masters),
            u64::MAX
        ),
        name: name.clone(),
        args: args.clone(),
        timeout_ms: timeout.as_millis() as u64,
    };
    let len = payload_len(&Message::Command(Box::new(sample)));
    if len > MAX_FRAME_DEFAULT {
        return Err(source.error(
            raw.args.span(),
            format!("this command takes {len} bytes, over the frame limit of {MAX_FRAME_DEFAULT}"),
        ));
    }
    let moments = repetition(at, raw.every.as_ref(), raw.until.as_ref(), duration, source)?;
    Ok(moments
        .into_iter()
        .map(|at| {
            Operation::Command(CommandSpec {
                at,
                to: to.clone(),
                name: name.clone(),
                args: args.clone(),
                timeout,
            })
        })
        .collect())
}

pub(crate) fn check_config(
    raw: Spanned<RawConfig>,
    duration: Duration,
    source: &Source,
) -> Result<Operation, ConfigError> {
    let raw = raw.into_inner();
    let at = check_at(&raw.at, "a config", duration, source)?;
    let values = texts(&raw.values, source)?;
    let push = ConfigPush {
        id: ConfigId {
            term: u64::MAX,
            version: u64::MAX,
        },
        values: values.clone(),
    };
    let len = payload_len(&Message::ConfigPush(Box::new(push)));
    if len > MAX_FRAME_DEFAULT {
        return Err(source.error(
            raw.values.span(),
            format!("this config takes {len} bytes, over the frame limit of {MAX_FRAME_DEFAULT}"),
        ));
    }
    Ok(Operation::Config(ConfigSpec { at, values }))
}

#[cfg(test)]
mod tests {
    use crate::scenario::Scenario;

    const HEAD: &str = "name = \"t\"\nduration = \"1m\"\n[topology]\nagents = 3\n";

    fn error(rest: &str) -> (usize, String) {
        let error = Scenario::parse("t.toml", &format!("{HEAD}{rest}")).unwrap_err();
        (error.line, error.message)
    }

    #[test]
    fn commands_and_config_parse_in_firing_order() {
        let text = format!(
            "{HEAD}[[commands]]\nat = \"10s\"\nto = \"any(agents, 2)\"\nname = \"sleep\"\n\
             args = {{ ms = 500, loud = true }}\nevery = \"20s\"\n\
             [[config]]\nat = \"15s\"\nvalues = {{ level = \"debug\", rate = 0.5 }}\n\
             [params.executor]\nmax_concurrent = 2\n"
        );
        let scenario = Scenario::parse("t.toml", &text).unwrap();
        let shown: Vec<String> = (scenario.operations.iter())
            .map(|operation| format!("{:?} {operation}", operation.at()))
            .collect();
        assert_eq!(
            shown,
            [
                "10s sleep loud=true ms=500 to any(agents, 2)",
                "15s config level=debug rate=0.5",
                "30s sleep loud=true ms=500 to any(agents, 2)",
                "50s sleep loud=true ms=500 to any(agents, 2)",
            ]
        );
        assert_eq!(scenario.executor.max_concurrent, 2);
        assert_eq!(scenario.executor.queue_limit, 64, "the default");
    }

    #[test]
    fn bad_commands_are_refused_where_they_are_written() {
        let command = |fields: &str| format!("[[commands]]\nat = \"1s\"\n{fields}");
        for (rest, line, says) in [
            (command("to = \"master-1\"\nname = \"echo\"\n"), 7, "commands go to agents"),
            (command("to = \"leader\"\nname = \"echo\"\n"), 7, "not masters"),
            (command("to = \"agents\"\nname = \" \"\n"), 8, "needs a name"),
            (command("to = \"agents\"\nname = \"echo\"\ntimeout = \"0s\"\n"), 9, "greater than 0"),
            (command("to = \"agents\"\nname = \"echo\"\nargs = { a = [1] }\n"), 9, "strings, numbers or booleans"),
            (command("to = \"agent-9\"\nname = \"echo\"\n"), 7, "agent-9"),
            (command("to = \"agents\"\nname = \"echo\"\nretries = 3\n"), 9, "unknown field"),
            (
                format!("[[commands]]\nat = \"1s\"\nto = \"agents\"\nname = \"echo\"\nargs = {{ blob = \"{}\" }}\n", "x".repeat(70_000)),
                9,
                "over the frame limit",
            ),
            ("[[config]]\nat = \"2m\"\nvalues = {}\n".to_string(), 6, "after the end of the run"),
            ("[params.executor]\nmax_concurrent = 0\n".to_string(), 6, "at least 1"),
            ("[params.executor]\nqueue_limit = 0\n".to_string(), 6, "at least 1"),
            ("[params.executor]\nqueue_limit = 10\nremember = 5\n".to_string(), 7, "at least max_concurrent + queue_limit (14)"),
        ] {
            let (at, message) = error(&rest);
            assert!(message.contains(says), "{rest:.80}: {message}");
            assert_eq!(at, line, "{rest:.80}: {message}");
        }
    }
}
