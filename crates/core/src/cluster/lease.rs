//! Mode `lease`: the leader is whoever holds a lease in a Redis-like store.
//!
//! A follower asks every `sync_interval` to acquire the lease; the store grants it when nobody
//! holds it (set-if-absent with a TTL of `lease_period`) and stamps the grant with a fencing
//! token that only ever increases, or else answers who holds it. The holder renews every
//! `renew_interval` by compare-and-extend. It believes it leads until `lease_period` after it
//! *sent* its last successful request; the store's TTL started later, when the request arrived,
//! so the holder lets go first and no two nodes believe they hold the lease at once (given
//! clocks that run at the same rate).
//!
//! The commands and config the masters agree on live in the store too, beside the lease: the
//! holder writes each new version there (only while it still holds the lease, checked by the
//! store in the same script) before it counts as committed, and a new holder reads it before
//! it leads. Losing a holder loses nothing it committed; the store is the one copy, as it is
//! the one arbiter of the lease.
//!
//! The five scripts below and a `GET` are the whole protocol: a real Redis runs them as Lua,
//! and the simulated store runs exactly these texts.

use super::{ClusterEvent, Membership, Output, Role, Snapshot, Version};
use crate::bugs::{Bug, Bugs};
use crate::resp::Value;
use crate::timeline::{Event, Events, LeaseEvent};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Grants the lease if free (`{1, "node token process"}`) or names its holder (`{0, value}`).
/// The holder's value names the node, the grant's fencing token and the node's process, so
/// what one process sends (a release held up on a dropped connection) never acts on a lease
/// a later process of the same node holds.
/// KEYS: lease key, token counter key. ARGV: node name, lease period in ms, process.
pub const ACQUIRE_SCRIPT: &str = "\
local holder = redis.call('GET', KEYS[1])
if holder then return {0, holder} end
local token = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. ' ' .. token .. ' ' .. ARGV[3]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value}";

/// Takes over a lease held in this node's name by an earlier process (or granted to this one
/// after it gave up on the reply): if `ARGV[1]` still holds it, it becomes `ARGV[2]`, with the
/// same token, for `ARGV[3]` ms: 1, else 0.
pub const RESUME_SCRIPT: &str = "\
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0";

/// Extends the lease if `ARGV[1]` (`"node token process"`) still holds it: 1, else 0.
pub const RENEW_SCRIPT: &str = "\
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// Writes the replicated state at index `ARGV[3]` if `ARGV[1]` (the holder's value) still holds
/// the lease: 1, else 0. A state no newer than the one stored is not written (a write held up
/// on a dropped connection can arrive after a newer one), but still answered 1: the store holds
/// at least that much.
/// KEYS: lease key, state key, state index key. ARGV: holder, the state's record, its index.
pub const WRITE_STATE_SCRIPT: &str = "\
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > tonumber(redis.call('GET', KEYS[3]) or '0') then
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('SET', KEYS[3], ARGV[3])
end
return 1";

/// Gives the lease up if `ARGV[1]` still holds it: 1, else 0.
pub const RELEASE_SCRIPT: &str = "\
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

#[derive(Clone, Debug, PartialEq)]
pub struct LeaseConfig {
    /// The store key holding `"node token"`; the token counter is `{key}:token`.
    pub key: String,
    pub lease_period: Duration,
    pub renew_interval: Duration,
    pub sync_interval: Duration,
    /// The largest error of any clock's rate it tolerates (0.05: every clock runs between 95%
    /// and 105% of true time). The holder believes it holds for only `lease_period × (1 −
    /// max_drift) / (1 + max_drift)` of its own clock after it sent the request: with every
    /// clock within the bound, that ends before the store's TTL runs out.
    pub max_drift: f64,
    /// Bugs planted for the harness to find (none outside a `bugs` build).
    pub bugs: Bugs,
}

/// The rate error a lease tolerates unless told otherwise.
pub const DEFAULT_MAX_DRIFT: f64 = 0.05;

impl Default for LeaseConfig {
    /// A 10s lease renewed every 3s; followers ask every 2s.
    fn default() -> Self {
        LeaseConfig::new(
            Duration::from_secs(10),
            Duration::from_secs(3),
            Duration::from_secs(2),
        )
    }
}

