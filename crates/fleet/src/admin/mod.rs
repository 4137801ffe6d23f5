//! The operators' HTTP API, on every master: who leads, the agents it serves, commands, config,
//! the reconnection design's admin operations, metrics and health.
//!
//! Reads answer this master's own view. Writes go to the leader: a follower answers them with
//! `307` and a `Location` at the leader's admin address. Every error is a 4xx or 5xx with a JSON
//! body `{"error": ...}`, and a request that fails changes nothing.

pub use axum::http::Method;
pub use fleet_node::http::{request, serve};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fleet_core::cluster::{Role, Status};
use fleet_core::master::{CommandState, Leadership, Liveness, Registry, SubmitError};
use fleet_node::cluster::ClusterHandle;
use fleet_node::MasterState;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The largest request body taken: a command or a config is far smaller.
pub const MAX_BODY: usize = 64 * 1024;

/// How long a write waits for the cluster to commit it before answering `503`.
const COMMIT_WAIT: Duration = Duration::from_secs(5);

/// What the API serves: one master.
pub struct Admin {
    pub name: String,
    /// `single`, `raft` or `lease`.
    pub mode: &'static str,
    pub master: MasterState,
    pub cluster: ClusterHandle,
    /// Every master's admin address (`host:port`), by name: where a follower sends writes.
    pub admins: BTreeMap<String, String>,
    /// What the process's events counted, for `/metrics`.
    pub metrics: crate::metrics::Metrics,
}

/// The API's routes over `admin`.
pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/cluster", get(cluster))
        .route("/api/nodes", get(nodes))
        .route("/api/nodes/{agent}", axum::routing::delete(decommission))
        .route("/api/commands", post(submit_command))
        .route("/api/commands/{request_id}", get(command))
        .route("/api/config", get(config).post(push_config))
        .route("/api/reconnection/status", get(reconnection_status))
        .route("/api/reconnection/active", get(reconnection_active))
        .route("/api/reconnection/cleanup", post(reconnection_cleanup))
        .route("/api/reconnection/force", post(reconnection_force))
        .fallback(|uri: Uri| async move {
            error(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {}", uri.path()),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(errors_as_json))
        .with_state(admin)
}

/// Every error answers JSON: one axum made itself (a method not allowed, a path it could not
/// read) has its text put in `{"error": ...}`.
async fn errors_as_json(response: Response) -> Response {
    let status = response.status();
    let is_json = (response.headers().get(header::CONTENT_TYPE))
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), MAX_BODY).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    error(status, text)
}

/// An agent's HTTP (`fleet agent --metrics ADDR`): its metrics and its health.
pub fn agent_router(metrics: crate::metrics::Metrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let text = metrics.prometheus();
                async move { ([(header::CONTENT_TYPE, PROMETHEUS)], text) }
            }),
        )
}

/// The content type of Prometheus' text format.
const PROMETHEUS: &str = "text/plain; version=0.0.4";

type Shared = State<Arc<Admin>>;

/// `{"error": message}` with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A body serde could not read, or one too large: 4xx, saying why.
fn bad_body(rejection: JsonRejection) -> Response {
    error(rejection.status(), rejection.body_text())
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate | Role::PreCandidate => "candidate",
    }
}

async fn cluster(State(admin): Shared) -> Response {
    let Some(status) = admin.cluster.status() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster has not started",
        );
    };
    let lost: Vec<&String> = (status.members.iter())
        .filter(|member| !status.alive.contains(member))
        .collect();
    Json(json!({
        "name": admin.name,
        "mode": admin.mode,
        "role": role_name(status.role),
        "term": status.term,
        "leader": status.leader,
        "alive": status.alive,
        "lost": lost,
    }))
    .into_response()
}

async fn nodes(State(admin): Shared) -> Response {
    let now = fleet_node::clock::now();
    let nodes: Vec<Value> = admin.master.with_registry(|registry| {
        (registry.nodes())
            .map(|(instance_id, entry)| {
                let status = match entry.liveness {
                    Liveness::Offline => "offline",
                    Liveness::Online => entry.status.as_str(),
                };
                json!({
                    "name": entry.info.node_name,
                    "instance_id": instance_id,
                    "status": status,
                    "last_heartbeat_ms": now.saturating_duration_since(entry.last_heard).as_millis() as u64,
                    "metrics": entry.metrics,
                    "config_version": entry.config.version,
                    "connected": entry.session.is_some(),
                })
            })
            .collect()
    });
    Json(nodes).into_response()
}

