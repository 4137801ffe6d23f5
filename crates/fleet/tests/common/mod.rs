//! A fleet of real `fleet` processes on loopback for the tests: free ports, a directory of
//! data and logs, the admin API as the only window, and every process killed on drop.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const FLEET: &str = env!("CARGO_BIN_EXE_fleet");

#[derive(Clone, Copy)]
pub enum MasterMode {
    Raft,
    Lease(SocketAddr),
}

/// One master's addresses.
#[derive(Clone, Copy)]
struct Ports {
    agents: SocketAddr,
    cluster: SocketAddr,
    admin: SocketAddr,
}

/// Who leads, how long after the wait began it was seen, and in which term.
#[derive(Clone, Debug)]
pub struct Leader {
    pub name: String,
    pub after: Duration,
    pub term: u64,
}

pub struct Fleet {
    dir: PathBuf,
    mode: MasterMode,
    config: Option<PathBuf>,
    masters: BTreeMap<String, Ports>,
    processes: BTreeMap<String, Child>,
    http: ureq::Agent,
    /// Given to every master and agent.
    flags: Vec<String>,
}

/// `n` free loopback addresses, held until all are chosen so none repeats.
pub fn free_addresses(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap())
        .collect()
}

impl Fleet {
    /// `masters` masters, started; agents come with [`start_agent`](Self::start_agent).
    pub fn new(name: &str, masters: usize, mode: MasterMode, config: Option<&str>) -> Fleet {
        Fleet::with_flags(name, masters, mode, config, &[])
    }

