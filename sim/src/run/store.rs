//! The simulated lease store: the few Redis commands lease mode uses, over an in-memory
//! keyspace with expiry, served over RESP so scenarios can crash, cut off or slow down the
//! store. `EVAL` runs exactly the scripts of `fleet_core::cluster::lease`, recognised by their
//! text. The keyspace lives outside the server so it can outlive a crash, as Redis's
//! append-only file does.

use fleet_core::cluster::lease::{
    ACQUIRE_SCRIPT, RELEASE_SCRIPT, RENEW_SCRIPT, RESUME_SCRIPT, WRITE_STATE_SCRIPT,
};
use fleet_core::resp::Value;
use fleet_node::clock::now;
use fleet_node::codec::RespCodec;
use fleet_node::net::TcpListener;
use fleet_node::sync::lock;
use futures::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::codec::Framed;

#[derive(Clone, Debug)]
struct Entry {
    value: Vec<u8>,
    expires_at: Option<Instant>,
}

#[derive(Clone, Debug, Default)]
pub struct Store {
    entries: BTreeMap<Vec<u8>, Entry>,
}

fn error(text: impl Into<String>) -> Value {
    Value::Error(text.into())
}

fn ok() -> Value {
    Value::Simple("OK".into())
}

fn number(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

impl Store {
    fn live(&mut self, now: Instant, key: &[u8]) -> Option<&mut Entry> {
        if self
            .entries
            .get(key)
            .is_some_and(|entry| entry.expires_at.is_some_and(|at| now >= at))
        {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn get(&mut self, now: Instant, key: &[u8]) -> Option<Vec<u8>> {
        self.live(now, key).map(|entry| entry.value.clone())
    }

    fn set(&mut self, now: Instant, key: &[u8], value: Vec<u8>, ttl: Option<Duration>) {
        self.entries.insert(
            key.to_vec(),
            Entry {
                value,
                expires_at: ttl.map(|ttl| now + ttl),
            },
        );
    }

    fn pexpire(&mut self, now: Instant, key: &[u8], ms: i64) -> i64 {
        match self.live(now, key) {
            Some(entry) => {
                entry.expires_at = Some(now + Duration::from_millis(ms.max(0) as u64));
                1
            }
            None => 0,
        }
    }

    fn incr(&mut self, now: Instant, key: &[u8]) -> Result<i64, Value> {
        let current = match self.get(now, key) {
            None => 0,
            Some(bytes) => number(&bytes)
                .ok_or_else(|| error("ERR value is not an integer or out of range"))?,
        };
        let next = current + 1;
        let expires_at = self.live(now, key).and_then(|entry| entry.expires_at);
        self.entries.insert(
            key.to_vec(),
            Entry {
                value: next.to_string().into_bytes(),
                expires_at,
            },
        );
        Ok(next)
    }

    /// Runs one command (an array of bulk strings) and returns the reply.
    pub fn execute(&mut self, now: Instant, command: &Value) -> Value {
        let Value::Array(Some(items)) = command else {
            return error("ERR a command is an array of bulk strings");
        };
        let mut args = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::Bulk(Some(bytes)) => args.push(bytes.clone()),
                _ => return error("ERR a command is an array of bulk strings"),
            }
        }
        let Some(name) = args.first() else {
            return error("ERR empty command");
        };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let arity = |n: usize| {
            error(format!(
                "ERR wrong number of arguments for '{}' command (takes {n})",
                name.to_ascii_lowercase()
            ))
        };
        match (name.as_str(), &args[1..]) {
            ("PING", []) => Value::Simple("PONG".into()),
            ("GET", [key]) => Value::Bulk(self.get(now, key)),
            ("GET", _) => arity(1),
            ("SET", [key, value, options @ ..]) => self.set_command(now, key, value, options),
            ("SET", _) => arity(2),
            ("PEXPIRE", [key, ms]) => match number(ms) {
                Some(ms) => Value::Integer(self.pexpire(now, key, ms)),
                None => error("ERR value is not an integer or out of range"),
            },
            ("PEXPIRE", _) => arity(2),
            ("INCR", [key]) => self.incr(now, key).map_or_else(|e| e, Value::Integer),
            ("INCR", _) => arity(1),
            ("DEL", keys) if !keys.is_empty() => Value::Integer(
                keys.iter()
                    .filter(|key| {
                        let existed = self.live(now, key).is_some();
                        self.entries.remove(key.as_slice());
                        existed
                    })
                    .count() as i64,
            ),
            ("DEL", _) => arity(1),
            ("EVAL", [script, numkeys, rest @ ..]) => self.eval(now, script, numkeys, rest),
            ("EVAL", _) => arity(2),
            (other, _) => error(format!(
                "ERR unknown command '{}'",
                other.to_ascii_lowercase()
            )),
        }
    }

    fn set_command(
        &mut self,
        now: Instant,
        key: &[u8],
        value: &[u8],
        options: &[Vec<u8>],
    ) -> Value {
        let mut only_if_absent = false;
        let mut only_if_present = false;
        let mut ttl = None;
        let mut options = options.iter();
        while let Some(option) = options.next() {
            match option.to_ascii_uppercase().as_slice() {
                b"NX" => only_if_absent = true,
                b"XX" => only_if_present = true,
                unit @ (b"PX" | b"EX") => {
                    let Some(amount) = options.next().and_then(|n| number(n)).filter(|&n| n > 0)
                    else {
                        return error("ERR invalid expire time in 'set' command");
                    };
                    let scale = if unit == b"PX" { 1 } else { 1000 };
                    ttl = Some(Duration::from_millis(amount as u64 * scale));
                }
                _ => return error("ERR syntax error"),
            }
        }
        let exists = self.live(now, key).is_some();
        if (only_if_absent && exists) || (only_if_present && !exists) {
            return Value::Bulk(None);
        }
        self.set(now, key, value.to_vec(), ttl);
        ok()
    }

    /// `ACQUIRE_SCRIPT`.
    fn acquire(&mut self, now: Instant, keys: &[Vec<u8>], argv: &[Vec<u8>]) -> Value {
        if let Some(holder) = self.get(now, &keys[0]) {
            return Value::Array(Some(vec![Value::Integer(0), Value::Bulk(Some(holder))]));
        }
        let token = match self.incr(now, &keys[1]) {
            Ok(token) => token,
            Err(reply) => return reply,
        };
        let Some(period) = number(&argv[1]).filter(|&ms| ms > 0) else {
            return error("ERR invalid expire time in 'set' command");
        };
        let mut value = argv[0].clone();
        value.extend_from_slice(format!(" {token} ").as_bytes());
        value.extend_from_slice(&argv[2]);
        let ttl = Some(Duration::from_millis(period as u64));
        self.set(now, &keys[0], value.clone(), ttl);
        Value::Array(Some(vec![Value::Integer(1), Value::Bulk(Some(value))]))
    }

    /// `RESUME_SCRIPT`.
    fn resume(&mut self, now: Instant, keys: &[Vec<u8>], argv: &[Vec<u8>]) -> Value {
        if self.get(now, &keys[0]).as_deref() != Some(argv[0].as_slice()) {
            return Value::Integer(0);
        }
        let Some(period) = number(&argv[2]).filter(|&ms| ms > 0) else {
            return error("ERR invalid expire time in 'set' command");
        };
        let ttl = Some(Duration::from_millis(period as u64));
        self.set(now, &keys[0], argv[1].clone(), ttl);
        Value::Integer(1)
    }

    /// `WRITE_STATE_SCRIPT`.
    fn write_state(&mut self, now: Instant, keys: &[Vec<u8>], argv: &[Vec<u8>]) -> Value {
        if self.get(now, &keys[0]).as_deref() != Some(argv[0].as_slice()) {
            return Value::Integer(0);
        }
        let Some(index) = number(&argv[2]) else {
            return error("ERR the state's index is not a number");
        };
        let stored = self.get(now, &keys[2]).and_then(|bytes| number(&bytes));
        if index > stored.unwrap_or(0) {
            self.set(now, &keys[1], argv[1].clone(), None);
            self.set(now, &keys[2], argv[2].clone(), None);
        }
        Value::Integer(1)
    }

    fn eval(&mut self, now: Instant, script: &[u8], numkeys: &[u8], rest: &[Vec<u8>]) -> Value {
        let Some(numkeys) = number(numkeys).and_then(|n| usize::try_from(n).ok()) else {
            return error("ERR value is not an integer or out of range");
        };
        if numkeys > rest.len() {
            return error("ERR Number of keys can't be greater than number of args");
        }
        let (keys, argv) = rest.split_at(numkeys);
        let script = String::from_utf8_lossy(script);
        let expect = |k: usize, a: usize| keys.len() == k && argv.len() == a;
        if script == ACQUIRE_SCRIPT && expect(2, 3) {
            self.acquire(now, keys, argv)
        } else if script == RESUME_SCRIPT && expect(1, 3) {
            self.resume(now, keys, argv)
        } else if script == WRITE_STATE_SCRIPT && expect(3, 3) {
            self.write_state(now, keys, argv)
        } else if (script == RENEW_SCRIPT || script == RELEASE_SCRIPT) && expect(1, 2) {
            if self.get(now, &keys[0]).as_deref() != Some(argv[0].as_slice()) {
                return Value::Integer(0);
            }
            if script == RENEW_SCRIPT {
                let Some(period) = number(&argv[1]) else {
                    return error("ERR value is not an integer or out of range");
                };
                Value::Integer(self.pexpire(now, &keys[0], period))
            } else {
                self.entries.remove(keys[0].as_slice());
                Value::Integer(1)
            }
        } else {
            error("ERR this store runs only the lease scripts of fleet-core's lease mode")
        }
    }
}

/// Serves `store` on `listener` until the node ends.
pub async fn serve(listener: TcpListener, store: Arc<Mutex<Store>>) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let store = store.clone();
        fleet_node::task::spawn(async move {
            let mut framed = Framed::new(stream, RespCodec);
            // A bad request ends only its own connection.
            while let Some(Ok(command)) = framed.next().await {
                let reply = lock(&store).execute(now(), &command);
                if framed.send(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(store: &mut Store, now: Instant, args: &[&str]) -> Value {
        store.execute(now, &Value::command(args))
    }

    #[test]
    fn set_if_absent_with_ttl_expires() {
        let t0 = Instant::now();
        let mut store = Store::default();
        assert_eq!(
            run(&mut store, t0, &["SET", "k", "a", "NX", "PX", "100"]),
            ok()
        );
        assert_eq!(
            run(&mut store, t0, &["SET", "k", "b", "NX", "PX", "100"]),
            Value::Bulk(None)
        );
        assert_eq!(run(&mut store, t0, &["GET", "k"]), Value::bulk("a"));
        let later = t0 + Duration::from_millis(100);
        assert_eq!(run(&mut store, later, &["GET", "k"]), Value::Bulk(None));
        assert_eq!(run(&mut store, later, &["SET", "k", "b", "NX"]), ok());
    }

    #[test]
    fn incr_counts_and_del_removes() {
        let t0 = Instant::now();
        let mut store = Store::default();
        assert_eq!(run(&mut store, t0, &["INCR", "n"]), Value::Integer(1));
        assert_eq!(run(&mut store, t0, &["INCR", "n"]), Value::Integer(2));
        assert_eq!(
            run(&mut store, t0, &["DEL", "n", "missing"]),
            Value::Integer(1)
        );
        assert_eq!(
            run(&mut store, t0, &["PEXPIRE", "n", "5"]),
            Value::Integer(0)
        );
    }

    #[test]
    fn bad_commands_get_errors() {
        let t0 = Instant::now();
        let mut store = Store::default();
        for args in [
            &["GET"][..],
            &["FLUSHALL"],
            &["SET", "k", "v", "PX", "x"],
            &["EVAL", "return 1", "0"],
        ] {
            assert!(
                matches!(run(&mut store, t0, args), Value::Error(_)),
                "{args:?}"
            );
        }
        assert!(matches!(
            store.execute(t0, &Value::Integer(3)),
            Value::Error(_)
        ));
    }

    #[test]
    fn the_lease_scripts_grant_renew_and_release() {
        let t0 = Instant::now();
        let mut store = Store::default();
        let acquire = |store: &mut Store, now, node: &str| {
            run(
                store,
                now,
                &[
                    "EVAL",
                    ACQUIRE_SCRIPT,
                    "2",
                    "lease",
                    "lease:token",
                    node,
                    "1000",
                    "7",
                ],
            )
        };
        let granted = Value::Array(Some(vec![Value::Integer(1), Value::bulk("a 1 7")]));
        assert_eq!(acquire(&mut store, t0, "a"), granted);
        let held = Value::Array(Some(vec![Value::Integer(0), Value::bulk("a 1 7")]));
        assert_eq!(acquire(&mut store, t0, "b"), held);
        let renew = |store: &mut Store, now, holder: &str| {
            run(
                store,
                now,
                &["EVAL", RENEW_SCRIPT, "1", "lease", holder, "1000"],
            )
        };
        let t1 = t0 + Duration::from_millis(900);
        assert_eq!(renew(&mut store, t1, "a 1 7"), Value::Integer(1));
        assert_eq!(renew(&mut store, t1, "b 1 7"), Value::Integer(0));
        let t2 = t1 + Duration::from_millis(1000);
        assert_eq!(renew(&mut store, t2, "a 1 7"), Value::Integer(0), "expired");
        let regranted = Value::Array(Some(vec![Value::Integer(1), Value::bulk("b 2 7")]));
        assert_eq!(
            acquire(&mut store, t2, "b"),
            regranted,
            "the token only increases"
        );
        // A later process of b takes the lease over under its own value; a release the
        // earlier process sent, arriving late, no longer matches.
        let resume = run(
            &mut store,
            t2,
            &[
                "EVAL",
                RESUME_SCRIPT,
                "1",
                "lease",
                "b 2 7",
                "b 2 8",
                "1000",
            ],
        );
        assert_eq!(resume, Value::Integer(1));
        let stale = run(
            &mut store,
            t2,
            &["EVAL", RELEASE_SCRIPT, "1", "lease", "b 2 7", "0"],
        );
        assert_eq!(stale, Value::Integer(0));
        let release = run(
            &mut store,
            t2,
            &["EVAL", RELEASE_SCRIPT, "1", "lease", "b 2 8", "0"],
        );
        assert_eq!(release, Value::Integer(1));
        assert_eq!(run(&mut store, t2, &["GET", "lease"]), Value::Bulk(None));
    }
}
