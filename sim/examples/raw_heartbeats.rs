//! Baseline for the harness's overhead: the least madsim program that moves fleet-1h's
//! traffic. 1 master and 100 agents; each agent sends a small frame every second over framed
//! TCP and the master echoes it; one simulated hour. No cores, no trace, no scenario.
//!
//! `cargo run --release -p sim --example raw_heartbeats -- [runs]` prints each run's wall time
//! and the median speed-up; compare with `sim bench scenarios/fleet-1h.toml`.

#[cfg(madsim)]
fn main() {
    use futures::{SinkExt, StreamExt};
    use madsim::runtime::Runtime;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Duration;
    use tokio_util::codec::{Framed, LengthDelimitedCodec};

    const AGENTS: u8 = 100;
    const SIMULATED: Duration = Duration::from_secs(3600);
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let master = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 7000);

    let mut walls = Vec::new();
    for run in 0..runs {
        let runtime = Runtime::with_seed_and_config(run as u64 + 1, madsim::Config::default());
        runtime
            .create_node()
            .name("master-1")
            .ip(master.ip())
            .init(move || async move {
                let listener = tokio::net::TcpListener::bind(master).await.unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    tokio::spawn(async move {
                        let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
                        while let Some(Ok(frame)) = framed.next().await {
                            if framed.send(frame.freeze()).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            })
            .build();
        for index in 1..=AGENTS {
            runtime
                .create_node()
                .name(format!("agent-{index}"))
                .ip(IpAddr::V4(Ipv4Addr::new(10, 1, 0, index)))
                .init(move || async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let stream = tokio::net::TcpStream::connect(master).await.unwrap();
                    let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
                    let mut seq: u64 = 0;
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        seq += 1;
                        let frame = bytes::Bytes::copy_from_slice(&seq.to_be_bytes());
                        framed.send(frame).await.unwrap();
                        framed.next().await.unwrap().unwrap();
                    }
                })
                .build();
        }
        let wall = std::time::Instant::now();
        runtime.block_on(async { tokio::time::sleep(SIMULATED).await });
        let wall = wall.elapsed();
        println!(
            "run {}: wall {:.3}s · speed-up {:.0}×",
            run + 1,
            wall.as_secs_f64(),
            SIMULATED.as_secs_f64() / wall.as_secs_f64()
        );
        walls.push(wall);
    }
    walls.sort();
    let median = walls[walls.len() / 2];
    println!(
        "raw madsim heartbeats, 100 agents, 1h: median wall {:.3}s · speed-up {:.0}× over {runs} runs",
        median.as_secs_f64(),
        SIMULATED.as_secs_f64() / median.as_secs_f64()
    );
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("raw_heartbeats needs the simulation build (plain cargo in this repository)");
    std::process::exit(2);
}
