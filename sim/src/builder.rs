//! A scenario built in code, for a test of your own: the typed, chainable twin of a scenario
//! file (turmoil's `Builder` is the model).
//!
//! ```ignore
//! let loaded = Scenario::builder("leader-crash")
//!     .masters(3)
//!     .agents(10)
//!     .duration("2m")
//!     .crash_at("30s", "leader")
//!     .with("as", "old")
//!     .expect_leader_elected("30s", "5s")
//!     .with("among", "masters - @old")
//!     .build()?;
//! assert!(loaded.run(8).passed());
//! ```
//!
//! Each call writes the key a file would into a TOML document, and [`ScenarioBuilder::build`]
//! reads that document with the parser every file goes through ([`crate::parse`]): the same
//! defaults, the same checks, the same [`Loaded`]. Durations are a `Duration` or the text a file
//! takes, selectors a [`Sel`] or the text; ranges and the rest are the
//! strings a file takes (`"1m30s"`, `"150ms..300ms"`, `"masters - @old"`). An error is a file's
//! error, told as the call that wrote the value it is about, without a line and column in a
//! text nobody wrote (`leader-crash: crash_at("30s", "agent-70"): unknown node "agent-70": ...`);
//! [`ScenarioBuilder::to_toml`] shows the document, which is also a scenario file.

use crate::scenario::overrides::{read_value, Override};
use crate::scenario::source::{error_at, ConfigError, Position};
use crate::scenario::Scenario;
use crate::{Judged, Loaded};
use std::fmt::{Debug, Display};
use std::time::Duration;
use toml_edit::{Array, ArrayOfTables, DocumentMut, ImDocument, InlineTable, Item, Table, Value};

/// A selector, typed (`Sel::leader()`, `Sel::masters().minus(Sel::captured("old"))`) or as a
/// file writes it (`"agent-1..3"` converts): what a fault, a command or a check is about.
#[derive(Clone, PartialEq, Eq)]
pub struct Sel(String);

impl Sel {
    /// The master leading when it is used.
    pub fn leader() -> Sel {
        Sel("leader".into())
    }
    /// Every master but the one leading when it is used.
    pub fn followers() -> Sel {
        Sel("followers".into())
    }
    pub fn masters() -> Sel {
        Sel("masters".into())
    }
    pub fn agents() -> Sel {
        Sel("agents".into())
    }
    /// Every node.
    pub fn all() -> Sel {
        Sel("all".into())
    }
    /// `master-i`.
    pub fn master(i: u32) -> Sel {
        Sel(format!("master-{i}"))
    }
    /// `agent-i`.
    pub fn agent(i: u32) -> Sel {
        Sel(format!("agent-{i}"))
    }
    /// `agent-first..agent-last`.
    pub fn agent_range(first: u32, last: u32) -> Sel {
        Sel(format!("agent-{first}..agent-{last}"))
    }
    /// `@name`: the nodes the latest fault with `as = name` hit.
    pub fn captured(name: &str) -> Sel {
        Sel(format!("@{name}"))
    }
    /// `count` distinct nodes of `of`, drawn from the run's seed.
    pub fn any(of: Sel, count: usize) -> Sel {
        Sel(format!("any({}, {count})", of.0))
    }
    /// These nodes and `other`'s.
    pub fn plus(self, other: Sel) -> Sel {
        Sel(format!("{} + {}", self.0, other.0))
    }
    /// These nodes but `other`'s.
    pub fn minus(self, other: Sel) -> Sel {
        Sel(format!("{} - {}", self.0, other.0))
    }
}

/// A duration, typed (`Duration::from_secs(30)`) or as a file writes it (`"30s"`).
#[derive(Clone, PartialEq, Eq)]
pub struct Time(String);

macro_rules! text_value {
    ($($kind:ident),*) => {$(
        impl From<&str> for $kind {
            fn from(text: &str) -> $kind {
                $kind(text.to_string())
            }
        }
        impl From<String> for $kind {
            fn from(text: String) -> $kind {
                $kind(text)
            }
        }
        impl Display for $kind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        /// As the file's text: errors name the call as a test would have written it.
        impl Debug for $kind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
        impl From<$kind> for Value {
            fn from(value: $kind) -> Value {
                Value::from(value.0)
            }
        }
    )*};
}

text_value!(Sel, Time);

