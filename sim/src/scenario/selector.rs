//! Which nodes a fault or an expectation names: `agent-3`, `agent-1..5` (or `agent-1..agent-5`),
//! `agents`, `masters`, `all`, `store`, and the two resolved when a fault fires: `leader` and
//! `followers`.

use std::fmt;

/// The nodes of a scenario: `master-1..=masters`, `agent-1..=agents`, and `store-1` when the
/// cluster keeps its lease in a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    pub masters: u32,
    pub agents: u32,
    pub store: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// What a node is; its name is `{prefix}-{index}`.
pub enum NodeKind {
    Master,
    Agent,
    Store,
}

impl NodeKind {
    pub fn prefix(self) -> &'static str {
        match self {
            NodeKind::Master => "master",
            NodeKind::Agent => "agent",
            NodeKind::Store => "store",
        }
    }
}

pub const STORE: &str = "store-1";

/// A node's index: decimal digits with no sign and no leading zero, so `agent-+1` and
/// `agent-001` are not read as `agent-1`.
fn index(text: &str) -> Option<u32> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Nodes(Vec<String>),
    /// The master leading when the fault fires.
    Leader,
    /// Every master but the one leading when the fault fires.
    Followers,
}

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    text: String,
    target: Target,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Topology {
    pub fn node_name(kind: NodeKind, index: u32) -> String {
        format!("{}-{index}", kind.prefix())
    }

    fn count(&self, kind: NodeKind) -> u32 {
        match kind {
            NodeKind::Master => self.masters,
            NodeKind::Agent => self.agents,
            NodeKind::Store => u32::from(self.store),
        }
    }

    fn all(&self, kind: NodeKind) -> Vec<String> {
        (1..=self.count(kind))
            .map(|i| Topology::node_name(kind, i))
            .collect()
    }

    /// Every node: masters, then agents, then the store.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes = self.all(NodeKind::Master);
        nodes.extend(self.all(NodeKind::Agent));
        nodes.extend(self.all(NodeKind::Store));
        nodes
    }

    pub fn masters(&self) -> Vec<String> {
        self.all(NodeKind::Master)
    }

    pub fn agents(&self) -> Vec<String> {
        self.all(NodeKind::Agent)
    }

    /// Parses a selector against this topology.
    pub fn select(&self, text: &str) -> Result<Selector, String> {
        let target = match text {
            "all" => Target::Nodes(self.nodes()),
            "agents" => Target::Nodes(self.all(NodeKind::Agent)),
            "masters" => Target::Nodes(self.all(NodeKind::Master)),
            "leader" => Target::Leader,
            "followers" => Target::Followers,
            "store" if self.store => Target::Nodes(self.all(NodeKind::Store)),
            "store" => {
                return Err("there is no store: only `[cluster] mode = \"lease\"` has one".into())
            }
            _ => Target::Nodes(self.select_named(text)?),
        };
        Ok(Selector {
            text: text.to_string(),
            target,
        })
    }

    /// A selector whose nodes are known before the run: no `leader` or `followers`.
    pub fn select_fixed(&self, text: &str) -> Result<Selector, String> {
        let selector = self.select(text)?;
        if selector.is_dynamic() {
            return Err(format!(
                "{text:?} is only known while the run goes on; name nodes here, like \"agents\" or \"master-2\""
            ));
        }
        Ok(selector)
    }

    fn select_named(&self, text: &str) -> Result<Vec<String>, String> {
        let unknown = || {
            format!(
                "unknown node {text:?}: this scenario has {}; a target is a node name, \
                 \"agents\", \"masters\", \"all\", \"leader\", \"followers\", \"store\" or a \
                 range like \"agent-1..5\"",
                self.describe()
            )
        };
        let (kind, rest) = [NodeKind::Master, NodeKind::Agent, NodeKind::Store]
            .into_iter()
            .find_map(|kind| {
                text.strip_prefix(kind.prefix())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .map(|rest| (kind, rest))
            })
            .ok_or_else(unknown)?;
        let (first, last) = match rest.split_once("..") {
            // `agent-1..agent-3`, as the tool prints ranges, or `agent-1..3`.
            Some((first, last)) => {
                let last = last
                    .strip_prefix(kind.prefix())
                    .and_then(|last| last.strip_prefix('-'))
                    .unwrap_or(last);
                (first, last)
            }
            None => (rest, rest),
        };
        let parse = |n: &str| index(n).ok_or_else(unknown);
        let (first, last) = (parse(first)?, parse(last)?);
        if first == 0 || first > last || last > self.count(kind) {
            return Err(unknown());
        }
        Ok((first..=last)
            .map(|i| Topology::node_name(kind, i))
            .collect())
    }

    pub fn describe(&self) -> String {
        let part = |kind: NodeKind| match self.count(kind) {
            0 => format!("no {}s", kind.prefix()),
            1 => format!("{}-1", kind.prefix()),
            n => format!("{0}-1..{0}-{n}", kind.prefix()),
        };
        let mut text = format!("{} and {}", part(NodeKind::Master), part(NodeKind::Agent));
        if self.store {
            text = format!(
                "{}, {} and {STORE}",
                part(NodeKind::Master),
                part(NodeKind::Agent)
            );
        }
        text
    }
}

