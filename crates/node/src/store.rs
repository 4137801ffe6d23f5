//! A lease store server: the store core of `fleet-core` over RESP, so lease mode can run
//! against a simulated node that scenarios crash, cut off or slow down. The keyspace lives in
//! `store`, outside the server, so it can outlive a crash the way Redis's append-only file does.

use crate::clock::now;
use crate::codec::RespCodec;
use fleet_core::cluster::store::Store;
use futures::{SinkExt, StreamExt};
use std::io;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

pub async fn run_store(listener: TcpListener, store: Arc<Mutex<Store>>) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let store = store.clone();
        tokio::spawn(async move {
            let mut framed = Framed::new(stream, RespCodec);
            // A bad request ends only its own connection.
            while let Some(Ok(command)) = framed.next().await {
                let reply = store
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .execute(now(), &command);
                if framed.send(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}
