//! The agent's side: a [`Channel`](crate::transport::Channel) that sends each message as its
//! request, one at a time and in order, on one keep-alive connection, and once registered keeps
//! a long poll open on a second one. Every answer's messages come out of the channel in the
//! order they arrived.
//!
//! The channel does its work as it is polled, with no task of its own: the agent's loop polls it
//! whenever its link is open, and dropping it drops both connections and whatever was under way.
//! A failure ends the channel with an I/O error the agent classifies as it would a TCP one: a
//! refused connect is `refused`, a cut connection or a `5xx` is `reset`, a `410 Gone` (the
//! master ended the session) is `closed`, and an answer that is not messages is
//! `protocol_error`.

use super::{Route, SESSION};
use crate::clock::{now, Timer};
use crate::codec::CodecError;
use crate::net::TcpStream;
use crate::transport::{BoxChannel, Channel};
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use fleet_core::transport::HttpTransport;
use fleet_core::wire::{Message, Refusal, RegisterAck};
use futures::{Sink, Stream};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The largest answer read: a long poll's batch of commands and config pushes.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

type Client = SendRequest<Body>;

/// A request under way, with the connection it goes out on.
type Exchange = Pin<Box<dyn Future<Output = (Client, io::Result<Answer>)> + Send>>;

type Opening = Pin<Box<dyn Future<Output = io::Result<Client>> + Send>>;

struct Answer {
    session: Option<String>,
    messages: Vec<Message>,
}

/// One connection's state.
enum Line {
    Opening(Opening),
    Idle(Client),
    Busy(Exchange),
    /// Not opened yet (the long poll before registration), or failed.
    None,
}

impl Line {
    /// Polls the request under way: its answer once it came, the line idle again.
    fn answer(&mut self, cx: &mut Context<'_>) -> Option<io::Result<Answer>> {
        let Line::Busy(exchange) = self else {
            return None;
        };
        let Poll::Ready((client, answer)) = exchange.as_mut().poll(cx) else {
            return None;
        };
        *self = Line::Idle(client);
        Some(answer)
    }

    /// Sends `request`, if the line is idle.
    fn send(&mut self, request: axum::http::Result<Request<Body>>) {
        *self = match std::mem::replace(self, Line::None) {
            Line::Idle(client) => Line::Busy(exchange(client, request)),
            other => other,
        };
    }
}

/// An agent's session with the master at `address`: the first connection opens here, so a
/// refused or unreachable master fails the connect as it does over TCP.
pub async fn connect(address: SocketAddr, http: &HttpTransport) -> io::Result<BoxChannel> {
    let client = open(address).await?;
    Ok(Box::new(HttpChannel {
        address,
        poll: http.poll,
        agent: String::new(),
        session: None,
        outgoing: VecDeque::new(),
        requests: Line::Idle(client),
        poller: Line::None,
        received: VecDeque::new(),
        failed: None,
        ended: false,
        leaving: false,
        poll_deadline: Timer::default(),
    }))
}

/// A keep-alive HTTP/1.1 connection to `address`.
async fn open(address: SocketAddr) -> io::Result<Client> {
    let stream = TcpStream::connect(address).await?;
    let _ = stream.set_nodelay(true);
    let (client, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    // Ends when the channel drops its client.
    crate::task::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

struct HttpChannel {
    address: SocketAddr,
    poll: Duration,
    /// The agent's name, from its registration: the paths name it.
    agent: String,
    /// The session its registration's answer named.
    session: Option<String>,
    /// Messages to send, in order, one request each.
    outgoing: VecDeque<Message>,
    requests: Line,
    poller: Line,
    received: VecDeque<Message>,
    failed: Option<io::Error>,
    ended: bool,
    /// The agent unregistered: [`Channel::finish`] waits for the master to have it.
    leaving: bool,
    /// When the long poll under way must have had its answer: a poll connection that died
    /// silently (no reset reaches the agent) would otherwise leave it deaf while its heartbeats
    /// still go through.
    poll_deadline: Timer,
}

/// How long after it is sent a long poll must be answered: its wait, and as long again (three
/// seconds at least) for the network and a busy master.
fn poll_deadline(poll: Duration) -> Duration {
    poll + poll.max(Duration::from_secs(3))
}

/// How long a leaving agent waits for its unregister's answer.
const FINISH: Duration = Duration::from_secs(1);

impl Channel for HttpChannel {
    fn finish(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if !self.leaving {
                return;
            }
            let delivered = std::future::poll_fn(|cx| {
                self.drive(cx);
                let idle = self.outgoing.is_empty() && matches!(self.requests, Line::Idle(_));
                match idle || self.ended || self.failed.is_some() {
                    true => Poll::Ready(()),
                    false => Poll::Pending,
                }
            });
            let _ = crate::clock::timeout(FINISH, delivered).await;
        })
    }
}

