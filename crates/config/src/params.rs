//! Heartbeats, backoff and the cluster, as a file writes them (`Raw*`, read by serde) and as
//! masters and agents take them, after defaults and checks.

use crate::duration::{Dur, DurRange};
use crate::preset::Defaults;
use crate::source::{ConfigError, Source};
use fleet_core::backoff::{BackoffPolicy, Strategy, WhenExhausted};
use fleet_core::cluster::lease::LeaseConfig;
use fleet_core::cluster::raft::RaftConfig;
use fleet_core::transport::{GrpcTransport, HttpTransport, MqttTransport, Transport};
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// How agents and masters keep in touch.
#[derive(Clone, Debug, PartialEq)]
pub struct HeartbeatParams {
    pub interval: Duration,
    pub max_miss: u32,
    pub timeout: Duration,
}

/// How the masters agree on a leader.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterSpec {
    Single,
    /// `persist`: each master keeps its term and vote on a disk that survives its crashes.
    /// `fsync`: it syncs them before it answers, so they survive a power failure too. Either
    /// off only to show why it must be on.
    Raft {
        config: RaftConfig,
        persist: bool,
        fsync: bool,
    },
    Lease(LeaseConfig),
}

impl ClusterSpec {
    pub fn mode(&self) -> &'static str {
        match self {
            ClusterSpec::Single => "single",
            ClusterSpec::Raft { .. } => "raft",
            ClusterSpec::Lease(_) => "lease",
        }
    }
}

