//! Checks on leadership: who led, when, and in which term.

use crate::history::fmt_time;
use crate::history::leaders::{LeaderSpan, TermStarted};
use crate::judge::{ms, Check, CheckSpec, Evidence};
use crate::scenario::selector::Selector;
use fleet_core::fmt_duration as show;
use std::time::Duration;

/// Some master takes office in `[after, after + within]`.
pub(crate) const LEADER_ELECTED: CheckSpec = CheckSpec {
    name: "leader_elected",
    fields: &["after", "within", "among"],
    parse: |fields| {
        let (after, within) = fields.window()?;
        let among = fields.among()?;
        Ok(Box::new(LeaderElected {
            after,
            within,
            among,
        }))
    },
};

#[derive(Debug)]
struct LeaderElected {
    after: Duration,
    within: Duration,
    among: Selector,
}

impl Check for LeaderElected {
    fn title(&self) -> String {
        format!(
            "leader_elected {} after {}{}",
            show(self.within),
            show(self.after),
            among_suffix(&self.among)
        )
    }

    /// How long after `after` the leader took office, in ms.
    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        let from = ms(self.after);
        self.elected(evidence)
            .map(|span| (span.from_ms - from).into())
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let from = ms(self.after);
        match self.elected(evidence) {
            Some(span) => {
                let (node, at, term) = (&span.node, fmt_time(span.from_ms), span.term);
                let waited = span.from_ms - from;
                let after = show(self.after);
                let detail =
                    format!("{node} elected at {at} ({waited}ms after {after}), term {term}");
                (true, detail)
            }
            None => (false, "no master became leader in that window".into()),
        }
    }
}

impl LeaderElected {
    fn elected<'e>(&self, evidence: &'e Evidence) -> Option<&'e LeaderSpan> {
        let (from, to) = (ms(self.after), ms(self.after + self.within));
        let among = evidence.resolve(&self.among, from);
        (evidence.leaders.spans.iter())
            .find(|span| (from..=to).contains(&span.from_ms) && among.contains(&span.node))
    }
}

/// `node` leads at `at`.
pub(crate) const LEADER_IS: CheckSpec = CheckSpec {
    name: "leader_is",
    fields: &["node", "at", "among"],
    parse: |fields| {
        Ok(Box::new(LeaderIs {
            node: fields.master("node")?,
            at: fields.required_time("at")?,
            among: fields.among()?,
        }))
    },
};

#[derive(Debug)]
struct LeaderIs {
    node: String,
    at: Duration,
    among: Selector,
}

impl Check for LeaderIs {
    fn title(&self) -> String {
        let among = among_suffix(&self.among);
        format!("leader_is {} at {}{among}", self.node, show(self.at))
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let leaders = leaders_at(evidence, ms(self.at), &self.among);
        match leaders.into_iter().max_by_key(|span| span.term) {
            Some(span) => (
                span.node == self.node,
                format!("{} leads (term {})", span.node, span.term),
            ),
            None => (false, "no master leads".into()),
        }
    }
}

/// No master leads at any moment of `during`.
pub(crate) const NO_LEADER: CheckSpec = CheckSpec {
    name: "no_leader",
    fields: &["during", "among"],
    parse: |fields| {
        Ok(Box::new(NoLeader {
            during: fields.during(true)?,
            among: fields.among()?,
        }))
    },
};

#[derive(Debug)]
struct NoLeader {
    during: (Duration, Duration),
    among: Selector,
}

impl Check for NoLeader {
    fn title(&self) -> String {
        format!(
            "no_leader during {}..{}{}",
            show(self.during.0),
            show(self.during.1),
            among_suffix(&self.among)
        )
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let (from, to) = (ms(self.during.0), ms(self.during.1));
        let among = evidence.resolve(&self.among, from);
        let led = (evidence.leaders.spans.iter())
            .filter(|span| span.from_ms <= to && span.to_ms.is_none_or(|end| end > from))
            .filter(|span| among.contains(&span.node))
            .min_by_key(|span| span.from_ms.max(from));
        match led {
            None => (true, "no master led".into()),
            Some(span) => {
                let (node, at, term) = (&span.node, fmt_time(span.from_ms), span.term);
                (false, format!("{node} led from {at} (term {term})"))
            }
        }
    }
}