impl From<Duration> for Time {
    fn from(duration: Duration) -> Time {
        Time(fleet_core::fmt_duration(duration))
    }
}

/// A scenario under construction: see the [module](self). Each call takes the builder and
/// returns it, so a base can be cloned and varied.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until it is built or run"]
pub struct ScenarioBuilder {
    name: String,
    document: DocumentMut,
    /// Every call that wrote into the document, with the key it wrote, to name in errors.
    calls: Vec<Call>,
    /// The list and index of the last fault, command or expectation, for [`Self::with`].
    last_entry: Option<(&'static str, usize)>,
    /// The first call that could not write its key; [`Self::build`] returns it.
    refused: Option<ConfigError>,
}

#[derive(Clone, Debug)]
struct Call {
    /// The dotted key it wrote, entries by index: `["faults", "2"]`, `["topology", "agents"]`.
    key: Vec<String>,
    /// The call as the test wrote it: `crash_at("30s", "leader")`.
    said: String,
}

impl Scenario {
    /// A scenario built in code instead of read from a file: see [`ScenarioBuilder`].
    pub fn builder(name: &str) -> ScenarioBuilder {
        ScenarioBuilder::new(name)
    }
}

/// `name(arg, ...)`, each argument as Rust would print it.
fn said(name: &str, args: &[&dyn Debug]) -> String {
    let args: Vec<String> = args.iter().map(|arg| format!("{arg:?}")).collect();
    format!("{name}({})", args.join(", "))
}

impl ScenarioBuilder {
    /// A scenario named `name`; errors name it as a file's would name the file.
    pub fn new(name: &str) -> ScenarioBuilder {
        let builder = ScenarioBuilder {
            name: name.to_string(),
            document: DocumentMut::new(),
            calls: Vec::new(),
            last_entry: None,
            refused: None,
        };
        builder.put(&["name"], name, said("builder", &[&name]))
    }

    // The top level.

    /// `description`: one line for the report's header.
    pub fn description(self, text: &str) -> Self {
        self.put(&["description"], text, said("description", &[&text]))
    }

    /// `seed`: the one a run takes when none is given (a file writes it as a TOML integer, so at
    /// most `i64::MAX`).
    pub fn seed(self, seed: u64) -> Self {
        let value = read_value(&seed.to_string());
        self.put(&["seed"], value, said("seed", &[&seed]))
    }

    /// `duration`: how long the run lasts in simulated time, like `"2m"`.
    pub fn duration(self, duration: impl Into<Time>) -> Self {
        let duration = duration.into();
        let call = said("duration", &[&duration]);
        self.put(&["duration"], duration, call)
    }

    /// `preset`: start from a design document's defaults (`"grpc"`, `"mqtt"`, ...).
    pub fn preset(self, preset: &str) -> Self {
        self.put(&["preset"], preset, said("preset", &[&preset]))
    }

    // [topology]

    /// Masters `master-1..master-N` (1 by default).
    pub fn masters(self, count: u32) -> Self {
        let value = i64::from(count);
        self.put(&["topology", "masters"], value, said("masters", &[&count]))
    }

    /// Agents `agent-1..agent-N`.
    pub fn agents(self, count: u32) -> Self {
        let value = i64::from(count);
        self.put(&["topology", "agents"], value, said("agents", &[&count]))
    }

    // [cluster]

    /// How the masters agree on a leader: `"raft"`, `"lease"` or `"single"` (by default
    /// single for one master, raft for more).
    pub fn cluster_mode(self, mode: &str) -> Self {
        self.put(&["cluster", "mode"], mode, said("cluster_mode", &[&mode]))
    }

    /// Raft's election timeout, drawn per election from a range like `"1500ms..3000ms"`.
    pub fn election_timeout(self, range: &str) -> Self {
        let key = ["cluster", "election_timeout"];
        self.put(&key, range, said("election_timeout", &[&range]))
    }

    /// How often a raft leader heartbeats its followers (`[cluster] heartbeat_interval`).
    pub fn leader_heartbeat_interval(self, interval: impl Into<Time>) -> Self {
        let interval = interval.into();
        let key = ["cluster", "heartbeat_interval"];
        let call = said("leader_heartbeat_interval", &[&interval]);
        self.put(&key, interval, call)
    }

    // [params.heartbeat] and [params.backoff]