    /// The same, with `flags` on every process's command line.
    pub fn with_flags(
        name: &str,
        masters: usize,
        mode: MasterMode,
        config: Option<&str>,
        flags: &[&str],
    ) -> Fleet {
        let dir = std::env::temp_dir().join(format!("fleet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = config.map(|text| {
            let path = dir.join("fleet.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        let addresses = free_addresses(3 * masters);
        let masters: BTreeMap<String, Ports> = (0..masters)
            .map(|i| {
                let ports = Ports {
                    agents: addresses[3 * i],
                    cluster: addresses[3 * i + 1],
                    admin: addresses[3 * i + 2],
                };
                (format!("master-{}", i + 1), ports)
            })
            .collect();
        let http = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(2))
            .build();
        let mut fleet = Fleet {
            dir,
            mode,
            config,
            masters,
            processes: BTreeMap::new(),
            http,
            flags: flags.iter().map(|flag| flag.to_string()).collect(),
        };
        for name in fleet.masters.keys().cloned().collect::<Vec<_>>() {
            fleet.start_master(&name);
        }
        fleet
    }

    fn spawn(&mut self, name: &str, args: Vec<String>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .unwrap();
        let child = Command::new(FLEET)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the fleet binary starts");
        if let Some(mut old) = self.processes.insert(name.to_string(), child) {
            let _ = old.kill();
            let _ = old.wait();
        }
    }

    /// Starts (or restarts, from its data directory) master `name`.
    pub fn start_master(&mut self, name: &str) {
        let ports = self.masters[name];
        let mut args: Vec<String> = [
            "master",
            "--name",
            name,
            "--cluster-listen",
            &ports.cluster.to_string(),
            "--admin",
            &ports.admin.to_string(),
            "--data",
            &self.dir.join(name).display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        // Through a broker, agents come by way of it, not to a listener of the master's.
        if !self.through_broker() {
            args.extend(["--listen".into(), ports.agents.to_string()]);
        }
        // Every master gets the same list, itself included, as an operator's script would.
        for (peer, peer_ports) in &self.masters {
            args.push("--peer".into());
            args.push(format!("{peer}={}", peer_ports.cluster));
            args.push("--peer-admin".into());
            args.push(format!("{peer}={}", peer_ports.admin));
        }
        // A new cluster's first start; a restart finds its records (or, lost, must not).
        if !self.dir.join(name).exists() {
            args.push("--initial".into());
        }
        if let MasterMode::Lease(store) = self.mode {
            args.extend([
                "--mode".into(),
                "lease".into(),
                "--store".into(),
                store.to_string(),
            ]);
        }
        if let Some(config) = &self.config {
            args.extend(["--config".into(), config.display().to_string()]);
        }
        args.extend(self.flags.iter().cloned());
        self.spawn(name, args);
    }

    /// Whether every process meets at a broker (`--broker`).
    fn through_broker(&self) -> bool {
        self.flags.iter().any(|flag| flag == "--broker")
    }

    pub fn start_agent(&mut self, name: &str) {
        self.start_agent_with(name, &[]);
    }

    /// Starts agent `name` with `extra` flags.
    pub fn start_agent_with(&mut self, name: &str, extra: &[String]) {
        let mut args: Vec<String> = vec!["agent".into(), "--name".into(), name.into()];
        args.extend(extra.iter().cloned());
        args.extend(self.flags.iter().cloned());
        let through_broker = self.through_broker();
        for (master, ports) in &self.masters {
            args.push("--master".into());
            match through_broker {
                true => args.push(master.clone()),
                false => args.push(format!("{master}={}", ports.agents)),
            }
        }
        if let Some(config) = &self.config {
            args.extend(["--config".into(), config.display().to_string()]);
        }
        self.spawn(name, args);
    }

    /// Sends `signal` (KILL, TERM, STOP, CONT) to process `name`.
    pub fn signal(&mut self, name: &str, signal: &str) {
        let pid = self.processes[name].id();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {name}");
        if signal == "KILL" {
            let _ = self.processes.get_mut(name).unwrap().wait();
        }
    }

    /// The exit code of `name` once it exits within `within`; `None` if it did not.
    pub fn wait_for_exit(&mut self, name: &str, within: Duration) -> Option<i32> {
        let started = Instant::now();
        let child = self.processes.get_mut(name)?;
        while started.elapsed() < within {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn is_running(&mut self, name: &str) -> bool {
        self.processes
            .get_mut(name)
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// GET `path` of master `name`'s admin API; `None` if it does not answer 200.
    pub fn get(&self, name: &str, path: &str) -> Option<Value> {
        let url = format!("http://{}{path}", self.masters[name].admin);
        self.http.get(&url).call().ok()?.into_json().ok()
    }

    /// GET `path` of master `name` as text (`/metrics`); empty if it does not answer.
    pub fn text(&self, name: &str, path: &str) -> String {
        self.text_at(self.masters[name].admin, path)
    }

    /// GET `path` at `address` as text; empty if it does not answer.
    pub fn text_at(&self, address: SocketAddr, path: &str) -> String {
        let url = format!("http://{address}{path}");
        (self.http.get(&url).call().ok())
            .and_then(|response| response.into_string().ok())
            .unwrap_or_default()
    }

    /// POST `body` to `path` of master `name`: the status and the JSON body, whatever the status.
    pub fn post(&self, name: &str, path: &str, body: &Value) -> (u16, Value) {
        let url = format!("http://{}{path}", self.masters[name].admin);
        match self.http.post(&url).send_json(body.clone()) {
            Ok(response) => (
                response.status(),
                response.into_json().unwrap_or(Value::Null),
            ),
            Err(ureq::Error::Status(status, response)) => {
                (status, response.into_json().unwrap_or(Value::Null))
            }
            Err(error) => (0, json!({ "transport": error.to_string() })),
        }
    }

    /// Submits an `echo` for `agent` at master `name`, following its redirect to the leader,
    /// as a client does; the request id.
    pub fn submit(&self, name: &str, agent: &str) -> String {
        let body = json!({ "agent": agent, "name": "echo", "args": { "from": name } });
        self.submit_body(name, &body)
    }

    /// Submits `body` at master `name`, following its redirect to the leader; the request id.
    pub fn submit_body(&self, name: &str, body: &Value) -> String {
        let body = body.clone();
        let (status, answer) = self.post(name, "/api/commands", &body);
        let (status, answer) = match status {
            307 => {
                let leader = answer["leader"]
                    .as_str()
                    .expect("a redirect names the leader");
                self.post(leader, "/api/commands", &body)
            }
            _ => (status, answer),
        };
        assert_eq!(status, 202, "submit at {name}: {answer}\n{}", self.logs());
        answer["request_id"].as_str().unwrap().to_string()
    }

    /// The directory of the fleet's data and logs.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The result of command `id`, once a master answers it completed within `within`.
    pub fn wait_for_result(&self, id: &str, within: Duration) -> Value {
        self.wait(within, &format!("command {id} completed"), || {
            self.masters.keys().find_map(|name| {
                let state = self.get(name, &format!("/api/commands/{id}"))?;
                (state["state"] == "completed" && !state["result"].is_null())
                    .then(|| state["result"].clone())
            })
        })
        .0
    }

    /// The leader, once exactly one running master says it leads and no other running master
    /// names another, other than `not` (the leader before).
    pub fn wait_for_leader(&mut self, within: Duration, not: Option<&Leader>) -> Leader {
        let running: Vec<String> = (self.masters.keys().cloned().collect::<Vec<_>>())
            .into_iter()
            .filter(|name| self.is_running(name))
            .collect();
        let (leader, after) = self.wait(within, "one leader", || {
            let views: Vec<Value> = running
                .iter()
                .filter_map(|name| self.get(name, "/api/cluster"))
                .collect();
            let leaders: Vec<&Value> = views.iter().filter(|v| v["role"] == "leader").collect();
            let [leader] = leaders[..] else { return None };
            let name = leader["name"].as_str()?.to_string();
            let agreed = views
                .iter()
                .all(|view| view["leader"].is_null() || view["leader"] == name.as_str());
            let new = not.is_none_or(|before| before.name != name);
            (agreed && new).then(|| (name, leader["term"].as_u64().unwrap_or(0)))
        });
        Leader {
            name: leader.0,
            after,
            term: leader.1,
        }
    }

    /// How long until `count` agents are online and connected at `leader`.
    pub fn wait_for_agents_at(&self, leader: &Leader, count: usize, within: Duration) -> Duration {
        let what = format!("{count} agents online at {}", leader.name);
        self.wait(within, &what, || {
            let nodes = self.get(&leader.name, "/api/nodes")?;
            let online = (nodes.as_array()?.iter())
                .filter(|node| node["status"] == "online" && node["connected"] == true)
                .count();
            (online >= count).then_some(())
        })
        .1
    }

    /// How long until `leader` shows `agent` with `status`.
    pub fn wait_for_agent_status(
        &self,
        leader: &str,
        agent: &str,
        status: &str,
        within: Duration,
    ) -> Duration {
        let what = format!("{agent} {status} at {leader}");
        self.wait(within, &what, || {
            let nodes = self.get(leader, "/api/nodes")?;
            let node = nodes
                .as_array()?
                .iter()
                .find(|node| node["name"] == agent)?;
            (node["status"] == status).then_some(())
        })
        .1
    }

    /// Until master `name` follows `leader`.
    pub fn wait_for_follower(&self, name: &str, leader: &str, within: Duration) {
        self.wait(within, &format!("{name} follows {leader}"), || {
            let view = self.get(name, "/api/cluster")?;
            (view["role"] == "follower" && view["leader"] == leader).then_some(())
        });
    }

    /// Polls `probe` until it answers, within `within`: its answer and how long it took; a
    /// failure names `what` and shows every process's log.
    fn wait<T>(
        &self,
        within: Duration,
        what: &str,
        mut probe: impl FnMut() -> Option<T>,
    ) -> (T, Duration) {
        let started = Instant::now();
        loop {
            if let Some(answer) = probe() {
                return (answer, started.elapsed());
            }
            assert!(
                started.elapsed() < within,
                "no {what} within {within:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of every process's log.
    /// Everything process `name` logged.
    pub fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        let mut shown = String::new();
        for name in self.processes.keys() {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            shown.push_str(&format!("--- {name}\n{}\n", tail.join("\n")));
        }
        shown
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in self.processes.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A redis-server for one test, stopped when dropped.
pub struct Redis {
    child: Child,
    pub address: SocketAddr,
}

impl Redis {
    pub fn start() -> Redis {
        let address = free_addresses(1)[0];
        let child = Command::new("redis-server")
            .args(["--port", &address.port().to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (Debian: apt-get install redis-server)");
        let started = Instant::now();
        while TcpStream::connect(address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, address }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real mosquitto on a free loopback port (Debian's, which `.ci/run` installs), killed on
/// drop; `None` where it is not installed, which fails under CI.
pub struct Mosquitto {
    pub address: SocketAddr,
    process: Child,
}

impl Mosquitto {
    pub fn start(dir: &std::path::Path) -> Option<Mosquitto> {
        const MOSQUITTO: &str = "/usr/sbin/mosquitto";
        if !std::path::Path::new(MOSQUITTO).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{MOSQUITTO} is missing: .ci/run installs Debian's mosquitto"
            );
            eprintln!("skipped: {MOSQUITTO} is missing");
            return None;
        }
        let address = free_addresses(1)[0];
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("mosquitto.conf");
        let text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n",
            address.port()
        );
        std::fs::write(&config, text).unwrap();
        let process = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        let started = Instant::now();
        while std::net::TcpStream::connect(address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "mosquitto did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Mosquitto { address, process })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
