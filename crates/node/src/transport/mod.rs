//! The seam between the shell and what carries the wire: the cores speak `wire::Message`, and a
//! transport carries those messages between an agent and a master as a [`Channel`], one per
//! session: a stream of the messages received and a sink for those sent. The agent's link and
//! the master's sessions see only channels, so a transport is one module behind this seam:
//!
//! - framed TCP ([`framed`]: a length prefix and a bincode body per message, see
//!   [`crate::codec`]), the default;
//! - [`http`]: the connector design's HTTP API, a request per message from the agent and a long
//!   poll for the master's;
//! - [`grpc`]: the gRPC design's `AgentService`, unary calls and a bidirectional stream;
//! - [`mqtt`]: the MQTT design's topics, through a broker both sides are clients of.
//!
//! An agent opens a channel with [`connect`]; a master takes them from an [`Acceptor`].

pub mod grpc;
pub mod http;
pub mod mqtt;
mod session;

use crate::codec::{CodecError, FrameCodec};
use crate::net::{TcpListener, TcpStream};
use fleet_core::transport::Transport;
use fleet_core::wire::Message;
use futures::{Sink, Stream};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use tokio_util::codec::Framed;

/// One session's messages, both ways. `next()` is cancel-safe: a message half received stays
/// in the channel.
pub trait Channel:
    Stream<Item = Result<Message, CodecError>> + Sink<Message, Error = CodecError> + Send + Unpin
{
    /// Waits, briefly, until what was sent as the session's last words (an agent's unregister)
    /// reached the other side, before the channel is dropped. A socket needs no wait: its
    /// kernel sends what was written after the close.
    fn finish(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }

    /// Whether the channel ended because the transport declared the agent gone (an MQTT
    /// broker's will), not merely its connection closed.
    fn lost(&self) -> bool {
        false
    }
}

impl Channel for Framed<TcpStream, FrameCodec> {}

pub type BoxChannel = Box<dyn Channel>;

/// A TCP connection as a channel of length-prefixed frames.
pub fn framed(stream: TcpStream) -> BoxChannel {
    Box::new(Framed::new(stream, FrameCodec::default()))
}

/// Who a session is between, and which of the agent's sessions it is: what a transport
/// through a broker has to say (the others' connections say it).
#[derive(Clone, Copy, Debug)]
pub struct Ends<'a> {
    pub agent: &'a str,
    pub master: &'a str,
    /// Distinct for each session the agent's process opens.
    pub session: &'a str,
}

/// An agent's session with the master at `address` (a broker's, for MQTT), over `transport`.
pub async fn connect(
    transport: &Transport,
    address: SocketAddr,
    ends: &Ends<'_>,
) -> io::Result<BoxChannel> {
    match transport {
        Transport::Tcp => {
            let stream = TcpStream::connect(address).await?;
            // Heartbeats are small and late ones cost liveness: no Nagle delay.
            let _ = stream.set_nodelay(true);
            Ok(framed(stream))
        }
        Transport::Http(http) => http::connect(address, http).await,
        Transport::Grpc(grpc) => grpc::connect(address, grpc).await,
        Transport::Mqtt(mqtt) => mqtt::connect(address, mqtt, ends).await,
    }
}

/// Where a master meets its agents.
pub enum Serve<'a> {
    /// Its own listener (tcp, http, grpc); `seed` draws what a transport keeps secret (HTTP's
    /// session tokens).
    Listen { listener: TcpListener, seed: u64 },
    /// The broker at `address`, as the master `name` (mqtt).
    Broker { address: SocketAddr, name: &'a str },
}

/// Where a master's sessions come from.
pub enum Acceptor {
    Tcp(TcpListener),
    Http(http::Acceptor),
    Grpc(grpc::Acceptor),
    Mqtt(mqtt::Acceptor),
}

impl Acceptor {
    /// Serves agents over `transport`, as `serve` says.
    pub fn new(transport: &Transport, serve: Serve) -> Acceptor {
        match (transport, serve) {
            (Transport::Tcp, Serve::Listen { listener, .. }) => Acceptor::Tcp(listener),
            (Transport::Http(http), Serve::Listen { listener, seed }) => {
                Acceptor::Http(http::Acceptor::new(listener, http, seed))
            }
            (Transport::Grpc(grpc), Serve::Listen { listener, .. }) => {
                Acceptor::Grpc(grpc::Acceptor::new(listener, grpc))
            }
            (Transport::Mqtt(mqtt), Serve::Broker { address, name }) => {
                Acceptor::Mqtt(mqtt::Acceptor::new(address, name, mqtt))
            }
            (transport, Serve::Listen { .. }) => {
                unreachable!("{} is served through a broker", transport.name())
            }
            (transport, Serve::Broker { .. }) => {
                unreachable!("{} is served on a listener", transport.name())
            }
        }
    }

    /// The next agent's session.
    pub async fn accept(&mut self) -> io::Result<BoxChannel> {
        match self {
            Acceptor::Tcp(listener) => Ok(framed(listener.accept().await?.0)),
            Acceptor::Http(acceptor) => acceptor.accept().await,
            Acceptor::Grpc(acceptor) => acceptor.accept().await,
            Acceptor::Mqtt(acceptor) => acceptor.accept().await,
        }
    }
}

/// Ends a task with the acceptor.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