    /// How often an agent heartbeats its master.
    pub fn heartbeat_interval(self, interval: impl Into<Time>) -> Self {
        let interval = interval.into();
        let key = ["params", "heartbeat", "interval"];
        let call = said("heartbeat_interval", &[&interval]);
        self.put(&key, interval, call)
    }

    /// How many heartbeat intervals of silence before a master marks an agent offline.
    pub fn max_miss(self, count: u32) -> Self {
        let key = ["params", "heartbeat", "max_miss"];
        self.put(&key, i64::from(count), said("max_miss", &[&count]))
    }

    /// An agent's reconnect backoff: `"exponential"`, `"full-jitter"`, `"equal-jitter"`,
    /// `"decorrelated"` or `"constant"`, from `base` up to `max`.
    pub fn backoff(self, strategy: &str, base: &str, max: &str) -> Self {
        let call = said("backoff", &[&strategy, &base, &max]);
        self.put(&["params", "backoff", "strategy"], strategy, call.clone())
            .put(&["params", "backoff", "base"], base, call.clone())
            .put(&["params", "backoff", "max"], max, call)
    }

    // [network]

    /// One-way latency per packet, a range like `"1ms..10ms"`.
    pub fn latency(self, range: &str) -> Self {
        self.put(&["network", "latency"], range, said("latency", &[&range]))
    }

    /// The share of packets lost, from 0 to 1.
    pub fn loss(self, rate: f64) -> Self {
        self.put(&["network", "loss"], rate, said("loss", &[&rate]))
    }

    /// Any other key, as `--set KEY=VALUE` sets it: a dotted KEY into the file
    /// (`"params.backoff.max"`, `"cluster.pre_vote"`) and a VALUE read as TOML, else as a
    /// string (`2`, `0.25`, `false`, `"10s"`).
    pub fn set(mut self, key: &str, value: impl Display) -> Self {
        let call = said("set", &[&key, &value.to_string()]);
        match Override::parse(&format!("{key}={value}")) {
            Ok(one) => self.write(one, call),
            Err(message) => {
                self.refuse(&call, &message);
                self
            }
        }
    }

    // [[faults]]

    /// A fault at `at`: an action and its target as a file writes them, the target read as
    /// `--set` reads a value (`"crash", "leader"`; `"loss", "0.2"`;
    /// `"partition", r#"[["leader"], ["followers"]]"#`).
    pub fn fault_at(self, at: impl Into<Time>, action: &str, target: &str) -> Self {
        let at = at.into();
        let call = said("fault_at", &[&at, &action, &target]);
        self.fault(at, action, read_value(target), call)
    }

    /// The selected nodes crash.
    pub fn crash_at(self, at: impl Into<Time>, selector: impl Into<Sel>) -> Self {
        let (at, selector) = (at.into(), selector.into());
        let call = said("crash_at", &[&at, &selector]);
        self.fault(at, "crash", selector.into(), call)
    }

    /// The selected nodes restart: a crash, then a clean start.
    pub fn restart_at(self, at: impl Into<Time>, selector: impl Into<Sel>) -> Self {
        let (at, selector) = (at.into(), selector.into());
        let call = said("restart_at", &[&at, &selector]);
        self.fault(at, "restart", selector.into(), call)
    }

    /// Each selected node is cut off from every other node.
    pub fn isolate_at(self, at: impl Into<Time>, selector: impl Into<Sel>) -> Self {
        let (at, selector) = (at.into(), selector.into());
        let call = said("isolate_at", &[&at, &selector]);
        self.fault(at, "isolate", selector.into(), call)
    }

    /// The links cut to the selected nodes heal; `"all"` heals every link.
    pub fn heal_at(self, at: impl Into<Time>, selector: impl Into<Sel>) -> Self {
        let (at, selector) = (at.into(), selector.into());
        let call = said("heal_at", &[&at, &selector]);
        self.fault(at, "heal", selector.into(), call)
    }

    /// The groups are cut apart, each group a list of selectors.
    pub fn partition_at(self, at: impl Into<Time>, groups: &[&[&str]]) -> Self {
        let at = at.into();
        let call = said("partition_at", &[&at, &groups]);
        let groups: Array = (groups.iter())
            .map(|group| Value::Array(group.iter().copied().collect()))
            .collect();
        self.fault(at, "partition", Value::Array(groups), call)
    }

