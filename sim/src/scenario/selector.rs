//! Which nodes a fault or an expectation names: `agent-3`, `agent-1..5` (or `agent-1..agent-5`),
//! `agents`, `masters`, `all`, `store`, `broker`; those resolved when they are used: `leader`,
//! `followers`, `@NAME` (what an earlier fault captured) and `any(SEL, K)` (drawn from the
//! seed); and expressions of them with ` + ` and ` - `, read left to right.

use std::collections::BTreeSet;
use std::fmt;

/// The nodes of a scenario: `master-1..=masters`, `agent-1..=agents`, `store-1` when the
/// cluster keeps its lease in a store, and `broker-1` when the transport is MQTT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Topology {
    pub masters: u32,
    pub agents: u32,
    pub store: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub broker: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// What a node is; its name is `{prefix}-{index}`.
pub enum NodeKind {
    Master,
    Agent,
    Store,
    Broker,
}

impl NodeKind {
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            NodeKind::Master => "master",
            NodeKind::Agent => "agent",
            NodeKind::Store => "store",
            NodeKind::Broker => "broker",
        }
    }
}

pub(crate) const STORE: &str = "store-1";
pub(crate) const BROKER: &str = "broker-1";

/// A node's index: decimal digits with no sign and no leading zero, so `agent-+1` and
/// `agent-001` are not read as `agent-1`.
fn index(text: &str) -> Option<u32> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

/// One operand of a selector expression.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Term {
    Nodes(Vec<String>),
    /// The master leading at the moment of use.
    Leader,
    /// Every master but the one leading at the moment of use.
    Followers,
    /// `@NAME`: the nodes the latest firing of the fault captured as NAME.
    Capture(String),
    /// `any(SEL, K)`: K distinct nodes of SEL, drawn from the run's seed.
    Any(Box<Expr>, usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Union,
    Difference,
}

/// `A + B - C`: read left to right.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expr {
    first: Term,
    rest: Vec<(Op, Term)>,
}

/// What a selector needs from the moment it is used: who leads, what was captured, and a
/// draw from the run's seed.
pub(crate) trait Scope {
    fn leader(&self) -> Option<String>;
    /// The nodes of the latest firing that captured `name`; none before the first.
    fn capture(&self, name: &str) -> Vec<String>;
    /// An index below `len` (at least 1).
    fn pick(&mut self, len: usize) -> usize;
}

/// A scope that knows only who leads: no captures, and `any` takes the first nodes.
pub(crate) struct LeaderOnly<'a>(pub Option<&'a str>);

impl Scope for LeaderOnly<'_> {
    fn leader(&self) -> Option<String> {
        self.0.map(str::to_string)
    }
    fn capture(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn pick(&mut self, _: usize) -> usize {
        0
    }
}

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    text: String,
    expr: Expr,
    /// The nodes, when they are known before the run.
    fixed: Option<Vec<String>>,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Node names as selectors, as short as they go: every agent is `agents`, a run of
/// neighbours `agent-2..agent-5`.
pub(crate) fn compact(nodes: &[String]) -> Vec<String> {
    let split = |node: &String| -> Option<(String, u32)> {
        let (prefix, index) = node.rsplit_once('-')?;
        Some((prefix.to_string(), index.parse().ok()?))
    };
    let mut out = Vec::new();
    let mut run: Option<(String, u32, u32)> = None;
    let flush = |run: Option<(String, u32, u32)>, out: &mut Vec<String>| {
        if let Some((prefix, first, last)) = run {
            out.push(if first == last {
                format!("{prefix}-{first}")
            } else {
                format!("{prefix}-{first}..{prefix}-{last}")
            });
        }
    };
    for node in nodes {
        match (split(node), &mut run) {
            (Some((prefix, index)), Some((p, _, last))) if *p == prefix && *last + 1 == index => {
                *last = index;
            }
            (Some((prefix, index)), _) => {
                flush(run.take(), &mut out);
                run = Some((prefix, index, index));
            }
            (None, _) => {
                flush(run.take(), &mut out);
                out.push(node.clone());
            }
        }
    }
    flush(run, &mut out);
    out
}

