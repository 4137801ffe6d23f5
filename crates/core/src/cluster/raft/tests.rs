//! A pure multi-node harness over the election core: no simulator, no async. Messages wait in
//! a list the test delivers, drops, reorders and cuts; time jumps to the next deadline.

use super::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

struct Cluster {
    nodes: Vec<RaftNode<ChaCha8Rng>>,
    /// Each node's stable storage: the hard state it last asked to save.
    disks: Vec<HardState>,
    config: RaftConfig,
    seed: u64,
    restarts: u64,
    /// Messages in flight: (from, to, message).
    in_flight: Vec<(usize, usize, RaftMessage)>,
    /// `cut[a][b]`: messages from a to b are dropped.
    cut: Vec<Vec<bool>>,
    now: Instant,
    /// Every (term, leader) ever observed, for election safety.
    leaders: BTreeMap<u64, String>,
}

fn name(index: usize) -> String {
    format!("master-{}", index + 1)
}

impl Cluster {
    fn new(size: usize, config: RaftConfig, seed: u64) -> Cluster {
        let now = Instant::now();
        let members: Vec<String> = (0..size).map(name).collect();
        let nodes = (0..size)
            .map(|i| {
                let rng = ChaCha8Rng::seed_from_u64(seed ^ ((i as u64 + 1) * 0x9e37_79b9));
                RaftNode::new(&members[i], &members, config.clone(), rng, now)
            })
            .collect();
        Cluster {
            nodes,
            disks: vec![HardState::default(); size],
            config,
            seed,
            restarts: 0,
            in_flight: Vec::new(),
            cut: vec![vec![false; size]; size],
            now,
            leaders: BTreeMap::new(),
        }
    }

    fn index(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.me() == name).unwrap()
    }

    fn collect(&mut self) {
        for from in 0..self.nodes.len() {
            // Saved before anything is sent, as a driver must.
            if let Some(state) = self.nodes[from].poll_hard_state() {
                self.disks[from] = state;
            }
            while let Some((to, message)) = self.nodes[from].poll_message() {
                let to = self.index(&to);
                self.in_flight.push((from, to, message));
            }
            while self.nodes[from].poll_cluster_event().is_some() {}
            while self.nodes[from].poll_event().is_some() {}
        }
        self.check_safety();
    }

    /// Election safety: at most one leader per term, over the whole history.
    fn check_safety(&mut self) {
        for node in &self.nodes {
            if node.role() == Role::Leader {
                let previous = self
                    .leaders
                    .entry(node.term())
                    .or_insert(node.me().to_string());
                assert_eq!(
                    previous,
                    node.me(),
                    "two leaders in term {}: {previous} and {}",
                    node.term(),
                    node.me()
                );
            }
        }
    }

    /// Node `index` crashes and starts again; with `persist` it reads its disk back. Messages
    /// in flight to it reach the new incarnation.
    fn restart(&mut self, index: usize, persist: bool) {
        let index = index % self.nodes.len();
        self.restarts += 1;
        let members: Vec<String> = (0..self.nodes.len()).map(name).collect();
        let rng = ChaCha8Rng::seed_from_u64(self.seed ^ self.restarts.wrapping_mul(0x2545_f491));
        let mut node = RaftNode::new(
            &members[index],
            &members,
            self.config.clone(),
            rng,
            self.now,
        );
        if persist {
            node.restore(self.disks[index].clone());
        }
        self.nodes[index] = node;
        self.collect();
    }

    fn deliver(&mut self, index: usize) {
        if self.in_flight.is_empty() {
            return;
        }
        let (from, to, message) = self.in_flight.remove(index % self.in_flight.len());
        if !self.cut[from][to] {
            let from = name(from);
            self.nodes[to].handle_message(self.now, &from, message);
        }
        self.collect();
    }

    fn drop_message(&mut self, index: usize) {
        if !self.in_flight.is_empty() {
            let len = self.in_flight.len();
            self.in_flight.remove(index % len);
        }
    }

    /// Moves time forward by `by`, firing every deadline on the way in order.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.poll_timeout())
                .min()
                .filter(|&at| at <= end);
            let Some(at) = next else { break };
            self.now = self.now.max(at);
            for node in &mut self.nodes {
                node.handle_timeout(self.now);
            }
            self.collect();
        }
        self.now = end;
    }

    fn partition(&mut self, mask: u32) {
        let size = self.nodes.len();
        for a in 0..size {
            for b in 0..size {
                self.cut[a][b] = (mask >> a & 1) != (mask >> b & 1);
            }
        }
    }

    fn heal(&mut self) {
        for row in &mut self.cut {
            row.fill(false);
        }
    }

    /// A fair network: every message arrives `latency` after it was sent, in order.
    fn run_fair(&mut self, duration: Duration, latency: Duration) {
        let end = self.now + duration;
        while self.now < end {
            let batch = std::mem::take(&mut self.in_flight);
            self.advance(latency);
            for (from, to, message) in batch {
                if !self.cut[from][to] {
                    let from = name(from);
                    self.nodes[to].handle_message(self.now, &from, message);
                }
            }
            self.collect();
        }
    }

    fn leaders_now(&self) -> Vec<(String, u64)> {
        self.nodes
            .iter()
            .filter(|n| n.role() == Role::Leader)
            .map(|n| (n.me().to_string(), n.term()))
            .collect()
    }

    /// The one leader every node agrees on, if there is one.
    fn agreed_leader(&self) -> Option<String> {
        let leader = self.nodes[0].leader()?.to_string();
        self.nodes
            .iter()
            .all(|n| n.leader() == Some(leader.as_str()))
            .then_some(leader)
    }
}

