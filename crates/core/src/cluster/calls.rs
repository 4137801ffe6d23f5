//! Remote calls between cluster nodes: a node registers functions by name, and any node calls
//! them on another with a timeout. Every call carries a trace id from caller to callee and back.
//!
//! Sans-IO: [`Calls::call`] queues a message and returns the call's id; the shell delivers
//! messages ([`Calls::poll_message`]), reports those it could not deliver, and feeds replies
//! and timeouts back. A finished call's result waits in [`Calls::take_result`], so a caller can
//! wait for it (synchronous style) or come back for it later (asynchronous style).

use crate::timeline::{CallEvent, Event, Events};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CallError {
    #[error("no function {function:?} is registered on {node}")]
    UnknownFunction { function: String, node: String },
    #[error("{node} did not answer {function:?} within {timeout_ms}ms")]
    Timeout {
        function: String,
        node: String,
        timeout_ms: u64,
    },
    #[error("{node} cannot be reached")]
    Unreachable { node: String },
    #[error("{function:?} failed on {node}: {message}")]
    Failed {
        function: String,
        node: String,
        message: String,
    },
}

pub type CallResult = Result<Vec<u8>, CallError>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CallMessage {
    Call {
        id: u64,
        trace_id: String,
        function: String,
        args: Vec<u8>,
    },
    Reply {
        id: u64,
        trace_id: String,
        result: CallResult,
    },
}

/// A function other nodes may call: bytes in, bytes or an error message out.
pub type Function = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, String> + Send>;

struct Pending {
    to: String,
    function: String,
    trace_id: String,
    deadline: Instant,
    timeout: Duration,
}

pub struct Calls {
    me: String,
    next_id: u64,
    functions: BTreeMap<String, Function>,
    pending: BTreeMap<u64, Pending>,
    done: BTreeMap<u64, CallResult>,
    outbox: VecDeque<(String, CallMessage)>,
    /// What it reports, until the shell takes it.
    events: Events,
}

impl Calls {
    pub fn new(me: &str) -> Self {
        Calls {
            me: me.to_string(),
            next_id: 0,
            functions: BTreeMap::new(),
            pending: BTreeMap::new(),
            done: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: Events::default(),
        }
    }

    /// Makes `function` callable by name; a second registration replaces the first.
    pub fn register(&mut self, name: &str, function: Function) {
        self.functions.insert(name.to_string(), function);
    }

    fn run(&mut self, function: &str, args: &[u8]) -> CallResult {
        match self.functions.get_mut(function) {
            None => Err(CallError::UnknownFunction {
                function: function.to_string(),
                node: self.me.clone(),
            }),
            Some(body) => body(args).map_err(|message| CallError::Failed {
                function: function.to_string(),
                node: self.me.clone(),
                message,
            }),
        }
    }

