//! `[[sometimes]]`: a state worth reaching (Antithesis's "sometimes" assertions). A run never
//! fails for missing one; `sim explore` counts the runs that reached each and fails when one
//! was never reached, since a state no run reaches is one nothing tests.
//!
//! ```toml
//! [[sometimes]]
//! kind = "leadership_lapsed"     # an event kind of the timeline
//! node = "masters"               # optional: only events of these nodes (a fixed selector)
//! ```

use crate::scenario::selector::{Selector, Topology};
use crate::scenario::source::{ConfigError, Source};
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

/// Every `[[sometimes]]` entry, in file order.
pub(crate) fn check_all(
    raw: Vec<RawSometimes>,
    topology: &Topology,
    source: &Source,
) -> Result<Vec<Sometimes>, ConfigError> {
    (raw.into_iter())
        .map(|raw| check(raw, topology, source))
        .collect()
}

fn check(
    raw: RawSometimes,
    topology: &Topology,
    source: &Source,
) -> Result<Sometimes, ConfigError> {
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

/// `leadership_lapsed`, or `gave_up on agents`.
impl fmt::Display for Sometimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(node) => write!(f, "{} on {node}", self.kind),
            None => f.write_str(self.kind),
        }
    }
}

#[cfg(test)]
mod tests {

    const MINIMAL: &str = "name = \"t\"\nduration = \"1m\"\n[topology]\nmasters = 3\nagents = 2\n";

    fn parse(entries: &str) -> Result<Vec<super::Sometimes>, String> {
        let text = format!("{MINIMAL}{entries}");
        let scenario = crate::scenario::Scenario::parse("t.toml", &text);
        scenario.map(|s| s.sometimes).map_err(|e| e.to_string())
    }

    #[test]
    fn an_entry_names_its_kind_and_its_nodes() {
        let entries = parse(
            "[[sometimes]]\nkind = \"stepped_down\"\n\
             [[sometimes]]\nkind = \"stepped_down\"\nnode = \"master-3\"\n",
        )
        .unwrap();
        assert_eq!(entries[0].to_string(), "stepped_down");
        assert_eq!(entries[1].to_string(), "stepped_down on master-3");
    }

    #[test]
    fn an_unknown_kind_or_a_selector_known_only_in_the_run_is_refused() {
        let error = parse("[[sometimes]]\nkind = \"steped_down\"\n").unwrap_err();
        assert!(
            error.contains("t.toml:7") && error.contains("steped_down"),
            "{error}"
        );
        let error = parse("[[sometimes]]\nkind = \"stepped_down\"\nnode = \"leader\"\n");
        assert!(error
            .unwrap_err()
            .contains("only known while the run goes on"));
    }
}
