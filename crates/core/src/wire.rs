//! The agent–master wire protocol: serde messages in length-prefixed frames.
//!
//! A frame is a 4-byte big-endian payload length followed by the payload, a bincode-encoded
//! [`Message`] with fixed-width little-endian integers (a few more bytes than varints, and
//! cheaper to write and read: one copy per field, no size branch). Decoding never panics: a frame that is too large, truncated inside its payload
//! or not a valid message is a [`WireError`], and the caller closes that one connection.

/// What an agent reports in its heartbeats; its executor decides it.
pub use crate::command::NodeStatus;
use crate::command::{Command, CommandResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Length of the frame header (the payload length, u32 big-endian).
pub const HEADER_LEN: usize = 4;
/// Default limit on a frame's payload.
pub const MAX_FRAME_DEFAULT: usize = 64 * 1024;

/// Every message either side may send. New kinds (commands, config) are appended at the end:
/// bincode encodes the variant's index, so existing variants keep their numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Boxed: a registration is several times the size of the heartbeats that make up most
    /// traffic, and every message is moved a few times on its way.
    Register(Box<Register>),
    /// Boxed too: with its refusal and retry_after it outgrew the heartbeats.
    RegisterAck(Box<RegisterAck>),
    Heartbeat(Heartbeat),
    HeartbeatAck(HeartbeatAck),
    Unregister(Unregister),
    /// From a master that does not lead: register with `leader` instead.
    Redirect(Redirect),
    /// From the master: run this (again, if it is a copy; the agent runs it once). Boxed,
    /// like `Register`, to keep every message as small as the heartbeats.
    Command(Box<Command>),
    /// From the agent: how a command ended.
    CommandResult(CommandResult),
    /// From the master: a config version to apply.
    ConfigPush(Box<ConfigPush>),
    /// From the agent: its heartbeat ack named a newer config than the one it has.
    ConfigPull(ConfigPull),
    /// From the agent: it applied this config version.
    ConfigAck(ConfigAck),
    /// From the master, just before it closes the session: why, so the agent knows how to
    /// reconnect (or not).
    Goodbye(Goodbye),
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Register(_) => "Register",
            Message::RegisterAck(_) => "RegisterAck",
            Message::Heartbeat(_) => "Heartbeat",
            Message::HeartbeatAck(_) => "HeartbeatAck",
            Message::Unregister(_) => "Unregister",
            Message::Redirect(_) => "Redirect",
            Message::Command(_) => "Command",
            Message::CommandResult(_) => "CommandResult",
            Message::ConfigPush(_) => "ConfigPush",
            Message::ConfigPull(_) => "ConfigPull",
            Message::ConfigAck(_) => "ConfigAck",
            Message::Goodbye(_) => "Goodbye",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Register {
    pub node_name: String,
    /// `{node_name}-{hostname}-{pid}`: one per process incarnation.
    pub instance_id: String,
    pub version: String,
    pub pid: u32,
    /// Milliseconds since the Unix epoch when the process started.
    pub start_time_ms: u64,
    pub capabilities: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub build: BuildInfo,
    /// Proves the agent is who it says: [`crate::auth::token`] of its name under the cluster's
    /// secret. Empty when it has none.
    pub token: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub git_sha: String,
    pub profile: String,
    pub target: String,
}

/// `{node_name}-{hostname}-{pid}`.
pub fn instance_id(node_name: &str, hostname: &str, pid: u32) -> String {
    format!("{node_name}-{hostname}-{pid}")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisterAck {
    pub instance_id: String,
    /// Why a registration was refused; empty when accepted.
    pub reason: String,
    /// The interval this master judges liveness by; the agent heartbeats at it (0: keep yours).
    pub heartbeat_interval_ms: u64,
    /// Why it was refused, as the agent's reconnect strategy reads it.
    pub refusal: Refusal,
    /// With a refusal: come back after this long (0: the master names no time).
    pub retry_after_ms: u64,
}

impl RegisterAck {
    /// No refusal: the agent is registered.
    pub fn accepted(&self) -> bool {
        self.refusal == Refusal::None
    }
}

/// Why a master refused a registration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Accepted.
    #[default]
    None,
    /// This master does not lead and knows no leader.
    NoLeader,
    /// The token is missing, wrong or revoked.
    Unauthorized,
    /// The master is at its admission capacity, or this agent came back sooner than the
    /// master's own backoff allows.
    Busy,
    /// This agent used up the retries the master allows it.
    RetryLimit,
    /// The master is shutting down.
    ShuttingDown,
}

/// How a master ends a session on purpose: the agent's reconnect strategy follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseCode {
    /// The agent is done here (decommissioned): it does not reconnect.
    Normal,
    /// The master is going away (shutting down, or dropping the session on an operator's
    /// `force`): the agent reconnects at once, to the next master.
    GoingAway,
    /// The agent's credentials were revoked: it re-authenticates on its fixed schedule.
    Unauthorized,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Goodbye {
    pub code: CloseCode,
    pub reason: String,
    /// Going away: the master to go to instead (a leader leaving names the one it handed
    /// over to).
    pub leader: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub seq: u64,
    pub status: NodeStatus,
    pub uptime_ms: u64,
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    pub seq: u64,
    /// The master's current config: an agent behind it pulls the newest.
    pub config: ConfigId,
}

/// Which config: the term of the leader that pushed it, then its version. Ordered by term
/// first, so a newer leader's config wins over anything a deposed leader pushed while it did
/// not yet know, whatever its version. `{0, 0}` is the empty config every agent starts with.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ConfigId {
    pub term: u64,
    pub version: u64,
}

