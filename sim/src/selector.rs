//! Which nodes a fault or an expectation names: `agent-3`, `agent-1..5`, `agents`, `masters`,
//! `all`, `store`, and the two resolved when a fault fires: `leader` and `followers`.

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
pub enum Role {
    Master,
    Agent,
    Store,
}

impl Role {
    pub fn prefix(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::Store => "store",
        }
    }
}

pub const STORE: &str = "store-1";

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
    pub fn node_name(role: Role, index: u32) -> String {
        format!("{}-{index}", role.prefix())
    }

    fn count(&self, role: Role) -> u32 {
        match role {
            Role::Master => self.masters,
            Role::Agent => self.agents,
            Role::Store => u32::from(self.store),
        }
    }

    fn all(&self, role: Role) -> Vec<String> {
        (1..=self.count(role))
            .map(|i| Topology::node_name(role, i))
            .collect()
    }

    /// Every node: masters, then agents, then the store.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes = self.all(Role::Master);
        nodes.extend(self.all(Role::Agent));
        nodes.extend(self.all(Role::Store));
        nodes
    }

    pub fn masters(&self) -> Vec<String> {
        self.all(Role::Master)
    }

    pub fn agents(&self) -> Vec<String> {
        self.all(Role::Agent)
    }

    /// Parses a selector against this topology.
    pub fn select(&self, text: &str) -> Result<Selector, String> {
        let target = match text {
            "all" => Target::Nodes(self.nodes()),
            "agents" => Target::Nodes(self.all(Role::Agent)),
            "masters" => Target::Nodes(self.all(Role::Master)),
            "leader" => Target::Leader,
            "followers" => Target::Followers,
            "store" if self.store => Target::Nodes(self.all(Role::Store)),
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
        let (role, rest) = [Role::Master, Role::Agent, Role::Store]
            .into_iter()
            .find_map(|role| {
                text.strip_prefix(role.prefix())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .map(|rest| (role, rest))
            })
            .ok_or_else(unknown)?;
        let (first, last) = match rest.split_once("..") {
            Some((first, last)) => (first, last),
            None => (rest, rest),
        };
        let parse = |n: &str| n.parse::<u32>().map_err(|_| unknown());
        let (first, last) = (parse(first)?, parse(last)?);
        if first == 0 || first > last || last > self.count(role) {
            return Err(unknown());
        }
        Ok((first..=last)
            .map(|i| Topology::node_name(role, i))
            .collect())
    }

    pub fn describe(&self) -> String {
        let part = |role: Role| match self.count(role) {
            0 => format!("no {}s", role.prefix()),
            1 => format!("{}-1", role.prefix()),
            n => format!("{0}-1..{0}-{n}", role.prefix()),
        };
        let mut text = format!("{} and {}", part(Role::Master), part(Role::Agent));
        if self.store {
            text = format!("{}, {} and {STORE}", part(Role::Master), part(Role::Agent));
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
        ] {
            let error = TOPOLOGY.select(bad).unwrap_err();
            assert!(error.contains("agent-1..agent-20"), "{bad}: {error}");
        }
    }
}