impl LeaseConfig {
    pub fn new(lease_period: Duration, renew_interval: Duration, sync_interval: Duration) -> Self {
        LeaseConfig {
            key: "fleet:leader".to_string(),
            lease_period,
            renew_interval,
            sync_interval,
            max_drift: DEFAULT_MAX_DRIFT,
            bugs: Bugs::NONE,
        }
    }

    /// How long after sending its request the holder believes it holds the lease, by its own
    /// clock (see [`LeaseConfig::max_drift`]).
    pub fn held_for(&self) -> Duration {
        if self.bugs.has(Bug::LeaseNoDriftMargin) {
            return self.lease_period;
        }
        let drift = self.max_drift;
        self.lease_period.mul_f64((1.0 - drift) / (1.0 + drift))
    }

    /// What a lease needs to be safe and live: the holder renews well before its lease runs
    /// out, and every interval is above zero.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_interval.is_zero() || self.sync_interval.is_zero() {
            return Err("renew_interval and sync_interval must be greater than 0".into());
        }
        if self.lease_period <= self.renew_interval {
            return Err(format!(
                "lease_period ({}) must be greater than renew_interval ({})",
                crate::fmt_duration(self.lease_period),
                crate::fmt_duration(self.renew_interval)
            ));
        }
        if !(0.0..0.5).contains(&self.max_drift) {
            return Err(format!(
                "max_drift ({}) is a rate error from 0 to below 0.5 (0.05: clocks within 5%)",
                self.max_drift
            ));
        }
        if self.held_for() <= self.renew_interval {
            return Err(format!(
                "with max_drift {} the holder counts its lease as {}, which must exceed \
                 renew_interval ({})",
                self.max_drift,
                crate::fmt_duration(self.held_for()),
                crate::fmt_duration(self.renew_interval)
            ));
        }
        Ok(())
    }

    fn token_key(&self) -> String {
        format!("{}:token", self.key)
    }

    /// Where the replicated state lives: `{key}:state`.
    pub fn state_key(&self) -> String {
        format!("{}:state", self.key)
    }

    /// The index of the state stored: `{key}:state:index`.
    fn state_index_key(&self) -> String {
        format!("{}:state:index", self.key)
    }
}

/// One command for the store; replies come back in the order requests were sent.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreRequest {
    pub id: u64,
    pub command: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LeaseAction {
    Send(StoreRequest),
    /// The store stopped answering: drop the connection; the next request dials again.
    Reconnect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Acquire,
    Renew,
    Release,
    /// Take back a lease the store says is ours (an earlier incarnation's grant, or a grant
    /// whose reply came after we gave up on it) by compare-and-extend with its token.
    Resume {
        token: u64,
    },
    /// A new holder reads the replicated state before it leads.
    Load,
    /// The holder writes the state at `index`.
    Write {
        index: u64,
    },
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    id: u64,
    kind: Kind,
    sent_at: Instant,
}

pub struct LeaseNode {
    me: String,
    config: LeaseConfig,
    /// The token of our grant while we hold the lease.
    held: Option<(u64, Instant)>,
    /// The holder we last heard of, and its token.
    leader: Option<(String, u64)>,
    next_request_at: Instant,
    /// A lease in our name waits to be taken back: its token and the value it is held under.
    resume: Option<(u64, String)>,
    /// This process, in the holder's value: a number the shell draws at each start.
    process: u64,
    /// The value the lease being resumed is held under.
    resume_from: Option<String>,
    pending: Option<Pending>,
    next_id: u64,
    closed: bool,
    /// Holding the lease, it has not read the replicated state yet: it does not lead.
    loading: bool,
    /// The newest proposal the store has not acknowledged: `(index, state)`.
    unwritten: Option<(u64, Vec<u8>)>,
    /// The newest index the store acknowledged, while it holds the lease.
    commit: Option<u64>,
    /// The state read from the store, for the shell to install.
    install: Option<Snapshot>,
    /// A read or write of the state failed: the next waits until then.
    state_retry_at: Option<Instant>,
    actions: VecDeque<LeaseAction>,
    changes: VecDeque<ClusterEvent>,
    /// What it reports, until the shell takes it.
    events: Events,
}

