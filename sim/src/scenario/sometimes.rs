//! `[[sometimes]]`: a state worth reaching (Antithesis's "sometimes" assertions). A run never
//! fails for missing one; `sim explore` counts the runs that reached each and fails when one
//! was never reached, since a state no run reaches is one nothing tests.
//!
//! ```toml
//! [[sometimes]]
//! kind = "leadership_lapsed"     # an event kind of the timeline
//! node = "masters"               # optional: only events of these nodes (a fixed selector)
//! ```

use crate::history::Entry;
use crate::scenario::selector::{Selector, Topology};
use crate::scenario::source::{ScenarioError, Source};
use serde::Deserialize;
use std::fmt;
use toml::Spanned;

#[derive(Clone, Debug, PartialEq)]
pub struct Sometimes {
    pub kind: &'static str,
    pub node: Option<Selector>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSometimes {
    kind: Spanned<String>,
    node: Option<Spanned<String>>,
}

pub(crate) fn check(
    raw: RawSometimes,
    topology: &Topology,
    source: &Source,
) -> Result<Sometimes, ScenarioError> {
    let kind = fleet_core::timeline::kinds()
        .find(|kind| kind == raw.kind.get_ref())
        .ok_or_else(|| {
            let message = format!(
                "unknown event kind {:?}; a kind of the README's event vocabulary, like \
                 \"became_leader\" or \"leadership_lapsed\"",
                raw.kind.get_ref()
            );
            source.error(raw.kind.span(), message)
        })?;
    let node = (raw.node.as_ref())
        .map(|node| {
            (topology.select_fixed(node.get_ref())).map_err(|why| source.error(node.span(), why))
        })
        .transpose()?;
    Ok(Sometimes { kind, node })
}

impl Sometimes {
    /// Whether the run whose timeline this is reached it.
    pub fn reached(&self, entries: &[Entry]) -> bool {
        entries.iter().any(|entry| {
            let node = (self.node.as_ref()).is_none_or(|node| node.contains(&entry.node));
            node && entry
                .system()
                .is_some_and(|event| event.kind() == self.kind)
        })
    }
}

/// `leadership_lapsed`, or `gave_up on agents`.
impl fmt::Display for Sometimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(node) => write!(f, "{} on {node}", self.kind),
            None => f.write_str(self.kind),
        }
    }
}