/// Splits `text` at whitespace outside parentheses.
fn tokens(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, None);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return Err(format!("{text:?} closes a parenthesis it never opened"));
        }
        if c.is_whitespace() && depth == 0 {
            if let Some(from) = start.take() {
                out.push(&text[from..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if depth != 0 {
        return Err(format!("{text:?} leaves a parenthesis open"));
    }
    if let Some(from) = start {
        out.push(&text[from..]);
    }
    Ok(out)
}

/// A capture's name: lowercase letters, digits and `_`, starting with a letter.
pub(crate) fn check_capture_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let good = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if good {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a capture name: lowercase letters, digits and _, starting with a letter"
        ))
    }
}

impl Topology {
    pub(crate) fn node_name(kind: NodeKind, index: u32) -> String {
        format!("{}-{index}", kind.prefix())
    }

    fn count(&self, kind: NodeKind) -> u32 {
        match kind {
            NodeKind::Master => self.masters,
            NodeKind::Agent => self.agents,
            NodeKind::Store => u32::from(self.store),
            NodeKind::Broker => u32::from(self.broker),
        }
    }

    fn all(&self, kind: NodeKind) -> Vec<String> {
        (1..=self.count(kind))
            .map(|i| Topology::node_name(kind, i))
            .collect()
    }

