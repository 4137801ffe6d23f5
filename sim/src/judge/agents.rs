//! Checks on the agents as the masters saw them: online, offline, following the leader.

use crate::history::{abbreviate, fmt_time};
use crate::judge::{ms, Check, CheckSpec, Evidence};
use crate::scenario::selector::Selector;
use fleet_core::fmt_duration as show;
use std::time::Duration;

/// Every selected agent is online (as its master sees it) at `at`.
pub(crate) const ALL_ONLINE: CheckSpec = CheckSpec {
    name: "all_online",
    fields: &["agents", "at"],
    parse: |fields| {
        Ok(Box::new(AllOnline {
            agents: fields.agents()?,
            at: fields.required_time("at")?,
        }))
    },
};

#[derive(Debug)]
struct AllOnline {
    agents: Selector,
    at: Duration,
}

impl Check for AllOnline {
    fn title(&self) -> String {
        format!("all_online {} at {}", self.agents, show(self.at))
    }

    /// How many of the selected agents are online.
    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        let nodes = self.agents.nodes().iter();
        let online = nodes.filter(|agent| evidence.online.online_at(agent, ms(self.at)));
        Some(online.count().into())
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let offline: Vec<&str> = self
            .agents
            .nodes()
            .iter()
            .filter(|agent| !evidence.online.online_at(agent, ms(self.at)))
            .map(String::as_str)
            .collect();
        let total = self.agents.nodes().len();
        if offline.is_empty() {
            return (true, format!("{total}/{total} online"));
        }
        let online = total - offline.len();
        let detail = format!(
            "{online}/{total} online; not online: {}",
            abbreviate(&offline)
        );
        (false, detail)
    }
}

/// Every selected agent is offline at some point in `[after, after + within]`.
pub(crate) const OFFLINE_WITHIN: CheckSpec = CheckSpec {
    name: "offline_within",
    fields: &["agents", "after", "within"],
    parse: |fields| {
        let (after, within) = fields.window()?;
        Ok(Box::new(OfflineWithin {
            agents: fields.agents()?,
            after,
            within,
        }))
    },
};

#[derive(Debug)]
struct OfflineWithin {
    agents: Selector,
    after: Duration,
    within: Duration,
}

impl Check for OfflineWithin {
    fn title(&self) -> String {
        let (agents, within, after) = (&self.agents, show(self.within), show(self.after));
        format!("offline_within {agents} {within} after {after}")
    }

    /// Each selected agent's detection time: ms from `after` until it was seen offline
    /// (`null` for one that never was).
    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        let (from, to) = (ms(self.after), ms(self.after + self.within));
        let times: Vec<Option<u64>> = (self.agents.nodes().iter())
            .map(|agent| {
                evidence
                    .online
                    .first_offline(agent, from, to)
                    .map(|t| t - from)
            })
            .collect();
        Some(times.into())
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let (from, to) = (ms(self.after), ms(self.after + self.within));
        let mut slowest = (0u64, "");
        let mut never = Vec::new();
        for agent in self.agents.nodes() {
            match evidence.online.first_offline(agent, from, to) {
                Some(t) if t - from >= slowest.0 => slowest = (t - from, agent),
                Some(_) => {}
                None => never.push(agent.as_str()),
            }
        }
        if !never.is_empty() {
            return (
                false,
                format!("still online at {}: {}", fmt_time(to), abbreviate(&never)),
            );
        }
        let count = self.agents.nodes().len();
        let (slowest_ms, slowest_agent) = slowest;
        let detail = format!("all {count} offline; slowest {slowest_agent} after {slowest_ms}ms");
        (true, detail)
    }
}

/// No selected agent is offline at any moment of `during`.
pub(crate) const NO_OFFLINE: CheckSpec = CheckSpec {
    name: "no_offline",
    fields: &["agents", "during"],
    parse: |fields| {
        Ok(Box::new(NoOffline {
            agents: fields.agents()?,
            during: fields.during(true)?,
        }))
    },
};

#[derive(Debug)]
struct NoOffline {
    agents: Selector,
    during: (Duration, Duration),
}

impl Check for NoOffline {
    fn title(&self) -> String {
        let (from, to) = (show(self.during.0), show(self.during.1));
        format!("no_offline {} during {from}..{to}", self.agents)
    }

    /// How many of the selected agents went offline.
    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        let (from, to) = (ms(self.during.0), ms(self.during.1));
        let nodes = self.agents.nodes().iter();
        let offline =
            nodes.filter(|agent| evidence.online.first_offline(agent, from, to).is_some());
        Some(offline.count().into())
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let (from, to) = (ms(self.during.0), ms(self.during.1));
        let offline: Vec<String> = self
            .agents
            .nodes()
            .iter()
            .filter_map(|agent| {
                let t = evidence.online.first_offline(agent, from, to)?;
                Some(format!("{agent} at {}", fmt_time(t)))
            })
            .collect();
        if offline.is_empty() {
            let count = self.agents.nodes().len();
            return (true, format!("{count} agents stayed online"));
        }
        let names: Vec<&str> = offline.iter().map(String::as_str).collect();
        (false, format!("offline: {}", abbreviate(&names)))
    }
}

/// By `after + within`, every selected agent is registered with the master leading then.
pub(crate) const AGENTS_FOLLOW_LEADER: CheckSpec = CheckSpec {
    name: "agents_follow_leader",
    fields: &["agents", "after", "within"],
    parse: |fields| {
        let (after, within) = fields.window()?;
        Ok(Box::new(AgentsFollowLeader {
            agents: fields.agents()?,
            after,
            within,
        }))
    },
};

#[derive(Debug)]
struct AgentsFollowLeader {
    agents: Selector,
    after: Duration,
    within: Duration,
}

impl Check for AgentsFollowLeader {
    fn title(&self) -> String {
        let (agents, within, after) = (&self.agents, show(self.within), show(self.after));
        format!("agents_follow_leader {agents} {within} after {after}")
    }

    /// How many of the selected agents are registered with the leader.
    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        let at = ms(self.after + self.within);
        let leader = evidence.leaders.leader_at(at)?.node.as_str();
        let nodes = self.agents.nodes().iter();
        let with = nodes.filter(|agent| evidence.online.master_at(agent, at) == Some(leader));
        Some(with.count().into())
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let at = ms(self.after + self.within);
        let Some(leader) = evidence.leaders.leader_at(at) else {
            return (false, format!("no master leads at {}", fmt_time(at)));
        };
        let leader = leader.node.as_str();
        let strays: Vec<&str> = self
            .agents
            .nodes()
            .iter()
            .filter(|agent| evidence.online.master_at(agent, at) != Some(leader))
            .map(String::as_str)
            .collect();
        let total = self.agents.nodes().len();
        if strays.is_empty() {
            return (true, format!("{total}/{total} registered with {leader}"));
        }
        let with_leader = total - strays.len();
        let elsewhere = abbreviate(&strays);
        let detail =
            format!("{with_leader}/{total} registered with {leader}; elsewhere: {elsewhere}");
        (false, detail)
    }
}
