//! What `as = "NAME"` captured, firing by firing: `@NAME` at a moment means the latest firing at
//! or before it.

use crate::history::{Entry, FaultEvent};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captures {
    /// By name: each firing's moment and nodes, in time order.
    firings: BTreeMap<String, Vec<(u64, Vec<String>)>>,
}

impl Captures {
    pub(crate) fn from_entries(entries: &[Entry]) -> Captures {
        let mut captures = Captures::default();
        for entry in entries {
            if let Some(FaultEvent::Captured { name, nodes }) = entry.fault() {
                captures.record(name, entry.t_ms, nodes.clone());
            }
        }
        captures
    }

    pub fn record(&mut self, name: &str, t_ms: u64, nodes: Vec<String>) {
        self.firings
            .entry(name.to_string())
            .or_default()
            .push((t_ms, nodes));
    }

    /// The nodes `name` means at `t_ms`; none before its first firing.
    pub fn at(&self, name: &str, t_ms: u64) -> Vec<String> {
        (self.firings.get(name).into_iter().flatten())
            .take_while(|(at, _)| *at <= t_ms)
            .last()
            .map(|(_, nodes)| nodes.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_means_its_latest_firing() {
        let mut captures = Captures::default();
        captures.record("old", 1000, vec!["master-1".into()]);
        captures.record("old", 5000, vec!["master-3".into()]);
        assert!(captures.at("old", 999).is_empty());
        assert_eq!(captures.at("old", 1000), ["master-1"]);
        assert_eq!(captures.at("old", 4999), ["master-1"]);
        assert_eq!(captures.at("old", 9000), ["master-3"]);
        assert!(captures.at("new", 9000).is_empty());
    }
}
