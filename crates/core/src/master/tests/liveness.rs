//! Liveness: heartbeats keep a node online, silence takes it offline.

use super::*;

#[test]
fn the_master_keeps_each_agents_latest_status_and_metrics() {
    let t0 = Instant::now();
    let mut registry = Registry::new(config());
    registry.handle_message(t0, 1, register("agent-1", 7));
    let busy = Message::Heartbeat(Heartbeat {
        seq: 1,
        status: NodeStatus::Busy,
        uptime_ms: 0,
        metrics: BTreeMap::from([("commands_queued".into(), 4.0)]),
    });
    registry.handle_message(t0, 1, busy);
    let entry = |registry: &Registry| registry.nodes().next().unwrap().1.clone();
    assert_eq!(entry(&registry).status, NodeStatus::Busy);
    assert_eq!(entry(&registry).metrics["commands_queued"], 4.0);
    registry.handle_message(t0, 1, heartbeat(2));
    assert_eq!(entry(&registry).status, NodeStatus::Online);
    assert!(entry(&registry).metrics.is_empty());
    let acks: Vec<u64> = drain(&mut registry)
        .into_iter()
        .filter_map(|action| match action {
            MasterAction::Send {
                message: Message::HeartbeatAck(ack),
                ..
            } => Some(ack.config.version),
            _ => None,
        })
        .collect();
    assert_eq!(acks, [0, 0], "every ack names the config version");
}

#[test]
fn silence_for_max_miss_intervals_marks_offline_and_ends_the_session() {
    let t0 = Instant::now();
    let mut registry = Registry::new(config());
    registry.handle_message(t0, 1, register("agent-1", 7));
    drain(&mut registry);
    assert_eq!(registry.poll_timeout(), Some(t0 + Duration::from_secs(3)));
    registry.handle_timeout(t0 + Duration::from_millis(2999));
    assert_eq!(liveness(&registry), vec![Liveness::Online]);
    registry.handle_timeout(t0 + Duration::from_secs(3));
    assert_eq!(liveness(&registry), vec![Liveness::Offline]);
    assert_eq!(
        registry.poll_timeout(),
        None,
        "nothing online, nothing to watch"
    );
    assert_eq!(
        drain(&mut registry),
        [],
        "a cut link would not carry a close either"
    );
    // A heartbeat held up on the way arrives: the agent gave that session up, so it brings
    // nothing back, and the connection is closed.
    registry.handle_message(t0 + Duration::from_secs(5), 1, heartbeat(1));
    assert_eq!(liveness(&registry), vec![Liveness::Offline]);
    assert!(matches!(
        drain(&mut registry).as_slice(),
        [MasterAction::Close { session: 1, .. }]
    ));
    // A registration does.
    registry.handle_message(t0 + Duration::from_secs(6), 2, register("agent-1", 7));
    assert_eq!(liveness(&registry), vec![Liveness::Online]);
    assert_eq!(registry.poll_timeout(), Some(t0 + Duration::from_secs(9)));
}

#[test]
fn a_sweep_only_marks_the_silent_nodes() {
    let t0 = Instant::now();
    let mut registry = Registry::new(config());
    registry.handle_message(t0, 1, register("agent-1", 1));
    registry.handle_message(t0, 2, register("agent-2", 2));
    registry.handle_message(t0 + Duration::from_secs(2), 2, heartbeat(1));
    registry.handle_timeout(t0 + Duration::from_secs(3));
    assert_eq!(
        liveness(&registry),
        vec![Liveness::Offline, Liveness::Online]
    );
    assert_eq!(registry.poll_timeout(), Some(t0 + Duration::from_secs(5)));
}

#[test]
fn a_closed_session_leaves_the_node_to_the_liveness_rule() {
    let t0 = Instant::now();
    let mut registry = Registry::new(config());
    registry.handle_message(t0, 1, register("agent-1", 7));
    registry.handle_session_closed(t0, 1);
    assert_eq!(liveness(&registry), vec![Liveness::Online]);
    registry.handle_timeout(t0 + Duration::from_secs(3));
    assert_eq!(liveness(&registry), vec![Liveness::Offline]);
}