const LATENCY: Duration = Duration::from_millis(5);

#[test]
fn three_nodes_elect_one_leader_that_everyone_follows() {
    let mut cluster = Cluster::new(3, RaftConfig::default(), 1);
    cluster.run_fair(Duration::from_secs(10), LATENCY);
    let leaders = cluster.leaders_now();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    assert_eq!(
        cluster.agreed_leader().as_deref(),
        Some(leaders[0].0.as_str())
    );
    assert_eq!(
        leaders[0].1, 1,
        "pre-vote avoids wasted terms on a clean start"
    );
}

#[test]
fn a_leader_cut_off_steps_down_and_the_majority_elects_another() {
    let mut cluster = Cluster::new(3, RaftConfig::default(), 2);
    cluster.run_fair(Duration::from_secs(10), LATENCY);
    let old = cluster.agreed_leader().unwrap();
    let old_index = cluster.index(&old);
    cluster.partition(1 << old_index);
    cluster.run_fair(Duration::from_secs(10), LATENCY);
    assert_ne!(
        cluster.nodes[old_index].role(),
        Role::Leader,
        "check-quorum"
    );
    let leaders = cluster.leaders_now();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0].0, old);
    let new_term = leaders[0].1;
    // With pre-vote the isolated node never raised its term, so rejoining changes nothing.
    assert!(cluster.nodes[old_index].term() < new_term);
    cluster.heal();
    cluster.run_fair(Duration::from_secs(10), LATENCY);
    assert_eq!(
        cluster.leaders_now(),
        leaders,
        "the rejoining node did not disrupt"
    );
}

#[test]
fn without_pre_vote_a_returning_node_disrupts_the_leader() {
    let config = RaftConfig {
        pre_vote: false,
        ..RaftConfig::default()
    };
    let mut cluster = Cluster::new(3, config, 3);
    cluster.run_fair(Duration::from_secs(10), LATENCY);
    let leader = cluster.agreed_leader().unwrap();
    let follower = (0..3).find(|&i| name(i) != leader).unwrap();
    cluster.partition(1 << follower);
    cluster.run_fair(Duration::from_secs(20), LATENCY);
    let inflated = cluster.nodes[follower].term();
    assert!(
        inflated > 3,
        "the isolated follower keeps starting elections: term {inflated}"
    );
    cluster.heal();
    cluster.run_fair(Duration::from_secs(10), LATENCY);
    let leaders = cluster.leaders_now();
    assert_eq!(leaders.len(), 1);
    assert!(
        leaders[0].1 >= inflated,
        "the old leader was deposed by the higher term"
    );
}

