//! The agent's side: a [`Channel`](crate::transport::Channel) over one HTTP/2 connection.
//! Register and Heartbeat go as unary calls, one at a time and in order; everything else goes
//! up the `ExecuteCommand` stream, opened with the connection; the answers and the stream's
//! messages come out of the channel in the order they arrived. Like the HTTP channel it does
//! its work as it is polled, with no task of its own.

use super::pb::agent_service_client::AgentServiceClient;
use super::pb::{Envelope, Envelopes};
use super::{envelope, open, Exec, Timer};
use crate::codec::CodecError;
use crate::net::TcpStream;
use crate::transport::{BoxChannel, Channel};
use fleet_core::transport::GrpcTransport;
use fleet_core::wire::Message;
use futures::{Sink, Stream, StreamExt};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::codec::CompressionEncoding;
use tonic::{Response, Status, Streaming};

/// A tonic client's transport: one hyper HTTP/2 connection.
#[derive(Clone)]
struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower_service::Service<axum::http::Request<tonic::body::Body>> for H2 {
    type Response = axum::http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

type Client = AgentServiceClient<H2>;
type Call = Pin<Box<dyn Future<Output = Result<Response<Envelopes>, Status>> + Send>>;
type Opening = Pin<Box<dyn Future<Output = Result<Response<Streaming<Envelope>>, Status>> + Send>>;

enum Down {
    Opening(Opening),
    Open(Streaming<Envelope>),
    Ended,
}

/// How long a leaving agent waits for the master to end the session after its unregister.
const FINISH: Duration = Duration::from_secs(1);

/// An agent's session with the master at `address`: the connection and its stream open here.
pub async fn connect(address: SocketAddr, grpc: &GrpcTransport) -> io::Result<BoxChannel> {
    let stream = TcpStream::connect(address).await?;
    let _ = stream.set_nodelay(true);
    let (send, connection) = hyper::client::conn::http2::Builder::new(Exec)
        .timer(Timer)
        .keep_alive_interval(grpc.keepalive)
        .keep_alive_timeout(GrpcTransport::KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| io::Error::new(io::ErrorKind::ConnectionReset, error))?;
    // Ends when the channel drops its client.
    crate::task::spawn(async move {
        let _ = connection.await;
    });
    let origin = format!("http://{address}")
        .parse()
        .map_err(io::Error::other)?;
    let mut client = AgentServiceClient::with_origin(H2(send), origin);
    if grpc.gzip {
        client = client
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
    }
    let (up, up_messages) = mpsc::unbounded_channel::<Envelope>();
    let up_stream = futures::stream::unfold(up_messages, |mut messages| async move {
        messages.recv().await.map(|message| (message, messages))
    });
    let mut streaming = client.clone();
    let opening: Opening = Box::pin(async move { streaming.execute_command(up_stream).await });
    Ok(Box::new(GrpcChannel {
        client,
        up,
        down: Down::Opening(opening),
        call: None,
        outgoing: VecDeque::new(),
        received: VecDeque::new(),
        failed: None,
        ended: false,
        leaving: false,
    }))
}

struct GrpcChannel {
    client: Client,
    up: mpsc::UnboundedSender<Envelope>,
    down: Down,
    /// The unary call under way.
    call: Option<Call>,
    outgoing: VecDeque<Message>,
    received: VecDeque<Message>,
    failed: Option<io::Error>,
    ended: bool,
    leaving: bool,
}

impl GrpcChannel {
    fn drive(&mut self, cx: &mut Context<'_>) {
        while !self.ended && self.failed.is_none() && (self.drive_calls(cx) | self.drive_down(cx)) {
        }
    }

    /// Whether the calls moved: an answer came, or the next message went out (a unary call
    /// for a registration or a heartbeat, up the stream for the rest).
    fn drive_calls(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(call) = &mut self.call {
            let Poll::Ready(answer) = call.as_mut().poll(cx) else {
                return false;
            };
            self.call = None;
            match answer {
                Ok(answer) => {
                    let opened: Result<Vec<Message>, String> =
                        answer.get_ref().messages.iter().map(open).collect();
                    match opened {
                        Ok(messages) => self.received.extend(messages),
                        Err(why) => {
                            self.failed = Some(io::Error::new(io::ErrorKind::InvalidData, why))
                        }
                    }
                }
                Err(status) => self.failed = Some(status_error(status)),
            }
            return true;
        }
        let Some(message) = self.outgoing.pop_front() else {
            return false;
        };
        let sent = envelope(&message);
        let mut client = self.client.clone();
        match message {
            Message::Register(_) => {
                self.call = Some(Box::pin(async move { client.register(sent).await }));
            }
            Message::Heartbeat(_) => {
                self.call = Some(Box::pin(async move { client.heartbeat(sent).await }));
            }
            _ => {
                if self.up.send(sent).is_err() {
                    let why = "the command stream ended";
                    self.failed = Some(io::Error::new(io::ErrorKind::UnexpectedEof, why));
                }
            }
        }
        true
    }

    /// Whether the stream down moved.
    fn drive_down(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.down {
            Down::Opening(opening) => match opening.as_mut().poll(cx) {
                Poll::Ready(Ok(response)) => {
                    self.down = Down::Open(response.into_inner());
                    true
                }
                Poll::Ready(Err(status)) => {
                    self.down = Down::Ended;
                    self.failed = Some(status_error(status));
                    true
                }
                Poll::Pending => false,
            },
            Down::Open(streaming) => match streaming.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(sent))) => {
                    match open(&sent) {
                        Ok(message) => self.received.push_back(message),
                        Err(why) => {
                            self.failed = Some(io::Error::new(io::ErrorKind::InvalidData, why))
                        }
                    }
                    true
                }
                Poll::Ready(Some(Err(status))) => {
                    self.down = Down::Ended;
                    self.failed = Some(status_error(status));
                    true
                }
                Poll::Ready(None) => {
                    self.down = Down::Ended;
                    let why = "the master ended the session";
                    self.failed = Some(io::Error::new(io::ErrorKind::UnexpectedEof, why));
                    true
                }
                Poll::Pending => false,
            },
            Down::Ended => false,
        }
    }
}

