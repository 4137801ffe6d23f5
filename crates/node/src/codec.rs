//! Adapts the pure frame functions of `fleet_core::wire` to `tokio_util`'s codec traits.

use bytes::{Buf, BufMut, BytesMut};
use fleet_core::wire::{self, Message, WireError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io;
use std::marker::PhantomData;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Frames of `T`: agent–master [`Message`]s unless said otherwise.
#[derive(Debug)]
pub struct FrameCodec<T = Message> {
    pub max_frame: usize,
    frames: PhantomData<fn() -> T>,
}

impl<T> FrameCodec<T> {
    /// Frames of at most `max_frame` payload bytes.
    pub fn with_max(max_frame: usize) -> Self {
        FrameCodec {
            max_frame,
            frames: PhantomData,
        }
    }
}

impl<T> Default for FrameCodec<T> {
    fn default() -> Self {
        FrameCodec {
            max_frame: wire::MAX_FRAME_DEFAULT,
            frames: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> tokio_util::codec::Decoder for FrameCodec<T> {
    type Item = T;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<T>, CodecError> {
        match wire::decode(src, self.max_frame)? {
            Some((message, used)) => {
                src.advance(used);
                Ok(Some(message))
            }
            None => Ok(None),
        }
    }
}

impl<T: Serialize> tokio_util::codec::Encoder<T> for FrameCodec<T> {
    type Error = CodecError;

    /// Serializes straight into the write buffer, in one pass: no allocation per frame.
    fn encode(&mut self, message: T, dst: &mut BytesMut) -> Result<(), CodecError> {
        wire::encode_into(&message, self.max_frame, &mut WriteBuffer(dst))?;
        Ok(())
    }
}

/// Framed's write buffer, as a frame buffer.
struct WriteBuffer<'a>(&'a mut BytesMut);

impl io::Write for WriteBuffer<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all(bytes)?;
        Ok(bytes.len())
    }

    /// bincode writes a field at a time, mostly a byte: no retry loop, and no memcpy for those.
    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let [byte] = bytes {
            self.0.put_u8(*byte);
        } else {
            self.0.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl wire::FrameBuffer for WriteBuffer<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.0
    }
}

/// RESP values, for the lease store.
#[derive(Clone, Copy, Debug, Default)]
pub struct RespCodec;

impl tokio_util::codec::Decoder for RespCodec {
    type Item = fleet_core::resp::Value;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        match fleet_core::resp::decode(src) {
            Ok(Some((value, used))) => {
                src.advance(used);
                Ok(Some(value))
            }
            Ok(None) => Ok(None),
            Err(error) => Err(io::Error::new(io::ErrorKind::InvalidData, error)),
        }
    }
}

impl tokio_util::codec::Encoder<fleet_core::resp::Value> for RespCodec {
    type Error = io::Error;

    fn encode(&mut self, value: fleet_core::resp::Value, dst: &mut BytesMut) -> io::Result<()> {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        dst.extend_from_slice(&bytes);
        Ok(())
    }
}