    /// Starts a call of `function` on node `to` and returns its id. A call to this node runs at
    /// once.
    pub fn call(
        &mut self,
        now: Instant,
        to: &str,
        function: &str,
        args: Vec<u8>,
        timeout: Duration,
        trace_id: &str,
    ) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.events.push(CallEvent::RemoteCall {
            trace_id: trace_id.to_string(),
            to: to.to_string(),
            function: function.to_string(),
        });
        if to == self.me {
            let result = self.run(function, &args);
            self.finish(id, trace_id, result);
            return id;
        }
        self.pending.insert(
            id,
            Pending {
                to: to.to_string(),
                function: function.to_string(),
                trace_id: trace_id.to_string(),
                deadline: now + timeout,
                timeout,
            },
        );
        self.outbox.push_back((
            to.to_string(),
            CallMessage::Call {
                id,
                trace_id: trace_id.to_string(),
                function: function.to_string(),
                args,
            },
        ));
        id
    }

    fn finish(&mut self, id: u64, trace_id: &str, result: CallResult) {
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(error) => error.to_string(),
        };
        self.events.push(CallEvent::RemoteCallDone {
            trace_id: trace_id.to_string(),
            outcome,
        });
        self.done.insert(id, result);
    }

    pub fn handle_message(&mut self, from: &str, message: CallMessage) {
        match message {
            CallMessage::Call {
                id,
                trace_id,
                function,
                args,
            } => {
                self.events.push(CallEvent::RemoteCallServed {
                    trace_id: trace_id.clone(),
                    from: from.to_string(),
                    function: function.clone(),
                });
                let result = self.run(&function, &args);
                self.outbox.push_back((
                    from.to_string(),
                    CallMessage::Reply {
                        id,
                        trace_id,
                        result,
                    },
                ));
            }
            CallMessage::Reply { id, result, .. } => {
                // A reply for a call that already timed out is dropped.
                if let Some(pending) = self.pending.remove(&id) {
                    self.finish(id, &pending.trace_id, result);
                }
            }
        }
    }

    /// The shell could not hand `message` to node `to`.
    pub fn handle_undeliverable(&mut self, to: &str, message: &CallMessage) {
        if let CallMessage::Call { id, .. } = message {
            if let Some(pending) = self.pending.remove(id) {
                let error = CallError::Unreachable {
                    node: to.to_string(),
                };
                self.finish(*id, &pending.trace_id, Err(error));
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, pending)| now >= pending.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let pending = self.pending.remove(&id).expect("listed above");
            let error = CallError::Timeout {
                function: pending.function,
                node: pending.to,
                timeout_ms: pending.timeout.as_millis() as u64,
            };
            self.finish(id, &pending.trace_id, Err(error));
        }
    }

    /// The next event for the timeline, in the order they happened.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    #[must_use]
    pub fn poll_message(&mut self) -> Option<(String, CallMessage)> {
        self.outbox.pop_front()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|pending| pending.deadline).min()
    }

    /// The result of call `id` once it has one; each result is handed out once.
    pub fn take_result(&mut self, id: u64) -> Option<CallResult> {
        self.done.remove(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> Function {
        Box::new(|args| Ok(args.to_vec()))
    }

    /// Delivers every queued message between two nodes until both are quiet.
    fn exchange(a: &mut Calls, b: &mut Calls) {
        loop {
            let mut moved = false;
            while let Some((_, message)) = a.poll_message() {
                b.handle_message(&a.me.clone(), message);
                moved = true;
            }
            while let Some((_, message)) = b.poll_message() {
                a.handle_message(&b.me.clone(), message);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    #[test]
    fn a_call_runs_on_the_other_node_and_returns_its_result() {
        let now = Instant::now();
        let (mut a, mut b) = (Calls::new("master-1"), Calls::new("master-2"));
        b.register("echo", echo());
        let id = a.call(
            now,
            "master-2",
            "echo",
            b"hi".to_vec(),
            Duration::from_secs(1),
            "t-1",
        );
        assert_eq!(a.take_result(id), None, "not back yet");
        exchange(&mut a, &mut b);
        assert_eq!(a.take_result(id), Some(Ok(b"hi".to_vec())));
        assert_eq!(a.take_result(id), None, "handed out once");
        let reported = |calls: &mut Calls| -> Vec<Event> {
            std::iter::from_fn(|| calls.poll_event()).collect()
        };
        let trace_id = || "t-1".to_string();
        assert_eq!(
            reported(&mut a),
            [
                CallEvent::RemoteCall {
                    trace_id: trace_id(),
                    to: "master-2".into(),
                    function: "echo".into()
                }
                .into(),
                CallEvent::RemoteCallDone {
                    trace_id: trace_id(),
                    outcome: "ok".into()
                }
                .into()
            ]
        );
        assert_eq!(
            reported(&mut b),
            [CallEvent::RemoteCallServed {
                trace_id: trace_id(),
                from: "master-1".into(),
                function: "echo".into()
            }
            .into()]
        );
    }

    #[test]
    fn errors_say_what_went_wrong() {
        let now = Instant::now();
        let (mut a, mut b) = (Calls::new("master-1"), Calls::new("master-2"));
        b.register("fails", Box::new(|_| Err("disk full".into())));
        let second = Duration::from_secs(1);
        let unknown = a.call(now, "master-2", "nope", vec![], second, "t-1");
        let failed = a.call(now, "master-2", "fails", vec![], second, "t-2");
        exchange(&mut a, &mut b);
        assert_eq!(
            a.take_result(unknown),
            Some(Err(CallError::UnknownFunction {
                function: "nope".into(),
                node: "master-2".into()
            }))
        );
        assert!(
            matches!(a.take_result(failed), Some(Err(CallError::Failed { message, .. })) if message == "disk full")
        );

        let lost = a.call(now, "master-3", "echo", vec![], second, "t-3");
        let _lost_in_transit = a.poll_message();
        assert_eq!(a.poll_timeout(), Some(now + second));
        a.handle_timeout(now + second);
        assert!(matches!(
            a.take_result(lost),
            Some(Err(CallError::Timeout {
                timeout_ms: 1000,
                ..
            }))
        ));

        let refused = a.call(now, "master-3", "echo", vec![], second, "t-4");
        let (to, message) = a.poll_message().unwrap();
        a.handle_undeliverable(&to, &message);
        assert_eq!(
            a.take_result(refused),
            Some(Err(CallError::Unreachable {
                node: "master-3".into()
            }))
        );
    }

    #[test]
    fn a_call_to_this_node_runs_at_once_and_a_late_reply_is_dropped() {
        let now = Instant::now();
        let mut a = Calls::new("master-1");
        a.register("echo", echo());
        let id = a.call(
            now,
            "master-1",
            "echo",
            b"x".to_vec(),
            Duration::from_secs(1),
            "t",
        );
        assert_eq!(a.take_result(id), Some(Ok(b"x".to_vec())));
        let late = a.call(now, "master-2", "echo", vec![], Duration::from_secs(1), "t");
        a.handle_timeout(now + Duration::from_secs(1));
        assert!(a.take_result(late).is_some());
        a.handle_message(
            "master-2",
            CallMessage::Reply {
                id: late,
                trace_id: "t".into(),
                result: Ok(vec![]),
            },
        );
        assert_eq!(a.take_result(late), None);
    }
}