/// How a failed call or stream broke the session: the master closed the connection (`closed`,
/// as a TCP session sees the end of its stream), a message that was not one
/// (`protocol_error`), or anything else (`reset`).
fn status_error(status: Status) -> io::Error {
    let closed = std::iter::successors(std::error::Error::source(&status), |error| error.source())
        .any(|error| {
            let hyper_closed = (error.downcast_ref::<hyper::Error>())
                .is_some_and(|error| error.is_closed() || error.is_incomplete_message());
            // h2 reports the connection's end as a broken pipe.
            let io = (error.downcast_ref::<io::Error>()).or_else(|| {
                error
                    .downcast_ref::<h2::Error>()
                    .and_then(h2::Error::get_io)
            });
            let io_closed = io.is_some_and(|error| {
                matches!(
                    error.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
                )
            });
            hyper_closed || io_closed
        });
    let kind = match status.code() {
        _ if closed => io::ErrorKind::UnexpectedEof,
        tonic::Code::InvalidArgument | tonic::Code::Internal => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::ConnectionReset,
    };
    io::Error::new(kind, status.to_string())
}

impl Channel for GrpcChannel {
    fn finish(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if !self.leaving {
                return;
            }
            // The unregister went up the stream; the master ends the session once it has it.
            let ended = std::future::poll_fn(|cx| {
                self.drive(cx);
                match self.ended || self.failed.is_some() || matches!(self.down, Down::Ended) {
                    true => Poll::Ready(()),
                    false => Poll::Pending,
                }
            });
            let _ = crate::clock::timeout(FINISH, ended).await;
        })
    }
}

impl Stream for GrpcChannel {
    type Item = Result<Message, CodecError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.drive(cx);
        if let Some(message) = self.received.pop_front() {
            return Poll::Ready(Some(Ok(message)));
        }
        if let Some(error) = self.failed.take() {
            self.ended = true;
            return Poll::Ready(Some(Err(CodecError::Io(error))));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl Sink<Message> for GrpcChannel {
    type Error = CodecError;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), CodecError> {
        self.leaving |= matches!(message, Message::Unregister(_));
        self.outgoing.push_back(message);
        Ok(())
    }

    /// Starts what was queued; the answers come through the stream.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        self.drive(cx);
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Poll::Ready(Ok(()))
    }
}
