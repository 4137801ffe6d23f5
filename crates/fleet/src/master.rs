//! `fleet master`: the registry, the cluster loop and the admin API of one master, over real
//! sockets, with its records in `--data`.

use crate::admin::{self, Admin};
use crate::cli::{self, MasterArgs, StartError};
use crate::metrics::Metrics;
use fleet_config::{ClusterSpec, Params};
use fleet_core::master::{Leadership, MasterConfig};
use fleet_node::cluster::{ClusterConfig, ClusterHandle, ClusterMode};
use fleet_node::disk::Disk;
use fleet_node::net::TcpListener;
use fleet_node::transport::{Acceptor, Serve};
use fleet_node::MasterState;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a stopping master keeps running after it handed over and said goodbye, so what
/// it sent leaves before the process ends.
const GOODBYE_GRACE: Duration = Duration::from_millis(1500);

/// Everything a master needs, checked, before anything binds.
struct Plan {
    params: Params,
    cluster: ClusterConfig,
    config: MasterConfig,
    disk: Disk,
}

/// The other masters of `list` (which may name this one too, so every master can be given
/// the same list, if it names it at `mine`), by name; each named once.
fn others(
    list: &[(String, SocketAddr)],
    me: &str,
    mine: Option<SocketAddr>,
    flag: &str,
) -> Result<BTreeMap<String, SocketAddr>, StartError> {
    let mut others = BTreeMap::new();
    for (name, address) in list {
        if name == me {
            if mine.is_some_and(|mine| mine != *address) {
                return Err(StartError::Usage(format!(
                    "{flag} {name}={address} names this master at another address than its own"
                )));
            }
        } else if others.insert(name.clone(), *address).is_some() {
            return Err(StartError::Usage(format!("{flag} names {name} twice")));
        }
    }
    Ok(others)
}

fn plan(args: &MasterArgs) -> Result<Plan, StartError> {
    let mut members = others(&args.peer, &args.name, args.cluster_listen, "--peer")?;
    let masters = 1 + members.len() as u32;
    let params = cli::params(&args.common, masters, args.mode.as_deref())?;
    let mode = match &params.cluster {
        ClusterSpec::Single => ClusterMode::Single,
        ClusterSpec::Raft { config, .. } => ClusterMode::Raft(config.clone()),
        ClusterSpec::Lease(config) => ClusterMode::Lease {
            config: config.clone(),
            store: args.store.ok_or_else(|| {
                StartError::Usage("lease mode needs --store ADDR, the lease store".into())
            })?,
        },
    };
    let cluster_listen = match (&mode, args.cluster_listen) {
        (ClusterMode::Single, listen) => listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
        (_, Some(listen)) => listen,
        (_, None) => {
            return Err(StartError::Usage(
                "raft and lease mode need --cluster-listen ADDR, where peers connect".into(),
            ))
        }
    };
    members.insert(args.name.clone(), cluster_listen);
    let (save_votes, fsync) = match &params.cluster {
        ClusterSpec::Raft { persist, fsync, .. } => (*persist, *fsync),
        _ => (true, true),
    };
    let disk = Disk::open(&args.data)
        .map_err(|error| StartError::Io(format!("--data {}: {error}", args.data.display())))?;
    let auth_secret = match &args.secret_file {
        Some(path) => Some(read_secret(path)?),
        None => params.auth.as_ref().map(|auth| auth.secret.clone()),
    };
    let config = MasterConfig {
        name: args.name.clone(),
        heartbeat_interval: params.heartbeat.interval,
        max_miss: params.heartbeat.max_miss,
        auth_secret,
        admission: params.master.admission,
        attempts: params.master.attempts,
        leader_wait: leader_wait(&params.cluster),
        ..MasterConfig::default()
    };
    let cluster = ClusterConfig {
        me: args.name.clone(),
        members,
        mode,
        first_start: args.initial && !disk.is_used(),
        disk: Some(disk.clone()),
        save_votes,
        fsync,
    };
    if matches!(cluster.mode, ClusterMode::Raft(_)) && !args.initial && !disk.is_used() {
        tracing::warn!(
            "--data {} is empty and --initial was not given: {} rejoins as a master that lost \
             its disk, and votes only once a leader brought it up to date (start a new cluster \
             with --initial)",
            args.data.display(),
            args.name
        );
    }
    Ok(Plan {
        params,
        cluster,
        config,
        disk,
    })
}