#[test]
fn a_late_answer_counts_from_when_its_heartbeat_left() {
    let mut cluster = Cluster::new(3, RaftConfig::default(), 4);
    cluster.run_fair(Duration::from_secs(10), LATENCY);
    let leader = cluster.index(&cluster.agreed_leader().unwrap());
    let until = cluster.nodes[leader].leading_until().unwrap();
    let term = cluster.nodes[leader].term();
    // An answer to the first round of its term, arriving now: it says nothing about now.
    let later = cluster.now + Duration::from_secs(30);
    let follower = name((leader + 1) % 3);
    let node = &mut cluster.nodes[leader];
    let version = node.state.version;
    let stale = RaftMessage::HeartbeatResponse {
        term,
        version,
        round: node.rounds.front().unwrap().0,
    };
    node.handle_message(later, &follower, stale);
    assert!(
        node.leading_until().unwrap() <= until,
        "the stale answer gave it no time"
    );
    assert!(!node.has_quorum(later));
}

#[test]
fn a_leaders_authority_lapses_with_its_quorum() {
    let mut cluster = Cluster::new(3, RaftConfig::default(), 4);
    cluster.run_fair(Duration::from_secs(10), LATENCY);
    let leader = cluster.index(&cluster.agreed_leader().unwrap());
    let window = RaftConfig::default().election_timeout.0;
    let until = cluster.nodes[leader]
        .leading_until()
        .expect("a leader has a bound");
    assert!(until > cluster.now, "it heard a majority lately");
    assert!(until <= cluster.now + window, "no more than a window ahead");
    for node in (0..3).filter(|&i| i != leader) {
        assert_eq!(
            cluster.nodes[node].leading_until(),
            None,
            "a follower has none"
        );
    }
    cluster.partition(1 << leader);
    cluster.run_fair(Duration::from_secs(10), LATENCY);
    assert_eq!(
        cluster.nodes[leader].leading_until(),
        None,
        "it stepped down"
    );
}

#[test]
fn without_check_quorum_a_cut_off_leader_keeps_believing() {
    let config = RaftConfig {
        pre_vote: false,
        check_quorum: false,
        ..RaftConfig::default()
    };
    let mut cluster = Cluster::new(3, config, 4);
    cluster.run_fair(Duration::from_secs(10), LATENCY);
    let old = cluster.agreed_leader().unwrap();
    cluster.partition(1 << cluster.index(&old));
    cluster.run_fair(Duration::from_secs(10), LATENCY);
    let leaders = cluster.leaders_now();
    assert_eq!(
        leaders.len(),
        2,
        "two nodes lead, in different terms: {leaders:?}"
    );
    assert_ne!(leaders[0].1, leaders[1].1);
}

#[test]
fn five_nodes_split_two_two_one_elect_no_one() {
    let mut cluster = Cluster::new(5, RaftConfig::default(), 5);
    cluster.partition(0b00011);
    // The third group, node 4, is cut from both: partition() splits only in two, so cut it too.
    for other in 0..5 {
        if other != 4 {
            cluster.cut[4][other] = true;
            cluster.cut[other][4] = true;
        }
    }
    cluster.run_fair(Duration::from_secs(30), LATENCY);
    assert!(cluster.leaders_now().is_empty());
    cluster.heal();
    cluster.run_fair(Duration::from_secs(15), LATENCY);
    assert_eq!(cluster.leaders_now().len(), 1);
}

#[test]
fn a_released_leader_hands_over() {
    let mut cluster = Cluster::new(3, RaftConfig::default(), 6);
    cluster.run_fair(Duration::from_secs(10), LATENCY);
    let old = cluster.agreed_leader().unwrap();
    let index = cluster.index(&old);
    let now = cluster.now;
    let successor = cluster.nodes[index].release(now);
    let successor = successor.expect("a follower holds everything the leader holds");
    cluster.collect();
    // TimeoutNow, then one round of votes: a leader within a few message delays, not after
    // an election timeout.
    cluster.run_fair(LATENCY * 8, LATENCY);
    let leaders = cluster.leaders_now();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    assert_eq!(leaders[0].0, successor);
    assert_ne!(successor, old);
}

