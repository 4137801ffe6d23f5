//! The shell's sockets, picked so the rest of the shell names one type:
//!
//! - the simulation build (`--cfg madsim`): madsim's, through `madsim-tokio`;
//! - a plain build: tokio's, real sockets;
//! - a plain build with the `turmoil` feature (what the harness's native build turns on):
//!   turmoil's simulated sockets inside a turmoil simulation, for running scenarios on the
//!   second engine, and real ones outside it. One native build then serves the harness and the
//!   binaries' tests alike.
//!
//! Each socket opened by a task of a [`Machine`] goes through that machine's link gates: a
//! link held or stalled there (see [`Machine::gate`]) delivers nothing to this side until it
//! opens, and a connect over a held link waits. Neither simulator can stall a link (madsim
//! cannot hold one either), so both get it here, the same way. A socket also counts what its
//! machine sends to the peer (for the faults' effects), and passes two of the shell's fault
//! points ([`crate::buggify`]): a send held back, a connection dropped as it opens. Outside any
//! machine (a deployment) it is the plain socket.

use crate::buggify::{self, Point};
use crate::machine::Machine;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Whether this build's sockets are the operating system's outside a simulation: any build
/// but the simulation build, whose sockets are always madsim's.
pub const REAL_SOCKETS: bool = cfg!(not(madsim));

#[cfg(any(madsim, not(feature = "turmoil")))]
use tokio::net as raw;

#[cfg(all(not(madsim), feature = "turmoil"))]
mod raw {
    //! turmoil's sockets inside a turmoil simulation, tokio's outside it.

    use std::io;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    /// Whether the calling task runs on a turmoil host.
    pub(crate) fn in_turmoil() -> bool {
        turmoil::sim_elapsed().is_some()
    }

    pub enum TcpListener {
        Real(tokio::net::TcpListener),
        Turmoil(turmoil::net::TcpListener),
    }

    impl TcpListener {
        pub async fn bind(address: SocketAddr) -> io::Result<TcpListener> {
            Ok(if in_turmoil() {
                TcpListener::Turmoil(turmoil::net::TcpListener::bind(address).await?)
            } else {
                TcpListener::Real(tokio::net::TcpListener::bind(address).await?)
            })
        }

        pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
            Ok(match self {
                TcpListener::Real(inner) => {
                    let (stream, peer) = inner.accept().await?;
                    (TcpStream::Real(stream), peer)
                }
                TcpListener::Turmoil(inner) => {
                    let (stream, peer) = inner.accept().await?;
                    (TcpStream::Turmoil(stream), peer)
                }
            })
        }

        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            match self {
                TcpListener::Real(inner) => inner.local_addr(),
                TcpListener::Turmoil(inner) => inner.local_addr(),
            }
        }
    }

    pub enum TcpStream {
        Real(tokio::net::TcpStream),
        Turmoil(turmoil::net::TcpStream),
    }

    impl TcpStream {
        pub async fn connect(address: SocketAddr) -> io::Result<TcpStream> {
            Ok(if in_turmoil() {
                TcpStream::Turmoil(turmoil::net::TcpStream::connect(address).await?)
            } else {
                TcpStream::Real(tokio::net::TcpStream::connect(address).await?)
            })
        }

        pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
            match self {
                TcpStream::Real(inner) => inner.set_nodelay(nodelay),
                TcpStream::Turmoil(inner) => inner.set_nodelay(nodelay),
            }
        }
    }

    impl AsyncRead for TcpStream {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.get_mut() {
                TcpStream::Real(inner) => Pin::new(inner).poll_read(cx, buf),
                TcpStream::Turmoil(inner) => Pin::new(inner).poll_read(cx, buf),
            }
        }
    }

    impl AsyncWrite for TcpStream {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            match self.get_mut() {
                TcpStream::Real(inner) => Pin::new(inner).poll_write(cx, buf),
                TcpStream::Turmoil(inner) => Pin::new(inner).poll_write(cx, buf),
            }
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            match self.get_mut() {
                TcpStream::Real(inner) => Pin::new(inner).poll_flush(cx),
                TcpStream::Turmoil(inner) => Pin::new(inner).poll_flush(cx),
            }
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            match self.get_mut() {
                TcpStream::Real(inner) => Pin::new(inner).poll_shutdown(cx),
                TcpStream::Turmoil(inner) => Pin::new(inner).poll_shutdown(cx),
            }
        }
    }
}