/// No master ever starts or takes a term above `max`.
pub(crate) const TERM_AT_MOST: CheckSpec = CheckSpec {
    name: "term_at_most",
    fields: &["max", "among"],
    parse: |fields| {
        let (max, _) = fields.count("max")?.ok_or_else(|| fields.missing("max"))?;
        let among = fields.among()?;
        Ok(Box::new(TermAtMost { max, among }))
    },
};

#[derive(Debug)]
struct TermAtMost {
    max: u64,
    among: Selector,
}

impl Check for TermAtMost {
    fn title(&self) -> String {
        format!("term_at_most {}{}", self.max, among_suffix(&self.among))
    }

    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        self.highest(evidence).map(|started| started.term.into())
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        match self.highest(evidence) {
            None => (true, "no election".into()),
            Some(started) => {
                let (term, node, at) = (started.term, &started.node, fmt_time(started.t_ms));
                (
                    term <= self.max,
                    format!("highest term {term} ({node} at {at})"),
                )
            }
        }
    }
}

impl TermAtMost {
    /// The highest term a master of `among` (as it was when the term started) started or took.
    fn highest<'e>(&self, evidence: &'e Evidence) -> Option<&'e TermStarted> {
        (evidence.leaders.terms.iter())
            .filter(|started| {
                evidence
                    .resolve(&self.among, started.t_ms)
                    .contains(&started.node)
            })
            .max_by_key(|started| started.term)
    }
}

/// ` among SEL` in a title, when a check is limited to some masters.
fn among_suffix(among: &Selector) -> String {
    match among.to_string().as_str() {
        "masters" => String::new(),
        text => format!(" among {text}"),
    }
}

/// The masters of `among` that believe they lead at `t_ms`.
fn leaders_at<'e>(evidence: &'e Evidence, t_ms: u64, among: &Selector) -> Vec<&'e LeaderSpan> {
    let among = evidence.resolve(among, t_ms);
    (evidence.leaders.spans.iter())
        .filter(|span| span.from_ms <= t_ms && span.to_ms.is_none_or(|to| t_ms < to))
        .filter(|span| among.contains(&span.node))
        .collect()
}

/// `leader_exists {at, among}`: among those masters some master leads at `at`, and in the
/// highest term any of them leads, only one does (6.824's checkOneLeader). A stale leader in
/// a lower term, cut off and unaware, does not count against it.
pub(crate) const LEADER_EXISTS: CheckSpec = CheckSpec {
    name: "leader_exists",
    fields: &["at", "among"],
    parse: |fields| {
        Ok(Box::new(LeaderExists {
            at: fields.required_time("at")?,
            among: fields.among()?,
        }))
    },
};

#[derive(Debug)]
struct LeaderExists {
    at: Duration,
    among: Selector,
}

impl Check for LeaderExists {
    fn title(&self) -> String {
        let among = among_suffix(&self.among);
        format!("leader_exists at {}{among}", show(self.at))
    }

    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        let leaders = leaders_at(evidence, ms(self.at), &self.among);
        leaders.iter().map(|span| span.term).max().map(Into::into)
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let leaders = leaders_at(evidence, ms(self.at), &self.among);
        let Some(term) = leaders.iter().map(|span| span.term).max() else {
            let among = evidence.resolve(&self.among, ms(self.at)).join(",");
            return (false, format!("no master of {among} leads"));
        };
        let top: Vec<&str> = (leaders.iter())
            .filter(|span| span.term == term)
            .map(|span| span.node.as_str())
            .collect();
        if top.len() > 1 {
            return (
                false,
                format!("term {term} has {} leaders: {}", top.len(), top.join(", ")),
            );
        }
        let stale = leaders.len() - 1;
        let detail = match stale {
            0 => format!("{} leads (term {term})", top[0]),
            n => format!(
                "{} leads (term {term}); {n} stale leader(s) in older terms",
                top[0]
            ),
        };
        (true, detail)
    }
}

/// `terms_agree {at, among}`: those masters are all in the same term at `at`.
pub(crate) const TERMS_AGREE: CheckSpec = CheckSpec {
    name: "terms_agree",
    fields: &["at", "among"],
    parse: |fields| {
        Ok(Box::new(TermsAgree {
            at: fields.required_time("at")?,
            among: fields.among()?,
        }))
    },
};

#[derive(Debug)]
struct TermsAgree {
    at: Duration,
    among: Selector,
}