impl HttpChannel {
    /// Moves every request along as far as it goes without waiting.
    fn drive(&mut self, cx: &mut Context<'_>) {
        while !self.ended
            && self.failed.is_none()
            && (self.drive_requests(cx) | self.drive_poller(cx))
        {}
    }

    /// Whether the request line moved: an answer came, or the next message went out.
    fn drive_requests(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(answer) = self.requests.answer(cx) {
            self.take(answer);
            return true;
        }
        if !matches!(self.requests, Line::Idle(_)) {
            return false;
        }
        let Some(message) = self.outgoing.pop_front() else {
            return false;
        };
        let request = self.request(&message);
        self.requests.send(request);
        true
    }

    /// Whether the long poll moved: it opens its connection once the session is registered,
    /// and asks again as soon as an answer came.
    fn drive_poller(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(session) = self.session.clone() else {
            return false;
        };
        if let Some(answer) = self.poller.answer(cx) {
            self.poll_deadline.set(None);
            self.take(answer);
            return true;
        }
        if matches!(self.poller, Line::Busy(_))
            && Pin::new(&mut self.poll_deadline.expired())
                .poll(cx)
                .is_ready()
        {
            let why = "the long poll had no answer long past its wait";
            self.failed = Some(io::Error::new(io::ErrorKind::ConnectionReset, why));
            return true;
        }
        match std::mem::replace(&mut self.poller, Line::None) {
            Line::None => {
                self.poller = Line::Opening(Box::pin(open(self.address)));
                true
            }
            Line::Opening(mut opening) => match opening.as_mut().poll(cx) {
                Poll::Ready(Ok(client)) => {
                    self.poller = Line::Idle(client);
                    true
                }
                Poll::Ready(Err(error)) => {
                    self.failed = Some(error);
                    true
                }
                Poll::Pending => {
                    self.poller = Line::Opening(opening);
                    false
                }
            },
            idle @ Line::Idle(_) => {
                let wait_ms = self.poll.as_millis() as u64;
                let request = Request::builder()
                    .method(Method::GET)
                    .uri(super::commands(&self.agent, wait_ms))
                    .header(header::HOST, self.address.to_string())
                    .header(SESSION, session)
                    .body(Body::empty());
                self.poller = idle;
                self.poller.send(request);
                self.poll_deadline
                    .set(Some(now() + poll_deadline(self.poll)));
                true
            }
            busy @ Line::Busy(_) => {
                self.poller = busy;
                false
            }
        }
    }

    fn take(&mut self, answer: io::Result<Answer>) {
        match answer {
            Ok(answer) => {
                if answer.session.is_some() {
                    self.session = answer.session;
                }
                self.received.extend(answer.messages);
            }
            Err(error) => self.failed = Some(error),
        }
    }

    /// The request that carries `message`.
    fn request(&mut self, message: &Message) -> axum::http::Result<Request<Body>> {
        if let Message::Register(register) = message {
            self.agent = register.node_name.clone();
        }
        // Only what an agent sends reaches here: the agent's core sends nothing else.
        let path = Route::of(message).map_or_else(|| "/".into(), |route| route.path(&self.agent));
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, self.address.to_string())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(session) = &self.session {
            request = request.header(SESSION, session);
        }
        let body = serde_json::to_vec(message).unwrap_or_default();
        request.body(Body::from(body))
    }
}

/// Sends `request` on `client`, and reads the answer whole.
fn exchange(mut client: Client, request: axum::http::Result<Request<Body>>) -> Exchange {
    let registering = (request.as_ref().ok())
        .is_some_and(|request| request.uri().path() == Route::Register.path(""));
    Box::pin(async move {
        let answer = async {
            let request =
                request.map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
            client.ready().await.map_err(broken)?;
            let response = client.send_request(request).await.map_err(broken)?;
            let status = response.status();
            let header = |name| {
                (response.headers().get(name))
                    .and_then(|value: &HeaderValue| value.to_str().ok())
                    .map(str::to_string)
            };
            let session = header(SESSION);
            let retry_after = header(header::RETRY_AFTER.as_str()).and_then(|s| s.parse().ok());
            let body = axum::body::to_bytes(Body::new(response.into_body()), MAX_ANSWER)
                .await
                .map_err(|error| io::Error::new(io::ErrorKind::ConnectionReset, error))?;
            let refused = registering.then(|| refusal(status, retry_after)).flatten();
            read(status, session, &body, refused)
        }
        .await;
        (client, answer)
    })
}

