//! Reads an `[[expect]]` entry's fields with their types, and refuses values a run could never
//! judge (a time past the end of the run, a node that does not exist), pointing at the value.

use crate::scenario::duration::{parse_duration, parse_range};
use crate::scenario::expect::ExpectSpec;
use crate::scenario::selector::Selector;
use crate::scenario::source::{error_at, Located, Position};
use crate::scenario::{Scenario, ScenarioError};
use fleet_core::fmt_duration;
use std::time::Duration;

pub struct Fields<'a> {
    scenario: &'a Scenario,
    spec: &'a ExpectSpec,
}

impl<'a> Fields<'a> {
    pub fn new(scenario: &'a Scenario, spec: &'a ExpectSpec) -> Fields<'a> {
        Fields { scenario, spec }
    }

    pub fn error(&self, at: Position, message: impl Into<String>) -> ScenarioError {
        error_at(&self.scenario.path, at, message)
    }

    fn get(&self, name: &str) -> Option<&'a Located<toml::Value>> {
        self.spec.fields.get(name)
    }

    /// The error for a field the check needs and did not get.
    pub fn missing(&self, name: &str) -> ScenarioError {
        self.error(
            self.spec.at,
            format!("check {:?} needs `{name}`", self.spec.check.value),
        )
    }

    pub fn scenario(&self) -> &'a Scenario {
        self.scenario
    }

    /// A string field, and where it was written.
    pub fn text(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<(&'a str, Position)>, ScenarioError> {
        match self.get(name) {
            None => Ok(None),
            Some(Located {
                value: toml::Value::String(text),
                at,
            }) => Ok(Some((text.as_str(), *at))),
            Some(other) => Err(self.error(other.at, format!("`{name}` is {what}"))),
        }
    }

    fn within_run(&self, name: &str, at: Position, end: Duration) -> Result<(), ScenarioError> {
        if end > self.scenario.duration {
            return Err(self.error(
                at,
                format!(
                    "`{name}` reaches {}, past the end of the run ({})",
                    fmt_duration(end),
                    fmt_duration(self.scenario.duration)
                ),
            ));
        }
        Ok(())
    }

    /// A moment of the run: at most its duration.
    pub fn time(&self, name: &str) -> Result<Option<Duration>, ScenarioError> {
        let Some((text, at)) = self.text(name, r#"a duration like "10s""#)? else {
            return Ok(None);
        };
        let time = parse_duration(text).map_err(|why| self.error(at, why))?;
        self.within_run(name, at, time)?;
        Ok(Some(time))
    }

    pub fn required_time(&self, name: &str) -> Result<Duration, ScenarioError> {
        self.time(name)?.ok_or_else(|| self.missing(name))
    }

    /// `after` (default 0) and `within`, which must end within the run.
    pub fn window(&self) -> Result<(Duration, Duration), ScenarioError> {
        let after = self.time("after")?.unwrap_or(Duration::ZERO);
        let Some((text, at)) = self.text("within", r#"a duration like "5s""#)? else {
            return Err(self.missing("within"));
        };
        let within = parse_duration(text).map_err(|why| self.error(at, why))?;
        let end = after.checked_add(within).unwrap_or(Duration::MAX);
        self.within_run("within", at, end)?;
        Ok((after, within))
    }

    /// A `low..high` span of the run; the whole run when absent and not required.
    pub fn during(&self, required: bool) -> Result<(Duration, Duration), ScenarioError> {
        let Some((text, at)) = self.text("during", r#"a range like "10s..20s""#)? else {
            if required {
                return Err(self.missing("during"));
            }
            return Ok((Duration::ZERO, self.scenario.duration));
        };
        let (low, high) = parse_range(text).map_err(|why| self.error(at, why))?;
        self.within_run("during", at, high)?;
        Ok((low, high))
    }

    /// A whole number of at least 0, and where it was written.
    pub fn count(&self, name: &str) -> Result<Option<(u64, Position)>, ScenarioError> {
        match self.get(name) {
            None => Ok(None),
            Some(Located {
                value: toml::Value::Integer(n),
                at,
            }) if *n >= 0 => Ok(Some((*n as u64, *at))),
            Some(other) => Err(self.error(
                other.at,
                format!("`{name}` is a whole number of at least 0"),
            )),
        }
    }

    /// The agents a check is about: `agents` by default. Named before the run, so no `leader`.
    pub fn agents(&self) -> Result<Selector, ScenarioError> {
        let topology = &self.scenario.topology;
        match self.text("agents", r#"a selector like "agents" or "agent-1..3""#)? {
            None => Ok(topology.select("agents").expect("`agents` always selects")),
            Some((text, at)) => topology
                .select_fixed(text)
                .map_err(|message| self.error(at, message)),
        }
    }

    /// One master, by name.
    pub fn master(&self, name: &str) -> Result<String, ScenarioError> {
        let (text, at) = self
            .text(name, r#"a master's name, like "master-2""#)?
            .ok_or_else(|| self.missing(name))?;
        let topology = &self.scenario.topology;
        let selector = topology
            .select_fixed(text)
            .map_err(|message| self.error(at, message))?;
        match selector.nodes() {
            [node] if topology.masters().contains(node) => Ok(node.clone()),
            _ => Err(self.error(at, format!("`{name}` names one master"))),
        }
    }
}