/// Splits `"node token process"` (the process may be missing) into the node and the token.
fn parse_holder(value: &Value) -> Option<(String, u64)> {
    let text = value.as_text()?;
    let mut parts = text.split(' ');
    let node = parts.next()?;
    let token = parts.next()?.parse().ok()?;
    Some((node.to_string(), token))
}

impl LeaseNode {
    pub fn new(me: &str, config: LeaseConfig, now: Instant) -> Self {
        debug_assert!(config.lease_period > config.renew_interval);
        LeaseNode {
            me: me.to_string(),
            config,
            held: None,
            leader: None,
            next_request_at: now,
            resume: None,
            process: 0,
            resume_from: None,
            pending: None,
            next_id: 0,
            closed: false,
            loading: false,
            unwritten: None,
            commit: None,
            install: None,
            state_retry_at: None,
            actions: VecDeque::new(),
            changes: VecDeque::from([ClusterEvent::StartUp]),
            events: Events::default(),
        }
    }

    /// Names this process in the holder's value (see [`ACQUIRE_SCRIPT`]): the shell draws a
    /// number at each start. Call before any input.
    pub fn with_process(mut self, process: u64) -> Self {
        self.process = process;
        self
    }

    /// What the store holds while this process holds the grant with `token`.
    fn holder_value(&self, token: u64) -> String {
        format!("{} {token} {}", self.me, self.process)
    }

    fn request_timeout(&self) -> Duration {
        self.config.renew_interval.min(self.config.sync_interval)
    }

    fn send(&mut self, now: Instant, kind: Kind) {
        let command = self.command(kind);
        self.next_id += 1;
        self.pending = Some(Pending {
            id: self.next_id,
            kind,
            sent_at: now,
        });
        self.actions.push_back(LeaseAction::Send(StoreRequest {
            id: self.next_id,
            command,
        }));
    }

    /// The write of the newest proposal, at `index`, under the grant with `token`.
    fn write_command(&self, token: u64, index: u64) -> Value {
        let (_, state) = self.unwritten.as_ref().expect("a write has a state");
        let version = Version { term: token, index };
        let record = Snapshot {
            version,
            state: state.clone(),
        }
        .to_record();
        Value::Array(Some(vec![
            Value::bulk("EVAL"),
            Value::bulk(WRITE_STATE_SCRIPT),
            Value::bulk("3"),
            Value::bulk(&self.config.key),
            Value::bulk(self.config.state_key()),
            Value::bulk(self.config.state_index_key()),
            Value::bulk(self.holder_value(token)),
            Value::Bulk(Some(record)),
            Value::bulk(index.to_string()),
        ]))
    }

    /// What the store is asked for request `kind`.
    fn command(&self, kind: Kind) -> Value {
        let period = self.config.lease_period.as_millis().to_string();
        let token = self.held.map_or(0, |(token, _)| token);
        match kind {
            Kind::Load => Value::command(&["GET", &self.config.state_key()]),
            Kind::Write { index } => self.write_command(token, index),
            Kind::Acquire => Value::command(&[
                "EVAL",
                ACQUIRE_SCRIPT,
                "2",
                &self.config.key,
                &self.config.token_key(),
                &self.me,
                &period,
                &self.process.to_string(),
            ]),
            Kind::Resume { token } => {
                let held_as = self.resume_from.clone().unwrap_or_default();
                Value::command(&[
                    "EVAL",
                    RESUME_SCRIPT,
                    "1",
                    &self.config.key,
                    &held_as,
                    &self.holder_value(token),
                    &period,
                ])
            }
            Kind::Renew | Kind::Release => {
                let script = if kind == Kind::Release {
                    RELEASE_SCRIPT
                } else {
                    RENEW_SCRIPT
                };
                Value::command(&[
                    "EVAL",
                    script,
                    "1",
                    &self.config.key,
                    &self.holder_value(token),
                    &period,
                ])
            }
        }
    }

