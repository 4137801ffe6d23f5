//! Baseline for the harness's overhead: the least madsim program that moves fleet-1h's
//! traffic. 1 master and 100 agents; each agent sends a small frame every second over framed
//! TCP and the master echoes it; one simulated hour. No cores, no trace, no scenario.
//!
//! `cargo run --release -p sim --example raw_heartbeats -- [runs] [agents] [seconds]` prints
//! each run's wall time and the median speed-up; compare with `sim bench
//! scenarios/fleet-1h.toml` (the defaults: 5 runs, 100 agents, 3600 seconds). With 10000
//! agents and 120 seconds it is the ceiling for `scenarios/bench/fleet-10k.toml`: madsim
//! moving a heartbeat and its answer per agent per second, and nothing else.

// Links the harness, for its allocator only: both sides of the comparison allocate alike.
extern crate sim;

#[cfg(madsim)]
fn main() {
    use futures::{SinkExt, StreamExt};
    use madsim::runtime::Runtime;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Duration;
    use tokio_util::codec::{Framed, LengthDelimitedCodec};

    let arg = |n: usize, default: u32| -> u32 {
        let Some(value) = std::env::args().nth(n) else {
            return default;
        };
        value.parse().unwrap_or_else(|_| {
            eprintln!("raw_heartbeats [runs] [agents] [seconds]: {value:?} is not a count");
            std::process::exit(2);
        })
    };
    let runs = arg(1, 5).max(1) as usize;
    let agents = arg(2, 100);
    let simulated = Duration::from_secs(arg(3, 3600).into());
    if agents >= 1 << 16 {
        eprintln!("raw_heartbeats: at most 65,535 agents (their addresses are 10.1.0.0/16)");
        std::process::exit(2);
    }
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
        for index in 1..=agents {
            runtime
                .create_node()
                .name(format!("agent-{index}"))
                .ip(IpAddr::V4(Ipv4Addr::from(0x0A01_0000 + index)))
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
        runtime.block_on(async move { tokio::time::sleep(simulated).await });
        let wall = wall.elapsed();
        println!(
            "run {}: wall {:.3}s · speed-up {:.0}×",
            run + 1,
            wall.as_secs_f64(),
            simulated.as_secs_f64() / wall.as_secs_f64()
        );
        walls.push(wall);
    }
    walls.sort();
    let median = walls[walls.len() / 2];
    println!(
        "raw madsim heartbeats, {agents} agents, {}s: median wall {:.3}s · speed-up {:.0}× over {runs} runs",
        simulated.as_secs(),
        median.as_secs_f64(),
        simulated.as_secs_f64() / median.as_secs_f64()
    );
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("raw_heartbeats needs the simulation build (plain cargo in this repository)");
    std::process::exit(2);
}
