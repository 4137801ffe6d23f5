//! Adapts the pure frame functions of `fleet_core::wire` to `tokio_util`'s codec traits.

use bytes::{Buf, BytesMut};
use fleet_core::wire::{self, Message, WireError};
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
}

#[derive(Clone, Copy, Debug)]
pub struct FrameCodec {
    pub max_frame: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            max_frame: wire::MAX_FRAME_DEFAULT,
        }
    }
}

impl tokio_util::codec::Decoder for FrameCodec {
    type Item = Message;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        match wire::decode(src, self.max_frame)? {
            Some((message, used)) => {
                src.advance(used);
                Ok(Some(message))
            }
            None => Ok(None),
        }
    }
}

impl tokio_util::codec::Encoder<Message> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, message: Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        let mut frame = Vec::new();
        wire::encode(&message, self.max_frame, &mut frame)?;
        dst.extend_from_slice(&frame);
        Ok(())
    }
}
