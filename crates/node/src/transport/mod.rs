//! The seam between the shell and what carries the wire: the cores speak `wire::Message`, and a
//! transport carries those messages between an agent and a master as a [`Channel`], one per
//! session: a stream of the messages received and a sink for those sent. The agent's link and
//! the master's sessions see only channels, so a transport is one module behind this seam:
//!
//! - framed TCP ([`framed`]: a length prefix and a bincode body per message, see
//!   [`crate::codec`]), the default;
//! - [`http`]: the connector design's HTTP API, a request per message from the agent and a long
//!   poll for the master's.
//!
//! An agent opens a channel with [`connect`]; a master takes them from an [`Acceptor`].

pub mod grpc;
pub mod http;
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
}

impl Channel for Framed<TcpStream, FrameCodec> {}

pub type BoxChannel = Box<dyn Channel>;

/// A TCP connection as a channel of length-prefixed frames.
pub fn framed(stream: TcpStream) -> BoxChannel {
    Box::new(Framed::new(stream, FrameCodec::default()))
}

/// An agent's session with the master at `address`, over `transport`.
pub async fn connect(transport: &Transport, address: SocketAddr) -> io::Result<BoxChannel> {
    match transport {
        Transport::Tcp => {
            let stream = TcpStream::connect(address).await?;
            // Heartbeats are small and late ones cost liveness: no Nagle delay.
            let _ = stream.set_nodelay(true);
            Ok(framed(stream))
        }
        Transport::Http(http) => http::connect(address, http).await,
        Transport::Grpc(grpc) => grpc::connect(address, grpc).await,
    }
}

/// Where a master's sessions come from.
pub enum Acceptor {
    Tcp(TcpListener),
    Http(http::Acceptor),
    Grpc(grpc::Acceptor),
}

impl Acceptor {
    /// Serves agents on `listener` over `transport`; `seed` draws what a transport keeps
    /// secret (HTTP's session tokens).
    pub fn new(transport: &Transport, listener: TcpListener, seed: u64) -> Acceptor {
        match transport {
            Transport::Tcp => Acceptor::Tcp(listener),
            Transport::Http(http) => Acceptor::Http(http::Acceptor::new(listener, http, seed)),
            Transport::Grpc(grpc) => Acceptor::Grpc(grpc::Acceptor::new(listener, grpc)),
        }
    }

    /// The next agent's session.
    pub async fn accept(&mut self) -> io::Result<BoxChannel> {
        match self {
            Acceptor::Tcp(listener) => Ok(framed(listener.accept().await?.0)),
            Acceptor::Http(acceptor) => acceptor.accept().await,
            Acceptor::Grpc(acceptor) => acceptor.accept().await,
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
