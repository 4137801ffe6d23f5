//! The fourth stage: judges a timeline. Each check is a parser and a judge side by side in one
//! file; [`CHECKS`] names them all. The invariants hold on every run, whatever a scenario
//! expects.
//!
//! Adding a check: write its parser and its [`Check`] impl in the file of its kind, and add its
//! [`CheckSpec`] to [`CHECKS`]. Nothing outside this folder changes.

pub mod agents;
pub mod attempts;
pub mod commands;
pub mod failover;
pub mod fields;
mod gate;
pub mod invariants;
pub mod leaders;
pub mod reconnect;

use crate::history::captures::Captures;
use crate::history::commands::CommandHistory;
use crate::history::leaders::LeaderHistory;
use crate::history::online::OnlineHistory;
use crate::history::terms::Terms;
use crate::history::{Entry, FaultEvent, Timeline};
use crate::scenario::expect::ExpectSpec;
use crate::scenario::selector::{Scope, Selector};
use crate::scenario::source::error_at;
use crate::scenario::{ConfigError, Scenario};
use fields::Fields;
use serde::Serialize;

/// A check's outcome. `args` are its fields as the scenario wrote them; `value` is what it
/// measured (milliseconds, counts, rates: a number or a list), when it measures something.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub check: String,
    pub args: serde_json::Map<String, serde_json::Value>,
    pub ok: bool,
    pub detail: String,
    pub value: Option<serde_json::Value>,
}

/// What a run left behind, as the checks see it.
pub struct Evidence<'a> {
    pub scenario: &'a Scenario,
    pub entries: &'a [Entry],
    pub online: OnlineHistory,
    pub leaders: LeaderHistory,
    pub captures: Captures,
    pub terms: Terms,
    pub commands: CommandHistory,
}

impl<'a> Evidence<'a> {
    pub fn new(scenario: &'a Scenario, entries: &'a [Entry]) -> Evidence<'a> {
        Evidence {
            scenario,
            entries,
            online: OnlineHistory::from_entries(entries),
            leaders: LeaderHistory::from_entries(entries),
            captures: Captures::from_entries(entries),
            terms: Terms::from_entries(entries),
            commands: CommandHistory::from_entries(entries),
        }
    }

    /// The nodes `selector` meant at `t_ms`: who led then, what was captured by then.
    pub(crate) fn resolve(&self, selector: &Selector, t_ms: u64) -> Vec<String> {
        let mut then = Then {
            evidence: self,
            t_ms,
        };
        selector.resolve(&self.scenario.topology, &mut then)
    }
}

/// A selector's view of a past moment. Checks refuse `any`, so nothing is drawn.
struct Then<'e, 'a> {
    evidence: &'e Evidence<'a>,
    t_ms: u64,
}

impl Scope for Then<'_, '_> {
    fn leader(&self) -> Option<String> {
        let leader = self.evidence.leaders.leader_at(self.t_ms);
        leader.map(|span| span.node.clone())
    }
    fn capture(&self, name: &str) -> Vec<String> {
        self.evidence.captures.at(name, self.t_ms)
    }
    fn pick(&mut self, _: usize) -> usize {
        0
    }
}

/// A moment of the run in the timeline's milliseconds.
fn ms(duration: std::time::Duration) -> u64 {
    duration.as_millis() as u64
}

/// One compiled `[[expect]]` check.
pub trait Check: std::fmt::Debug + Send + Sync {
    /// The check as the verdict names it: `all_online agents at 10s`.
    fn title(&self) -> String;
    /// Whether it holds, and what was seen.
    fn judge(&self, evidence: &Evidence) -> (bool, String);

    /// The invariant this check stands for, if it is `check = "invariant"`: that rule is then
    /// judged here and not again on its own.
    fn invariant(&self) -> Option<&'static str> {
        None
    }

    /// The number, or list of numbers, the check measured; `None` for a yes-or-no check.
    fn value(&self, _evidence: &Evidence) -> Option<serde_json::Value> {
        None
    }
}

/// A check's name, the fields it takes, and its parser.
pub(crate) struct CheckSpec {
    pub name: &'static str,
    pub fields: &'static [&'static str],
    pub parse: fn(&Fields) -> Result<Box<dyn Check>, ConfigError>,
}

