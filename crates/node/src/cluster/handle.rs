//! The [`ClusterHandle`]: what the rest of a master sees of its cluster (status queries, job
//! trackers, periodic tasks, remote calls) and what it asks of the cluster loop.

use crate::clock::now;
use crate::report::emit_from;
use crate::sync::lock;
use fleet_core::cluster::calls::{CallMessage, CallResult, Calls, Function};
use fleet_core::cluster::Status;
use fleet_core::cluster::{dispatch, ClusterEvent, JobTracker, PeriodicTask, PeriodicTracker};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

struct Periodic {
    tracker: PeriodicTracker,
    leader_task: Box<dyn FnMut() + Send>,
    follower_task: Box<dyn FnMut(&str) + Send>,
}

/// What a handle asks of the cluster loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Request {
    Release,
    Close,
}

pub(super) struct HandleState {
    pub(super) requests: Vec<Request>,
    status: Option<Status>,
    trackers: Vec<Box<dyn JobTracker + Send>>,
    periodic: Vec<Periodic>,
    calls: Calls,
    next_trace: u64,
}

impl HandleState {
    /// Emits what the calls core reported: after every call into it, so events keep their order.
    fn report(&mut self) {
        emit_from(|| self.calls.poll_event());
    }
}

/// A master's view of, and hooks into, its cluster. Cheap to clone; every clone is the same.
#[derive(Clone)]
pub struct ClusterHandle {
    me: String,
    state: Arc<Mutex<HandleState>>,
    /// Wakes the cluster loop: a call was queued, or a periodic task was added.
    pub(super) wake: Arc<Notify>,
    /// Wakes callers: a call finished.
    finished: Arc<Notify>,
}

impl ClusterHandle {
    pub fn new(me: &str) -> ClusterHandle {
        ClusterHandle {
            me: me.to_string(),
            state: Arc::new(Mutex::new(HandleState {
                requests: Vec::new(),
                status: None,
                trackers: Vec::new(),
                periodic: Vec::new(),
                calls: Calls::new(me),
                next_trace: 0,
            })),
            wake: Arc::new(Notify::new()),
            finished: Arc::new(Notify::new()),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HandleState> {
        lock(&self.state)
    }

    /// What this node knows of the cluster now; `None` until the cluster loop has started.
    pub fn status(&self) -> Option<Status> {
        self.lock().status.clone()
    }

    /// Gives up leadership on purpose, if this node leads, so another can take over.
    pub fn release(&self) {
        self.lock().requests.push(Request::Release);
        self.wake.notify_one();
    }

    /// Leaves the cluster: no more elections or lease requests; the cluster loop ends.
    pub fn close(&self) {
        self.lock().requests.push(Request::Close);
        self.wake.notify_one();
    }

    /// Calls `tracker` back on every leadership change from now on.
    pub fn add_job_tracker(&self, tracker: Box<dyn JobTracker + Send>) {
        self.lock().trackers.push(tracker);
    }

    /// Removes the trackers named `name`; returns how many.
    pub fn remove_job_tracker(&self, name: &str) -> usize {
        let mut state = self.lock();
        let before = state.trackers.len();
        state.trackers.retain(|tracker| tracker.name() != name);
        before - state.trackers.len()
    }

    /// Every `interval`, runs `leader_task` while this node leads, or `follower_task` with the
    /// leader's name while it follows one (MasterCall / SlaverCall).
    pub fn add_periodic(
        &self,
        interval: Duration,
        leader_task: Box<dyn FnMut() + Send>,
        follower_task: Box<dyn FnMut(&str) + Send>,
    ) {
        self.lock().periodic.push(Periodic {
            tracker: PeriodicTracker::new(interval, now()),
            leader_task,
            follower_task,
        });
        self.wake.notify_one();
    }

    /// Makes `function` callable by other masters under `name`.
    pub fn register_function(&self, name: &str, function: Function) {
        self.lock().calls.register(name, function);
    }

    /// Starts a call and returns its id; [`fetch`](Self::fetch) its result later.
    pub fn call_async(&self, to: &str, function: &str, args: Vec<u8>, timeout: Duration) -> u64 {
        let id = {
            let mut state = self.lock();
            state.next_trace += 1;
            let trace_id = format!("{}#{}", self.me, state.next_trace);
            let id = state
                .calls
                .call(now(), to, function, args, timeout, &trace_id);
            state.report();
            id
        };
        self.wake.notify_one();
        id
    }

    /// The result of call `id`, once it has one (handed out once).
    pub fn fetch(&self, id: u64) -> Option<CallResult> {
        self.lock().calls.take_result(id)
    }

    /// Calls `function` on `to` and waits for its result, at most `timeout`.
    pub async fn call(
        &self,
        to: &str,
        function: &str,
        args: Vec<u8>,
        timeout: Duration,
    ) -> CallResult {
        let id = self.call_async(to, function, args, timeout);
        loop {
            let finished = self.finished.notified();
            if let Some(result) = self.fetch(id) {
                return result;
            }
            finished.await;
        }
    }

    /// Sends queued calls through `send` (false: undeliverable), tells the trackers what
    /// happened, runs due periodic tasks and publishes `status`. Returns when the handle next
    /// needs the loop.
    pub(super) fn update(
        &self,
        events: Vec<ClusterEvent>,
        status: &Status,
        send: impl Fn(&str, CallMessage) -> bool,
    ) -> Option<Instant> {
        let mut state = self.lock();
        let mut finished_calls = false;
        while let Some((to, message)) = state.calls.poll_message() {
            if !send(&to, message.clone()) {
                state.calls.handle_undeliverable(&to, &message);
                finished_calls = true;
            }
        }
        state.report();
        if finished_calls {
            self.finished.notify_waiters();
        }
        let leader = status.leader.as_deref();
        for event in events {
            for tracker in &mut state.trackers {
                dispatch(tracker.as_mut(), event, leader);
            }
        }
        let at = now();
        for job in &mut state.periodic {
            match job.tracker.poll_due(at, status.role, leader) {
                Some(PeriodicTask::Leader) => (job.leader_task)(),
                Some(PeriodicTask::Follower { leader }) => (job.follower_task)(&leader),
                None => {}
            }
        }
        state.status = Some(status.clone());
        let periodic = state.periodic.iter().map(|job| job.tracker.poll_timeout());
        periodic.chain(state.calls.poll_timeout()).min()
    }

    /// A call to `to` could not be delivered.
    pub(super) fn undeliverable(&self, to: &str, message: &CallMessage) {
        let mut state = self.lock();
        state.calls.handle_undeliverable(to, message);
        state.report();
        drop(state);
        self.finished.notify_waiters();
    }

    /// A call message from peer `from`.
    pub(super) fn handle_call(&self, from: &str, message: CallMessage) {
        let mut state = self.lock();
        state.calls.handle_message(from, message);
        state.report();
        drop(state);
        self.finished.notify_waiters();
    }

    /// Calls past their deadline fail as timed out.
    pub(super) fn handle_timeout(&self, at: Instant) {
        let mut state = self.lock();
        state.calls.handle_timeout(at);
        state.report();
        drop(state);
        self.finished.notify_waiters();
    }
}