/// How long a follower that knows no leader tells agents to stay away: about as long as its
/// cluster takes to find one.
fn leader_wait(cluster: &ClusterSpec) -> Duration {
    match cluster {
        ClusterSpec::Raft { config, .. } => config.election_timeout.0,
        ClusterSpec::Lease(config) => config.sync_interval,
        ClusterSpec::Single => MasterConfig::default().leader_wait,
    }
}

fn read_secret(path: &std::path::Path) -> Result<String, StartError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| StartError::Usage(format!("--secret-file {}: {error}", path.display())))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(StartError::Usage(format!(
            "--secret-file {}: the file is empty",
            path.display()
        )));
    }
    Ok(secret)
}

/// Where the master meets its agents: its `--listen`, bound, or over mqtt the `--broker`.
async fn agents_at<'a>(args: &'a MasterArgs, params: &Params) -> Result<Serve<'a>, StartError> {
    let broker = cli::broker(&args.common, &params.transport)?;
    match (broker, args.listen) {
        (Some(_), Some(_)) => Err(StartError::Usage(
            "over mqtt agents come through --broker: drop --listen".into(),
        )),
        (Some(address), None) => Ok(Serve::Broker {
            address,
            name: &args.name,
        }),
        (None, Some(listen)) => match TcpListener::bind(listen).await {
            Ok(listener) => Ok(Serve::Listen {
                listener,
                seed: crate::secret_seed(),
            }),
            Err(error) => Err(StartError::Io(format!(
                "--listen {listen}: cannot listen: {error}"
            ))),
        },
        (None, None) => Err(StartError::Usage(
            "--listen ADDR is needed: where agents connect".into(),
        )),
    }
}

/// Runs the master until SIGTERM or SIGINT, then stops gracefully: hands leadership over if it
/// leads, says goodbye to its agents, and returns.
pub async fn run(args: MasterArgs, metrics: Metrics) -> Result<(), StartError> {
    let Plan {
        params,
        cluster,
        config,
        disk,
    } = plan(&args)?;
    let bind = |what: &str, address: SocketAddr, error: std::io::Error| {
        StartError::Io(format!("{what} {address}: cannot listen: {error}"))
    };
    let serve = agents_at(&args, &params).await?;
    let peers_at = cluster.members[&args.name];
    let peers = TcpListener::bind(peers_at)
        .await
        .map_err(|error| bind("--cluster-listen", peers_at, error))?;
    let admin_listener = TcpListener::bind(args.admin)
        .await
        .map_err(|error| bind("--admin", args.admin, error))?;
    let state = MasterState::open(config, Some(disk), Some(&crate::boot_id()));
    if !matches!(cluster.mode, ClusterMode::Single) {
        // Until elected, a cluster member serves no agents.
        state.set_leadership(Leadership::Follower { leader: None }, None);
    }
    let handle = ClusterHandle::new(&args.name);
    let mut admins: BTreeMap<String, String> = others(
        &args.peer_admin,
        &args.name,
        Some(args.admin),
        "--peer-admin",
    )?
    .into_iter()
    .map(|(name, address)| (name, address.to_string()))
    .collect();
    admins.insert(args.name.clone(), args.admin.to_string());
    let api = Arc::new(Admin {
        name: args.name.clone(),
        mode: params.cluster.mode(),
        master: state.clone(),
        cluster: handle.clone(),
        admins,
        metrics,
    });
    tokio_rt::spawn(async move {
        if let Err(error) = admin::serve(admin_listener, admin::router(api)).await {
            tracing::error!("the admin API stopped: {error}");
        }
    });
    let agents = Acceptor::new(&params.transport, serve);
    tokio_rt::spawn(fleet_node::run_master(agents, state.clone()));
    let rng = crate::rng();
    tokio_rt::spawn(fleet_node::cluster::run_cluster(
        cluster,
        peers,
        rng,
        state.clone(),
        handle,
    ));
    crate::stop_signal().await;
    state.shutdown();
    tokio_rt::time::sleep(GOODBYE_GRACE).await;
    Ok(())
}
