//! The lease core against the simulator's store, wired directly: the scripts the core sends
//! are the ones the store runs, and the safety of a lease rests on their timing.

use fleet_core::cluster::lease::{LeaseAction, LeaseConfig, LeaseNode};
use fleet_core::cluster::{Membership, Role};
use fleet_core::resp::Value;
use sim::run::store::Store;
use std::time::{Duration, Instant};

fn config() -> LeaseConfig {
    LeaseConfig::new(
        Duration::from_secs(10),
        Duration::from_secs(3),
        Duration::from_secs(2),
    )
}

/// Nodes and a store wired directly: each request is answered at once unless the store is
/// `down`. Time jumps to the next deadline.
struct World {
    nodes: Vec<LeaseNode>,
    store: Store,
    down: bool,
    now: Instant,
}

impl World {
    fn new(names: &[&str]) -> World {
        let now = Instant::now();
        World {
            nodes: names
                .iter()
                .map(|n| LeaseNode::new(n, config(), now))
                .collect(),
            store: Store::default(),
            down: false,
            now,
        }
    }

    fn step(&mut self) {
        for node in &mut self.nodes {
            node.handle_timeout(self.now);
            while let Some(action) = node.poll_action() {
                if let LeaseAction::Send(request) = action {
                    let reply = if self.down {
                        Err("connection refused".to_string())
                    } else {
                        Ok(self.store.execute(self.now, &request.command))
                    };
                    node.handle_reply(self.now, request.id, reply);
                }
            }
            while node.poll_cluster_event().is_some() {}
            while node.poll_event().is_some() {}
        }
    }

    fn run_until(&mut self, end: Instant) {
        while self.now < end {
            self.step();
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.poll_timeout())
                .min()
                .unwrap();
            self.now = next.min(end).max(self.now + Duration::from_millis(1));
        }
        self.step();
    }

    fn leaders(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.role() == Role::Leader)
            .map(|n| n.me())
            .collect()
    }
}

#[test]
fn the_first_to_ask_leads_and_the_others_follow_it() {
    let mut world = World::new(&["master-1", "master-2", "master-3"]);
    let t0 = world.now;
    world.run_until(t0 + Duration::from_secs(30));
    assert_eq!(world.leaders(), vec!["master-1"]);
    for node in &world.nodes {
        assert_eq!(node.leader(), Some("master-1"));
        assert_eq!(node.term(), 1, "one grant, token 1");
    }
}

#[test]
fn when_the_store_is_down_the_holder_lets_go_and_a_later_grant_has_a_higher_token() {
    let mut world = World::new(&["master-1", "master-2"]);
    let t0 = world.now;
    world.run_until(t0 + Duration::from_secs(5));
    world.down = true;
    world.run_until(t0 + Duration::from_secs(30));
    assert!(
        world.leaders().is_empty(),
        "no renewals, so the lease ran out"
    );
    world.down = false;
    world.run_until(t0 + Duration::from_secs(60));
    assert_eq!(world.leaders().len(), 1);
    assert_eq!(world.nodes.iter().map(|n| n.term()).max(), Some(2));
}

#[test]
fn a_release_hands_the_lease_over() {
    let mut world = World::new(&["master-1", "master-2"]);
    let t0 = world.now;
    world.run_until(t0 + Duration::from_secs(5));
    let now = world.now;
    world.nodes[0].release(now);
    world.run_until(t0 + Duration::from_secs(20));
    assert_eq!(world.leaders(), vec!["master-2"]);
    assert_eq!(world.nodes[1].term(), 2);
}