    /// Every node: masters, then agents, then the store and the broker.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes = self.all(NodeKind::Master);
        nodes.extend(self.all(NodeKind::Agent));
        nodes.extend(self.all(NodeKind::Store));
        nodes.extend(self.all(NodeKind::Broker));
        nodes
    }

    pub fn masters(&self) -> Vec<String> {
        self.all(NodeKind::Master)
    }

    pub fn agents(&self) -> Vec<String> {
        self.all(NodeKind::Agent)
    }

    /// Parses a selector against this topology: a node, a range, a group, `leader`,
    /// `followers`, `@NAME`, `any(SEL)` or `any(SEL, K)`, joined by ` + ` (union) and ` - `
    /// (difference), read left to right.
    pub fn select(&self, text: &str) -> Result<Selector, String> {
        let expr = self.expr(text)?;
        let fixed = expr.fixed(self);
        Ok(Selector {
            text: text.to_string(),
            expr,
            fixed,
        })
    }

    fn expr(&self, text: &str) -> Result<Expr, String> {
        let tokens = tokens(text)?;
        let Some((first, rest)) = tokens.split_first() else {
            return Err("an empty selector selects nothing; name a node or a group".into());
        };
        let mut expr = Expr {
            first: self.term(first)?,
            rest: Vec::new(),
        };
        for pair in rest.chunks(2) {
            let op = match pair[0] {
                "+" => Op::Union,
                "-" => Op::Difference,
                other => {
                    return Err(format!(
                        "expected + or - between selectors in {text:?}, got {other:?} \
                         (operators take a space on each side)"
                    ))
                }
            };
            let Some(term) = pair.get(1) else {
                return Err(format!("{text:?} ends with an operator"));
            };
            expr.rest.push((op, self.term(term)?));
        }
        Ok(expr)
    }

    fn term(&self, text: &str) -> Result<Term, String> {
        if let Some(inner) = text.strip_prefix("any(").and_then(|t| t.strip_suffix(')')) {
            let (of, count) = match inner.rsplit_once(',') {
                Some((of, count)) if !count.contains(')') => {
                    let count: usize =
                        count
                            .trim()
                            .parse()
                            .ok()
                            .filter(|&k| k > 0)
                            .ok_or_else(|| {
                                format!(
                                    "any(SEL, K) takes a count of at least 1, got {:?}",
                                    count.trim()
                                )
                            })?;
                    (of, count)
                }
                _ => (inner, 1),
            };
            return Ok(Term::Any(Box::new(self.expr(of.trim())?), count));
        }
        if let Some(name) = text.strip_prefix('@') {
            check_capture_name(name)?;
            return Ok(Term::Capture(name.to_string()));
        }
        Ok(match text {
            "all" => Term::Nodes(self.nodes()),
            "agents" => Term::Nodes(self.all(NodeKind::Agent)),
            "masters" => Term::Nodes(self.all(NodeKind::Master)),
            "leader" => Term::Leader,
            "followers" => Term::Followers,
            "store" if self.store => Term::Nodes(self.all(NodeKind::Store)),
            "store" => {
                return Err("there is no store: only `[cluster] mode = \"lease\"` has one".into())
            }
            "broker" if self.broker => Term::Nodes(self.all(NodeKind::Broker)),
            "broker" => {
                let why = "there is no broker: only `[params.transport] kind = \"mqtt\"` has one";
                return Err(why.into());
            }
            _ => Term::Nodes(self.select_named(text)?),
        })
    }

    /// The selector that names `nodes` as briefly as it goes (runs of neighbours as ranges),
    /// its parts joined by `join` (`" + "` for one end of a link).
    pub fn select_nodes(&self, nodes: &[String], join: &str) -> Selector {
        let text = compact(nodes).join(join);
        (self.select(&text)).expect("a topology's own nodes always select")
    }

    /// `nodes` as a partition's group names them: one selector for each run of neighbours.
    pub fn select_runs(&self, nodes: &[String]) -> Vec<Selector> {
        (compact(nodes).iter())
            .map(|run| (self.select(run)).expect("a topology's own nodes always select"))
            .collect()
    }

    /// A selector whose nodes are known before the run: no `leader`, `followers`, `@NAME` or
    /// `any`.
    pub(crate) fn select_fixed(&self, text: &str) -> Result<Selector, String> {
        let selector = self.select(text)?;
        if selector.is_dynamic() {
            return Err(format!(
                "{text:?} is only known while the run goes on; name nodes here, like \"agents\" or \"master-2\""
            ));
        }
        Ok(selector)
    }

    /// Orders `nodes` as [`Topology::nodes`] does, without repeats.
    fn ordered(&self, nodes: &[String]) -> Vec<String> {
        (self.nodes().into_iter())
            .filter(|node| nodes.contains(node))
            .collect()
    }

    fn select_named(&self, text: &str) -> Result<Vec<String>, String> {
        let unknown = || {
            format!(
                "unknown node {text:?}: this scenario has {}; a target is a node name, \
                 \"agents\", \"masters\", \"all\", \"leader\", \"followers\", \"store\", \"broker\", a \
                 range like \"agent-1..5\", \"@NAME\" or \"any(SEL, K)\", joined by + and -",
                self.describe()
            )
        };
        let kinds = [
            NodeKind::Master,
            NodeKind::Agent,
            NodeKind::Store,
            NodeKind::Broker,
        ];
        let (kind, rest) = kinds
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

    pub(crate) fn describe(&self) -> String {
        let part = |kind: NodeKind| match self.count(kind) {
            0 => format!("no {}s", kind.prefix()),
            1 => format!("{}-1", kind.prefix()),
            n => format!("{0}-1..{0}-{n}", kind.prefix()),
        };
        let mut parts = vec![part(NodeKind::Master), part(NodeKind::Agent)];
        parts.extend(self.store.then(|| STORE.to_string()));
        parts.extend(self.broker.then(|| BROKER.to_string()));
        let last = parts.pop().expect("masters and agents");
        format!("{} and {last}", parts.join(", "))
    }
}

impl Expr {
    fn terms(&self) -> impl Iterator<Item = &Term> {
        std::iter::once(&self.first).chain(self.rest.iter().map(|(_, term)| term))
    }

    /// The nodes, if no term depends on the run.
    fn fixed(&self, topology: &Topology) -> Option<Vec<String>> {
        let mut scope = LeaderOnly(None);
        (self.terms().all(|term| matches!(term, Term::Nodes(_))))
            .then(|| self.resolve(topology, &mut scope))
    }