/// A versioned config: a map of key to value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPush {
    pub id: ConfigId,
    pub values: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigPull {
    /// The config the agent has.
    pub have: ConfigId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigAck {
    pub id: ConfigId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unregister {
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Redirect {
    /// The master that leads, by name.
    pub leader: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("malformed {len}-byte frame: {reason}")]
    Malformed { len: usize, reason: String },
}

fn codec(max_frame: usize) -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(max_frame as u64)
        .reject_trailing_bytes()
}

/// A buffer a frame is written into in one pass: the header is patched once the payload's
/// length is known, and a frame that fails is cut off again.
pub trait FrameBuffer: std::io::Write {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn truncate(&mut self, len: usize);
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl FrameBuffer for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// Writes one frame holding `message` straight into `out`, with no buffer of its own. Fails,
/// leaving `out` as it was, if the payload would exceed `max_frame`. Any serde type frames the
/// same way; agents and masters speak [`Message`], masters among themselves their cluster's
/// messages.
pub fn encode_into<T: Serialize, B: FrameBuffer>(
    message: &T,
    max_frame: usize,
    out: &mut B,
) -> Result<(), WireError> {
    use bincode::Options;
    let start = out.len();
    let header = out.write_all(&[0; HEADER_LEN]);
    let written = header.is_ok() && codec(max_frame).serialize_into(&mut *out, message).is_ok();
    if !written {
        out.truncate(start);
        return Err(WireError::FrameTooLarge {
            len: payload_len(message),
            max: max_frame,
        });
    }
    let len = (out.len() - start - HEADER_LEN) as u32;
    out.bytes_mut()[start..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Appends one frame holding `message` to `out` (see [`encode_into`]).
pub fn encode<T: Serialize>(
    message: &T,
    max_frame: usize,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    encode_into(message, max_frame, out)
}

/// How many bytes `message` takes in a frame's payload.
pub fn payload_len<T: Serialize>(message: &T) -> usize {
    use bincode::Options;
    codec(usize::MAX)
        .serialized_size(message)
        .map_or(usize::MAX, |n| n as usize)
}

/// Decodes the first frame of `buf`. `Ok(None)` means more bytes are needed; `Ok(Some((message,
/// consumed)))` says how many bytes of `buf` the frame used.
pub fn decode<T: serde::de::DeserializeOwned>(
    buf: &[u8],
    max_frame: usize,
) -> Result<Option<(T, usize)>, WireError> {
    use bincode::Options;
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(header.try_into().expect("4-byte header")) as usize;
    if len > max_frame {
        return Err(WireError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    let message: T =
        codec(max_frame)
            .deserialize(payload)
            .map_err(|error| WireError::Malformed {
                len,
                reason: error.to_string(),
            })?;
    Ok(Some((message, HEADER_LEN + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn register() -> Message {
        Message::Register(Box::new(Register {
            node_name: "agent-1".into(),
            instance_id: instance_id("agent-1", "host", 42),
            version: "0.1.0".into(),
            pid: 42,
            start_time_ms: 1_700_000_000_000,
            capabilities: vec!["exec".into()],
            metadata: BTreeMap::from([("zone".into(), "a".into())]),
            build: BuildInfo::default(),
            token: "0f".repeat(32),
        }))
    }

    fn heartbeat(seq: u64) -> Message {
        Message::Heartbeat(Heartbeat {
            seq,
            status: NodeStatus::Degraded,
            uptime_ms: 5,
            metrics: BTreeMap::from([("cpu".into(), 0.5)]),
        })
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let mut buf = Vec::new();
        encode(&register(), MAX_FRAME_DEFAULT, &mut buf).unwrap();
        encode(&heartbeat(9), MAX_FRAME_DEFAULT, &mut buf).unwrap();
        let (first, used) = decode::<Message>(&buf, MAX_FRAME_DEFAULT).unwrap().unwrap();
        assert_eq!(first, register());
        let (second, used2) = decode::<Message>(&buf[used..], MAX_FRAME_DEFAULT)
            .unwrap()
            .unwrap();
        assert_eq!(second, heartbeat(9));
        assert_eq!(used + used2, buf.len());
    }

    /// Every message is moved a few times on its way; the rare big ones are boxed so that a
    /// heartbeat's move stays within a cache line (an unboxed RegisterAck, at 80 bytes, cost
    /// fleet-1h 2% more instructions).
    #[test]
    fn a_message_fits_a_cache_line() {
        let size = std::mem::size_of::<Message>();
        assert!(
            size <= 64,
            "Message is {size} bytes: box the variant that grew"
        );
    }

    #[test]
    fn refusals_and_goodbyes_round_trip() {
        let messages = [
            Message::RegisterAck(Box::new(RegisterAck {
                instance_id: "agent-1-host-42".into(),
                reason: "at capacity".into(),
                heartbeat_interval_ms: 0,
                refusal: Refusal::Busy,
                retry_after_ms: 2500,
            })),
            Message::Goodbye(Goodbye {
                code: CloseCode::GoingAway,
                reason: "master shutting down".into(),
                leader: Some("master-3".into()),
            }),
            Message::Goodbye(Goodbye {
                code: CloseCode::Normal,
                reason: "decommissioned".into(),
                leader: None,
            }),
        ];
        for message in messages {
            let mut buf = Vec::new();
            encode(&message, MAX_FRAME_DEFAULT, &mut buf).unwrap();
            let decoded = decode::<Message>(&buf, MAX_FRAME_DEFAULT).unwrap();
            assert_eq!(decoded, Some((message, buf.len())));
        }
    }

    #[test]
    fn a_partial_frame_asks_for_more_bytes() {
        let mut buf = Vec::new();
        encode(&register(), MAX_FRAME_DEFAULT, &mut buf).unwrap();
        for cut in 0..buf.len() {
            assert_eq!(
                decode::<Message>(&buf[..cut], MAX_FRAME_DEFAULT),
                Ok(None),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading_the_payload() {
        let buf = (1_000_000u32).to_be_bytes();
        assert_eq!(
            decode::<Message>(&buf, 1024),
            Err(WireError::FrameTooLarge {
                len: 1_000_000,
                max: 1024
            })
        );
    }

    #[test]
    fn the_announced_length_is_the_payload_written_after_what_was_there() {
        let mut buf = b"earlier".to_vec();
        encode(&register(), MAX_FRAME_DEFAULT, &mut buf).unwrap();
        let header = &buf[7..7 + HEADER_LEN];
        let len = u32::from_be_bytes(header.try_into().unwrap()) as usize;
        assert_eq!(buf.len(), 7 + HEADER_LEN + len);
        let (decoded, used) = decode::<Message>(&buf[7..], MAX_FRAME_DEFAULT)
            .unwrap()
            .unwrap();
        assert_eq!((decoded, used), (register(), HEADER_LEN + len));
    }

    #[test]
    fn encoding_over_the_limit_writes_nothing() {
        let mut buf = b"kept".to_vec();
        let error = encode(&register(), 16, &mut buf).unwrap_err();
        assert!(matches!(error, WireError::FrameTooLarge { max: 16, .. }));
        assert_eq!(buf, b"kept");
    }

    #[test]
    fn garbage_and_trailing_bytes_are_malformed() {
        let mut frame = 3u32.to_be_bytes().to_vec();
        frame.extend_from_slice(&[200, 1, 2]);
        assert!(matches!(
            decode::<Message>(&frame, MAX_FRAME_DEFAULT),
            Err(WireError::Malformed { len: 3, .. })
        ));
        let mut payload = Vec::new();
        encode(&heartbeat(1), MAX_FRAME_DEFAULT, &mut payload).unwrap();
        let mut padded = ((payload.len() - HEADER_LEN + 1) as u32)
            .to_be_bytes()
            .to_vec();
        padded.extend_from_slice(&payload[HEADER_LEN..]);
        padded.push(0);
        assert!(matches!(
            decode::<Message>(&padded, MAX_FRAME_DEFAULT),
            Err(WireError::Malformed { .. })
        ));
    }

    proptest! {
        /// Any byte string decodes to a message, a request for more bytes, or an error; never a
        /// panic, and never a claim to have used more bytes than it was given.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((_, used))) = decode::<Message>(&bytes, 128) {
                prop_assert!(used <= bytes.len());
            }
        }

        #[test]
        fn heartbeats_round_trip(seq in any::<u64>(), uptime_ms in any::<u64>(), cpu in -1e9f64..1e9) {
            let message = Message::Heartbeat(Heartbeat {
                seq, status: NodeStatus::Online, uptime_ms,
                metrics: BTreeMap::from([("cpu".to_string(), cpu)]),
            });
            let mut buf = Vec::new();
            encode(&message, MAX_FRAME_DEFAULT, &mut buf).unwrap();
            prop_assert_eq!(decode::<Message>(&buf, MAX_FRAME_DEFAULT).unwrap(), Some((message, buf.len())));
        }
    }
}
