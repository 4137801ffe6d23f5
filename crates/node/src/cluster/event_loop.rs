//! One master's cluster loop: it drives the membership core of its mode through the
//! [`Membership`] trait alone, moves the core's outputs to the peer links, the disk and the
//! store link, proposes the master's commands and config to it, and tells the master's
//! registry and the handle what the core decided.

use super::handle::{ClusterHandle, Request};
use super::peers::{Outbound, PeerFrame, PeerMessage, Undelivered};
use super::store::StoreLink;
use super::HARD_STATE;
use crate::buggify::{self, Point};
use crate::clock::{now, Timer};
use crate::disk::{Disk, LEDGER};
use crate::master::MasterState;
use crate::report::emit_from;
use fleet_core::cluster::{ClusterEvent, Membership, Output, Role, Status};
use fleet_core::master::Leadership;
use fleet_core::resp::Value;
use std::io;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Notify};

fn leadership(role: Role, leader: Option<&str>) -> Leadership {
    match role {
        Role::Leader => Leadership::Leader,
        _ => Leadership::Follower {
            leader: leader.map(str::to_string),
        },
    }
}

/// A write that takes its time, when a fault point says so: a slow fsync. It comes after the
/// write is durable, so the messages that wait for it wait longer, and a crash meanwhile loses
/// them, never a decision the timeline already reported.
async fn slow_disk() {
    if let Some(delay) = buggify::fires(Point::DelayedDiskWrite) {
        crate::clock::sleep(delay).await;
    }
}

pub(super) struct ClusterLoop {
    pub(super) disk: Option<Disk>,
    pub(super) save_votes: bool,
    pub(super) fsync: bool,
    pub(super) members: Vec<String>,
    pub(super) membership: Box<dyn Membership>,
    pub(super) store: Option<StoreLink>,
    pub(super) outbound: Outbound,
    pub(super) inbound: mpsc::UnboundedReceiver<PeerFrame>,
    pub(super) undelivered: Undelivered,
    pub(super) master: MasterState,
    pub(super) handle: ClusterHandle,
    pub(super) closed: bool,
    pub(super) timer: Timer,
    /// Wakes the loop when the master's commands or config change, to propose them.
    pub(super) master_changed: Arc<Notify>,
}

impl ClusterLoop {
    /// Runs until the node ends or the handle closes the cluster.
    pub(super) async fn run(mut self) {
        self.report();
        loop {
            self.take_requests();
            let next_periodic = self.publish().await;
            if self.closed {
                return;
            }
            if !self.wait_for_input(next_periodic).await {
                return;
            }
        }
    }

    /// Emits what the membership core reported: after every input, before anything can await,
    /// so its events keep their time and their order among the other cores'.
    fn report(&mut self) {
        emit_from(|| self.membership.poll_event());
    }

    /// Queues `message` for peer `to`; false if there is no such peer.
    fn send(&self, to: &str, message: PeerMessage) -> bool {
        let Some(peer) = self.outbound.get(to) else {
            return false;
        };
        let from = self.membership.me().to_string();
        peer.send(PeerFrame { from, message }).is_ok()
    }

    /// Release and close, as the handle or a shutting-down master asked.
    fn take_requests(&mut self) {
        if self.master.take_shutdown() {
            // Hand over first, then leave: the goodbyes name the successor. The loop runs on
            // (quietly: a closed core does nothing) so what it sent still leaves, until the
            // process ends.
            let successor = self.membership.release(now());
            self.membership.close();
            self.report();
            self.master.say_goodbye(successor.as_deref());
        }
        let requests = std::mem::take(&mut self.handle.lock().requests);
        for request in requests {
            match request {
                Request::Release => {
                    self.membership.release(now());
                }
                Request::Close => {
                    self.membership.close();
                    self.closed = true;
                }
            }
            self.report();
        }
    }

