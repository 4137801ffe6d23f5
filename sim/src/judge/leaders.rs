//! Checks on leadership: who led, when, and in which term.

use crate::history::fmt_time;
use crate::judge::{ms, Check, CheckSpec, Evidence};
use fleet_core::fmt_duration as show;
use std::time::Duration;

/// Some master takes office in `[after, after + within]`.
pub const LEADER_ELECTED: CheckSpec = CheckSpec {
    name: "leader_elected",
    fields: &["after", "within"],
    parse: |fields| {
        let (after, within) = fields.window()?;
        Ok(Box::new(LeaderElected { after, within }))
    },
};

#[derive(Debug)]
struct LeaderElected {
    after: Duration,
    within: Duration,
}

impl Check for LeaderElected {
    fn title(&self) -> String {
        format!(
            "leader_elected {} after {}",
            show(self.within),
            show(self.after)
        )
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let (from, to) = (ms(self.after), ms(self.after + self.within));
        match evidence.leaders.first_elected_in(from, to) {
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

/// `node` leads at `at`.
pub const LEADER_IS: CheckSpec = CheckSpec {
    name: "leader_is",
    fields: &["node", "at"],
    parse: |fields| {
        Ok(Box::new(LeaderIs {
            node: fields.master("node")?,
            at: fields.required_time("at")?,
        }))
    },
};

#[derive(Debug)]
struct LeaderIs {
    node: String,
    at: Duration,
}

impl Check for LeaderIs {
    fn title(&self) -> String {
        format!("leader_is {} at {}", self.node, show(self.at))
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        match evidence.leaders.leader_at(ms(self.at)) {
            Some(span) => (
                span.node == self.node,
                format!("{} leads (term {})", span.node, span.term),
            ),
            None => (false, "no master leads".into()),
        }
    }
}

/// No master leads at any moment of `during`.
pub const NO_LEADER: CheckSpec = CheckSpec {
    name: "no_leader",
    fields: &["during"],
    parse: |fields| {
        Ok(Box::new(NoLeader {
            during: fields.during(true)?,
        }))
    },
};

#[derive(Debug)]
struct NoLeader {
    during: (Duration, Duration),
}

impl Check for NoLeader {
    fn title(&self) -> String {
        format!(
            "no_leader during {}..{}",
            show(self.during.0),
            show(self.during.1)
        )
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let (from, to) = (ms(self.during.0), ms(self.during.1));
        match evidence.leaders.first_in(from, to) {
            None => (true, "no master led".into()),
            Some(span) => {
                let (node, at, term) = (&span.node, fmt_time(span.from_ms), span.term);
                (false, format!("{node} led from {at} (term {term})"))
            }
        }
    }
}

/// No master ever starts or takes a term above `max`.
pub const TERM_AT_MOST: CheckSpec = CheckSpec {
    name: "term_at_most",
    fields: &["max"],
    parse: |fields| {
        let (max, _) = fields.count("max")?.ok_or_else(|| fields.missing("max"))?;
        Ok(Box::new(TermAtMost { max }))
    },
};

#[derive(Debug)]
struct TermAtMost {
    max: u64,
}

impl Check for TermAtMost {
    fn title(&self) -> String {
        format!("term_at_most {}", self.max)
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        match evidence.leaders.highest_term() {
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