/// `[cluster]`, one mode's keys each: serde refuses a key of another mode. `mode` is `raft`
/// when the table leaves it out.
#[derive(Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
enum RawCluster {
    Single {},
    Raft {
        election_timeout: Option<DurRange>,
        heartbeat_interval: Option<Dur>,
        pre_vote: Option<bool>,
        check_quorum: Option<bool>,
        persist: Option<bool>,
        fsync: Option<bool>,
    },
    Lease {
        lease_period: Option<Dur>,
        renew_interval: Option<Dur>,
        sync_interval: Option<Dur>,
        max_drift: Option<f64>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    interval: Option<Dur>,
    max_miss: Option<u32>,
    timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    strategy: Option<Spanned<String>>,
    base: Option<Dur>,
    multiplier: Option<f64>,
    max: Option<Dur>,
    jitter: Option<f64>,
    max_retries: Option<u32>,
    long_wait: Option<Dur>,
    first_delay: Option<DurRange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransport {
    kind: Option<Spanned<String>>,
    poll: Option<Spanned<Dur>>,
    gzip: Option<Spanned<bool>>,
    keepalive: Option<Spanned<Dur>>,
    qos: Option<Spanned<u8>>,
}

impl RawTransport {
    /// Each setting given, the kinds it belongs to, and where it was written.
    fn settings(&self) -> [(&'static str, &'static [&'static str], Option<Span>); 4] {
        [
            ("poll", &["http"], self.poll.as_ref().map(Spanned::span)),
            ("gzip", &["grpc"], self.gzip.as_ref().map(Spanned::span)),
            (
                "keepalive",
                &["grpc", "mqtt"],
                (self.keepalive.as_ref()).map(Spanned::span),
            ),
            ("qos", &["mqtt"], self.qos.as_ref().map(Spanned::span)),
        ]
    }
}

type Span = std::ops::Range<usize>;

/// `[params.transport]`: a kind, and that kind's settings over its defaults. The preset picks
/// the kind when the table does not.
pub fn check_transport(
    raw: Option<RawTransport>,
    defaults: &Defaults,
    interval: Duration,
    source: &Source,
) -> Result<Transport, ConfigError> {
    let Some(raw) = raw else {
        return Ok(defaults.transport.clone());
    };
    let kind = match &raw.kind {
        None => defaults.transport.name(),
        Some(kind) => (Transport::NAMES.iter())
            .find(|name| *name == kind.get_ref())
            .ok_or_else(|| {
                let why = format!(
                    "[params.transport]: unknown kind {:?}; expected one of {}",
                    kind.get_ref(),
                    Transport::NAMES.join(", ")
                );
                source.error(kind.span(), why)
            })?,
    };
    for (key, owners, span) in raw.settings() {
        if let (Some(span), false) = (span, owners.contains(&kind)) {
            let owners = owners.join("\" or \"");
            let why = format!(
                "[params.transport]: {key} is a setting of kind \"{owners}\", not {kind:?}"
            );
            return Err(source.error(span, why));
        }
    }
    let defaults = named(kind, interval)
        .filter(|named| named.name() != defaults.transport.name())
        .unwrap_or_else(|| defaults.transport.clone());
    kind_settings(raw, defaults, source)
}

/// The transport `kind` with its defaults beside a heartbeat `interval` (MQTT's keepalive
/// follows it; see [`MqttTransport::beside`]).
pub fn named(kind: &str, interval: Duration) -> Option<Transport> {
    match kind {
        "mqtt" => Some(Transport::Mqtt(MqttTransport::beside(interval))),
        kind => Transport::named(kind),
    }
}

/// `defaults` (of the kind the table names) with the table's settings.
fn kind_settings(
    raw: RawTransport,
    defaults: Transport,
    source: &Source,
) -> Result<Transport, ConfigError> {
    let positive = |value: Option<Spanned<Dur>>, key: &str, default: Duration| {
        let Some(value) = value else {
            return Ok(default);
        };
        let span = value.span();
        match value.into_inner().0 {
            zero if zero.is_zero() => {
                let why = format!("[params.transport]: {key} must be greater than 0");
                Err(source.error(span, why))
            }
            duration => Ok(duration),
        }
    };
    Ok(match defaults {
        Transport::Tcp => Transport::Tcp,
        Transport::Http(http) => Transport::Http(HttpTransport {
            poll: positive(raw.poll, "poll", http.poll)?,
        }),
        Transport::Grpc(grpc) => Transport::Grpc(GrpcTransport {
            gzip: raw.gzip.map_or(grpc.gzip, Spanned::into_inner),
            keepalive: positive(raw.keepalive, "keepalive", grpc.keepalive)?,
        }),
        Transport::Mqtt(mqtt) => {
            let span = raw
                .keepalive
                .as_ref()
                .map(Spanned::span)
                .unwrap_or_default();
            let keepalive = positive(raw.keepalive, "keepalive", mqtt.keepalive)?;
            if keepalive.subsec_nanos() != 0 || keepalive.as_secs() > u64::from(u16::MAX) {
                let why = "[params.transport]: an MQTT keepalive is whole seconds, at most 65535s";
                return Err(source.error(span, why.to_string()));
            }
            let qos = match raw.qos {
                Some(qos) if *qos.get_ref() > 1 => {
                    let why = "[params.transport]: qos must be 0 or 1 (QoS 2 is not supported)";
                    return Err(source.error(qos.span(), why.to_string()));
                }
                qos => qos.map_or(mqtt.qos, Spanned::into_inner),
            };
            Transport::Mqtt(MqttTransport { keepalive, qos })
        }
    })
}

/// The cluster as `[cluster]` says, or by default: one master leads alone, several elect a
/// leader by raft.
pub fn check_cluster(
    raw: Option<Spanned<toml::Table>>,
    masters: u32,
    defaults: &Defaults,
    source: &Source,
) -> Result<ClusterSpec, ConfigError> {
    let Some(raw) = raw else {
        return Ok(if masters == 1 {
            ClusterSpec::Single
        } else {
            ClusterSpec::Raft {
                config: defaults.raft.clone(),
                persist: true,
                fsync: true,
            }
        });
    };
    let span = raw.span();
    let mut table = raw.into_inner();
    let mode = (table.entry("mode"))
        .or_insert_with(|| toml::Value::String("raft".into()))
        .clone();
    let parsed = RawCluster::deserialize(toml::Value::Table(table)).map_err(|error| {
        let message = error
            .message()
            .trim_end()
            .replace("variant", "cluster mode");
        match mode {
            toml::Value::String(mode) if !message.contains("cluster mode") => {
                source.error(span.clone(), format!("[cluster] mode {mode:?}: {message}"))
            }
            _ => source.error(span.clone(), format!("[cluster]: {message}")),
        }
    })?;
    spec(parsed, masters, defaults).map_err(|message| source.error(span, message))
}

/// A mode's keys over the defaults, checked as a whole.
fn spec(parsed: RawCluster, masters: u32, defaults: &Defaults) -> Result<ClusterSpec, String> {
    let invalid = |message: String| format!("[cluster]: {message}");
    match parsed {
        RawCluster::Single {} if masters != 1 => {
            Err("mode \"single\" runs exactly one master".to_string())
        }
        RawCluster::Single {} => Ok(ClusterSpec::Single),
        RawCluster::Raft {
            election_timeout,
            heartbeat_interval,
            pre_vote,
            check_quorum,
            persist,
            fsync,
        } => {
            let raft = &defaults.raft;
            let config = RaftConfig {
                election_timeout: election_timeout
                    .map_or(raft.election_timeout, |range| (range.0, range.1)),
                heartbeat_interval: heartbeat_interval.map_or(raft.heartbeat_interval, |d| d.0),
                pre_vote: pre_vote.unwrap_or(raft.pre_vote),
                check_quorum: check_quorum.unwrap_or(raft.check_quorum),
                bugs: raft.bugs,
            };
            config.validate().map_err(invalid)?;
            let persist = persist.unwrap_or(true);
            let fsync = fsync.unwrap_or(true);
            Ok(ClusterSpec::Raft {
                config,
                persist,
                fsync,
            })
        }
        RawCluster::Lease {
            lease_period,
            renew_interval,
            sync_interval,
            max_drift,
        } => {
            let lease = &defaults.lease;
            let config = LeaseConfig {
                lease_period: lease_period.map_or(lease.lease_period, |d| d.0),
                renew_interval: renew_interval.map_or(lease.renew_interval, |d| d.0),
                sync_interval: sync_interval.map_or(lease.sync_interval, |d| d.0),
                max_drift: max_drift.unwrap_or(lease.max_drift),
                ..lease.clone()
            };
            config.validate().map_err(invalid)?;
            Ok(ClusterSpec::Lease(config))
        }
    }
}

pub fn parse_heartbeat(
    raw: Option<Spanned<RawHeartbeat>>,
    defaults: &Defaults,
    source: &Source,
) -> Result<HeartbeatParams, ConfigError> {
    let defaults = defaults.heartbeat.clone();
    let Some(raw) = raw else {
        return Ok(defaults);
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let heartbeat = HeartbeatParams {
        interval: raw.interval.map_or(defaults.interval, |d| d.0),
        max_miss: raw.max_miss.unwrap_or(defaults.max_miss),
        timeout: raw.timeout.map_or(defaults.timeout, |d| d.0),
    };
    if heartbeat.interval.is_zero() || heartbeat.timeout.is_zero() || heartbeat.max_miss == 0 {
        return Err(source.error(
            span,
            "heartbeat interval, timeout and max_miss must all be greater than 0",
        ));
    }
    Ok(heartbeat)
}

pub fn parse_backoff(
    raw: Option<Spanned<RawBackoff>>,
    defaults: &Defaults,
    source: &Source,
) -> Result<BackoffPolicy, ConfigError> {
    let defaults = defaults.backoff.clone();
    let Some(raw) = raw else {
        return Ok(defaults);
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let strategy = match &raw.strategy {
        None => defaults.strategy,
        Some(name) => Strategy::from_name(name.get_ref()).ok_or_else(|| {
            source.error(
                name.span(),
                format!(
                    "unknown backoff strategy {:?}; expected one of {}",
                    name.get_ref(),
                    Strategy::NAMES.join(", ")
                ),
            )
        })?,
    };
    let policy = BackoffPolicy {
        strategy,
        base: raw.base.map_or(defaults.base, |d| d.0),
        multiplier: raw.multiplier.unwrap_or(defaults.multiplier),
        max: raw.max.map_or(defaults.max, |d| d.0),
        jitter: raw.jitter.unwrap_or(defaults.jitter),
        max_retries: raw.max_retries.unwrap_or(defaults.max_retries),
        when_exhausted: raw.long_wait.map_or(defaults.when_exhausted, |wait| {
            WhenExhausted::LongWait(wait.0)
        }),
        first_delay: raw
            .first_delay
            .map_or(defaults.first_delay, |range| Some((range.0, range.1))),
    };
    policy
        .validate()
        .map_err(|message| source.error(span, format!("[params.backoff]: {message}")))?;
    Ok(policy)
}