/// Writes go to the leader: `None` here if this master leads, or the answer that sends the
/// client there (`307` to its admin address), or says there is none yet (`503`).
fn to_leader(admin: &Admin, uri: &Uri) -> Option<Response> {
    let leadership = admin
        .master
        .with_registry(|registry| registry.leadership().clone());
    let leader = match leadership {
        Leadership::Leader => return None,
        Leadership::Follower { leader } => leader,
    };
    let Some(leader) = leader else {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no leader is known yet; try again shortly",
        ));
    };
    let Some(address) = admin.admins.get(&leader) else {
        let body = json!({ "error": "this master does not lead", "leader": leader });
        return Some((StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response());
    };
    let location = format!("http://{address}{}", uri.path());
    let body = Json(json!({ "error": "this master does not lead", "leader": leader }));
    let mut response = (StatusCode::TEMPORARY_REDIRECT, body).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Some(response)
}

/// A write's body, if it reads, and this master leads; else the answer: the body's error
/// first, so a malformed request is refused wherever it is sent.
fn for_leader<T>(
    admin: &Admin,
    uri: &Uri,
    body: Result<Json<T>, JsonRejection>,
) -> Result<T, Response> {
    let Json(request) = body.map_err(bad_body)?;
    match to_leader(admin, uri) {
        Some(elsewhere) => Err(elsewhere),
        None => Ok(request),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandRequest {
    agent: String,
    name: String,
    #[serde(default)]
    args: BTreeMap<String, Value>,
    timeout_ms: Option<u64>,
    /// The client's name for this submission: submitting it again finds the same command.
    key: Option<String>,
}

/// A command's default timeout, as a scenario's.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A JSON argument as the wire carries it: a string, number or boolean as its text.
fn arg_text(name: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        _ => Err(format!(
            "argument {name:?}: arguments are strings, numbers or booleans"
        )),
    }
}

async fn submit_command(
    State(admin): Shared,
    uri: Uri,
    body: Result<Json<CommandRequest>, JsonRejection>,
) -> Response {
    let request = match for_leader(&admin, &uri, body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    if request.name.trim().is_empty() || request.agent.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "`agent` and `name` must not be empty",
        );
    }
    let args = match texts(&request.args) {
        Ok(args) => args,
        Err(refusal) => return refusal,
    };
    let timeout = match request.timeout_ms {
        Some(0) => return error(StatusCode::BAD_REQUEST, "`timeout_ms` must be above 0"),
        Some(ms) => Duration::from_millis(ms),
        None => COMMAND_TIMEOUT,
    };
    let known = admin
        .master
        .with_registry(|registry| knows_agent(registry, &request.agent));
    if !known {
        let message = format!(
            "no agent {:?} has registered with this master",
            request.agent
        );
        return error(StatusCode::NOT_FOUND, message);
    }
    let submitted = admin.master.submit(
        request.key.as_deref(),
        &request.agent,
        &request.name,
        args,
        timeout,
    );
    let request_id = match submitted {
        Ok(id) => id,
        Err(refused) => return submit_error(refused),
    };
    let master = admin.master.clone();
    let id = request_id.clone();
    if wait_until(move || master.is_accepted(&id)).await {
        (
            StatusCode::ACCEPTED,
            Json(json!({ "request_id": request_id })),
        )
            .into_response()
    } else {
        let body = json!({
            "error": "the cluster has not committed the command yet; ask for it by its id, or submit it again with the same key",
            "request_id": request_id,
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// A write the registry refused.
fn submit_error(refused: SubmitError) -> Response {
    let status = match refused {
        SubmitError::NotLeader => StatusCode::SERVICE_UNAVAILABLE,
        SubmitError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        SubmitError::OutboxFull { .. } => StatusCode::TOO_MANY_REQUESTS,
    };
    error(status, refused.to_string())
}

/// JSON values as the wire carries them (see [`arg_text`]), or a `400` naming the first
/// that is not a string, number or boolean.
fn texts(values: &BTreeMap<String, Value>) -> Result<BTreeMap<String, String>, Response> {
    (values.iter())
        .map(|(name, value)| match arg_text(name, value) {
            Ok(text) => Ok((name.clone(), text)),
            Err(why) => Err(error(StatusCode::BAD_REQUEST, why)),
        })
        .collect()
}

fn knows_agent(registry: &Registry, agent: &str) -> bool {
    registry
        .nodes()
        .any(|(_, entry)| entry.info.node_name == agent)
}

/// Whether `done` came true within [`COMMIT_WAIT`], looking every few milliseconds.
async fn wait_until(done: impl Fn() -> bool) -> bool {
    let deadline = fleet_node::clock::now() + COMMIT_WAIT;
    while fleet_node::clock::now() < deadline {
        if done() {
            return true;
        }
        fleet_node::clock::sleep(Duration::from_millis(5)).await;
    }
    done()
}

async fn command(State(admin): Shared, Path(request_id): Path<String>) -> Response {
    let state = admin
        .master
        .with_registry(|registry| registry.command_state(&request_id));
    match state {
        Some(CommandState::Pending {
            agent,
            name,
            accepted,
        }) => Json(json!({
            "request_id": request_id,
            "state": "pending",
            "agent": agent,
            "name": name,
            "accepted": accepted,
        }))
        .into_response(),
        Some(CommandState::Completed(result)) => Json(json!({
            "request_id": request_id,
            "state": "completed",
            "result": result.map(|result| json!({
                "outcome": result.outcome.name(),
                "output": result.output,
                "duration_ms": result.duration_ms,
            })),
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("this master holds no command {request_id:?}"),
        ),
    }
}

async fn config(State(admin): Shared) -> Response {
    let config = admin
        .master
        .with_registry(|registry| registry.announced_config().clone());
    Json(json!({
        "version": config.id.version,
        "term": config.id.term,
        "values": config.values,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigRequest {
    values: BTreeMap<String, Value>,
}

async fn push_config(
    State(admin): Shared,
    uri: Uri,
    body: Result<Json<ConfigRequest>, JsonRejection>,
) -> Response {
    let request = match for_leader(&admin, &uri, body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let values = match texts(&request.values) {
        Ok(values) => values,
        Err(refusal) => return refusal,
    };
    let id = match admin.master.push_config(values) {
        Ok(id) => id,
        Err(refused) => return submit_error(refused),
    };
    let master = admin.master.clone();
    if wait_until(move || master.config_accepted(id) == Some(true)).await {
        Json(json!({ "version": id.version, "term": id.term })).into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster has not committed the config; push it again",
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentQuery {
    agent: String,
}

async fn reconnection_status(
    State(admin): Shared,
    query: Result<Query<AgentQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(AgentQuery { agent })) = query else {
        return error(StatusCode::BAD_REQUEST, "give the agent: ?agent=NAME");
    };
    let now = fleet_node::clock::now();
    let status = (admin.master).operate(|registry| registry.admin_status(now, &agent));
    Json(json!({
        "agent": agent,
        "connected": status.connected,
        "attempts": status.attempts,
        "next_retry_ms": status.next_retry_ms,
        "reason": status.reason,
    }))
    .into_response()
}

async fn reconnection_active(State(admin): Shared) -> Response {
    let now = fleet_node::clock::now();
    let agents = (admin.master).operate(|registry| registry.admin_active(now));
    Json(json!({ "agents": agents })).into_response()
}

async fn reconnection_cleanup(State(admin): Shared, uri: Uri) -> Response {
    if let Some(elsewhere) = to_leader(&admin, &uri) {
        return elsewhere;
    }
    let now = fleet_node::clock::now();
    let removed = (admin.master).operate(|registry| registry.admin_cleanup(now));
    Json(json!({ "removed": removed })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForceRequest {
    agent: String,
}

async fn reconnection_force(
    State(admin): Shared,
    uri: Uri,
    body: Result<Json<ForceRequest>, JsonRejection>,
) -> Response {
    let ForceRequest { agent } = match for_leader(&admin, &uri, body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let had_session = (admin.master).operate(|registry| registry.admin_force(&agent));
    Json(json!({ "agent": agent, "had_session": had_session })).into_response()
}

/// The reconnection design's `decommission`: ends the agent's session for good and drops it
/// from the registry.
async fn decommission(State(admin): Shared, uri: Uri, Path(agent): Path<String>) -> Response {
    if let Some(elsewhere) = to_leader(&admin, &uri) {
        return elsewhere;
    }
    let known = admin
        .master
        .with_registry(|registry| knows_agent(registry, &agent));
    admin
        .master
        .operate(|registry| registry.admin_decommission(&agent));
    Json(json!({ "agent": agent, "was_registered": known })).into_response()
}

/// Prometheus' text format: gauges read now, and counts of the timeline's events by kind.
async fn metrics(State(admin): Shared) -> Response {
    let status: Option<Status> = admin.cluster.status();
    let (online, pending) = admin
        .master
        .with_registry(|registry| (registry.online_count(), registry.pending_commands()));
    let mut text = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        text.push_str(&format!(
            "# HELP fleet_{name} {help}\n# TYPE fleet_{name} gauge\nfleet_{name} {value}\n"
        ));
    };
    gauge(
        "agents_online",
        "Agents online at this master.",
        online as u64,
    );
    gauge(
        "commands_pending",
        "Commands accepted and not yet answered.",
        pending as u64,
    );
    gauge(
        "term",
        "The cluster's term as this master knows it.",
        status.as_ref().map_or(0, |s| s.term),
    );
    gauge(
        "is_leader",
        "1 if this master leads.",
        u64::from(status.as_ref().is_some_and(Status::is_leader)),
    );
    text.push_str(&format!(
        "# HELP fleet_heartbeats_total Heartbeats this master received.\n\
         # TYPE fleet_heartbeats_total counter\nfleet_heartbeats_total {}\n",
        admin.master.heartbeats()
    ));
    text.push_str(&admin.metrics.prometheus());
    ([(header::CONTENT_TYPE, PROMETHEUS)], text).into_response()
}
