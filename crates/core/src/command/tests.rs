use super::*;
use proptest::prelude::*;

fn command(id: &str, name: &str, args: &[(&str, &str)]) -> Command {
    Command {
        request_id: id.to_string(),
        name: name.to_string(),
        args: (args.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        timeout_ms: 1000,
    }
}

fn replies(steps: &[Step]) -> Vec<(String, Outcome)> {
    (steps.iter())
        .filter_map(|step| match step {
            Step::Reply(result) => Some((result.request_id.clone(), result.outcome)),
            _ => None,
        })
        .collect()
}

#[test]
fn built_in_handlers_answer_and_unknown_names_say_so() {
    let now = Instant::now();
    let mut executor = Executor::new(ExecutorConfig::default());
    let echo = executor.receive(now, command("m-1", "echo", &[("a", "1"), ("b", "2")]));
    let Some(Step::Reply(result)) = echo.last() else {
        panic!("{echo:?}")
    };
    assert_eq!(
        (result.outcome, result.output.as_str()),
        (Outcome::Ok, "a=1 b=2")
    );
    let fail = executor.receive(now, command("m-2", "fail", &[("message", "disk full")]));
    assert_eq!(replies(&fail), [("m-2".to_string(), Outcome::Error)]);
    let unknown = executor.receive(now, command("m-3", "reboot", &[]));
    assert_eq!(
        replies(&unknown),
        [("m-3".to_string(), Outcome::UnknownCommand)]
    );
    let bad = executor.receive(now, command("m-4", "sleep", &[("ms", "soon")]));
    assert_eq!(replies(&bad), [("m-4".to_string(), Outcome::Error)]);
}

#[test]
fn sleep_takes_its_time_and_a_slow_one_times_out() {
    let now = Instant::now();
    let mut executor = Executor::new(ExecutorConfig::default());
    let steps = executor.receive(now, command("m-1", "sleep", &[("ms", "300")]));
    let started = Step::Started {
        request_id: "m-1".into(),
        name: "sleep".into(),
    };
    assert_eq!(steps, [started]);
    assert_eq!(
        executor.next_deadline(),
        Some(now + Duration::from_millis(300))
    );
    assert!(executor.poll(now + Duration::from_millis(299)).is_empty());
    let done = executor.poll(now + Duration::from_millis(300));
    let Some(Step::Reply(result)) = done.first() else {
        panic!("{done:?}")
    };
    assert_eq!((result.outcome, result.duration_ms), (Outcome::Ok, 300));

    executor.receive(now, command("m-2", "sleep", &[("ms", "5000")]));
    assert_eq!(
        executor.next_deadline(),
        Some(now + Duration::from_millis(1000))
    );
    let late = executor.poll(now + Duration::from_millis(1000));
    assert_eq!(replies(&late), [("m-2".to_string(), Outcome::Timeout)]);
    let after = executor.poll(now + Duration::from_secs(5));
    assert!(after.is_empty(), "stays timed out: {after:?}");
    assert_eq!(
        executor.status(),
        NodeStatus::Degraded,
        "a timeout degrades the agent"
    );
    executor.receive(now, command("m-3", "fail", &[]));
    let status = executor.receive(now, command("m-4", "status", &[]));
    let Some(Step::Reply(report)) = status.last() else {
        panic!("{status:?}")
    };
    assert_eq!(
        report.output, "status=degraded running=0 queued=0",
        "an error is the command's, not the agent's"
    );
    executor.receive(now, command("m-5", "echo", &[]));
    assert_eq!(
        executor.status(),
        NodeStatus::Online,
        "until a command finishes ok"
    );
}

#[test]
fn a_full_agent_queues_then_refuses_and_is_busy() {
    let now = Instant::now();
    let config = ExecutorConfig {
        max_concurrent: 1,
        queue_limit: 2,
        remember: 16,
        ..ExecutorConfig::default()
    };
    let mut executor = Executor::new(config);
    let sleep = |id: &str| command(id, "sleep", &[("ms", "100")]);
    assert_eq!(executor.receive(now, sleep("m-1")).len(), 1, "starts");
    assert!(executor.receive(now, sleep("m-2")).is_empty(), "queued");
    assert!(!executor.is_busy());
    assert!(executor.receive(now, sleep("m-3")).is_empty(), "queued");
    assert!(executor.is_busy());
    let refused = executor.receive(now, sleep("m-4"));
    assert_eq!(replies(&refused), [("m-4".to_string(), Outcome::Error)]);
    // m-1 done: its reply, then m-2 starts.
    let next = executor.poll(now + Duration::from_millis(100));
    assert_eq!(replies(&next), [("m-1".to_string(), Outcome::Ok)]);
    assert!(matches!(&next[1], Step::Started { request_id, .. } if request_id == "m-2"));
    assert_eq!(executor.load(), (1, 1));
}

#[test]
fn a_duplicate_never_runs_twice() {
    let now = Instant::now();
    let mut executor = Executor::new(ExecutorConfig::default());
    let sleep = command("m-1", "sleep", &[("ms", "100")]);
    executor.receive(now, sleep.clone());
    assert_eq!(
        executor.receive(now, sleep.clone()),
        [Step::Duplicate {
            request_id: "m-1".into(),
            stored: None
        }]
    );
    executor.poll(now + Duration::from_millis(100));
    let again = executor.receive(now, sleep);
    let [Step::Duplicate {
        stored: Some(result),
        ..
    }] = again.as_slice()
    else {
        panic!("{again:?}")
    };
    assert_eq!(result.outcome, Outcome::Ok);
}

#[test]
fn the_outbox_keeps_commands_until_their_result_and_survives_a_restart() {
    let mut outbox = Outbox::new("master-2");
    let args = BTreeMap::new();
    let first = outbox.accept("agent-1", "echo", args.clone(), Duration::from_secs(1));
    let second = outbox.accept("agent-1", "sleep", args.clone(), Duration::from_secs(1));
    outbox.accept("agent-2", "echo", args, Duration::from_secs(1));
    assert_eq!(first.request_id, "master-2-1");
    let ids = |commands: Vec<&Pending>| -> Vec<String> {
        (commands.into_iter())
            .map(|p| p.command.request_id.clone())
            .collect()
    };
    assert_eq!(
        ids(outbox.for_agent("agent-1")),
        ["master-2-1", "master-2-2"]
    );

    // What is written names no master: a restarted master reads it back under its own name.
    let written: Outbox = serde_json::from_str(&serde_json::to_string(&outbox).unwrap()).unwrap();
    let mut restored = Outbox::new("master-2");
    restored.replace_with(written);
    assert_eq!(restored, outbox);
    let mut outbox = restored;
    let result = |command: &Command| CommandResult {
        request_id: command.request_id.clone(),
        outcome: Outcome::Ok,
        output: String::new(),
        duration_ms: 0,
    };
    assert_eq!(
        outbox.receive(&result(&first)),
        Received::First {
            agent: "agent-1".into()
        }
    );
    assert_eq!(outbox.receive(&result(&first)), Received::Again);
    assert_eq!(ids(outbox.for_agent("agent-1")), ["master-2-2"]);
    let mut stranger = result(&second);
    stranger.request_id = "master-9-1".into();
    assert_eq!(outbox.receive(&stranger), Received::Unknown);
    let next = outbox.accept("agent-1", "echo", BTreeMap::new(), Duration::from_secs(1));
    assert_eq!(next.request_id, "master-2-4", "ids go on after a restart");
    assert_eq!(outbox.pending(), 3);
}

#[test]
fn a_successor_takes_over_what_is_pending_and_what_was_answered_in_order() {
    let args = BTreeMap::new;
    let second = Duration::from_secs(1);
    let mut old = Outbox::new("master-1");
    let answered = old.accept("agent-1", "echo", args(), second);
    let first = old.accept("agent-2", "echo", args(), second);
    let result = CommandResult {
        request_id: answered.request_id.clone(),
        outcome: Outcome::Ok,
        output: String::new(),
        duration_ms: 0,
    };
    old.receive(&result);
    for _ in 0..9 {
        old.accept("agent-3", "echo", args(), second);
    }
    let tenth = old.accept("agent-2", "echo", args(), second);

    // A follower copies the leader's outbox as it is replicated; when it leads, it is its own.
    let mut new = Outbox::new("master-2");
    new.replace_with(old.clone());
    assert!(new.knows(&answered.request_id) && new.knows(&first.request_id));
    assert_eq!(
        new.receive(&result),
        Received::Again,
        "its result was taken"
    );
    let own = new.accept("agent-2", "echo", args(), second);
    assert_eq!(
        own.request_id, "master-2-13",
        "the successor names ids after itself, and the count goes on"
    );
    let ids: Vec<String> = (new.for_agent("agent-2").into_iter())
        .map(|p| p.command.request_id.clone())
        .collect();
    assert_eq!(
        ids,
        [first.request_id, tenth.request_id, own.request_id],
        "oldest first, whichever master numbered them"
    );
}

/// What the network does to one message, or to the connection.
#[derive(Clone, Debug)]
enum Net {
    /// Deliver the oldest message in flight.
    Deliver,
    /// Lose the oldest message in flight.
    Drop,
    /// Deliver a copy of the oldest message in flight and keep it in flight.
    Duplicate,
    /// The agent reconnects: the master sends every pending command again.
    Reconnect,
    /// Time passes: running sleeps finish.
    Tick,
    /// The leader's outbox is handed over and a new master leads with it: what was in flight
    /// is lost, and the new leader sends every pending command again.
    Failover,
}

fn net() -> impl Strategy<Value = Net> {
    prop_oneof![
        4 => Just(Net::Deliver),
        2 => Just(Net::Drop),
        2 => Just(Net::Duplicate),
        1 => Just(Net::Reconnect),
        2 => Just(Net::Tick),
        1 => Just(Net::Failover),
    ]
}

proptest! {
    /// Random drops, duplicates, reconnects and failovers (the outbox handed to a new master)
    /// between the masters and one agent: no command ever starts twice, no result is taken
    /// twice, and once the network behaves (reconnect, deliver everything) every command has
    /// run exactly once and nothing is pending.
    #[test]
    fn at_least_once_delivery_has_exactly_once_effect(
        commands in 1usize..8,
        sleeps in proptest::collection::vec(any::<bool>(), 8),
        script in proptest::collection::vec(net(), 0..80),
    ) {
        let start = Instant::now();
        let mut now = start;
        let mut outbox = Outbox::new("master-1");
        let mut leaders = 1;
        let config = ExecutorConfig {
            max_concurrent: 2,
            queue_limit: 16,
            remember: 64,
            ..ExecutorConfig::default()
        };
        let mut executor = Executor::new(config);
        // Messages in flight, either way, in order.
        let mut to_agent: VecDeque<Command> = VecDeque::new();
        let mut to_master: VecDeque<CommandResult> = VecDeque::new();
        let mut started: BTreeMap<String, usize> = BTreeMap::new();
        let mut taken: BTreeMap<String, usize> = BTreeMap::new();
        for (i, sleep) in sleeps.iter().take(commands).enumerate() {
            let (name, args) = if *sleep {
                ("sleep", BTreeMap::from([("ms".to_string(), format!("{}", 10 + i))]))
            } else {
                ("echo", BTreeMap::new())
            };
            to_agent.push_back(outbox.accept("agent-1", name, args, Duration::from_secs(60)));
        }
        let apply = |steps: Vec<Step>,
                         started: &mut BTreeMap<String, usize>,
                         to_master: &mut VecDeque<CommandResult>| {
            for step in steps {
                match step {
                    Step::Started { request_id, .. } => {
                        *started.entry(request_id).or_default() += 1;
                    }
                    Step::Reply(result) => to_master.push_back(result),
                    Step::Duplicate { stored: Some(result), .. } => to_master.push_back(result),
                    Step::Duplicate { stored: None, .. } => {}
                    Step::RunExternal(command) => panic!("no external commands here: {command:?}"),
                }
            }
        };
        // Then the network behaves: a few rounds of reconnect, deliver all, let time pass.
        let round = [Net::Reconnect].into_iter()
            .chain(std::iter::repeat_n(Net::Deliver, 40))
            .chain([Net::Tick, Net::Tick]);
        let settle: Vec<Net> = (0..4).flat_map(|_| round.clone()).collect();
        for action in script.into_iter().chain(settle) {
            match action {
                Net::Deliver | Net::Duplicate => {
                    let keep = matches!(action, Net::Duplicate);
                    if let Some(command) = if keep { to_agent.front().cloned() } else { to_agent.pop_front() } {
                        let steps = executor.receive(now, command);
                        apply(steps, &mut started, &mut to_master);
                    }
                    let reply = if keep { to_master.front().cloned() } else { to_master.pop_front() };
                    if let Some(result) = reply {
                        if let Received::First { .. } = outbox.receive(&result) {
                            *taken.entry(result.request_id.clone()).or_default() += 1;
                        }
                    }
                }
                Net::Drop => {
                    to_agent.pop_front();
                    to_master.pop_front();
                }
                Net::Reconnect => {
                    to_agent.clear();
                    to_agent.extend(outbox.for_agent("agent-1").into_iter().map(|p| p.command.clone()));
                }
                Net::Tick => {
                    now += Duration::from_millis(50);
                    let steps = executor.poll(now);
                    apply(steps, &mut started, &mut to_master);
                }
                Net::Failover => {
                    leaders += 1;
                    let mut next = Outbox::new(&format!("master-{leaders}"));
                    next.replace_with(outbox.clone());
                    outbox = next;
                    to_agent.clear();
                    to_master.clear();
                    to_agent.extend(outbox.for_agent("agent-1").into_iter().map(|p| p.command.clone()));
                }
            }
            prop_assert!(started.values().all(|&n| n == 1), "started twice: {started:?}");
            prop_assert!(taken.values().all(|&n| n == 1), "taken twice: {taken:?}");
        }
        prop_assert_eq!(outbox.pending(), 0, "still pending after the network behaved");
        prop_assert_eq!(started.len(), commands);
        prop_assert_eq!(taken.len(), commands);
    }
}

/// A deployment's own command: the executor says when to start it, takes its result back, and
/// holds it to the same slot, timeout and duplicate suppression as a built-in.
#[test]
fn an_external_command_runs_in_the_shell_under_the_executors_rules() {
    let now = Instant::now();
    let config = ExecutorConfig {
        max_concurrent: 1,
        external: BTreeSet::from(["upper".to_string()]),
        ..ExecutorConfig::default()
    };
    let mut executor = Executor::new(config);
    let upper = command("m-1", "upper", &[("text", "hi")]);
    let steps = executor.receive(now, upper.clone());
    assert_eq!(
        steps,
        [
            Step::Started {
                request_id: "m-1".into(),
                name: "upper".into()
            },
            Step::RunExternal(upper.clone()),
        ]
    );
    assert_eq!(executor.next_deadline(), Some(now + Duration::from_secs(1)));
    // Its slot is taken: an echo waits for it.
    assert!(executor
        .receive(now, command("m-2", "echo", &[]))
        .is_empty());
    let copy = executor.receive(now, upper.clone());
    assert!(
        matches!(&copy[..], [Step::Duplicate { stored: None, .. }]),
        "{copy:?}"
    );
    let later = now + Duration::from_millis(10);
    let steps = executor.complete(later, "m-1", Outcome::Ok, "HI".into());
    assert_eq!(
        replies(&steps),
        [("m-1".into(), Outcome::Ok), ("m-2".into(), Outcome::Ok)]
    );
    let Step::Reply(result) = &steps[0] else {
        panic!("{steps:?}")
    };
    assert_eq!((result.output.as_str(), result.duration_ms), ("HI", 10));
    // One that outlives its timeout is answered `timeout`; its late result is ignored.
    let slow = Command {
        timeout_ms: 100,
        ..command("m-3", "upper", &[])
    };
    executor.receive(later, slow);
    let due = later + Duration::from_millis(100);
    assert_eq!(
        replies(&executor.poll(due)),
        [("m-3".into(), Outcome::Timeout)]
    );
    assert!(executor
        .complete(due, "m-3", Outcome::Ok, "late".into())
        .is_empty());
    // Without it in `external`, the name is no handler's.
    let mut plain = Executor::new(ExecutorConfig::default());
    let steps = plain.receive(now, command("m-4", "upper", &[]));
    assert_eq!(replies(&steps), [("m-4".into(), Outcome::UnknownCommand)]);
}