/// After each input, exactly the events a user reads on the master's timeline.
#[test]
fn events_report_each_registration_silence_return_and_goodbye() {
    use crate::timeline::{Event, MasterEvent};
    let reported = |registry: &mut Registry| -> Vec<Event> {
        std::iter::from_fn(|| registry.poll_event()).collect()
    };
    let t0 = Instant::now();
    let mut registry = Registry::new(config());
    registry.handle_message(t0, 1, register("agent-1", 7));
    let instance_id = "agent-1-host-7".to_string();
    assert_eq!(
        reported(&mut registry),
        [MasterEvent::NodeRegistered {
            agent: "agent-1".into(),
            instance_id: instance_id.clone()
        }
        .into()]
    );
    registry.handle_message(t0 + Duration::from_secs(1), 1, heartbeat(1));
    assert_eq!(reported(&mut registry), [], "a heartbeat is no news");
    registry.handle_timeout(t0 + Duration::from_secs(4));
    assert_eq!(
        reported(&mut registry),
        [MasterEvent::NodeOffline {
            agent: "agent-1".into(),
            instance_id: instance_id.clone(),
            silent_ms: 3000,
            will: false,
        }
        .into()]
    );
    registry.handle_message(t0 + Duration::from_secs(5), 1, heartbeat(2));
    assert_eq!(reported(&mut registry), [], "a stale heartbeat is no news");
    registry.handle_message(t0 + Duration::from_secs(5), 2, register("agent-1", 7));
    assert_eq!(
        reported(&mut registry),
        [
            MasterEvent::NodeRegistered {
                agent: "agent-1".into(),
                instance_id: instance_id.clone()
            }
            .into(),
            MasterEvent::NodeOnline {
                agent: "agent-1".into()
            }
            .into()
        ]
    );
    let goodbye = Message::Unregister(crate::wire::Unregister {
        reason: "shutdown".into(),
    });
    registry.handle_message(t0 + Duration::from_secs(5), 2, goodbye);
    assert_eq!(
        reported(&mut registry),
        [MasterEvent::NodeUnregistered {
            agent: "agent-1".into()
        }
        .into()]
    );
}

/// A transport's word that the agent is gone (an MQTT will) marks it offline at once, but
/// only for the session it is on: an older session's will says nothing of the new one.
#[test]
fn a_lost_agent_goes_offline_at_once_and_only_for_its_own_session() {
    use crate::timeline::{Event, MasterEvent};
    let reported = |registry: &mut Registry| -> Vec<Event> {
        std::iter::from_fn(|| registry.poll_event()).collect()
    };
    let t0 = Instant::now();
    let mut registry = Registry::new(config());
    registry.handle_message(t0, 1, register("agent-1", 7));
    reported(&mut registry);
    // Session 1's will, after the agent moved to session 2: nothing happens to it.
    registry.handle_message(t0, 2, register("agent-1", 7));
    reported(&mut registry);
    registry.handle_agent_lost(t0 + Duration::from_millis(100), 1);
    assert_eq!(reported(&mut registry), []);
    assert_eq!(registry.online_count(), 1);
    // Its own session's will: offline now, not after 3s of silence.
    registry.handle_agent_lost(t0 + Duration::from_millis(200), 2);
    assert_eq!(
        reported(&mut registry),
        [MasterEvent::NodeOffline {
            agent: "agent-1".into(),
            instance_id: "agent-1-host-7".into(),
            silent_ms: 200,
            will: true,
        }
        .into()]
    );
    assert_eq!(registry.online_count(), 0);
    // The sweep later finds nothing more to say.
    registry.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(reported(&mut registry), []);
}

/// What a test does to the registry, at some time after the previous step.
#[derive(Clone, Debug)]
enum Step {
    Register(usize),
    Heartbeat(usize),
    Close(usize),
    Lost(usize),
}

