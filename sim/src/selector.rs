//! Which nodes a fault or an expectation names: `agent-3`, `agent-1..5`, `agents`, `masters`,
//! `all`.

use std::fmt;

/// The nodes of a scenario: `master-1..=masters`, `agent-1..=agents`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    pub masters: u32,
    pub agents: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    Agent,
}

impl Role {
    pub fn prefix(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
        }
    }
}

/// A parsed selector; [`resolve`](Selector::resolve) lists its nodes in a fixed order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    text: String,
    nodes: Vec<String>,
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
        }
    }

    fn all(&self, role: Role) -> Vec<String> {
        (1..=self.count(role))
            .map(|i| Topology::node_name(role, i))
            .collect()
    }

    /// Every node, masters first.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes = self.all(Role::Master);
        nodes.extend(self.all(Role::Agent));
        nodes
    }

    pub fn agents(&self) -> Vec<String> {
        self.all(Role::Agent)
    }

    /// Parses a selector against this topology.
    pub fn select(&self, text: &str) -> Result<Selector, String> {
        let nodes = match text {
            "all" => self.nodes(),
            "agents" => self.all(Role::Agent),
            "masters" => self.all(Role::Master),
            _ => self.select_named(text)?,
        };
        Ok(Selector {
            text: text.to_string(),
            nodes,
        })
    }

    fn select_named(&self, text: &str) -> Result<Vec<String>, String> {
        let unknown = || {
            format!(
                "unknown node {text:?}: this scenario has {}; a target is a node name, \
                 \"agents\", \"masters\", \"all\" or a range like \"agent-1..5\"",
                self.describe()
            )
        };
        let (role, rest) = [Role::Master, Role::Agent]
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
        format!("{} and {}", part(Role::Master), part(Role::Agent))
    }
}

impl Selector {
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    pub fn contains(&self, node: &str) -> bool {
        self.nodes.iter().any(|n| n == node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: Topology = Topology {
        masters: 1,
        agents: 20,
    };

    #[test]
    fn names_groups_and_ranges() {
        assert_eq!(TOPOLOGY.select("agent-3").unwrap().nodes(), ["agent-3"]);
        assert_eq!(
            TOPOLOGY.select("agent-2..4").unwrap().nodes(),
            ["agent-2", "agent-3", "agent-4"]
        );
        assert_eq!(TOPOLOGY.select("masters").unwrap().nodes(), ["master-1"]);
        assert_eq!(TOPOLOGY.select("agents").unwrap().nodes().len(), 20);
        assert_eq!(TOPOLOGY.select("all").unwrap().nodes().len(), 21);
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
        ] {
            let error = TOPOLOGY.select(bad).unwrap_err();
            assert!(error.contains("agent-1..agent-20"), "{bad}: {error}");
        }
    }
}
