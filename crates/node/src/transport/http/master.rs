//! The master's side: an HTTP server on the agents' listener that turns requests into one
//! [`Channel`](crate::transport::Channel) per session, so the master's session loop runs as it
//! does over TCP.
//!
//! A request hands its message to the session's channel and waits for the answer: what the
//! master sends while it handles that message (its session loop reads the next message only
//! once it has sent those). What the master sends at any other time (a command, a config push,
//! a goodbye) waits in the session's mailbox for the agent's long poll.

use super::{Route, SESSION};
use crate::clock::now;
use crate::codec::CodecError;
use crate::net::TcpListener;
use crate::sync::lock;
use crate::transport::{BoxChannel, Channel};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use fleet_core::transport::HttpTransport;
use fleet_core::wire::{Message, Refusal};
use futures::{Sink, Stream};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};

/// The largest request body taken: a registration with its metadata, a command's result.
const MAX_BODY: usize = 256 * 1024;

/// How long a session lasts with no request: three poll intervals (a live agent's long poll
/// comes back within one), and never under a minute. It frees what an agent that vanished left
/// behind; liveness marks the agent offline long before, by its missed heartbeats, so a slow
/// agent loses nothing to it.
fn idle_limit(poll: Duration) -> Duration {
    (poll * 3).max(Duration::from_secs(60))
}

/// An agent's message, and where its answer goes.
type Request = (Message, oneshot::Sender<Vec<Message>>);

/// One agent's session, as its requests see it.
struct Session {
    /// Hands the master the agent's messages; `None` once the session ended.
    inbound: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    /// What the master sent outside an answer, for the next long poll.
    mailbox: Mutex<VecDeque<Message>>,
    mail: Notify,
    /// The master dropped its side of the session.
    closed: AtomicBool,
    last_seen: Mutex<Instant>,
}

impl Session {
    fn touch(&self) {
        *lock(&self.last_seen) = now();
    }

    /// Hands `message` to the master and waits for its answer; `None` if the session ended.
    async fn exchange(&self, message: Message) -> Option<Vec<Message>> {
        self.touch();
        let (slot, answer) = oneshot::channel();
        lock(&self.inbound).as_ref()?.send((message, slot)).ok()?;
        answer.await.ok()
    }

    fn end(&self) {
        lock(&self.inbound).take();
    }
}

/// Every open session, by the token its requests carry.
struct Sessions {
    table: Mutex<BTreeMap<String, Arc<Session>>>,
    /// Tokens are this server's start time and a count: a restarted master hands out none of
    /// the tokens its last run did.
    epoch: u64,
    next: AtomicU64,
    /// Where the master takes new sessions from.
    opened: mpsc::UnboundedSender<BoxChannel>,
    poll: Duration,
}

impl Sessions {
    /// A new session, its channel handed to the master.
    fn open(&self) -> Option<(String, Arc<Session>)> {
        let token = format!(
            "{}-{}",
            self.epoch,
            self.next.fetch_add(1, Ordering::Relaxed) + 1
        );
        let (inbound, requests) = mpsc::unbounded_channel();
        let session = Arc::new(Session {
            inbound: Mutex::new(Some(inbound)),
            mailbox: Mutex::default(),
            mail: Notify::new(),
            closed: AtomicBool::new(false),
            last_seen: Mutex::new(now()),
        });
        let channel = SessionChannel {
            session: session.clone(),
            requests,
            answering: None,
        };
        self.opened.send(Box::new(channel)).ok()?;
        lock(&self.table).insert(token.clone(), session.clone());
        Some((token, session))
    }

    /// The session `headers` name, if it is open.
    fn find(&self, headers: &HeaderMap) -> Option<(String, Arc<Session>)> {
        let token = headers.get(SESSION)?.to_str().ok()?;
        let session = lock(&self.table).get(token)?.clone();
        Some((token.to_string(), session))
    }

    fn remove(&self, token: &str) {
        if let Some(session) = lock(&self.table).remove(token) {
            session.end();
        }
    }

    /// Ends the sessions no request came for in [`idle_limit`], and forgets those the master
    /// closed.
    fn sweep(&self, now: Instant) {
        let idle = idle_limit(self.poll);
        lock(&self.table).retain(|_, session| {
            let seen = *lock(&session.last_seen);
            let keep = now.duration_since(seen) < idle && !session.closed.load(Ordering::Acquire);
            if !keep {
                session.end();
            }
            keep
        });
    }
}

/// The master's end of one session.
struct SessionChannel {
    session: Arc<Session>,
    requests: mpsc::UnboundedReceiver<Request>,
    /// The request being handled, and the answer so far.
    answering: Option<(oneshot::Sender<Vec<Message>>, Vec<Message>)>,
}

impl SessionChannel {
    fn answer(&mut self) {
        if let Some((slot, messages)) = self.answering.take() {
            let _ = slot.send(messages);
        }
    }
}

impl Channel for SessionChannel {}