    /// The store's answer to request `id`, or why there is none. Lease deadlines count from
    /// when a request was sent, so the time of the answer does not matter to them; `now`
    /// sends what waited for it (a read or a write of the state).
    pub fn handle_reply(&mut self, now: Instant, id: u64, reply: Result<Value, String>) {
        // A node that left takes nothing, not even a grant it asked for before it left.
        if self.closed {
            return;
        }
        let Some(pending) = self.pending.filter(|pending| pending.id == id) else {
            return;
        };
        self.pending = None;
        match reply {
            Ok(reply) => {
                self.take_reply(now, pending, reply);
                self.send_state_request(now);
            }
            // A read or write that failed goes again after a request timeout, not at once: a
            // store out of reach is not dialed in a loop.
            Err(_) if matches!(pending.kind, Kind::Load | Kind::Write { .. }) => {
                self.state_retry_at = Some(now + self.request_timeout());
            }
            Err(_) => {}
        }
    }

    /// A read or a write of the state goes out as soon as nothing else is in flight (and the
    /// wait after a failed one is over).
    fn send_state_request(&mut self, now: Instant) {
        let waiting = self.state_retry_at.is_some_and(|at| now < at);
        if self.pending.is_some() || self.held.is_none() || waiting {
            return;
        }
        self.state_retry_at = None;
        if self.loading {
            self.send(now, Kind::Load);
        } else if let Some((index, _)) = &self.unwritten {
            let index = *index;
            self.send(now, Kind::Write { index });
        }
    }

    /// Took the lease: read the state before leading.
    fn take_lease(&mut self, token: u64, sent_at: Instant) {
        self.held = Some((token, sent_at + self.config.held_for()));
        self.leader = Some((self.me.clone(), token));
        self.loading = true;
        self.next_request_at = sent_at + self.config.renew_interval;
    }

    fn take_reply(&mut self, now: Instant, pending: Pending, reply: Value) {
        // A grant counts from when its request left: one that arrives after that time ran out
        // (it waited out a pause in the socket) grants nothing.
        let stale = now >= pending.sent_at + self.config.held_for()
            && !self.config.bugs.has(Bug::LeaseStaleGrant);
        match (pending.kind, reply) {
            (Kind::Load, Value::Bulk(bytes)) => {
                let Some((token, _)) = self.held else { return };
                let snapshot = match bytes {
                    None => Some(Snapshot::default()),
                    Some(bytes) => Snapshot::from_record(&bytes),
                };
                // An unreadable record is never acted on: the holder does not lead.
                let Some(mut snapshot) = snapshot else { return };
                snapshot.version.term = token;
                self.loading = false;
                self.commit = Some(snapshot.version.index);
                self.install = Some(snapshot);
                self.changes.push_back(ClusterEvent::ElectionFinish);
                self.changes.push_back(ClusterEvent::SignMaster);
            }
            (Kind::Write { index }, Value::Integer(written)) => {
                let Some((token, _)) = self.held else { return };
                if written != 1 {
                    return self.lose(token, "taken");
                }
                if self.unwritten.as_ref().is_some_and(|(i, _)| *i == index) {
                    self.unwritten = None;
                }
                self.commit = self.commit.max(Some(index));
            }
            (Kind::Acquire, Value::Array(Some(items))) if items.len() == 2 => {
                self.take_grant(stale, pending.sent_at, &items);
            }
            // Counted from when the request left, like any renewal. A 0 means the lease moved
            // on: no leader is known until the next request finds out.
            (Kind::Resume { token }, Value::Integer(1)) if !stale => {
                self.take_lease(token, pending.sent_at);
                self.events.push(LeaseEvent::LeaseResumed { token });
            }
            (Kind::Renew, Value::Integer(renewed)) => {
                let Some((token, _)) = self.held else { return };
                if renewed == 1 && stale {
                    self.lose(token, "expired");
                } else if renewed == 1 {
                    let mut from = pending.sent_at;
                    if self.config.bugs.has(Bug::LeaseFromReply) {
                        from = now;
                    }
                    self.held = Some((token, from + self.config.held_for()));
                    if self.config.bugs.has(Bug::LeaseRenewLoop) {
                        self.next_request_at = now;
                    }
                    self.events.push(LeaseEvent::LeaseRenewed { token });
                } else {
                    self.lose(token, "taken");
                }
            }
            _ => {}
        }
    }

