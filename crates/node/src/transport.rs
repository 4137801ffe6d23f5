//! The seam between the shell and what carries the wire: the cores speak `wire::Message`, and a
//! transport carries those messages between an agent and a master as a [`Channel`], one per
//! session: a stream of the messages received and a sink for those sent. The agent's link and
//! the master's sessions see only channels, so a transport is one module behind this seam.
//! Framed TCP ([`framed`]: a length prefix and a JSON body per message, see [`crate::codec`])
//! is the one there is.

use crate::codec::{CodecError, FrameCodec};
use crate::net::TcpStream;
use fleet_core::wire::Message;
use futures::{Sink, Stream};
use std::io;
use std::net::SocketAddr;
use tokio_util::codec::Framed;

/// One session's messages, both ways. `next()` is cancel-safe: a message half received stays
/// in the channel.
pub trait Channel:
    Stream<Item = Result<Message, CodecError>> + Sink<Message, Error = CodecError> + Send + Unpin
{
}

impl<T> Channel for T where
    T: Stream<Item = Result<Message, CodecError>>
        + Sink<Message, Error = CodecError>
        + Send
        + Unpin
{
}

pub type BoxChannel = Box<dyn Channel>;

/// A TCP connection as a channel of length-prefixed frames.
pub fn framed(stream: TcpStream) -> BoxChannel {
    Box::new(Framed::new(stream, FrameCodec::default()))
}

/// An agent's session with the master at `address`.
pub async fn connect(address: SocketAddr) -> io::Result<BoxChannel> {
    let stream = TcpStream::connect(address).await?;
    // Heartbeats are small and late ones cost liveness: no Nagle delay.
    let _ = stream.set_nodelay(true);
    Ok(framed(stream))
}
