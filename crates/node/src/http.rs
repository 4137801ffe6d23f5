//! HTTP over the shell's sockets, both ways (hyper, with axum's routers): [`serve`] answers a
//! router on a listener and [`request`] asks one thing. Real sockets in the `fleet` binary,
//! simulated ones in the harness, so the operators' admin API and the agents' HTTP transport
//! run over the same stack in every build.

use crate::net::{TcpListener, TcpStream};
use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::io;
use std::net::SocketAddr;

/// Answers the API on `listener` with `router`, one task per connection, until the listener
/// fails (or the node ends).
pub async fn serve(listener: TcpListener, router: Router) -> io::Result<()> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors, say: the connections it serves go on, and new ones are
            // taken again once some close.
            Err(error) => {
                tracing::warn!("accepting a connection failed, trying again in 100ms: {error}");
                crate::clock::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        crate::task::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // A client that hangs up mid-request ends only its own connection.
            let _ = connection.await;
        });
    }
}

/// One request to the API at `address`, on a connection of its own: the status and the body.
pub async fn request(
    address: SocketAddr,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> io::Result<(u16, Vec<u8>)> {
    let broken = |error: hyper::Error| io::Error::other(error);
    let stream = TcpStream::connect(address).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(broken)?;
    crate::task::spawn(async move {
        let _ = connection.await;
    });
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", address.to_string());
    let body = match body {
        Some(json) => {
            builder = builder.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let request = builder.body(body).map_err(io::Error::other)?;
    let response = sender.send_request(request).await.map_err(broken)?;
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(Body::new(response.into_body()), usize::MAX)
        .await
        .map_err(io::Error::other)?;
    Ok((status, bytes.to_vec()))
}