/// The timeline events a node has queued since the last call.
fn reported(node: &mut RaftNode<ChaCha8Rng>) -> Vec<Event> {
    std::iter::from_fn(|| node.poll_event()).collect()
}

#[test]
fn events_report_the_election_in_order() {
    let now = Instant::now();
    let members = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let config = RaftConfig {
        pre_vote: false,
        ..RaftConfig::default()
    };
    let mut node = RaftNode::new("a", &members, config, ChaCha8Rng::seed_from_u64(1), now);
    assert_eq!(
        reported(&mut node),
        [],
        "nothing happens before the first timeout"
    );
    let at = node.poll_timeout().unwrap();
    node.handle_timeout(at);
    assert_eq!(
        reported(&mut node),
        [RaftEvent::ElectionStarted { term: 1 }.into()]
    );
    node.handle_message(
        at,
        "b",
        RaftMessage::VoteResponse {
            term: 1,
            granted: true,
        },
    );
    assert_eq!(
        reported(&mut node),
        [RaftEvent::BecameLeader { term: 1, votes: 2 }.into()]
    );
    let changes: Vec<_> = std::iter::from_fn(|| node.poll_cluster_event()).collect();
    assert_eq!(
        changes,
        vec![
            ClusterEvent::StartUp,
            ClusterEvent::ElectionStart,
            ClusterEvent::ElectionFinish,
            ClusterEvent::SignMaster
        ]
    );
    assert_eq!(node.role(), Role::Leader);
    assert_eq!((node.term(), node.leader()), (1, Some("a")));
    // A higher term deposes it; a heartbeat of that term makes it follow.
    node.handle_message(
        at,
        "c",
        RaftMessage::Heartbeat {
            term: 3,
            commit: Version::default(),
            state: None,
            round: 1,
        },
    );
    assert_eq!(
        reported(&mut node),
        [
            RaftEvent::SteppedDown {
                term: 1,
                reason: "higher term".into()
            }
            .into(),
            RaftEvent::BecameFollower {
                term: 3,
                leader: "c".into()
            }
            .into()
        ]
    );
}

#[test]
fn events_report_votes_granted_denied_and_pre_votes() {
    let now = Instant::now();
    let members = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let mut node = RaftNode::new(
        "a",
        &members,
        RaftConfig::default(),
        ChaCha8Rng::seed_from_u64(2),
        now,
    );
    node.restore(HardState {
        term: 4,
        voted_for: None,
    });
    assert_eq!(
        reported(&mut node),
        [RaftEvent::StateRestored {
            term: 4,
            voted_for: None
        }
        .into()]
    );
    node.handle_message(
        now,
        "b",
        RaftMessage::RequestVote {
            term: 5,
            version: Version::default(),
        },
    );
    node.handle_message(
        now,
        "c",
        RaftMessage::RequestVote {
            term: 5,
            version: Version::default(),
        },
    );
    node.handle_message(
        now,
        "c",
        RaftMessage::RequestVote {
            term: 4,
            version: Version::default(),
        },
    );
    assert_eq!(
        reported(&mut node),
        [
            RaftEvent::VoteGranted {
                term: 5,
                candidate: "b".into()
            }
            .into(),
            RaftEvent::VoteDenied {
                term: 5,
                candidate: "c".into(),
                reason: "voted for b".into()
            }
            .into(),
            RaftEvent::VoteDenied {
                term: 4,
                candidate: "c".into(),
                reason: "stale term".into()
            }
            .into(),
        ]
    );
    // With pre-vote, a timeout asks first, for the next term, and changes nothing yet.
    let at = node.poll_timeout().unwrap();
    node.handle_timeout(at);
    assert_eq!(
        reported(&mut node),
        [RaftEvent::PreVoteStarted { term: 6 }.into()]
    );
    assert_eq!(node.term(), 5);
    node.handle_message(
        at,
        "b",
        RaftMessage::PreVoteResponse {
            term: 6,
            granted: true,
        },
    );
    assert_eq!(
        reported(&mut node),
        [RaftEvent::ElectionStarted { term: 6 }.into()]
    );
}