impl Selector {
    /// `leader` and `followers` depend on who leads when they are used.
    pub fn is_dynamic(&self) -> bool {
        !matches!(self.target, Target::Nodes(_))
    }

    /// The selected nodes, given the master leading now (if any). With no leader, `leader`
    /// selects nothing and `followers` every master.
    pub fn resolve(&self, leader: Option<&str>, topology: &Topology) -> Vec<String> {
        match &self.target {
            Target::Nodes(nodes) => nodes.clone(),
            Target::Leader => leader.map(str::to_string).into_iter().collect(),
            Target::Followers => topology
                .masters()
                .into_iter()
                .filter(|master| Some(master.as_str()) != leader)
                .collect(),
        }
    }

    /// The nodes of a fixed selector; empty for `leader` and `followers`.
    pub fn nodes(&self) -> &[String] {
        match &self.target {
            Target::Nodes(nodes) => nodes,
            Target::Leader | Target::Followers => &[],
        }
    }

    pub fn contains(&self, node: &str) -> bool {
        self.nodes().iter().any(|n| n == node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: Topology = Topology {
        masters: 3,
        agents: 20,
        store: false,
    };

    #[test]
    fn names_groups_and_ranges() {
        assert_eq!(TOPOLOGY.select("agent-3").unwrap().nodes(), ["agent-3"]);
        assert_eq!(
            TOPOLOGY.select("agent-2..4").unwrap().nodes(),
            ["agent-2", "agent-3", "agent-4"]
        );
        assert_eq!(
            TOPOLOGY.select("agent-2..agent-4").unwrap().nodes(),
            ["agent-2", "agent-3", "agent-4"]
        );
        assert_eq!(TOPOLOGY.select("agent-10").unwrap().nodes(), ["agent-10"]);
        assert_eq!(TOPOLOGY.select("masters").unwrap().nodes().len(), 3);
        assert_eq!(TOPOLOGY.select("agents").unwrap().nodes().len(), 20);
        assert_eq!(TOPOLOGY.select("all").unwrap().nodes().len(), 23);
    }

    #[test]
    fn leader_and_followers_resolve_when_used() {
        let leader = TOPOLOGY.select("leader").unwrap();
        let followers = TOPOLOGY.select("followers").unwrap();
        assert_eq!(leader.resolve(Some("master-2"), &TOPOLOGY), ["master-2"]);
        assert_eq!(
            followers.resolve(Some("master-2"), &TOPOLOGY),
            ["master-1", "master-3"]
        );
        assert!(leader.resolve(None, &TOPOLOGY).is_empty());
        assert_eq!(followers.resolve(None, &TOPOLOGY).len(), 3);
        assert!(TOPOLOGY.select_fixed("leader").is_err());
    }

    #[test]
    fn the_store_exists_only_in_lease_mode() {
        assert!(TOPOLOGY.select("store").unwrap_err().contains("lease"));
        let with_store = Topology {
            store: true,
            ..TOPOLOGY
        };
        assert_eq!(with_store.select("store").unwrap().nodes(), [STORE]);
        assert_eq!(with_store.select("all").unwrap().nodes().len(), 24);
    }

    #[test]
    fn unknown_nodes_list_what_exists() {
        for bad in [
            "agent-21",
            "agent-0",
            "agent-5..2",
            "node-1",
            "agent-x",
            "agent-",
            "master-4",
            "agent-+1",
            "agent-001",
            "agent-01..3",
            "agent-1..master-3",
            "agent-1..+3",
        ] {
            let error = TOPOLOGY.select(bad).unwrap_err();
            assert!(error.contains("agent-1..agent-20"), "{bad}: {error}");
        }
    }
}