/// Every check a scenario can name.
pub(crate) const CHECKS: &[CheckSpec] = &[
    agents::ALL_ONLINE,
    agents::OFFLINE_WITHIN,
    attempts::BACKOFF_FOLLOWS_POLICY,
    attempts::MAX_CONNECT_ATTEMPTS,
    agents::NO_OFFLINE,
    attempts::PEAK_CONNECT_RATE,
    leaders::LEADER_ELECTED,
    leaders::LEADER_EXISTS,
    leaders::LEADER_IS,
    leaders::NO_ELECTION,
    leaders::NO_LEADER,
    leaders::TERM_AT_MOST,
    leaders::TERM_UNCHANGED,
    leaders::TERMS_AGREE,
    failover::FAILOVER_WITHIN,
    agents::AGENTS_FOLLOW_LEADER,
    commands::COMMANDS_COMPLETED,
    commands::CONFIG_CONVERGED,
    commands::STATUS_IS,
    reconnect::ALL_BACK_WITHIN,
    reconnect::GAVE_UP_AFTER,
    reconnect::NO_RECONNECT_AFTER,
    reconnect::DISCONNECT_REASON,
    invariants::INVARIANT,
];

/// A check, and whether it should hold. `holds = false` documents a failure a scenario exists
/// to show (what goes wrong without pre-vote, say): the verdict is ok when the check fails.
#[derive(Debug)]
pub struct Expectation {
    pub check: Box<dyn Check>,
    pub holds: bool,
    /// The fields as written, for the JSON verdict.
    pub args: serde_json::Map<String, serde_json::Value>,
}

/// Compiles a scenario's `[[expect]]` entries; errors point into the scenario file.
pub(crate) fn compile(scenario: &Scenario) -> Result<Vec<Expectation>, ConfigError> {
    let mut compiled = Vec::new();
    for spec in &scenario.expectations {
        compiled.extend(compile_one(scenario, spec)?);
    }
    Ok(compiled)
}

/// One `[[expect]]` entry: one expectation, or one per repetition.
fn compile_one(scenario: &Scenario, spec: &ExpectSpec) -> Result<Vec<Expectation>, ConfigError> {
    let name = spec.check.value.as_str();
    let Some(check) = CHECKS.iter().find(|check| check.name == name) else {
        let names: Vec<&str> = CHECKS.iter().map(|check| check.name).collect();
        return Err(error_at(
            &scenario.path,
            spec.check.at,
            format!(
                "unknown check {name:?}; expected one of {}",
                names.join(", ")
            ),
        ));
    };
    if let Some((field, value)) = spec
        .fields
        .iter()
        .find(|(field, _)| !check.fields.contains(&field.as_str()))
    {
        let takes = match check.fields {
            [] => "only `holds`".to_string(),
            fields => format!("{} and `holds`", quoted(fields)),
        };
        return Err(error_at(
            &scenario.path,
            value.at,
            format!("check {name:?} does not take `{field}`; it takes {takes}"),
        ));
    }
    let repetition = [("every", &spec.every), ("until", &spec.until)];
    let written = (spec
        .fields
        .iter()
        .map(|(name, value)| (name.as_str(), value)))
    .chain(
        repetition
            .iter()
            .filter_map(|(name, value)| Some((*name, value.as_ref()?))),
    );
    let args: serde_json::Map<String, serde_json::Value> = written
        .map(|(name, value)| {
            let json = serde_json::to_value(&value.value).unwrap_or_default();
            (name.to_string(), json)
        })
        .collect();
    let offsets = Fields::new(scenario, spec, std::time::Duration::ZERO).repetitions()?;
    offsets
        .into_iter()
        .map(|offset| {
            let fields = Fields::new(scenario, spec, offset);
            Ok(Expectation {
                check: (check.parse)(&fields)?,
                holds: spec.holds,
                args: args.clone(),
            })
        })
        .collect()
}

fn quoted(names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    names.join(", ")
}