    fn resolve(&self, topology: &Topology, scope: &mut dyn Scope) -> Vec<String> {
        let mut nodes = self.first.resolve(topology, scope);
        for (op, term) in &self.rest {
            let other = term.resolve(topology, scope);
            match op {
                Op::Union => nodes.extend(other),
                Op::Difference => nodes.retain(|node| !other.contains(node)),
            }
        }
        topology.ordered(&nodes)
    }
}

impl Term {
    fn resolve(&self, topology: &Topology, scope: &mut dyn Scope) -> Vec<String> {
        match self {
            Term::Nodes(nodes) => nodes.clone(),
            Term::Leader => scope.leader().into_iter().collect(),
            Term::Followers => {
                let leader = scope.leader();
                (topology.masters().into_iter())
                    .filter(|master| Some(master) != leader.as_ref())
                    .collect()
            }
            Term::Capture(name) => scope.capture(name),
            Term::Any(of, count) => {
                let mut pool = of.resolve(topology, scope);
                let mut drawn = Vec::new();
                while drawn.len() < *count && !pool.is_empty() {
                    let index = scope.pick(pool.len());
                    drawn.push(pool.remove(index.min(pool.len() - 1)));
                }
                drawn
            }
        }
    }

    fn each(&self, visit: &mut dyn FnMut(&Term)) {
        visit(self);
        if let Term::Any(of, _) = self {
            for term in of.terms() {
                term.each(visit);
            }
        }
    }
}

impl Selector {
    /// Whether the nodes depend on the run: `leader`, `followers`, `@NAME` or `any`.
    pub(crate) fn is_dynamic(&self) -> bool {
        self.fixed.is_none()
    }

    /// `leader` or `followers` alone: masters, whichever they turn out to be.
    pub(crate) fn only_masters(&self) -> bool {
        self.expr.rest.is_empty() && matches!(self.expr.first, Term::Leader | Term::Followers)
    }

    /// Refuses a selector that certainly names a node of another kind: a fixed node, or
    /// `leader`/`followers` where agents are meant. `what` names the operation, as in
    /// "commands go to agents".
    pub(crate) fn only_of(&self, kind: NodeKind, what: &str) -> Result<(), String> {
        if let Some(node) = self
            .nodes()
            .iter()
            .find(|node| !node.starts_with(kind.prefix()))
        {
            return Err(format!("{what}; {node} is not one"));
        }
        if kind != NodeKind::Master && self.only_masters() {
            return Err(format!("{what}, not masters"));
        }
        Ok(())
    }

    /// The nodes at the moment `scope` describes, in topology order.
    pub(crate) fn resolve(&self, topology: &Topology, scope: &mut dyn Scope) -> Vec<String> {
        match &self.fixed {
            Some(nodes) => nodes.clone(),
            None => self.expr.resolve(topology, scope),
        }
    }

    /// The nodes of a fixed selector; empty for one that depends on the run.
    pub fn nodes(&self) -> &[String] {
        self.fixed.as_deref().unwrap_or(&[])
    }

    pub fn contains(&self, node: &str) -> bool {
        self.nodes().iter().any(|n| n == node)
    }

    /// The nodes of a fixed selector as a set: what a check that asks of every timeline entry
    /// whether its node is one should look in (a fleet's selector holds thousands).
    pub fn members(&self) -> BTreeSet<&str> {
        self.nodes().iter().map(String::as_str).collect()
    }

    /// The captures it reads (`@NAME`), in order.
    pub fn captures(&self) -> Vec<String> {
        let mut names = Vec::new();
        for term in self.expr.terms() {
            term.each(&mut |term| {
                if let Term::Capture(name) = term {
                    names.push(name.clone());
                }
            });
        }
        names
    }