impl TermsAgree {
    fn terms(&self, evidence: &Evidence) -> Vec<(String, u64)> {
        let t_ms = ms(self.at);
        (evidence.resolve(&self.among, t_ms).into_iter())
            .map(|node| {
                let term = evidence.terms.at(&node, t_ms);
                (node, term)
            })
            .collect()
    }
}

impl Check for TermsAgree {
    fn title(&self) -> String {
        let among = among_suffix(&self.among);
        format!("terms_agree at {}{among}", show(self.at))
    }

    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        let terms: Vec<u64> = self.terms(evidence).iter().map(|(_, term)| *term).collect();
        Some(terms.into())
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let terms = self.terms(evidence);
        let Some((_, first)) = terms.first() else {
            return (false, "no master selected".into());
        };
        if terms.iter().all(|(_, term)| term == first) {
            return (true, format!("{} masters in term {first}", terms.len()));
        }
        let each: Vec<String> = terms
            .iter()
            .map(|(node, term)| format!("{node} {term}"))
            .collect();
        (false, format!("terms differ: {}", each.join(", ")))
    }
}

/// `no_election {during, among}`: none of those masters starts an election (pre-votes, which
/// take no term, are fine).
pub(crate) const NO_ELECTION: CheckSpec = CheckSpec {
    name: "no_election",
    fields: &["during", "among"],
    parse: |fields| {
        Ok(Box::new(NoElection {
            during: fields.during(true)?,
            among: fields.among()?,
        }))
    },
};

#[derive(Debug)]
struct NoElection {
    during: (Duration, Duration),
    among: Selector,
}

impl NoElection {
    fn elections<'e>(&self, evidence: &'e Evidence) -> Vec<&'e (u64, String, u64)> {
        let (from, to) = (ms(self.during.0), ms(self.during.1));
        let among = evidence.resolve(&self.among, from);
        (evidence.terms.elections.iter())
            .filter(|(t, node, _)| (from..=to).contains(t) && among.contains(node))
            .collect()
    }
}

impl Check for NoElection {
    fn title(&self) -> String {
        let (from, to) = (show(self.during.0), show(self.during.1));
        format!(
            "no_election during {from}..{to}{}",
            among_suffix(&self.among)
        )
    }

    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        Some(self.elections(evidence).len().into())
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        match self.elections(evidence).first() {
            None => (true, "no election started".into()),
            Some((t, node, term)) => {
                let count = self.elections(evidence).len();
                let at = fmt_time(*t);
                (
                    false,
                    format!("{count} started; first {node} for term {term} at {at}"),
                )
            }
        }
    }
}

/// `term_unchanged {during, among}`: no master of those moves to another term.
pub(crate) const TERM_UNCHANGED: CheckSpec = CheckSpec {
    name: "term_unchanged",
    fields: &["during", "among"],
    parse: |fields| {
        Ok(Box::new(TermUnchanged {
            during: fields.during(true)?,
            among: fields.among()?,
        }))
    },
};

#[derive(Debug)]
struct TermUnchanged {
    during: (Duration, Duration),
    among: Selector,
}

impl TermUnchanged {
    /// Each change: (moment, node, from, to).
    fn changes(&self, evidence: &Evidence) -> Vec<(u64, String, u64, u64)> {
        let (from, to) = (ms(self.during.0), ms(self.during.1));
        let mut changes = Vec::new();
        for node in evidence.resolve(&self.among, from) {
            let mut term = evidence.terms.at(&node, from);
            for (t, reported) in evidence.terms.reported_in(&node, from + 1, to) {
                if reported != term {
                    changes.push((t, node.clone(), term, reported));
                    term = reported;
                }
            }
        }
        changes.sort();
        changes
    }
}

impl Check for TermUnchanged {
    fn title(&self) -> String {
        let (from, to) = (show(self.during.0), show(self.during.1));
        format!(
            "term_unchanged during {from}..{to}{}",
            among_suffix(&self.among)
        )
    }

    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        Some(self.changes(evidence).len().into())
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let changes = self.changes(evidence);
        match changes.first() {
            None => (true, "no master changed term".into()),
            Some((t, node, from, to)) => {
                let at = fmt_time(*t);
                let count = changes.len();
                (
                    false,
                    format!("{count} change(s); first {node} {from} -> {to} at {at}"),
                )
            }
        }
    }
}