fn any_step() -> impl proptest::strategy::Strategy<Value = (u64, Step)> {
    use proptest::prelude::*;
    let agent = 0usize..5;
    let step = prop_oneof![
        1 => agent.clone().prop_map(Step::Register),
        4 => agent.clone().prop_map(Step::Heartbeat),
        1 => agent.clone().prop_map(Step::Close),
        1 => agent.prop_map(Step::Lost),
    ];
    // Steps up to 2s apart, often at the same instant: ties between deadlines matter.
    (prop_oneof![Just(0u64), 0u64..2_000], step)
}

proptest::proptest! {
    /// The liveness rule from the README, checked against a model of it rather than the
    /// sweep's own bookkeeping: driven as the shell drives it (a sweep whenever
    /// `poll_timeout` comes due), a node online and unheard for `max_miss` heartbeat
    /// intervals goes offline at exactly that moment, with that silence, never earlier or
    /// later, and the nodes that go silent at one sweep are reported in instance-id order.
    #[test]
    fn each_silent_node_goes_offline_at_exactly_its_deadline(
        steps in proptest::collection::vec(any_step(), 1..120),
    ) {
        use crate::timeline::{Event, MasterEvent};
        #[derive(Clone, Copy, Default)]
        struct Model {
            online: bool,
            heard: Option<Instant>,
            session: Option<SessionId>,
        }
        let offline_after = config().offline_after();
        let t0 = Instant::now();
        let mut registry = Registry::new(config());
        let mut model = [Model::default(); 5];
        let mut next_session = 0;
        let mut now = t0;
        let name = |agent: usize| format!("agent-{agent}");
        for (after_ms, step) in steps {
            now += Duration::from_millis(after_ms);
            // The shell's sweep task: every time the registry asks for, up to now.
            while let Some(at) = registry.poll_timeout().filter(|&at| at <= now) {
                registry.handle_timeout(at);
                let mut due: Vec<(String, u64)> = Vec::new();
                for (agent, m) in model.iter_mut().enumerate() {
                    let Some(heard) = m.heard.filter(|_| m.online) else { continue };
                    if heard + offline_after <= at {
                        proptest::prop_assert_eq!(heard + offline_after, at, "{} late", name(agent));
                        due.push((name(agent), offline_after.as_millis() as u64));
                        *m = Model { online: false, heard: m.heard, session: None };
                    }
                }
                let mut reported = Vec::new();
                while let Some(event) = registry.poll_event() {
                    if let Event::Master(MasterEvent::NodeOffline { agent, silent_ms, will: false, .. }) = event {
                        reported.push((agent, silent_ms));
                    }
                }
                proptest::prop_assert_eq!(reported, due, "sweep at {:?}", at - t0);
            }
            for m in model.iter().filter(|m| m.online) {
                let deadline = m.heard.expect("online nodes were heard") + offline_after;
                proptest::prop_assert!(registry.poll_timeout().is_some_and(|at| at <= deadline));
            }
            match step {
                Step::Register(agent) => {
                    next_session += 1;
                    registry.handle_message(now, next_session, register(&name(agent), 7));
                    model[agent] = Model { online: true, heard: Some(now), session: Some(next_session) };
                }
                Step::Heartbeat(agent) => {
                    let Some(session) = model[agent].session else { continue };
                    registry.handle_message(now, session, heartbeat(1));
                    model[agent].heard = Some(now);
                    model[agent].online = true;
                }
                Step::Close(agent) => {
                    let Some(session) = model[agent].session.take() else { continue };
                    registry.handle_session_closed(now, session);
                }
                Step::Lost(agent) => {
                    let Some(session) = model[agent].session.take() else { continue };
                    registry.handle_agent_lost(now, session);
                    model[agent].online = false;
                }
            }
            while registry.poll_event().is_some() {}
            drain(&mut registry);
        }
    }
}