/// Every expectation's verdict, then every invariant's.
pub fn evaluate(
    scenario: &Scenario,
    expectations: &[Expectation],
    timeline: &Timeline,
) -> Vec<Verdict> {
    // What a stopped run recorded ends mid-story: judged by it, every check would fail for
    // want of an ending. The runaway is the finding.
    if let Some(runaway) = &timeline.runaway {
        return vec![Verdict {
            check: RUNAWAY.into(),
            args: serde_json::Map::new(),
            ok: false,
            detail: runaway.detail(),
            value: Some(runaway.spent.into()),
        }];
    }
    let evidence = Evidence::new(scenario, &timeline.entries);
    let mut verdicts: Vec<Verdict> = expectations
        .iter()
        .map(|expectation| expected(expectation, &evidence))
        .collect();
    verdicts.extend(unfired(&timeline.entries));
    verdicts.extend(idle(&timeline.entries));
    let named: Vec<&str> = expectations
        .iter()
        .filter_map(|expectation| expectation.check.invariant())
        .collect();
    verdicts.extend(invariants::check(&evidence, &timeline.unreadable, &named));
    verdicts
}

/// A fault whose `when` never held fails the run: what the scenario meant to test never happened.
fn unfired(entries: &[Entry]) -> Option<Verdict> {
    let never: Vec<String> = (entries.iter())
        .filter_map(|entry| match entry.fault() {
            Some(FaultEvent::Unfired { fault, when }) => Some(format!("{fault} (when {when})")),
            _ => None,
        })
        .collect();
    (!never.is_empty()).then(|| Verdict {
        check: "faults fired".into(),
        args: serde_json::Map::new(),
        ok: false,
        detail: format!("the run ended before these fired: {}", never.join("; ")),
        value: Some(never.len().into()),
    })
}

/// The verdict on a run stopped for going over its budget (see `run::budget`).
pub const RUNAWAY: &str = "runaway";

/// The verdict on faults that did nothing: exploration, which draws faults blind, leaves it out.
pub const IDLE_FAULTS: &str = "faults took effect";

/// A fault that did nothing (a partition no message crossed, a resume of a node that was not
/// paused, a crash of one already down) fails the run: it tests nothing.
fn idle(entries: &[Entry]) -> Option<Verdict> {
    let idle: Vec<String> = (entries.iter())
        .filter_map(|entry| match entry.fault()?.fired()? {
            fired if fired.did_nothing() => {
                let (kind, fields) = entry.parts();
                Some(format!(
                    "{} {kind} {fields}",
                    crate::history::fmt_time(entry.t_ms)
                ))
            }
            _ => None,
        })
        .collect();
    (!idle.is_empty()).then(|| Verdict {
        check: IDLE_FAULTS.into(),
        args: serde_json::Map::new(),
        ok: false,
        detail: format!("these did nothing: {}", idle.join("; ")),
        value: Some(idle.len().into()),
    })
}