    fn fault(self, at: Time, action: &str, target: Value, call: String) -> Self {
        self.push("faults", vec![("at", at.into()), (action, target)], call)
    }

    // [[commands]] and [[config]]

    /// The leader sends each selected agent the command `name` (`echo`, `sleep`, `fail`,
    /// `status`); `.with("args", "{ ms = 1500 }")`, `.with("timeout", "30s")` add to it.
    pub fn command_at(self, at: impl Into<Time>, to: impl Into<Sel>, name: &str) -> Self {
        let (at, to) = (at.into(), to.into());
        let call = said("command_at", &[&at, &to, &name]);
        let fields = vec![("at", at.into()), ("to", to.into()), ("name", name.into())];
        self.push("commands", fields, call)
    }

    /// The leader raises the config to a new version with these values, each read as `--set`
    /// reads a value.
    pub fn config_at(self, at: impl Into<Time>, values: &[(&str, &str)]) -> Self {
        let at = at.into();
        let call = said("config_at", &[&at, &values]);
        let table: InlineTable = (values.iter())
            .map(|(key, value)| (*key, read_value(value)))
            .collect();
        let fields = vec![("at", at.into()), ("values", Value::InlineTable(table))];
        self.push("config", fields, call)
    }

    // [[expect]]

    /// An expectation: the check's name and its fields, each value read as `--set` reads a
    /// value (`expect("no_offline", &[("during", "1s..20s")])`).
    pub fn expect(self, check: &str, fields: &[(&str, &str)]) -> Self {
        let call = said("expect", &[&check, &fields]);
        self.expectation(check, fields, call)
    }

    fn expectation(self, check: &str, fields: &[(&str, &str)], call: String) -> Self {
        let mut all = vec![("check", Value::from(check))];
        all.extend(fields.iter().map(|(key, value)| (*key, read_value(value))));
        self.push("expect", all, call)
    }

    /// Every agent is online at `at`.
    pub fn expect_all_online(self, at: impl Into<Time>) -> Self {
        let at = at.into().to_string();
        let call = said("expect_all_online", &[&at]);
        self.expectation("all_online", &[("at", &at)], call)
    }

    /// No agent goes offline `during` a window like `"10s..2m"`.
    pub fn expect_no_offline(self, during: &str) -> Self {
        let call = said("expect_no_offline", &[&during]);
        self.expectation("no_offline", &[("during", during)], call)
    }

    /// The selected agents are offline at a master within `within` after `after`.
    pub fn expect_offline_within(
        self,
        agents: impl Into<Sel>,
        after: impl Into<Time>,
        within: impl Into<Time>,
    ) -> Self {
        let agents = agents.into().to_string();
        let after = after.into().to_string();
        let within = within.into().to_string();
        let call = said("expect_offline_within", &[&agents, &after, &within]);
        self.expectation(
            "offline_within",
            &[("agents", &agents), ("after", &after), ("within", &within)],
            call,
        )
    }

    /// A leader is elected within `within` after `after`.
    pub fn expect_leader_elected(self, after: impl Into<Time>, within: impl Into<Time>) -> Self {
        let after = after.into().to_string();
        let within = within.into().to_string();
        let call = said("expect_leader_elected", &[&after, &within]);
        self.expectation(
            "leader_elected",
            &[("after", &after), ("within", &within)],
            call,
        )
    }

    /// Some master leads at `at`.
    pub fn expect_leader_exists(self, at: impl Into<Time>) -> Self {
        let at = at.into().to_string();
        let call = said("expect_leader_exists", &[&at]);
        self.expectation("leader_exists", &[("at", &at)], call)
    }

    /// Every agent follows the leader within `within` after `after`.
    pub fn expect_agents_follow_leader(
        self,
        after: impl Into<Time>,
        within: impl Into<Time>,
    ) -> Self {
        let after = after.into().to_string();
        let within = within.into().to_string();
        let call = said("expect_agents_follow_leader", &[&after, &within]);
        self.expectation(
            "agents_follow_leader",
            &[("after", &after), ("within", &within)],
            call,
        )
    }

    /// No election starts `during` a window.
    pub fn expect_no_election(self, during: &str) -> Self {
        let call = said("expect_no_election", &[&during]);
        self.expectation("no_election", &[("during", during)], call)
    }

