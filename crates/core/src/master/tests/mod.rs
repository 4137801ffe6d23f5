//! The registry's tests, one file per handler: each drives a `Registry` alone, with no agent
//! and no runtime, and asserts what it sends, closes and reports.

use super::*;
use crate::attempts::{Admission, AttemptPolicy};
use crate::wire::{BuildInfo, CloseCode, Heartbeat, NodeStatus, Refusal, Register};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

mod admin;
mod commands;
mod ledger;
mod liveness;
mod register;

fn config() -> MasterConfig {
    MasterConfig::default()
}

fn register(name: &str, pid: u32) -> Message {
    Message::Register(Box::new(Register {
        node_name: name.into(),
        instance_id: crate::wire::instance_id(name, "host", pid),
        version: "test".into(),
        pid,
        start_time_ms: 0,
        capabilities: vec![],
        metadata: BTreeMap::new(),
        build: BuildInfo::default(),
        token: crate::auth::token("secret", name),
    }))
}

fn heartbeat(seq: u64) -> Message {
    Message::Heartbeat(Heartbeat {
        seq,
        status: NodeStatus::Online,
        uptime_ms: 0,
        metrics: BTreeMap::new(),
    })
}

fn drain(registry: &mut Registry) -> Vec<MasterAction> {
    std::iter::from_fn(|| registry.poll_action()).collect()
}

fn liveness(registry: &Registry) -> Vec<Liveness> {
    registry.nodes().map(|(_, entry)| entry.liveness).collect()
}

/// The refusal a registration on `session` got, if any.
fn refusal_on(actions: &[MasterAction], on: SessionId) -> Option<(Refusal, u64)> {
    actions.iter().find_map(|action| match action {
        MasterAction::Send {
            session,
            message: Message::RegisterAck(ack),
        } if *session == on && !ack.accepted() => Some((ack.refusal, ack.retry_after_ms)),
        _ => None,
    })
}

fn goodbye_on(actions: &[MasterAction], on: SessionId) -> Option<CloseCode> {
    actions.iter().find_map(|action| match action {
        MasterAction::Send {
            session,
            message: Message::Goodbye(goodbye),
        } if *session == on => Some(goodbye.code),
        _ => None,
    })
}

/// A master whose attempt manager enforces the design's backoff (1s x 2^n).
fn enforcing() -> Registry {
    Registry::new(MasterConfig {
        attempts: AttemptPolicy {
            enforce: true,
            ..AttemptPolicy::default()
        },
        ..config()
    })
}

/// A master's registry with 1s heartbeats and 3 misses.
fn master(name: &str) -> Registry {
    Registry::new(MasterConfig {
        name: name.into(),
        heartbeat_interval: Duration::from_secs(1),
        max_miss: 3,
        ..MasterConfig::default()
    })
}