    /// Whether it draws nodes (`any`).
    pub fn draws(&self) -> bool {
        let mut draws = false;
        for term in self.expr.terms() {
            term.each(&mut |term| draws |= matches!(term, Term::Any(..)));
        }
        draws
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: Topology = Topology {
        masters: 3,
        agents: 20,
        store: false,
        broker: false,
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
        assert_eq!(
            leader.resolve(&TOPOLOGY, &mut LeaderOnly(Some("master-2"))),
            ["master-2"]
        );
        assert_eq!(
            followers.resolve(&TOPOLOGY, &mut LeaderOnly(Some("master-2"))),
            ["master-1", "master-3"]
        );
        assert!(leader.resolve(&TOPOLOGY, &mut LeaderOnly(None)).is_empty());
        assert_eq!(followers.resolve(&TOPOLOGY, &mut LeaderOnly(None)).len(), 3);
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
    fn the_broker_exists_only_over_mqtt() {
        assert!(TOPOLOGY.select("broker").unwrap_err().contains("mqtt"));
        assert!(TOPOLOGY.select("broker-1").is_err());
        let with_broker = Topology {
            broker: true,
            ..TOPOLOGY
        };
        for name in ["broker", "broker-1"] {
            assert_eq!(with_broker.select(name).unwrap().nodes(), [BROKER]);
        }
        assert_eq!(with_broker.select("all").unwrap().nodes().len(), 24);
        assert!(with_broker.describe().ends_with("and broker-1"));
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

    struct Fixed {
        leader: Option<&'static str>,
        old: Vec<String>,
        picks: Vec<usize>,
    }

    impl Scope for Fixed {
        fn leader(&self) -> Option<String> {
            self.leader.map(str::to_string)
        }
        fn capture(&self, name: &str) -> Vec<String> {
            if name == "old" {
                self.old.clone()
            } else {
                Vec::new()
            }
        }
        fn pick(&mut self, len: usize) -> usize {
            self.picks.remove(0) % len
        }
    }

    #[test]
    fn expressions_read_left_to_right_and_resolve_when_used() {
        let mut scope = Fixed {
            leader: Some("master-2"),
            old: vec!["master-1".into()],
            picks: vec![1, 0],
        };
        let resolve = |text: &str, scope: &mut Fixed| {
            TOPOLOGY.select(text).unwrap().resolve(&TOPOLOGY, scope)
        };
        assert_eq!(
            resolve("masters - @old", &mut scope),
            ["master-2", "master-3"]
        );
        assert_eq!(
            resolve("masters - @old + master-1", &mut scope),
            ["master-1", "master-2", "master-3"]
        );
        assert_eq!(
            resolve("agent-1 + leader", &mut scope),
            ["master-2", "agent-1"]
        );
        assert_eq!(resolve("@never", &mut scope), Vec::<String>::new());
        // any: the draws pick index 1 of [master-1, master-3], then index 0 of what is left.
        assert_eq!(
            resolve("any(followers, 2)", &mut scope),
            ["master-1", "master-3"]
        );
        let mut scope = Fixed {
            leader: None,
            old: Vec::new(),
            picks: vec![2],
        };
        assert_eq!(resolve("any(masters - @old)", &mut scope), ["master-3"]);
        let fixed = TOPOLOGY.select("masters - master-2").unwrap();
        assert!(!fixed.is_dynamic());
        assert_eq!(fixed.nodes(), ["master-1", "master-3"]);
        let dynamic = TOPOLOGY.select("leader + any(agents - @x, 3)").unwrap();
        assert!(dynamic.is_dynamic() && dynamic.draws());
        assert_eq!(dynamic.captures(), ["x"]);
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (bad, says) in [
            ("masters -", "ends with an operator"),
            ("masters-1", "unknown node"),
            ("masters * agents", "expected + or -"),
            ("any(masters, 0)", "at least 1"),
            ("any(masters", "parenthesis"),
            ("masters)", "parenthesis"),
            ("@Old", "capture name"),
            ("", "empty"),
        ] {
            let error = TOPOLOGY.select(bad).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }
}