    /// Another field of the fault, command or expectation the last call added, read as
    /// `--set` reads a value: `.crash_at("30s", "leader").with("as", "old")`,
    /// `.expect_leader_exists("2m").with("among", "masters - @old")`.
    pub fn with(mut self, field: &str, value: impl Display) -> Self {
        let call = said("with", &[&field, &value.to_string()]);
        let Some((list, index)) = self.last_entry else {
            self.refuse(&call, "follows a fault, a command or an expectation");
            return self;
        };
        let value = read_value(value.to_string().trim());
        let one = Override::typed(&[list, &index.to_string(), field], value);
        self.write(one, call)
    }

    // Out.

    /// The scenario as a file would say it.
    pub fn to_toml(&self) -> String {
        self.document.to_string()
    }

    /// Parses and checks the scenario as a file is checked, and compiles its expectations.
    pub fn build(&self) -> Result<Loaded, ConfigError> {
        if let Some(refused) = &self.refused {
            return Err(refused.clone());
        }
        let text = self.to_toml();
        crate::parse(&self.name, &text).map_err(|error| self.explain(error, &text))
    }

    /// [`Self::build`], then [`Loaded::run`] with `seed`.
    pub fn run(&self, seed: u64) -> Result<Judged, ConfigError> {
        Ok(self.build()?.run(seed))
    }

    // The document.

    fn put(self, key: &[&str], value: impl Into<Value>, call: String) -> Self {
        self.write(Override::typed(key, value.into()), call)
    }

    fn write(mut self, one: Override, call: String) -> Self {
        match one.write(&mut self.document) {
            Ok(()) => self.calls.push(Call {
                key: one.key,
                said: call,
            }),
            Err(message) => self.refuse(&call, &message),
        }
        self
    }

    /// Appends an entry to the list of tables `list` (`[[faults]]`, `[[expect]]`, ...).
    fn push(mut self, list: &'static str, fields: Vec<(&str, Value)>, call: String) -> Self {
        let item = (self.document.as_table_mut())
            .entry(list)
            .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
        let Some(entries) = item.as_array_of_tables_mut() else {
            self.refuse(
                &call,
                &format!("`{list}` was set to a value, not a list of tables"),
            );
            return self;
        };
        entries.push(fields.into_iter().collect::<Table>());
        let index = entries.len() - 1;
        self.last_entry = Some((list, index));
        self.calls.push(Call {
            key: vec![list.to_string(), index.to_string()],
            said: call,
        });
        self
    }

    /// Keeps the first call that could not be written, for [`Self::build`].
    fn refuse(&mut self, call: &str, message: &str) {
        let error = error_at(
            &self.name,
            Position::default(),
            format!("{call}: {message}"),
        );
        self.refused.get_or_insert(error);
    }