    /// The store's answer to an acquire: `[granted, holder]`.
    fn take_grant(&mut self, stale: bool, sent_at: Instant, items: &[Value]) {
        let granted = items[0] == Value::Integer(1);
        let Some((holder, token)) = parse_holder(&items[1]) else {
            return;
        };
        if granted && holder == self.me && stale {
            // Ours at the store, for a while yet: the next request takes it back.
            self.leader = None;
        } else if granted && holder == self.me {
            self.take_lease(token, sent_at);
            self.events.push(LeaseEvent::LeaseAcquired { token });
        } else if holder == self.me {
            // Our own name: never follow ourselves. Take it back at once, under this
            // process's value; until then no leader is known.
            self.leader = None;
            let held_as = items[1].as_text().unwrap_or_default().to_string();
            self.resume = Some((token, held_as));
            self.next_request_at = sent_at;
        } else if self.leader.as_ref() != Some(&(holder.clone(), token)) {
            self.events.push(LeaseEvent::LeaseHolderSeen {
                holder: holder.clone(),
                token,
            });
            self.leader = Some((holder, token));
            self.changes.push_back(ClusterEvent::SignFollower);
        }
    }

    fn lose(&mut self, token: u64, reason: &str) {
        self.events.push(LeaseEvent::LeaseLost {
            token,
            reason: reason.to_string(),
        });
        self.held = None;
        self.leader = None;
        self.unwritten = None;
        self.commit = None;
        // One that had not read the state yet never led.
        if !std::mem::take(&mut self.loading) {
            self.changes.push_back(ClusterEvent::StopMaster);
        }
    }

    #[must_use]
    pub fn poll_action(&mut self) -> Option<LeaseAction> {
        self.actions.pop_front()
    }
}

impl Membership for LeaseNode {
    fn me(&self) -> &str {
        &self.me
    }

    fn handle_store_reply(&mut self, now: Instant, id: u64, reply: Result<Value, String>) {
        self.handle_reply(now, id, reply);
    }

    fn poll_output(&mut self) -> Option<Output> {
        if let Some(snapshot) = self.install.take() {
            return Some(Output::Install(snapshot));
        }
        self.poll_action().map(Output::Store)
    }

    fn propose(&mut self, now: Instant, index: u64, state: Vec<u8>) {
        if self.role() != Role::Leader || self.closed {
            return;
        }
        self.unwritten = Some((index, state));
        self.send_state_request(now);
    }

    fn committed(&self) -> Option<u64> {
        self.commit.filter(|_| self.role() == Role::Leader)
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if let Some((token, expires_at)) = self.held {
            if now >= expires_at {
                self.lose(token, "expired");
            }
        }
        if let Some(pending) = self.pending {
            if now >= pending.sent_at + self.request_timeout() {
                self.pending = None;
                self.actions.push_back(LeaseAction::Reconnect);
            }
        }
        if self.pending.is_none() && now >= self.next_request_at {
            let (kind, interval) = match (self.held, self.resume.take()) {
                (Some(_), _) => (Kind::Renew, self.config.renew_interval),
                (None, Some((token, held_as))) => {
                    self.resume_from = Some(held_as);
                    (Kind::Resume { token }, self.config.sync_interval)
                }
                (None, None) => (Kind::Acquire, self.config.sync_interval),
            };
            self.send(now, kind);
            self.next_request_at = now + interval;
        }
        self.send_state_request(now);
    }