fn expected(expectation: &Expectation, evidence: &Evidence) -> Verdict {
    let check = expectation.check.title();
    let (ok, detail) = expectation.check.judge(evidence);
    let (args, value) = (expectation.args.clone(), expectation.check.value(evidence));
    if expectation.holds {
        return Verdict {
            check,
            args,
            ok,
            detail,
            value,
        };
    }
    Verdict {
        check: format!("{check} (expected to fail)"),
        args,
        ok: !ok,
        detail: if ok {
            format!("held, though the scenario says it should not: {detail}")
        } else {
            format!("fails as expected: {detail}")
        },
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"t\"\nduration = \"1m\"\n[topology]\nagents = 3\n";

    pub(crate) fn compile_text(text: &str) -> Result<Vec<Expectation>, ConfigError> {
        compile(&Scenario::parse("t.toml", text)?)
    }

    fn error(expect: &str) -> ConfigError {
        compile_text(&format!("{MINIMAL}[[expect]]\n{expect}")).unwrap_err()
    }

    #[test]
    fn a_fault_that_did_nothing_fails_the_run_and_one_with_no_count_does_not() {
        use crate::history::tests::{fault, fired};
        use crate::history::Effect;
        let with = |action: &str, effect: Vec<(&'static str, u64)>| {
            let mut event = fired(action, &[]);
            if let FaultEvent::Fired(fired) = &mut event {
                fired.effect = Effect(effect);
            }
            fault(1000, event)
        };
        let busy = [
            with("resume = \"master-1\"", vec![("resumed", 1)]),
            with("latency = \"1s..2s\"", vec![]),
        ];
        assert_eq!(idle(&busy), None);
        let lazy = [with(
            "power_fail = \"master-1\"",
            vec![("stopped", 0), ("writes_lost", 0)],
        )];
        let verdict = idle(&lazy).expect("a verdict");
        assert!(!verdict.ok);
        assert!(
            verdict
                .detail
                .contains("power_fail target=master-1 stopped=0 writes_lost=0"),
            "{}",
            verdict.detail
        );
    }

    #[test]
    fn every_check_has_one_row() {
        let mut names: Vec<&str> = CHECKS.iter().map(|check| check.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CHECKS.len());
    }

    #[test]
    fn a_check_missing_a_field_says_which() {
        let missing = error("check = \"all_online\"\n");
        assert!(
            missing.message.contains("needs `at`"),
            "{}",
            missing.message
        );
        let unknown = error("check = \"everything_fine\"\n");
        assert!(
            unknown.message.contains("all_online"),
            "{}",
            unknown.message
        );
        assert_eq!((unknown.line, unknown.column), (6, 9));
    }

    #[test]
    fn a_field_the_check_does_not_take_is_named() {
        let error = error("check = \"all_online\"\nat = \"10s\"\nwithin = \"5s\"\n");
        assert_eq!((error.line, error.column), (8, 10));
        assert!(
            error.message.contains("does not take `within`")
                && error.message.contains("`agents`, `at`"),
            "{}",
            error.message
        );
    }

    #[test]
    fn times_past_the_end_of_the_run_are_refused() {
        for (expect, field) in [
            ("check = \"all_online\"\nat = \"1h\"\n", "at"),
            (
                "check = \"offline_within\"\nafter = \"50s\"\nwithin = \"20s\"\n",
                "within",
            ),
            ("check = \"no_offline\"\nduring = \"10s..2m\"\n", "during"),
        ] {
            let error = error(expect);
            assert!(
                error.message.contains("past the end of the run"),
                "{expect}: {}",
                error.message
            );
            assert!(error.message.contains(field), "{expect}: {}", error.message);
        }
    }

    #[test]
    fn a_window_end_that_overflows_is_refused_not_a_panic() {
        let error = error(
            "check = \"offline_within\"\nafter = \"18446744073709551615ms\"\nwithin = \"18446744073709551615ms\"\n",
        );
        assert!(error.line > 0, "{error}");
    }

    #[test]
    fn expectations_name_fixed_nodes() {
        let error = error("check = \"all_online\"\nat = \"1s\"\nagents = \"leader\"\n");
        assert!(
            error.message.contains("only known while the run goes on"),
            "{}",
            error.message
        );
    }

    #[test]
    fn an_invariant_is_named_by_a_rule_of_the_mode() {
        let raft = "name = \"t\"\nduration = \"1m\"\n[topology]\nmasters = 3\nagents = 1\n";
        let named = |rule: &str| {
            compile_text(&format!(
                "{raft}[[expect]]\ncheck = \"invariant\"\nrule = \"{rule}\"\nholds = false\n"
            ))
        };
        let expectations = named("at_most_one_leader_per_term").unwrap();
        assert_eq!(
            expectations[0].check.invariant(),
            Some("at_most_one_leader_per_term")
        );
        assert!(!expectations[0].holds);
        let lease_rule = named("fencing_tokens_increase").unwrap_err();
        assert!(
            lease_rule.message.contains("no rule of mode \"raft\""),
            "{}",
            lease_rule.message
        );
        assert_eq!(lease_rule.line, 8);
    }

    #[test]
    fn a_peak_rate_with_min_above_max_is_refused() {
        let error = error("check = \"peak_connect_rate\"\nmin = 10\nmax = 5\n");
        assert!(error.message.contains("min"), "{}", error.message);
        assert_eq!(error.line, 7);
    }
}
