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
use crate::net::TcpListener;
use crate::sync::lock;
use crate::transport::session::Session;
use crate::transport::{AbortOnDrop, BoxChannel};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use fleet_core::transport::HttpTransport;
use fleet_core::wire::{Message, Refusal};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The largest request body taken: a registration with its metadata, a command's result.
const MAX_BODY: usize = 256 * 1024;

/// How long a session lasts with no request: three poll intervals (a live agent's long poll
/// comes back within one), and never under a minute. It frees what an agent that vanished left
/// behind; liveness marks the agent offline long before, by its missed heartbeats, so a slow
/// agent loses nothing to it.
fn idle_limit(poll: Duration) -> Duration {
    (poll * 3).max(Duration::from_secs(60))
}

/// Every open session, by the token its requests carry.
struct Sessions {
    table: Mutex<BTreeMap<String, Arc<Session>>>,
    /// Draws the tokens: 128 random bits each, so one agent's token tells nothing of another's
    /// (seeded by the caller: the simulator's from the run's seed).
    tokens: Mutex<ChaCha8Rng>,
    /// Where the master takes new sessions from.
    opened: mpsc::UnboundedSender<BoxChannel>,
    poll: Duration,
}

impl Sessions {
    /// A new session for `agent`, its channel handed to the master.
    fn open(&self, agent: &str) -> Option<(String, Arc<Session>)> {
        let token = format!("{:032x}", lock(&self.tokens).gen::<u128>());
        let (session, channel) = Session::open(agent);
        self.opened.send(Box::new(channel)).ok()?;
        lock(&self.table).insert(token.clone(), session.clone());
        Some((token, session))
    }

    /// The session `headers` name, if it is open, and belongs to `agent` where the path
    /// names one.
    fn find(&self, headers: &HeaderMap, agent: Option<&str>) -> Option<(String, Arc<Session>)> {
        let token = headers.get(SESSION)?.to_str().ok()?;
        let session = lock(&self.table).get(token)?.clone();
        if agent.is_some_and(|agent| agent != session.agent) {
            return None;
        }
        Some((token.to_string(), session))
    }

    /// Ends the session `token` names. One the master closed stays while it holds mail (its
    /// final words), for the next request to carry.
    fn remove(&self, token: &str) {
        let mut table = lock(&self.table);
        if let Some(session) = table.get(token) {
            session.end();
            if lock(&session.mailbox).is_empty() {
                table.remove(token);
            }
        }
    }

    /// Ends the sessions no request came for in [`idle_limit`], and forgets those the master
    /// closed.
    fn sweep(&self, now: Instant) {
        let idle = idle_limit(self.poll);
        lock(&self.table).retain(|_, session| {
            let seen = *lock(&session.last_seen);
            let idle = now.duration_since(seen) >= idle;
            let done = session.is_closed() && lock(&session.mailbox).is_empty();
            if idle || done {
                session.end();
            }
            !(idle || done)
        });
    }
}

/// A master's agents over HTTP: the server, and the sessions it opened.
pub struct Acceptor {
    opened: mpsc::UnboundedReceiver<BoxChannel>,
    _server: AbortOnDrop<io::Result<()>>,
    _sweeper: AbortOnDrop<()>,
}

impl Acceptor {
    /// Serves the agents' API on `listener`, its session tokens drawn from `seed`.
    pub fn new(listener: TcpListener, http: &HttpTransport, seed: u64) -> Acceptor {
        let (opened, sessions_opened) = mpsc::unbounded_channel();
        let sessions = Arc::new(Sessions {
            table: Mutex::default(),
            tokens: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
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
    let to = |route: Route| {
        move |State(sessions): State<Arc<Sessions>>, headers: HeaderMap, body: Bytes| async move {
            deliver(&sessions, route, None, &headers, &body).await
        }
    };
    // The routes that name the agent: its session must be that agent's.
    let to_agent = |route: Route| {
        move |State(sessions): State<Arc<Sessions>>,
              Path(agent): Path<String>,
              headers: HeaderMap,
              body: Bytes| async move {
            deliver(&sessions, route, Some(&agent), &headers, &body).await
        }
    };
    Router::new()
        .route("/api/master/nodes/register", post(to(Route::Register)))
        .route("/api/master/heartbeat", post(to(Route::Heartbeat)))
        .route("/api/master/command/result", post(to(Route::Result)))
        .route(
            "/api/master/nodes/{id}/config",
            post(to_agent(Route::Config)),
        )
        .route(
            "/api/master/nodes/{id}/unregister",
            post(to_agent(Route::Unregister)),
        )
        .route("/api/master/nodes/{id}/commands", get(long_poll))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(sessions)
}

/// One of the agent's messages, to the session it names (a registration may open one), for
/// `agent` where the path names one.
async fn deliver(
    sessions: &Sessions,
    route: Route,
    agent: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let message: Message = match serde_json::from_slice(body) {
        Ok(message) => message,
        Err(why) => return error(StatusCode::BAD_REQUEST, &format!("not a message: {why}")),
    };
    if Route::of(&message) != Some(route) {
        let why = format!("a {} does not go to {}", message.kind(), route.path("{id}"));
        return error(StatusCode::BAD_REQUEST, &why);
    }
    let found = match (sessions.find(headers, agent), &message) {
        (Some(found), _) => Some(found),
        (None, Message::Register(register)) => sessions.open(&register.node_name),
        (None, _) => None,
    };
    let Some((token, session)) = found else {
        return gone();
    };
    let Some(answer) = session.exchange(message).await else {
        // The master ended the session: what it said last, if the long poll did not take it.
        let mail = session.take_mail();
        sessions.remove(&token);
        return if mail.is_empty() {
            gone()
        } else {
            respond(mail)
        };
    };
    if route == Route::Unregister {
        sessions.remove(&token);
    }
    // Only a registration the master kept (accepted, or held for the leader to decide) names
    // its session: a refused or redirected agent has none to poll.
    let kept = !answer.iter().any(|message| match message {
        Message::RegisterAck(ack) => !ack.accepted(),
        Message::Redirect(_) => true,
        _ => false,
    });
    let mut response = respond(answer);
    if route == Route::Register && kept {
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
    Path(agent): Path<String>,
    headers: HeaderMap,
    Query(wait): Query<Wait>,
) -> Response {
    let Some((token, session)) = sessions.find(&headers, Some(&agent)) else {
        return gone();
    };
    session.touch();
    // An agent that hangs up on its long poll dropped its session, as one that closes its TCP
    // connection does: the master hears of it at once.
    let mut hung_up = HangUp {
        sessions: &sessions,
        token: &token,
        armed: true,
    };
    let wait = Duration::from_millis(wait.wait.unwrap_or(0)).min(sessions.poll);
    let deadline = now() + wait;
    loop {
        let mail = session.take_mail();
        if !mail.is_empty() {
            session.touch();
            hung_up.armed = false;
            return respond(mail);
        }
        if session.is_closed() {
            return gone();
        }
        let left = deadline.saturating_duration_since(now());
        let notified = crate::clock::timeout(left, session.mail.notified()).await;
        if notified.is_err() {
            session.touch();
            hung_up.armed = false;
            return respond(Vec::new());
        }
    }
}

/// Ends a session when its long poll is dropped unanswered: the agent hung up (or the poll
/// found the session closed, which ends it too).
struct HangUp<'a> {
    sessions: &'a Sessions,
    token: &'a str,
    armed: bool,
}

impl Drop for HangUp<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.sessions.remove(self.token);
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