    /// A file's error about the built document, told as the call that wrote the value it is
    /// about (the most specific one), or else the last call that wrote into the table it is
    /// about; without a line and column in a text nobody wrote.
    fn explain(&self, error: ConfigError, text: &str) -> ConfigError {
        let about = (error.line > 0)
            .then(|| key_at(text, error.line, error.column))
            .flatten()
            .unwrap_or_default();
        let wrote = (self.calls.iter())
            .filter(|call| about.starts_with(&call.key))
            .max_by_key(|call| call.key.len());
        let inside = || {
            let mut latest_first = self.calls.iter().rev();
            latest_first.find(|call| !about.is_empty() && call.key.starts_with(&about))
        };
        let message = match wrote.or_else(inside) {
            Some(call) => format!("{}: {}", call.said, error.message),
            None => error.message,
        };
        error_at(&self.name, Position::default(), message)
    }
}

/// The key a position in `text` is about: the last key or table header that starts at or
/// before it, entries of a list of tables by index.
fn key_at(text: &str, line: usize, column: usize) -> Option<Vec<String>> {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let rest = text.get(line_start..)?;
    let offset = line_start + rest.char_indices().nth(column.saturating_sub(1))?.0;
    let document = ImDocument::parse(text).ok()?;
    let mut starts = Vec::new();
    key_starts(document.as_table(), &mut Vec::new(), &mut starts);
    (starts.into_iter())
        .filter(|(start, _)| *start <= offset)
        .max_by_key(|(start, _)| *start)
        .map(|(_, key)| key)
}

/// Where each table header and key of `table` starts, with its dotted key.
fn key_starts(table: &Table, path: &mut Vec<String>, starts: &mut Vec<(usize, Vec<String>)>) {
    if let Some(span) = table.span() {
        starts.push((span.start, path.clone()));
    }
    for (name, item) in table.iter() {
        path.push(name.to_string());
        match item {
            Item::Table(inner) => key_starts(inner, path, starts),
            Item::ArrayOfTables(entries) => {
                for (index, entry) in entries.iter().enumerate() {
                    path.push(index.to_string());
                    key_starts(entry, path, starts);
                    path.pop();
                }
            }
            _ => {
                if let Some(span) = table.key(name).and_then(|key| key.span()) {
                    starts.push((span.start, path.clone()));
                }
            }
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ScenarioBuilder {
        Scenario::builder("small").duration("20s").agents(2)
    }

    #[test]
    fn a_built_scenario_is_the_file_its_calls_write() {
        let built = small()
            .seed(9)
            .max_miss(2)
            .crash_at("5s", "agent-1")
            .with("as", "gone")
            .expect_offline_within("agent-1", "5s", "3s")
            .build()
            .unwrap();
        let file = crate::parse(
            "small",
            "name = \"small\"\nseed = 9\nduration = \"20s\"\n[topology]\nagents = 2\n\
             [params.heartbeat]\nmax_miss = 2\n[[faults]]\nat = \"5s\"\ncrash = \"agent-1\"\n\
             as = \"gone\"\n[[expect]]\ncheck = \"offline_within\"\nagents = \"agent-1\"\n\
             after = \"5s\"\nwithin = \"3s\"\n",
        )
        .unwrap();
        assert_eq!(built.scenario.faults, file.scenario.faults);
        assert_eq!(built.scenario.heartbeat, file.scenario.heartbeat);
        assert_eq!(built.scenario.seed, 9);
        let check = &built.scenario.expectations[0];
        assert_eq!(check.check.value, "offline_within");
    }

    #[test]
    fn an_error_names_the_call_that_wrote_the_value() {
        let error = small().crash_at("5s", "agent-7").build().unwrap_err();
        assert_eq!((error.path.as_str(), error.line), ("small", 0));
        assert!(
            error
                .message
                .starts_with("crash_at(\"5s\", \"agent-7\"): unknown node \"agent-7\""),
            "{error}"
        );
        let error = small().expect_all_online("1h").build().unwrap_err();
        assert!(
            error.message.starts_with("expect_all_online(\"1h\"): "),
            "{error}"
        );
        let error = small()
            .expect("all_online", &[("at", "1h")])
            .build()
            .unwrap_err();
        assert!(
            error
                .message
                .starts_with("expect(\"all_online\", [(\"at\", \"1h\")]): "),
            "{error}"
        );
        let error = small().set("faults.at", "1s").build().unwrap_err();
        assert!(
            error
                .message
                .starts_with("set(\"faults.at\", \"1s\"): invalid type"),
            "{error}"
        );
        let crash = small().crash_at("5s", "agent-1");
        let error = crash.set("faults.at", "1s").build().unwrap_err();
        assert!(error.message.contains("name one by its index"), "{error}");
        let timeout = small().masters(3).election_timeout("150ms..300ms");
        let error = timeout.build().unwrap_err();
        assert!(
            error
                .message
                .starts_with("election_timeout(\"150ms..300ms\"): [cluster]: "),
            "{error}"
        );
        let error = small().with("as", "x").build().unwrap_err();
        assert!(
            error.message.starts_with("with(\"as\", \"x\"): follows"),
            "{error}"
        );
        let error = small().max_miss(0).build().unwrap_err();
        assert!(error.message.contains("greater than 0"), "{error}");
    }

    #[test]
    fn set_reads_values_as_the_command_line_does() {
        let loaded = small()
            .set("params.backoff.max", "10s")
            .set("params.backoff.jitter", 0.1)
            .set("cluster.election_timeout", "1500ms..3000ms")
            .masters(3)
            .build()
            .unwrap();
        let backoff = &loaded.scenario.backoff;
        assert_eq!(backoff.max, std::time::Duration::from_secs(10));
        assert_eq!(backoff.jitter, 0.1);
    }
}
