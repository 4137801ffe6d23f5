//! The master's side: an HTTP/2 server per accepted connection, each connection one session.
//! A unary call hands its message to the session and answers with what the master sends while
//! handling it; a message up the stream does the same, its answer going down the stream with
//! whatever else the master sends.

use super::pb::agent_service_server::{AgentService, AgentServiceServer};
use super::pb::{Envelope, Envelopes};
use super::{envelope, open, Exec, Timer};
use crate::net::{TcpListener, TcpStream};
use crate::transport::session::Session;
use crate::transport::{AbortOnDrop, BoxChannel};
use fleet_core::transport::GrpcTransport;
use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};

/// How often the master pings an idle connection (the gRPC design's server side).
const MASTER_KEEPALIVE: Duration = Duration::from_secs(60);

/// A master's agents over gRPC.
pub struct Acceptor {
    opened: mpsc::UnboundedReceiver<BoxChannel>,
    _server: AbortOnDrop<()>,
}

impl Acceptor {
    /// Serves `AgentService` on `listener`.
    pub fn new(listener: TcpListener, grpc: &GrpcTransport) -> Acceptor {
        let (opened, sessions_opened) = mpsc::unbounded_channel();
        let grpc = grpc.clone();
        let server = crate::task::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!("accepting a connection failed, trying again: {error}");
                        crate::clock::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (session, channel) = Session::open("");
                if opened.send(Box::new(channel) as BoxChannel).is_err() {
                    return;
                }
                crate::task::spawn(serve(stream, session, grpc.clone()));
            }
        });
        Acceptor {
            opened: sessions_opened,
            _server: AbortOnDrop(server),
        }
    }

    /// The next agent's session: its connection.
    pub async fn accept(&mut self) -> io::Result<BoxChannel> {
        (self.opened.recv().await)
            .ok_or_else(|| io::Error::other("the agents' gRPC server stopped"))
    }
}

/// Serves one connection; the session ends with it.
async fn serve(stream: TcpStream, session: Arc<Session>, grpc: GrpcTransport) {
    let mut service = AgentServiceServer::new(Service {
        session: session.clone(),
    });
    if grpc.gzip {
        service = service
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
    }
    let _ = hyper::server::conn::http2::Builder::new(Exec)
        .timer(Timer)
        .keep_alive_interval(Some(MASTER_KEEPALIVE))
        .keep_alive_timeout(GrpcTransport::KEEPALIVE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .await;
    session.end();
}

struct Service {
    session: Arc<Session>,
}

type Down = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send>>;

impl Service {
    async fn unary(&self, request: Request<Envelope>) -> Result<Response<Envelopes>, Status> {
        let message = open(request.get_ref()).map_err(Status::invalid_argument)?;
        let answer = (self.session.exchange(message).await)
            .ok_or_else(|| Status::unavailable("the session ended"))?;
        let messages = answer.iter().map(envelope).collect();
        Ok(Response::new(Envelopes { messages }))
    }
}

#[tonic::async_trait]
impl AgentService for Service {
    async fn register(&self, request: Request<Envelope>) -> Result<Response<Envelopes>, Status> {
        self.unary(request).await
    }

    async fn heartbeat(&self, request: Request<Envelope>) -> Result<Response<Envelopes>, Status> {
        self.unary(request).await
    }

    type ExecuteCommandStream = Down;

    async fn execute_command(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Down>, Status> {
        let mut up = request.into_inner();
        let session = self.session.clone();
        // Up: each message to the master, its answer down the stream with the rest.
        crate::task::spawn({
            let session = session.clone();
            async move {
                while let Some(Ok(envelope)) = up.next().await {
                    let Ok(message) = open(&envelope) else {
                        break;
                    };
                    let Some(answer) = session.exchange(message).await else {
                        break;
                    };
                    session.post(answer);
                }
            }
        });
        let down = futures::stream::unfold(session, |session| async move {
            let mail = session.next_mail().await?;
            Some((futures::stream::iter(mail), session))
        })
        .flatten()
        .map(|message| Ok(envelope(&message)));
        Ok(Response::new(Box::pin(down) as Down))
    }
}