/// A follower that voted in a term, then crashed, must not vote again in that term.
#[test]
fn a_restarted_node_keeps_its_vote_only_if_it_restores_it() {
    let members: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let now = Instant::now();
    let config = RaftConfig {
        pre_vote: false,
        ..RaftConfig::default()
    };
    let boot = |seed| {
        let rng = ChaCha8Rng::seed_from_u64(seed);
        RaftNode::new("b", &members, config.clone(), rng, now)
    };
    let mut b = boot(1);
    b.handle_message(
        now,
        "a",
        RaftMessage::RequestVote {
            term: 5,
            version: Version::default(),
        },
    );
    let saved = b.poll_hard_state().expect("a vote must be saved");
    assert_eq!(
        saved,
        HardState {
            term: 5,
            voted_for: Some("a".into())
        }
    );
    let vote_of = |node: &mut RaftNode<ChaCha8Rng>| {
        std::iter::from_fn(|| node.poll_message())
            .find_map(|(_, message)| match message {
                RaftMessage::VoteResponse { granted, .. } => Some(granted),
                _ => None,
            })
            .expect("answers the vote")
    };
    assert!(vote_of(&mut b), "votes for a");

    let mut forgetful = boot(2);
    forgetful.handle_message(
        now,
        "c",
        RaftMessage::RequestVote {
            term: 5,
            version: Version::default(),
        },
    );
    assert!(vote_of(&mut forgetful), "forgot, and votes twice in term 5");

    let mut restored = boot(3);
    restored.restore(saved);
    restored.handle_message(
        now,
        "c",
        RaftMessage::RequestVote {
            term: 5,
            version: Version::default(),
        },
    );
    assert!(!vote_of(&mut restored), "remembers its vote for a");
    assert_eq!(restored.poll_hard_state(), None, "nothing new to save");
}

