//! Lease mode's link to its store: one connection at a time, requests answered in order.

use crate::clock::now;
use crate::codec::RespCodec;
use crate::net::TcpStream;
use fleet_core::cluster::lease::LeaseAction;
use fleet_core::cluster::Membership;
use fleet_core::resp::Value;
use futures::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::codec::Framed;

type StoreConnection = Framed<TcpStream, RespCodec>;

/// The lease store connection and the requests waiting on it.
pub(super) struct StoreLink {
    address: SocketAddr,
    connect_timeout: Duration,
    connection: Option<StoreConnection>,
    /// Ids of the requests sent on `connection`, oldest first: replies come back in order.
    in_flight: VecDeque<u64>,
}

impl StoreLink {
    pub(super) fn new(address: SocketAddr, connect_timeout: Duration) -> StoreLink {
        StoreLink {
            address,
            connect_timeout,
            connection: None,
            in_flight: VecDeque::new(),
        }
    }

    fn fail_all(&mut self, node: &mut dyn Membership, why: &str) {
        self.connection = None;
        for id in self.in_flight.drain(..) {
            node.handle_store_reply(now(), id, Err(why.to_string()));
        }
    }

    pub(super) async fn apply(&mut self, node: &mut dyn Membership, action: LeaseAction) {
        match action {
            LeaseAction::Reconnect => self.fail_all(node, "store timed out"),
            LeaseAction::Send(request) => {
                // The core's next deadline (its request's timeout, its lease's expiry) bounds
                // the wait: a store that takes a write no sooner must not keep the holder from
                // noticing, on time, that its lease ran out.
                let left = (node.poll_timeout()).map(|at| at.saturating_duration_since(now()));
                if self.connection.is_none() {
                    let connect = TcpStream::connect(self.address);
                    let wait =
                        left.map_or(self.connect_timeout, |left| left.min(self.connect_timeout));
                    self.connection = crate::clock::timeout(wait, connect)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .map(|stream| Framed::new(stream, RespCodec));
                }
                let sent = match (&mut self.connection, left) {
                    (Some(framed), Some(left)) => {
                        let send = framed.send(request.command);
                        matches!(crate::clock::timeout(left, send).await, Ok(Ok(())))
                    }
                    (Some(framed), None) => framed.send(request.command).await.is_ok(),
                    (None, _) => false,
                };
                if sent {
                    self.in_flight.push_back(request.id);
                } else {
                    self.fail_all(node, "store unreachable");
                    node.handle_store_reply(now(), request.id, Err("store unreachable".into()));
                }
            }
        }
    }

    /// The next reply; never resolves without a connection.
    pub(super) async fn next_reply(&mut self) -> Option<io::Result<Value>> {
        match &mut self.connection {
            Some(framed) => framed.next().await,
            None => std::future::pending().await,
        }
    }

    /// Hands `reply` to the request it answers; a broken connection fails every request on it.
    pub(super) fn handle_reply(
        &mut self,
        node: &mut dyn Membership,
        reply: Option<io::Result<Value>>,
    ) {
        match reply {
            Some(Ok(value)) => {
                if let Some(id) = self.in_flight.pop_front() {
                    node.handle_store_reply(now(), id, Ok(value));
                }
            }
            Some(Err(_)) | None => self.fail_all(node, "store connection lost"),
        }
    }
}