impl Stream for SessionChannel {
    type Item = Result<Message, CodecError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Asked for the next message: the master sent all it had to say to the last one.
        self.answer();
        match self.requests.poll_recv(cx) {
            Poll::Ready(Some((message, slot))) => {
                self.answering = Some((slot, Vec::new()));
                Poll::Ready(Some(Ok(message)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Sink<Message> for SessionChannel {
    type Error = CodecError;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), CodecError> {
        match &mut self.answering {
            Some((_, answer)) => answer.push(message),
            None => {
                lock(&self.session.mailbox).push_back(message);
                self.session.mail.notify_one();
            }
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for SessionChannel {
    /// The master ended the session: the answer it was giving goes out, its mailbox is still
    /// read by the next long poll, and every request after that is told the session is gone.
    fn drop(&mut self) {
        self.answer();
        self.session.closed.store(true, Ordering::Release);
        self.session.mail.notify_one();
    }
}

/// Ends a task with the acceptor.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A master's agents over HTTP: the server, and the sessions it opened.
pub struct Acceptor {
    opened: mpsc::UnboundedReceiver<BoxChannel>,
    _server: AbortOnDrop<io::Result<()>>,
    _sweeper: AbortOnDrop<()>,
}

impl Acceptor {
    /// Serves the agents' API on `listener`.
    pub fn new(listener: TcpListener, http: &HttpTransport) -> Acceptor {
        let (opened, sessions_opened) = mpsc::unbounded_channel();
        let sessions = Arc::new(Sessions {
            table: Mutex::default(),
            epoch: crate::clock::unix_ms(),
            next: AtomicU64::new(0),
            opened,
            poll: http.poll,
        });
        let server = crate::task::spawn(crate::http::serve(listener, router(sessions.clone())));
        let sweeper = crate::task::spawn(async move {
            loop {
                crate::clock::sleep(sessions.poll).await;
                sessions.sweep(now());
            }
        });
        Acceptor {
            opened: sessions_opened,
            _server: AbortOnDrop(server),
            _sweeper: AbortOnDrop(sweeper),
        }
    }

    /// The next session an agent's registration opened.
    pub async fn accept(&mut self) -> io::Result<BoxChannel> {
        (self.opened.recv().await)
            .ok_or_else(|| io::Error::other("the agents' HTTP server stopped"))
    }
}

fn router(sessions: Arc<Sessions>) -> Router {
    let deliver = |route: Route| {
        move |State(sessions): State<Arc<Sessions>>, headers: HeaderMap, body: Bytes| async move {
            deliver(&sessions, route, &headers, &body).await
        }
    };
    Router::new()
        .route("/api/master/nodes/register", post(deliver(Route::Register)))
        .route("/api/master/heartbeat", post(deliver(Route::Heartbeat)))
        .route("/api/master/command/result", post(deliver(Route::Result)))
        .route(
            "/api/master/nodes/{id}/config",
            post(deliver(Route::Config)),
        )
        .route(
            "/api/master/nodes/{id}/unregister",
            post(deliver(Route::Unregister)),
        )
        .route("/api/master/nodes/{id}/commands", get(long_poll))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(sessions)
}

/// One of the agent's messages, to the session it names (a registration may open one).
async fn deliver(sessions: &Sessions, route: Route, headers: &HeaderMap, body: &[u8]) -> Response {
    let message: Message = match serde_json::from_slice(body) {
        Ok(message) => message,
        Err(why) => return error(StatusCode::BAD_REQUEST, &format!("not a message: {why}")),
    };
    if Route::of(&message) != Some(route) {
        let why = format!("a {} does not go to {}", message.kind(), route.path("{id}"));
        return error(StatusCode::BAD_REQUEST, &why);
    }
    let found = match (sessions.find(headers), route) {
        (Some(found), _) => Some(found),
        (None, Route::Register) => sessions.open(),
        (None, _) => None,
    };
    let Some((token, session)) = found else {
        return gone();
    };
    let Some(answer) = session.exchange(message).await else {
        sessions.remove(&token);
        return gone();
    };
    if route == Route::Unregister {
        sessions.remove(&token);
    }
    let mut response = respond(answer);
    if route == Route::Register {
        if let Ok(value) = HeaderValue::from_str(&token) {
            response.headers_mut().insert(SESSION, value);
        }
    }
    response
}

#[derive(serde::Deserialize)]
struct Wait {
    wait: Option<u64>,
}

/// What the master sent the session since the last poll, waiting up to `wait` milliseconds
/// (at most this server's poll interval) for something.
async fn long_poll(
    State(sessions): State<Arc<Sessions>>,
    headers: HeaderMap,
    Query(wait): Query<Wait>,
) -> Response {
    let Some((token, session)) = sessions.find(&headers) else {
        return gone();
    };
    session.touch();
    let wait = Duration::from_millis(wait.wait.unwrap_or(0)).min(sessions.poll);
    let deadline = now() + wait;
    loop {
        let mail: Vec<Message> = lock(&session.mailbox).drain(..).collect();
        if !mail.is_empty() {
            session.touch();
            return respond(mail);
        }
        if session.closed.load(Ordering::Acquire) {
            sessions.remove(&token);
            return gone();
        }
        let left = deadline.saturating_duration_since(now());
        if crate::clock::timeout(left, session.mail.notified())
            .await
            .is_err()
        {
            session.touch();
            return respond(Vec::new());
        }
    }
}

/// The master's messages as the answer's body; a refused registration's status says why.
fn respond(messages: Vec<Message>) -> Response {
    let refused = messages.iter().find_map(|message| match message {
        Message::RegisterAck(ack) if !ack.accepted() => Some((ack.refusal, ack.retry_after_ms)),
        _ => None,
    });
    let status = match refused {
        None => StatusCode::OK,
        Some((Refusal::Unauthorized, _)) => StatusCode::UNAUTHORIZED,
        Some((Refusal::Busy | Refusal::RetryLimit, _)) => StatusCode::TOO_MANY_REQUESTS,
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = serde_json::to_vec(&messages).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some((_, retry_after_ms)) = refused.filter(|_| status == StatusCode::TOO_MANY_REQUESTS) {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_ms.div_ceil(1000)),
        );
    }
    response
}

fn gone() -> Response {
    error(StatusCode::GONE, "no such session: register again")
}

fn error(status: StatusCode, why: &str) -> Response {
    let body = serde_json::json!({ "error": why }).to_string();
    let mut response = (status, body).into_response();
    let json = HeaderValue::from_static("application/json");
    response.headers_mut().insert(header::CONTENT_TYPE, json);
    response
}