#[derive(Clone, Debug)]
enum Op {
    Deliver(usize),
    Drop(usize),
    Advance(u64),
    Partition(u32),
    Heal,
    Restart(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<usize>().prop_map(Op::Deliver),
        2 => any::<usize>().prop_map(Op::Drop),
        3 => (1u64..2000).prop_map(Op::Advance),
        1 => any::<u32>().prop_map(Op::Partition),
        1 => Just(Op::Heal),
        1 => any::<usize>().prop_map(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Election safety under any schedule of drops, delays, reorders, partitions and restarts
    /// (each restarted node reads back its saved term and vote), and liveness once the network
    /// heals: one leader everyone follows within 20 seconds.
    #[test]
    fn elections_are_safe_under_chaos_and_live_after_heal(
        size in prop_oneof![Just(3usize), Just(5usize)],
        pre_vote in any::<bool>(),
        check_quorum in any::<bool>(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 0..300),
    ) {
        let config = RaftConfig { pre_vote, check_quorum, ..RaftConfig::default() };
        let mut cluster = Cluster::new(size, config, seed);
        for op in ops {
            match op {
                Op::Deliver(i) => cluster.deliver(i),
                Op::Drop(i) => cluster.drop_message(i),
                Op::Advance(ms) => cluster.advance(Duration::from_millis(ms)),
                Op::Partition(mask) => cluster.partition(mask),
                Op::Heal => cluster.heal(),
                Op::Restart(i) => cluster.restart(i, true),
            }
        }
        cluster.heal();
        cluster.run_fair(Duration::from_secs(20), LATENCY);
        let leaders = cluster.leaders_now();
        // Without check-quorum a stale leader lingers only until heartbeat responses carry
        // the current term back to it, which a healed network does.
        prop_assert_eq!(leaders.len(), 1, "{:?}", leaders);
        prop_assert!(cluster.agreed_leader().is_some(), "all nodes follow one leader");
    }
}

/// Whether the last vote `node` sent was granted.
fn last_vote(node: &mut RaftNode<ChaCha8Rng>) -> Option<bool> {
    std::iter::from_fn(|| node.poll_message())
        .filter_map(|(_, message)| match message {
            RaftMessage::VoteResponse { granted, .. } => Some(granted),
            _ => None,
        })
        .last()
}

#[test]
fn a_node_that_lost_its_disk_votes_only_once_caught_up_and_past_its_old_terms() {
    let now = Instant::now();
    let members = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let mut node = RaftNode::new(
        "b",
        &members,
        RaftConfig::default(),
        ChaCha8Rng::seed_from_u64(3),
        now,
    );
    node.recover();
    let ask = |node: &mut RaftNode<ChaCha8Rng>, term| {
        let version = Version { term: 9, index: 9 };
        node.handle_message(now, "a", RaftMessage::RequestVote { term, version });
        last_vote(node)
    };
    assert_eq!(
        ask(&mut node, 5),
        Some(false),
        "not caught up: it may have voted in 5"
    );
    // No election of its own either, however long it waits.
    node.handle_timeout(now + Duration::from_secs(60));
    assert!(!matches!(node.role(), Role::Candidate | Role::PreCandidate));
    // c leads term 5. A heartbeat without c's state (c thinks b still holds what it acked
    // before b lost its disk) does not bring b up to date: its vote could elect a candidate
    // that lacks what b had helped commit (exploration: raft template, seed 4621).
    let bare = RaftMessage::Heartbeat {
        term: 5,
        commit: Version { term: 5, index: 3 },
        state: None,
        round: 1,
    };
    node.handle_message(now, "c", bare);
    assert_eq!(ask(&mut node, 5), Some(false));
    let mut events = reported(&mut node);
    let refusal = events.iter().find_map(|event| match event {
        Event::Raft(RaftEvent::VoteDenied { reason, .. }) => Some(reason),
        _ => None,
    });
    assert_eq!(
        refusal.map(String::as_str),
        Some("lost its disk; no leader has brought it up to date"),
        "heard a leader, holds nothing"
    );
    // c sends its state; with a and c heard, b's floor is 5.
    let state = Snapshot {
        version: Version { term: 5, index: 3 },
        state: b"ledger".to_vec(),
    };
    let heartbeat = RaftMessage::Heartbeat {
        term: 5,
        commit: state.version,
        state: Some(state),
        round: 2,
    };
    node.handle_message(now, "c", heartbeat);
    let installed = std::iter::from_fn(|| node.poll_output())
        .any(|output| matches!(output, Output::Install(_)));
    assert!(installed);
    assert_eq!(
        ask(&mut node, 5),
        Some(false),
        "term 5 it may have voted in"
    );
    assert_eq!(ask(&mut node, 6), Some(true), "past it");
    events.extend(reported(&mut node));
    assert!(events.contains(&RaftEvent::Recovering {}.into()));
    assert!(events.contains(&RaftEvent::Recovered { floor: 5 }.into()));
}

/// Raft retries an RPC that got no answer: a candidate asks again, every heartbeat interval,
/// the peers that have not answered its request, and only those.
#[test]
fn a_candidate_asks_again_only_those_that_did_not_answer() {
    let members: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    let now = Instant::now();
    let config = RaftConfig {
        pre_vote: false,
        ..RaftConfig::default()
    };
    let rng = ChaCha8Rng::seed_from_u64(1);
    let mut a = RaftNode::new("a", &members, config.clone(), rng, now);
    let start = a.poll_timeout().unwrap();
    a.handle_timeout(start);
    let sent = |node: &mut RaftNode<ChaCha8Rng>| -> Vec<String> {
        std::iter::from_fn(|| node.poll_message())
            .filter(|(_, message)| matches!(message, RaftMessage::RequestVote { term: 1, .. }))
            .map(|(to, _)| to)
            .collect()
    };
    assert_eq!(sent(&mut a), ["b", "c", "d", "e"]);
    let answer = |granted| RaftMessage::VoteResponse { term: 1, granted };
    a.handle_message(start, "b", answer(false));
    a.handle_message(start, "c", answer(true));
    let again = a.poll_timeout().unwrap();
    assert_eq!(
        again,
        start + config.heartbeat_interval,
        "before its election times out"
    );
    a.handle_timeout(again);
    assert_eq!(sent(&mut a), ["d", "e"], "b and c answered");
    a.handle_message(again, "d", answer(true));
    assert_eq!(a.role(), Role::Leader, "d's late answer makes a majority");
    assert_eq!(sent(&mut a), Vec::<String>::new());
}