/// Whether the calling task runs inside a turmoil simulation, where the shell's sockets,
/// clock and tasks are turmoil's.
#[cfg(all(not(madsim), feature = "turmoil"))]
pub(crate) use raw::in_turmoil;

pub struct TcpListener {
    inner: raw::TcpListener,
}

impl TcpListener {
    pub async fn bind(address: SocketAddr) -> io::Result<TcpListener> {
        let inner = raw::TcpListener::bind(address).await?;
        Ok(TcpListener { inner })
    }

    /// The next connection: accepted whatever the gates say, as a kernel accepts for a process
    /// that is not reading.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.inner.accept().await?;
        Ok((TcpStream::new(stream, peer.ip()), peer))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

pub struct TcpStream {
    inner: raw::TcpStream,
    /// The machine whose gates it goes through, and the peer's address.
    gate: Option<(Machine, IpAddr)>,
    /// The machine's count of what it sent to the peer, and of the bytes its sockets wrote.
    sent: Option<(Arc<AtomicU64>, Arc<AtomicU64>)>,
    /// A write held back by a fault point ([`buggify::Point::DelayedSend`]), and whether the
    /// write under way already drew its chance.
    delayed: Option<Pin<Box<tokio::time::Sleep>>>,
    drawn: bool,
    /// Something was written since the last flush. madsim sends a packet on every flush, even
    /// an empty one, and the peer's task wakes for it: hyper flushes on every turn of its
    /// loop, so two idle HTTP peers would wake each other for ever.
    unflushed: bool,
}

impl TcpStream {
    fn new(inner: raw::TcpStream, peer: IpAddr) -> TcpStream {
        let machine = Machine::current();
        TcpStream {
            inner,
            sent: (machine.as_ref())
                .map(|machine| (machine.sent_counter(peer), machine.bytes_counter())),
            gate: machine.map(|machine| (machine, peer)),
            delayed: None,
            drawn: false,
            unflushed: false,
        }
    }

    /// Connects to `address`, once no hold on the link stands in the way.
    pub async fn connect(address: SocketAddr) -> io::Result<TcpStream> {
        if let Some(machine) = Machine::current() {
            machine
                .sent_counter(address.ip())
                .fetch_add(1, Ordering::Relaxed);
            std::future::poll_fn(|cx| machine.poll_connect_open(address.ip(), cx)).await;
        }
        let inner = raw::TcpStream::connect(address).await?;
        if buggify::fires(Point::DroppedConnection).is_some() {
            drop(inner);
            let why = "dropped just after it opened (a fault point)";
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, why));
        }
        Ok(TcpStream::new(inner, address.ip()))
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(nodelay)
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some((machine, peer)) = &this.gate {
            if machine.poll_read_open(*peer, cx).is_pending() {
                return Poll::Pending;
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.drawn {
            this.drawn = true;
            let delay = buggify::fires(Point::DelayedSend);
            this.delayed = delay.map(|delay| Box::pin(tokio::time::sleep(delay)));
        }
        if let Some(delayed) = &mut this.delayed {
            std::task::ready!(delayed.as_mut().poll(cx));
            this.delayed = None;
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if written.is_ready() {
            this.drawn = false;
            this.unflushed = true;
            if let Some((sent, bytes)) = &this.sent {
                sent.fetch_add(1, Ordering::Relaxed);
                if let Poll::Ready(Ok(written)) = &written {
                    bytes.fetch_add(*written as u64, Ordering::Relaxed);
                }
            }
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.unflushed {
            return Poll::Ready(Ok(()));
        }
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if flushed.is_ready() {
            this.unflushed = false;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
