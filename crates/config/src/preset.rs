//! `preset = "NAME"`: one design document's defaults, under any key the file sets itself.
//!
//! Each preset takes what its design document states and keeps the project's default where the
//! document says nothing (the README's presets table shows which is which).

use crate::params::HeartbeatParams;
use fleet_core::attempts::AttemptPolicy;
use fleet_core::backoff::{BackoffPolicy, Strategy, WhenExhausted};
use fleet_core::cluster::lease::LeaseConfig;
use fleet_core::cluster::raft::RaftConfig;
use fleet_core::transport::{GrpcTransport, HttpTransport, MqttTransport, Transport};
use std::time::Duration;

/// What a file gets for every key it leaves out.
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    pub heartbeat: HeartbeatParams,
    pub backoff: BackoffPolicy,
    pub raft: RaftConfig,
    pub lease: LeaseConfig,
    pub attempts: AttemptPolicy,
    pub transport: Transport,
}

pub const NAMES: [&str; 5] = ["connector", "grpc", "mqtt", "cluster", "reconnection"];

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

impl Defaults {
    /// The project's own defaults.
    pub fn project() -> Defaults {
        Defaults {
            heartbeat: HeartbeatParams {
                interval: secs(1),
                max_miss: 3,
                timeout: secs(3),
            },
            backoff: BackoffPolicy::default(),
            raft: RaftConfig::default(),
            lease: LeaseConfig::default(),
            attempts: AttemptPolicy::default(),
            transport: Transport::Tcp,
        }
    }

    /// The defaults of the design document `name`, or `None` if there is no such preset.
    pub fn preset(name: &str) -> Option<Defaults> {
        let project = Defaults::project();
        let exponential = |base, max, jitter, max_retries| BackoffPolicy {
            strategy: Strategy::Exponential,
            base,
            multiplier: 2.0,
            max,
            jitter,
            max_retries,
            when_exhausted: WhenExhausted::GiveUp,
            first_delay: None,
        };
        Some(match name {
            // The connector design: its HTTP API; ×2 to 60s, ±25 % jitter, 10 retries; no
            // heartbeat timings.
            "connector" => Defaults {
                backoff: exponential(secs(1), secs(60), 0.25, 10),
                transport: Transport::Http(HttpTransport::default()),
                ..project
            },
            // The gRPC design: heartbeats every 10s, 30s timeout, offline after 3 missed;
            // backoff 100ms to 30s with jitter 0.3, 3 retries.
            "grpc" => Defaults {
                heartbeat: HeartbeatParams {
                    interval: secs(10),
                    max_miss: 3,
                    timeout: secs(30),
                },
                backoff: exponential(Duration::from_millis(100), secs(30), 0.3, 3),
                transport: Transport::Grpc(GrpcTransport::default()),
                ..project
            },
            "mqtt" => mqtt(project),
            // The cluster design: a 10s heartbeat timeout; a Redis lease of 30s renewed every
            // 15s, followers syncing every 10s.
            "cluster" => Defaults {
                heartbeat: HeartbeatParams {
                    timeout: secs(10),
                    ..project.heartbeat
                },
                lease: LeaseConfig::new(secs(30), secs(15), secs(10)),
                ..project
            },
            "reconnection" => reconnection(project, exponential(secs(1), secs(30), 0.0, 10)),
            _ => return None,
        })
    }
}

/// The MQTT design: its topics on a broker, QoS 1; heartbeats every 30s; a lost broker is
/// retried every 15 minutes, for ever. It states no timeout: three intervals, as everywhere
/// else here.
fn mqtt(project: Defaults) -> Defaults {
    Defaults {
        heartbeat: HeartbeatParams {
            interval: secs(30),
            max_miss: 3,
            timeout: secs(90),
        },
        backoff: BackoffPolicy {
            strategy: Strategy::Constant,
            base: secs(15 * 60),
            max: secs(15 * 60),
            jitter: 0.0,
            max_retries: 0,
            ..project.backoff.clone()
        },
        transport: Transport::Mqtt(MqttTransport::default()),
        ..project
    }
}

/// The reconnection design: pings every 30s; `backoff` 1s ×2 to 30s with no jitter, giving up
/// after 10 retries; the master enforces its own backoff (1s to 30s, 10 retries, records kept
/// 24h).
fn reconnection(project: Defaults, backoff: BackoffPolicy) -> Defaults {
    Defaults {
        heartbeat: HeartbeatParams {
            interval: secs(30),
            max_miss: 3,
            timeout: secs(90),
        },
        backoff,
        attempts: AttemptPolicy {
            enforce: true,
            ..AttemptPolicy::default()
        },
        ..project
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_differs_from_the_project() {
        for name in NAMES {
            let preset = Defaults::preset(name).unwrap();
            preset.backoff.validate().unwrap();
            preset.raft.validate().unwrap();
            preset.lease.validate().unwrap();
            assert!(
                preset.heartbeat.timeout > preset.heartbeat.interval,
                "{name}"
            );
            assert_ne!(preset, Defaults::project(), "{name}");
        }
        assert!(Defaults::preset("websocket").is_none());
    }
}
