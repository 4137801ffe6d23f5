//! Reads an `[[expect]]` entry's fields with their types, and refuses values a run could never
//! judge (a time past the end of the run, a node that does not exist), pointing at the value.

use crate::scenario::duration::{parse_duration, parse_range};
use crate::scenario::expect::ExpectSpec;
use crate::scenario::selector::Selector;
use crate::scenario::source::{error_at, Located, Position};
use crate::scenario::{ConfigError, Scenario};
use fleet_core::fmt_duration;
use std::time::Duration;

pub(crate) struct Fields<'a> {
    scenario: &'a Scenario,
    spec: &'a ExpectSpec,
    /// Added to every moment read (`at`, `after`, `during`): the repetition this copy is.
    offset: Duration,
}

impl<'a> Fields<'a> {
    pub fn new(scenario: &'a Scenario, spec: &'a ExpectSpec, offset: Duration) -> Fields<'a> {
        Fields {
            scenario,
            spec,
            offset,
        }
    }

    /// The first moment the check reads: its `at`, `after` or the start of `during`; 0 when
    /// it has none.
    pub(crate) fn first_moment(&self) -> Result<Duration, ConfigError> {
        if let Some(at) = self.time("at")? {
            return Ok(at);
        }
        if let Some(after) = self.time("after")? {
            return Ok(after);
        }
        match self.get("during") {
            Some(_) => Ok(self.during(false)?.0),
            None => Ok(self.offset),
        }
    }

    /// The moments a repeated check starts at, as offsets: 0, `every`, ... while the check
    /// starts before `until` (the end of the run by default).
    pub(crate) fn repetitions(&self) -> Result<Vec<Duration>, ConfigError> {
        let duration_of = |located: &Located<toml::Value>, name: &str| match &located.value {
            toml::Value::String(text) => {
                parse_duration(text).map_err(|why| self.error(located.at, why))
            }
            _ => Err(self.error(located.at, format!("`{name}` is a duration like \"10s\""))),
        };
        let Some(every) = &self.spec.every else {
            if let Some(until) = &self.spec.until {
                return Err(self.error(until.at, "`until` only goes with `every`"));
            }
            return Ok(vec![Duration::ZERO]);
        };
        let step = duration_of(every, "every")?;
        if step.is_zero() {
            return Err(self.error(every.at, "`every` must be greater than 0"));
        }
        let until = match &self.spec.until {
            Some(until) => {
                let end = duration_of(until, "until")?;
                self.within_run("until", until.at, end)?;
                end
            }
            None => self.scenario.duration,
        };
        let first = self.first_moment()?;
        let mut offsets = Vec::new();
        let mut offset = Duration::ZERO;
        while first + offset < until {
            offsets.push(offset);
            offset += step;
        }
        Ok(offsets)
    }

    pub fn error(&self, at: Position, message: impl Into<String>) -> ConfigError {
        error_at(&self.scenario.path, at, message)
    }

    fn get(&self, name: &str) -> Option<&'a Located<toml::Value>> {
        self.spec.fields.get(name)
    }

    /// The error for a field the check needs and did not get.
    pub fn missing(&self, name: &str) -> ConfigError {
        self.error(
            self.spec.at,
            format!("check {:?} needs `{name}`", self.spec.check.value),
        )
    }

    pub fn scenario(&self) -> &'a Scenario {
        self.scenario
    }

    /// A string field, and where it was written.
    pub fn text(&self, name: &str, what: &str) -> Result<Option<(&'a str, Position)>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(Located {
                value: toml::Value::String(text),
                at,
            }) => Ok(Some((text.as_str(), *at))),
            Some(other) => Err(self.error(other.at, format!("`{name}` is {what}"))),
        }
    }

    fn within_run(&self, name: &str, at: Position, end: Duration) -> Result<(), ConfigError> {
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
    pub fn time(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        let Some((text, at)) = self.text(name, r#"a duration like "10s""#)? else {
            return Ok(None);
        };
        let time = parse_duration(text).map_err(|why| self.error(at, why))? + self.offset;
        self.within_run(name, at, time)?;
        Ok(Some(time))
    }

    pub(crate) fn required_time(&self, name: &str) -> Result<Duration, ConfigError> {
        self.time(name)?.ok_or_else(|| self.missing(name))
    }

    /// `after` (default 0) and `within`, which must end within the run.
    pub(crate) fn window(&self) -> Result<(Duration, Duration), ConfigError> {
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
    pub fn during(&self, required: bool) -> Result<(Duration, Duration), ConfigError> {
        let Some((text, at)) = self.text("during", r#"a range like "10s..20s""#)? else {
            if required {
                return Err(self.missing("during"));
            }
            return Ok((Duration::ZERO, self.scenario.duration));
        };
        let (low, high) = parse_range(text).map_err(|why| self.error(at, why))?;
        let (low, high) = (low + self.offset, high + self.offset);
        self.within_run("during", at, high)?;
        Ok((low, high))
    }

    /// A whole number of at least 0, and where it was written.
    /// A yes-or-no field; `false` when absent.
    pub fn flag(&self, name: &str) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(false),
            Some(Located {
                value: toml::Value::Boolean(flag),
                ..
            }) => Ok(*flag),
            Some(other) => Err(self.error(other.at, format!("`{name}` is true or false"))),
        }
    }

    pub fn count(&self, name: &str) -> Result<Option<(u64, Position)>, ConfigError> {
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
    pub fn agents(&self) -> Result<Selector, ConfigError> {
        let topology = &self.scenario.topology;
        match self.text("agents", r#"a selector like "agents" or "agent-1..3""#)? {
            None => Ok(topology.select("agents").expect("`agents` always selects")),
            Some((text, at)) => topology
                .select_fixed(text)
                .map_err(|message| self.error(at, message)),
        }
    }

    /// `among`: the masters a cluster check is about (all of them by default), resolved at
    /// the moment the check looks. Captures must exist; `any` is refused, since a check draws
    /// nothing.
    pub fn among(&self) -> Result<Selector, ConfigError> {
        let topology = &self.scenario.topology;
        let Some((text, at)) = self.text("among", r#"a selector like "masters - @old""#)? else {
            return Ok(topology
                .select("masters")
                .expect("`masters` always selects"));
        };
        let selector = topology
            .select(text)
            .map_err(|message| self.error(at, message))?;
        if selector.draws() {
            return Err(self.error(
                at,
                "a check draws nothing: capture the draw on its fault (`as = \"name\"`) and use @name",
            ));
        }
        if let Some(name) =
            (selector.captures().into_iter()).find(|name| !self.scenario.captures.contains(name))
        {
            return Err(self.error(
                at,
                format!("no fault captures @{name}; add `as = \"{name}\"` to the fault whose nodes it means"),
            ));
        }
        Ok(selector)
    }

    /// A free text, shown as written (`reference`).
    pub fn note(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let text = self.text(name, "a text")?;
        match text {
            None => Ok(None),
            Some((text, at)) => {
                crate::scenario::source::printable(text, false)
                    .map_err(|why| self.error(at, why))?;
                Ok(Some(text.to_string()))
            }
        }
    }

    /// One master, by name.
    pub fn master(&self, name: &str) -> Result<String, ConfigError> {
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