    /// Gives the lease up on purpose so another node can take it at once (whichever asks
    /// first: the store decides, so there is no successor to name).
    fn release(&mut self, now: Instant) -> Option<String> {
        if let Some((token, _)) = self.held {
            self.changes.push_back(ClusterEvent::ReleaseMaster);
            self.send(now, Kind::Release);
            self.lose(token, "released");
            // Leave the next grant to someone else.
            self.next_request_at = now + self.config.lease_period;
        }
        None
    }

    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.held = None;
            self.leader = None;
            self.changes.push_back(ClusterEvent::Close);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let mut next = match self.pending {
            Some(pending) => pending.sent_at + self.request_timeout(),
            None => self.next_request_at,
        };
        let state_due = self.loading || self.unwritten.is_some();
        if let Some(retry) = self
            .state_retry_at
            .filter(|_| state_due && self.pending.is_none())
        {
            next = next.min(retry);
        }
        if let Some((_, expires_at)) = self.held {
            next = next.min(expires_at);
        }
        Some(next)
    }

    fn poll_cluster_event(&mut self) -> Option<ClusterEvent> {
        self.changes.pop_front()
    }

    /// The next event for the timeline, in the order they happened.
    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// The holder's authority ends when the lease it counts on does.
    fn leading_until(&self) -> Option<Instant> {
        self.held.map(|(_, expires_at)| expires_at)
    }

    fn role(&self) -> Role {
        if self.held.is_some() && !self.loading {
            Role::Leader
        } else {
            Role::Follower
        }
    }

    fn leader(&self) -> Option<&str> {
        self.leader.as_ref().map(|(node, _)| node.as_str())
    }

    /// The fencing token of the current grant, as far as this node knows.
    fn term(&self) -> u64 {
        self.leader.as_ref().map_or(0, |(_, token)| *token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Event;

    /// The id of the request the node sends next.
    fn sent(node: &mut LeaseNode) -> u64 {
        match node.poll_action() {
            Some(LeaseAction::Send(request)) => request.id,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn reported(node: &mut LeaseNode) -> Vec<Event> {
        std::iter::from_fn(|| node.poll_event()).collect()
    }

    fn grant(granted: i64, holder: &str) -> Result<Value, String> {
        Ok(Value::Array(Some(vec![
            Value::Integer(granted),
            Value::bulk(holder),
        ])))
    }

    /// Each answer of the store, and the exact events it makes the node report.
    #[test]
    fn events_report_the_lease_as_the_store_answers() {
        let t0 = Instant::now();
        let config = LeaseConfig::default();
        let mut node = LeaseNode::new("master-1", config.clone(), t0);
        node.handle_timeout(t0);
        let id = sent(&mut node);
        node.handle_reply(t0, id, grant(0, "master-2 4"));
        assert_eq!(
            reported(&mut node),
            [LeaseEvent::LeaseHolderSeen {
                holder: "master-2".into(),
                token: 4
            }
            .into()]
        );
        assert_eq!((node.leader(), node.term()), (Some("master-2"), 4));
        // The same holder again is no news.
        let at = node.poll_timeout().unwrap();
        node.handle_timeout(at);
        let id = sent(&mut node);
        node.handle_reply(t0, id, grant(0, "master-2 4"));
        assert_eq!(reported(&mut node), []);

        let at = node.poll_timeout().unwrap();
        node.handle_timeout(at);
        let id = sent(&mut node);
        node.handle_reply(t0, id, grant(1, "master-1 5"));
        assert_eq!(
            reported(&mut node),
            [LeaseEvent::LeaseAcquired { token: 5 }.into()]
        );
        // It reads the replicated state before it leads: nothing stored yet is an empty one.
        assert_eq!(node.role(), Role::Follower);
        let id = sent(&mut node);
        node.handle_reply(at, id, Ok(Value::Bulk(None)));
        assert_eq!(node.role(), Role::Leader);
        assert_eq!(node.committed(), Some(0));
        assert!(
            matches!(node.poll_output(), Some(Output::Install(snapshot)) if snapshot.version == Version { term: 5, index: 0 })
        );
        let renew_at = node.poll_timeout().unwrap();
        assert_eq!(renew_at, at + config.renew_interval);
        node.handle_timeout(renew_at);
        let id = sent(&mut node);
        node.handle_reply(t0, id, Ok(Value::Integer(1)));
        assert_eq!(
            reported(&mut node),
            [LeaseEvent::LeaseRenewed { token: 5 }.into()]
        );
        // A renewal the store refuses: someone else holds it now.
        let at = node.poll_timeout().unwrap();
        node.handle_timeout(at);
        let id = sent(&mut node);
        node.handle_reply(t0, id, Ok(Value::Integer(0)));
        assert_eq!(
            reported(&mut node),
            [LeaseEvent::LeaseLost {
                token: 5,
                reason: "taken".into()
            }
            .into()]
        );
        assert_eq!((node.role(), node.leader()), (Role::Follower, None));
    }

    #[test]
    fn a_holder_that_hears_nothing_lets_go_when_its_lease_runs_out() {
        let t0 = Instant::now();
        let config = LeaseConfig::default();
        let mut node = LeaseNode::new("master-1", config.clone(), t0);
        node.handle_timeout(t0);
        let id = sent(&mut node);
        node.handle_reply(t0, id, grant(1, "master-1 1"));
        reported(&mut node);
        // Counted from when the request left, not from the reply, and short of the store's
        // lease by the clocks' drift.
        let expiry = t0 + config.held_for();
        let mut now = t0;
        while now < expiry {
            now = node.poll_timeout().unwrap();
            node.handle_timeout(now);
            while node.poll_action().is_some() {}
        }
        assert_eq!(now, expiry);
        assert_eq!(
            reported(&mut node),
            [LeaseEvent::LeaseLost {
                token: 1,
                reason: "expired".into()
            }
            .into()]
        );
    }

    /// A grant or a renewal that arrives after its time ran out (it waited out a pause in the
    /// socket) grants nothing: the holder never believes it holds an expired lease.
    #[test]
    fn a_grant_read_after_it_ran_out_grants_nothing() {
        let t0 = Instant::now();
        let config = LeaseConfig::default();
        let late = t0 + config.held_for();
        let mut node = LeaseNode::new("master-1", config.clone(), t0);
        node.handle_timeout(t0);
        let id = sent(&mut node);
        node.handle_reply(late, id, grant(1, "master-1 1"));
        assert_eq!(reported(&mut node), []);
        assert_eq!((node.role(), node.leader()), (Role::Follower, None));

        let mut node = LeaseNode::new("master-1", config.clone(), t0);
        node.handle_timeout(t0);
        let id = sent(&mut node);
        node.handle_reply(t0, id, grant(1, "master-1 1"));
        let load = sent(&mut node);
        node.handle_reply(t0, load, Ok(Value::Bulk(None)));
        let renew_at = node.poll_timeout().unwrap();
        node.handle_timeout(renew_at);
        let renewal = sent(&mut node);
        reported(&mut node);
        node.handle_reply(renew_at + config.held_for(), renewal, Ok(Value::Integer(1)));
        assert_eq!(
            reported(&mut node),
            [LeaseEvent::LeaseLost {
                token: 1,
                reason: "expired".into()
            }
            .into()]
        );
    }

    /// A read of the state that fails goes again after a request timeout: a store out of
    /// reach is never dialed in a loop at one instant.
    #[test]
    fn a_failed_read_of_the_state_waits_before_it_goes_again() {
        let t0 = Instant::now();
        let config = LeaseConfig::default();
        let mut node = LeaseNode::new("master-1", config.clone(), t0);
        node.handle_timeout(t0);
        let id = sent(&mut node);
        node.handle_reply(t0, id, grant(1, "master-1 1 0"));
        let load = sent(&mut node);
        node.handle_reply(t0, load, Err("store unreachable".into()));
        node.handle_timeout(t0);
        assert_eq!(node.poll_action(), None, "not at once");
        let retry = node.poll_timeout().unwrap();
        assert_eq!(retry, t0 + config.renew_interval.min(config.sync_interval));
        node.handle_timeout(retry);
        let again = std::iter::from_fn(|| node.poll_action()).count();
        assert!(again >= 1, "the read goes again then");
    }

    /// A node that leaves while its request is out does not take the grant that comes back:
    /// it believes nothing from then on.
    #[test]
    fn a_closed_node_takes_no_grant() {
        let t0 = Instant::now();
        let mut node = LeaseNode::new("master-1", LeaseConfig::default(), t0);
        node.handle_timeout(t0);
        let id = sent(&mut node);
        node.close();
        node.handle_reply(t0, id, grant(1, "master-1 1"));
        assert_eq!(reported(&mut node), []);
        assert_eq!((node.role(), node.leader()), (Role::Follower, None));
    }

    #[test]
    fn a_lease_must_outlast_its_renewal() {
        assert!(LeaseConfig::default().validate().is_ok());
        let short = LeaseConfig::new(
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(1),
        );
        assert!(short.validate().unwrap_err().contains("lease_period"));
        let zero = LeaseConfig::new(Duration::from_secs(10), Duration::ZERO, Duration::ZERO);
        assert!(zero.validate().unwrap_err().contains("greater than 0"));
    }
}