#[test]
fn a_holder_gives_up_before_the_store_forgets_it() {
    // The holder's deadline counts from when it sent the request, and only the README's
    // share of the lease, lease_period × (1 − max_drift) / (1 + max_drift); the store's counts
    // the whole lease from when the request arrived. So the holder always lets go first.
    let t0 = Instant::now();
    let mut node = LeaseNode::new("master-1", config(), t0);
    let mut store = Store::default();
    node.handle_timeout(t0);
    let Some(LeaseAction::Send(request)) = node.poll_action() else {
        panic!("asks for the lease")
    };
    let arrival = t0 + Duration::from_millis(40);
    let reply = store.execute(arrival, &request.command);
    node.handle_reply(arrival, request.id, Ok(reply));
    // It reads the replicated state before it leads.
    let Some(LeaseAction::Send(load)) = node.poll_action() else {
        panic!("reads the state")
    };
    let reply = store.execute(arrival, &load.command);
    node.handle_reply(arrival, load.id, Ok(reply));
    assert_eq!(node.role(), Role::Leader);
    let max_drift = 0.05;
    let holder_deadline =
        t0 + (config().lease_period).mul_f64((1.0 - max_drift) / (1.0 + max_drift));
    let mut lost_at = None;
    while lost_at.is_none() {
        let now = node.poll_timeout().unwrap();
        node.handle_timeout(now);
        while node.poll_action().is_some() {} // the store never answers again
        if node.role() != Role::Leader {
            lost_at = Some(now);
        }
    }
    assert_eq!(lost_at, Some(holder_deadline));
    let probe = Value::command(&["GET", "fleet:leader"]);
    assert_ne!(store.execute(holder_deadline, &probe), Value::Bulk(None));
}

/// Steps `world` until `end`, failing if any node ever follows itself.
fn run_never_following_itself(world: &mut World, end: Instant) {
    while world.now < end {
        let next = world.now + Duration::from_millis(100);
        world.run_until(next);
        for node in &world.nodes {
            if node.role() != Role::Leader {
                assert_ne!(
                    node.leader(),
                    Some(node.me()),
                    "{} follows itself",
                    node.me()
                );
            }
        }
    }
}

#[test]
fn a_restarted_holder_takes_its_lease_back_instead_of_following_itself() {
    let mut world = World::new(&["master-1", "master-2"]);
    let t0 = world.now;
    world.run_until(t0 + Duration::from_secs(5));
    assert_eq!(world.leaders(), vec!["master-1"]);
    // A crash and a clean start: the store still holds "master-1 1".
    world.nodes[0] = LeaseNode::new("master-1", config(), world.now);
    run_never_following_itself(&mut world, t0 + Duration::from_secs(6));
    assert_eq!(
        world.leaders(),
        vec!["master-1"],
        "leads again within a second"
    );
    assert_eq!(world.nodes[0].term(), 1, "under the same grant");
    run_never_following_itself(&mut world, t0 + Duration::from_secs(40));
    assert_eq!(world.leaders(), vec!["master-1"], "and keeps renewing it");
}

#[test]
fn a_grant_whose_reply_came_too_late_is_taken_back() {
    let mut node = LeaseNode::new("master-1", config(), Instant::now());
    let mut store = Store::default();
    let t0 = Instant::now();
    node.handle_timeout(t0);
    let Some(LeaseAction::Send(request)) = node.poll_action() else {
        panic!("asks for the lease")
    };
    // The store grants it, but the reply never arrives in time.
    store.execute(t0, &request.command);
    let mut now = t0;
    for _ in 0..20 {
        now = node.poll_timeout().unwrap();
        node.handle_timeout(now);
        while let Some(action) = node.poll_action() {
            if let LeaseAction::Send(request) = action {
                let reply = store.execute(now, &request.command);
                node.handle_reply(now, request.id, Ok(reply));
            }
        }
        assert_ne!(
            node.leader(),
            Some("master-1").filter(|_| node.role() != Role::Leader)
        );
        if node.role() == Role::Leader {
            break;
        }
    }
    assert_eq!(node.role(), Role::Leader, "took its own grant back");
    assert_eq!(node.term(), 1);
    assert!(
        now < t0 + config().lease_period,
        "well before the grant would expire"
    );
}