    /// Moves every output on, then tells the handle and the master what the core decided.
    /// Returns when the next periodic task or call is due.
    async fn publish(&mut self) -> Option<Instant> {
        if let Some((index, state)) = self.master.take_proposal() {
            self.membership.propose(now(), index, state);
        }
        while let Some(output) = self.membership.poll_output() {
            match output {
                // Durable before any vote or candidacy leaves.
                Output::Save(state) => {
                    if let Some(disk) = self.disk.clone().filter(|_| self.save_votes) {
                        let bytes = serde_json::to_vec(&state).expect("a hard state serializes");
                        disk.write(HARD_STATE, bytes);
                        self.sync(&disk);
                        slow_disk().await;
                    }
                }
                // Durable before the messages that carry it, or acknowledge it, leave.
                Output::Persist(snapshot) => {
                    if self.write_ledger(&snapshot) {
                        slow_disk().await;
                    }
                }
                Output::Install(snapshot) => {
                    if self.write_ledger(&snapshot) {
                        slow_disk().await;
                    }
                    self.master.install(&snapshot);
                }
                Output::Peer { to, message } => {
                    self.send(&to, PeerMessage::Raft(message));
                }
                Output::Store(action) => {
                    if let Some(link) = &mut self.store {
                        link.apply(self.membership.as_mut(), action).await;
                    }
                    self.report();
                }
            }
        }
        let events: Vec<ClusterEvent> =
            std::iter::from_fn(|| self.membership.poll_cluster_event()).collect();
        let status = self.status();
        let next_periodic = self.handle.update(events, &status, |to, message| {
            self.send(to, PeerMessage::Call(message))
        });
        let leadership = leadership(status.role, status.leader.as_deref());
        self.master.observe_term(status.term);
        self.master
            .set_leadership(leadership, self.membership.leading_until());
        self.master.handle_commit(self.membership.committed());
        next_periodic
    }

    /// Writes the ledger, if this master keeps one; returns whether it did.
    fn write_ledger(&self, snapshot: &fleet_core::cluster::Snapshot) -> bool {
        let Some(disk) = &self.disk else { return false };
        disk.write(LEDGER, snapshot.to_record());
        self.sync(disk);
        true
    }

    /// Makes what was written survive a power failure, unless told not to.
    fn sync(&self, disk: &Disk) {
        if self.fsync {
            disk.sync();
        }
    }

    fn status(&self) -> Status {
        let membership = &self.membership;
        Status {
            me: membership.me().to_string(),
            role: membership.role(),
            term: membership.term(),
            leader: membership.leader().map(str::to_string),
            members: self.members.clone(),
            alive: membership.alive(now()),
            closed: self.closed,
        }
    }

    /// Waits for the next input and applies it; false once the inbound channel closed.
    async fn wait_for_input(&mut self, next_periodic: Option<Instant>) -> bool {
        let deadline = [self.membership.poll_timeout(), next_periodic]
            .into_iter()
            .flatten()
            .min();
        self.timer.set(deadline);
        let master_changed = self.master_changed.clone();
        let store = &mut self.store;
        let store_reply = async {
            match store {
                Some(link) => link.next_reply().await,
                None => std::future::pending().await,
            }
        };
        crate::select_in_order! {
            frame = self.inbound.recv() => match frame {
                Some(frame) => self.handle_frame(frame),
                None => return false,
            },
            Some((to, frame)) = self.undelivered.recv() => {
                if let PeerMessage::Call(message) = frame.message {
                    self.handle.undeliverable(&to, &message);
                }
            },
            reply = store_reply => self.handle_store_reply(reply),
            _ = self.handle.wake.notified() => {},
            _ = master_changed.notified() => {},
            _ = self.timer.expired() => {
                let at = now();
                self.membership.handle_timeout(at);
                self.report();
                self.handle.handle_timeout(at);
            },
        }
        true
    }

    fn handle_frame(&mut self, PeerFrame { from, message }: PeerFrame) {
        match message {
            PeerMessage::Raft(message) => {
                self.membership.handle_peer(now(), &from, message);
                self.report();
            }
            PeerMessage::Call(message) => self.handle.handle_call(&from, message),
        }
    }

    fn handle_store_reply(&mut self, reply: Option<io::Result<Value>>) {
        if let Some(link) = &mut self.store {
            link.handle_reply(self.membership.as_mut(), reply);
            self.report();
        }
    }
}