/// What a registration's status says when its body does not (a proxy's answer, say): 401 is
/// unauthorized, 429 busy for its `Retry-After` seconds, 503 no leader.
fn refusal(status: StatusCode, retry_after_s: Option<u64>) -> Option<Message> {
    let refusal = match status {
        StatusCode::UNAUTHORIZED => Refusal::Unauthorized,
        StatusCode::TOO_MANY_REQUESTS => Refusal::Busy,
        StatusCode::SERVICE_UNAVAILABLE => Refusal::NoLeader,
        _ => return None,
    };
    Some(Message::RegisterAck(Box::new(RegisterAck {
        instance_id: String::new(),
        reason: format!("the master answered {status}"),
        heartbeat_interval_ms: 0,
        refusal,
        retry_after_ms: retry_after_s.unwrap_or(0).saturating_mul(1000),
    })))
}

/// An answer's messages; a refused registration's are in its body too, and where the body says
/// nothing its status stands for the ack (`refused`).
fn read(
    status: StatusCode,
    session: Option<String>,
    body: &[u8],
    refused: Option<Message>,
) -> io::Result<Answer> {
    if status == StatusCode::GONE {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the master ended the session",
        ));
    }
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        let why = format!("the master answered {status}");
        return Err(io::Error::new(io::ErrorKind::ConnectionReset, why));
    }
    match serde_json::from_slice::<Vec<Message>>(body) {
        Ok(messages) => Ok(Answer { session, messages }),
        Err(_) if refused.is_some() => Ok(Answer {
            session,
            messages: refused.into_iter().collect(),
        }),
        Err(error) => {
            let why = format!("the master answered {status} and no messages: {error}");
            Err(io::Error::new(io::ErrorKind::InvalidData, why))
        }
    }
}

/// A request that failed: the master closed the connection before it answered (as a TCP
/// session sees the end of its stream: `closed`), or something else broke it (`reset`).
fn broken(error: hyper::Error) -> io::Error {
    let kind = match error.is_incomplete_message() || error.is_closed() {
        true => io::ErrorKind::UnexpectedEof,
        false => io::ErrorKind::ConnectionReset,
    };
    io::Error::new(kind, error)
}

impl Stream for HttpChannel {
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

impl Sink<Message> for HttpChannel {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_as(answer: io::Result<Answer>) -> (Refusal, u64) {
        match answer.unwrap().messages.as_slice() {
            [Message::RegisterAck(ack)] => (ack.refusal, ack.retry_after_ms),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_registrations_status_stands_for_its_ack_where_the_body_says_nothing() {
        let status = |code| StatusCode::from_u16(code).unwrap();
        let answer = |code, body: &[u8], retry_after| {
            read(status(code), None, body, refusal(status(code), retry_after))
        };
        assert_eq!(
            refused_as(answer(429, b"slow down", Some(7))),
            (Refusal::Busy, 7000)
        );
        assert_eq!(
            refused_as(answer(401, b"", None)),
            (Refusal::Unauthorized, 0)
        );
        assert_eq!(
            refused_as(answer(503, b"<html>", Some(2))),
            (Refusal::NoLeader, 2000)
        );
        // The master's own body wins over its status.
        let ack = Message::RegisterAck(Box::new(RegisterAck {
            instance_id: "a-1".into(),
            reason: "full".into(),
            heartbeat_interval_ms: 0,
            refusal: Refusal::RetryLimit,
            retry_after_ms: 30_000,
        }));
        let body = serde_json::to_vec(&[ack]).unwrap();
        assert_eq!(
            refused_as(answer(429, &body, Some(1))),
            (Refusal::RetryLimit, 30_000)
        );
    }

    #[test]
    fn an_answer_that_is_not_messages_breaks_the_channel_by_kind() {
        let kind = |code, body: &[u8]| {
            let status = StatusCode::from_u16(code).unwrap();
            read(status, None, body, None)
                .err()
                .map(|error| error.kind())
        };
        assert_eq!(kind(410, b"[]"), Some(io::ErrorKind::UnexpectedEof));
        assert_eq!(kind(500, b"[]"), Some(io::ErrorKind::ConnectionReset));
        assert_eq!(kind(200, b"{"), Some(io::ErrorKind::InvalidData));
        // Not a registration: a bare 429 is no message.
        assert_eq!(kind(429, b"slow down"), Some(io::ErrorKind::InvalidData));
        assert_eq!(kind(200, b"[]"), None);
    }
}
