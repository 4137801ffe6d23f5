//! Every fault kind a scenario can name, in one table: its key, the other keys it takes, how
//! its entry is read, and how exploration draws one. Adding a kind is a row here (and its
//! [`FaultAction`] variant, which the compiler then follows into the runner and the history).

use super::fields::FaultFields;
use super::{AdminOp, FaultAction};
use crate::scenario::selector::{NodeKind, Selector, Topology};
use crate::scenario::source::ConfigError;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::time::Duration;

/// One kind of fault.
pub(crate) struct FaultSpec {
    /// The key that names the action: `crash = "leader"`.
    pub name: &'static str,
    /// The other keys this kind takes, besides `at`, `as`, `when`, `every` and `until`.
    pub fields: &'static [&'static str],
    pub parse: fn(&FaultFields) -> Result<FaultAction, ConfigError>,
    /// `as = "NAME"` captures the nodes it hits (a partition: one name per group).
    pub captures: bool,
    /// The kinds `[explore] faults` may list that draw this fault.
    pub draws: &'static [DrawSpec],
}

/// A kind exploration draws, and what it needs to.
pub struct DrawSpec {
    /// Its name in `[explore] faults`.
    pub name: &'static str,
    pub draw: fn(&mut Drawing) -> FaultAction,
    /// A node of this kind among the targets.
    pub target: Option<NodeKind>,
    /// Two nodes at least, to cut one from another.
    pub link: bool,
    /// Agents with credentials (`[params.auth]`).
    pub auth: bool,
    /// The fewest nodes the targets must have for it.
    pub nodes: usize,
    /// The node it takes down is restarted within this long, as a supervisor restarts a
    /// crashed process: drawn with the fault, up to this gap.
    pub back_within: Option<Duration>,
}

/// Kinds are told apart by name.
impl PartialEq for DrawSpec {
    fn eq(&self, other: &DrawSpec) -> bool {
        self.name == other.name
    }
}

impl std::fmt::Debug for DrawSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl DrawSpec {
    const fn new(name: &'static str, draw: fn(&mut Drawing) -> FaultAction) -> DrawSpec {
        DrawSpec {
            name,
            draw,
            target: None,
            link: false,
            auth: false,
            nodes: 0,
            back_within: None,
        }
    }

    const fn link(self) -> DrawSpec {
        DrawSpec { link: true, ..self }
    }

    const fn of(self, kind: NodeKind) -> DrawSpec {
        DrawSpec {
            target: Some(kind),
            ..self
        }
    }
}

/// Every fault kind, in the order exploration lists its draws.
pub(crate) const FAULTS: &[FaultSpec] = &[
    FaultSpec {
        name: "crash",
        fields: &[],
        parse: |f| Ok(FaultAction::Crash(f.selector("crash")?)),
        captures: true,
        draws: &[
            DrawSpec::new("crash", |d| FaultAction::Crash(d.pick(None))),
            DrawSpec {
                back_within: Some(REBOOT_WITHIN),
                ..DrawSpec::new("reboot", |d| FaultAction::Crash(d.pick(None)))
            },
        ],
    },
    FaultSpec {
        name: "restart",
        fields: &[],
        parse: |f| Ok(FaultAction::Restart(f.selector("restart")?)),
        captures: true,
        draws: &[DrawSpec::new("restart", |d| {
            FaultAction::Restart(d.pick(None))
        })],
    },
    FaultSpec {
        name: "partition",
        fields: &["oneway"],
        parse: parse_partition,
        captures: true,
        draws: &[
            DrawSpec::new("partition", |d| d.partition(false)).link(),
            DrawSpec::new("oneway", |d| d.partition(true)).link(),
        ],
    },
    FaultSpec {
        name: "heal",
        fields: &[],
        parse: |f| {
            let target = f.required_text("heal", r#""all" or a selector"#)?;
            Ok(FaultAction::Heal(match target.get_ref().as_str() {
                "all" => None,
                _ => Some(f.select(&target)?),
            }))
        },
        captures: true,
        draws: &[DrawSpec::new("heal", |_| FaultAction::Heal(None))],
    },
    FaultSpec {
        name: "latency",
        fields: &["between"],
        parse: parse_latency,
        captures: false,
        draws: &[DrawSpec::new("latency", |d| {
            let low = d.latency.0;
            let high = Duration::from_millis(d.rng.gen_range(20..=1000)).max(low);
            FaultAction::Latency(low, high)
        })],
    },
    FaultSpec {
        name: "loss",
        fields: &[],
        parse: |f| Ok(FaultAction::Loss(check_rate(f)?)),
        captures: false,
        draws: &[DrawSpec::new("loss", |d| {
            FaultAction::Loss(f64::from(d.rng.gen_range(5u32..=50)) / 100.0)
        })],
    },
    FaultSpec {
        name: "wipe",
        fields: &[],
        parse: |f| Ok(FaultAction::Wipe(f.selector("wipe")?)),
        captures: true,
        draws: &[DrawSpec::new("wipe", |d| FaultAction::Wipe(d.pick(None)))],
    },
    FaultSpec {
        name: "isolate",
        fields: &[],
        parse: |f| Ok(FaultAction::Isolate(f.selector("isolate")?)),
        captures: true,
        draws: &[DrawSpec::new("isolate", |d| FaultAction::Isolate(d.pick(None))).link()],
    },
    FaultSpec {
        name: "revoke",
        fields: &[],
        parse: |f| Ok(FaultAction::Revoke(credentials(f, "revoke")?)),
        captures: true,
        draws: &[DrawSpec {
            auth: true,
            ..DrawSpec::new("revoke", |d| {
                FaultAction::Revoke(d.pick(Some(NodeKind::Agent)))
            })
            .of(NodeKind::Agent)
        }],
    },
    FaultSpec {
        name: "restore",
        fields: &[],
        parse: |f| Ok(FaultAction::Restore(credentials(f, "restore")?)),
        captures: false,
        draws: &[],
    },
    FaultSpec {
        name: "stop",
        fields: &[],
        parse: |f| {
            let what = "`stop` stops agents (masters: `shutdown`)";
            Ok(FaultAction::Stop(f.selector_of(
                "stop",
                NodeKind::Agent,
                what,
            )?))
        },
        captures: true,
        draws: &[],
    },
    FaultSpec {
        name: "admin",
        fields: &["agent"],
        parse: parse_admin,
        captures: false,
        draws: &[DrawSpec::new("force", |d| {
            FaultAction::Admin(AdminOp::Force(d.pick(Some(NodeKind::Agent))))
        })
        .of(NodeKind::Agent)],
    },
    FaultSpec {
        name: "shutdown",
        fields: &[],
        parse: |f| {
            let what = "`shutdown` stops masters (agents: `stop`)";
            let masters = f.selector_of("shutdown", NodeKind::Master, what)?;
            Ok(FaultAction::Shutdown(masters))
        },
        captures: true,
        draws: &[DrawSpec::new("shutdown", |d| {
            FaultAction::Shutdown(d.pick(Some(NodeKind::Master)))
        })
        .of(NodeKind::Master)],
    },
    FaultSpec {
        name: "hold",
        fields: &[],
        parse: |f| Ok(FaultAction::Hold(check_pair(f, "hold")?)),
        captures: false,
        draws: &[DrawSpec::new("hold", |d| FaultAction::Hold(d.ends())).link()],
    },
    FaultSpec {
        name: "release",
        fields: &[],
        parse: |f| Ok(FaultAction::Release(check_pair(f, "release")?)),
        captures: false,
        draws: &[],
    },
    FaultSpec {
        name: "clock",
        fields: &["offset", "rate"],
        parse: parse_clock,
        captures: true,
        draws: &[
            DrawSpec::new("clock", |d| d.clock()),
            DrawSpec::new("drift", |d| d.drift()),
        ],
    },
    FaultSpec {
        name: "pause",
        fields: &[],
        parse: |f| Ok(FaultAction::Pause(f.selector("pause")?)),
        captures: true,
        draws: &[DrawSpec::new("pause", |d| FaultAction::Pause(d.pick(None)))],
    },
    FaultSpec {
        name: "resume",
        fields: &[],
        parse: |f| Ok(FaultAction::Resume(f.selector("resume")?)),
        captures: true,
        draws: &[DrawSpec::new("resume", |d| {
            FaultAction::Resume(d.pick(None))
        })],
    },
    FaultSpec {
        name: "power_fail",
        fields: &[],
        parse: |f| Ok(FaultAction::PowerFail(f.selector("power_fail")?)),
        captures: true,
        draws: &[DrawSpec::new("power_fail", |d| {
            FaultAction::PowerFail(d.pick(None))
        })],
    },
    FaultSpec {
        name: "corrupt",
        fields: &[],
        parse: |f| {
            let what = "`corrupt` damages masters' disks (no other node keeps records)";
            Ok(FaultAction::Corrupt(f.selector_of(
                "corrupt",
                NodeKind::Master,
                what,
            )?))
        },
        captures: true,
        draws: &[DrawSpec::new("corrupt", |d| {
            FaultAction::Corrupt(d.pick(Some(NodeKind::Master)))
        })
        .of(NodeKind::Master)],
    },
    FaultSpec {
        name: "ring",
        fields: &[],
        parse: parse_ring,
        captures: true,
        draws: &[DrawSpec {
            nodes: RING_NODES,
            ..DrawSpec::new("ring", |d| d.ring())
        }],
    },
    FaultSpec {
        name: "stall",
        fields: &["from"],
        parse: parse_stall,
        captures: true,
        draws: &[DrawSpec::new("stall", |d| d.stall()).link()],
    },
];

/// How soon a rebooted node is back at the latest: a supervisor's restart, and the election
/// it lands in.
const REBOOT_WITHIN: Duration = Duration::from_secs(1);

/// The largest rate error exploration draws for a clock: the lease's default bound.
pub(crate) const DRAWN_DRIFT: f64 = 0.05;

/// The fewest nodes a majorities ring can have: with three, every pair are neighbours.
const RING_NODES: usize = 4;

/// Every kind exploration can draw, in table order: the order a run draws them in.
pub(crate) fn draw_specs() -> impl Iterator<Item = &'static DrawSpec> {
    FAULTS.iter().flat_map(|spec| spec.draws)
}

/// What drawing a fault needs: the nodes it may hit, the topology, the template's latency, and
/// the run's randomness. Nodes are named, never `leader`: a shrunk file must replay what ran.
pub struct Drawing<'a> {
    pub targets: &'a [String],
    pub topology: &'a Topology,
    pub latency: (Duration, Duration),
    pub rng: &'a mut ChaCha8Rng,
}

impl Drawing<'_> {
    /// One target, of `kind` if given.
    fn pick(&mut self, kind: Option<NodeKind>) -> Selector {
        let of: Vec<String> = (self.targets.iter())
            .filter(|node| kind.is_none_or(|kind| node.starts_with(kind.prefix())))
            .cloned()
            .collect();
        let node = of[self.rng.gen_range(0..of.len())].clone();
        self.topology.select_nodes(&[node], "")
    }

    /// Some of the targets on one side, every other node on the other.
    fn split(&mut self) -> [Vec<String>; 2] {
        let all = self.topology.nodes();
        let most = self.targets.len().min(all.len() - 1);
        let size = self.rng.gen_range(1..=most);
        let mut pool = self.targets.to_vec();
        for i in 0..size {
            let j = self.rng.gen_range(i..pool.len());
            pool.swap(i, j);
        }
        pool.truncate(size);
        let side: BTreeSet<String> = pool.into_iter().collect();
        let (side, rest): (Vec<String>, Vec<String>) =
            all.into_iter().partition(|node| side.contains(node));
        [side, rest]
    }

    fn partition(&mut self, oneway: bool) -> FaultAction {
        let [side, rest] = self.split();
        // One way, either direction: the side's traffic out, or everyone's traffic in.
        let groups = if oneway && self.rng.gen_bool(0.5) {
            [rest, side]
        } else {
            [side, rest]
        };
        let groups = groups.map(|group| self.topology.select_runs(&group));
        FaultAction::Partition {
            groups: groups.into(),
            oneway,
        }
    }

    /// A clock that jumps forwards up to 3s, or drifts within [`DRAWN_DRIFT`] (a monotonic
    /// clock never jumps back).
    fn clock(&mut self) -> FaultAction {
        if self.rng.gen_bool(0.5) {
            return self.drift();
        }
        FaultAction::Clock {
            target: self.pick(None),
            offset_ms: self.rng.gen_range(1..=3_000),
            rate: None,
        }
    }

    /// A clock that runs fast or slow, within [`DRAWN_DRIFT`] of true time.
    fn drift(&mut self) -> FaultAction {
        let target = self.pick(None);
        let error = f64::from(self.rng.gen_range(-50..=50i32)) / 1000.0;
        FaultAction::Clock {
            target,
            offset_ms: 0,
            rate: Some(1.0 + error * DRAWN_DRIFT / 0.05),
        }
    }

    /// A majorities ring of every target, in topology order.
    fn ring(&mut self) -> FaultAction {
        let ring: Vec<String> = (self.topology.nodes().into_iter())
            .filter(|node| self.targets.contains(node))
            .collect();
        FaultAction::Ring(self.topology.select_nodes(&ring, " + "))
    }

    /// One target stalled, for everyone or only for the rest of a split.
    fn stall(&mut self) -> FaultAction {
        let target = self.pick(None);
        let from = self.rng.gen_bool(0.5).then(|| {
            let others: Vec<String> = (self.topology.nodes().into_iter())
                .filter(|node| !target.contains(node))
                .collect();
            let node = others[self.rng.gen_range(0..others.len())].clone();
            self.topology.select_nodes(&[node], "")
        });
        FaultAction::Stall { target, from }
    }

    /// The two ends of a link fault: some targets, and the rest.
    fn ends(&mut self) -> [Selector; 2] {
        self.split()
            .map(|group| self.topology.select_nodes(&group, " + "))
    }
}

fn parse_partition(f: &FaultFields) -> Result<FaultAction, ConfigError> {
    let value = f.get("partition").expect("the table names the action");
    let span = value.span();
    let what = r#"`partition` takes groups of selectors, like [["agent-1"], ["master-1"]]"#;
    let toml::Value::Array(raw) = value.get_ref() else {
        return Err(f.error(span, what));
    };
    let mut spans = f.string_spans(span.clone()).into_iter();
    let groups = (raw.iter())
        .map(|group| f.texts(group, span.clone(), &mut spans, what))
        .collect::<Result<Vec<_>, _>>()?;
    let groups = super::check_partition(&groups, span, f)?;
    let oneway = f.flag("oneway")?;
    Ok(FaultAction::Partition { groups, oneway })
}

fn parse_latency(f: &FaultFields) -> Result<FaultAction, ConfigError> {
    let (low, high) = f.duration_range("latency")?;
    match f.get("between") {
        None => Ok(FaultAction::Latency(low, high)),
        Some(_) => {
            turmoil_only(
                f,
                "between",
                "`latency` with `between` (one link's latency)",
            )?;
            let between = check_pair(f, "between")?;
            Ok(FaultAction::LinkLatency { between, low, high })
        }
    }
}

/// `clock = SEL` with `offset = "+2s"` and/or `rate = 1.05`.
fn parse_clock(f: &FaultFields) -> Result<FaultAction, ConfigError> {
    let target = f.selector("clock")?;
    let offset = f.text("offset", r#"a signed duration like "+2s" or "-500ms""#)?;
    let offset_ms = match &offset {
        Some(text) => parse_offset(text.get_ref()).map_err(|why| f.error(text.span(), why))?,
        None => 0,
    };
    let rate = match f.get("rate") {
        Some(_) => {
            let rate = f.number("rate")?;
            if !(rate.get_ref().is_finite() && *rate.get_ref() > 0.0 && *rate.get_ref() <= 100.0) {
                return Err(f.error(
                    rate.span(),
                    "`rate` is how fast the clock runs against true time: above 0, at most 100                      (1.0 is true time)",
                ));
            }
            Some(*rate.get_ref())
        }
        None => None,
    };
    if offset.is_none() && rate.is_none() {
        return Err(
            f.whole("`clock` needs `offset` (a jump, like \"+2s\"), `rate` (like 1.05), or both")
        );
    }
    Ok(FaultAction::Clock {
        target,
        offset_ms,
        rate,
    })
}

/// `+2s`, `-500ms`, `2s`: milliseconds, signed.
fn parse_offset(text: &str) -> Result<i64, String> {
    let (sign, size) = match text.strip_prefix('-') {
        Some(size) => (-1, size),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let size = crate::scenario::duration::parse_duration(size)
        .map_err(|why| format!("`offset` {text:?}: {why}"))?;
    Ok(sign * size.as_millis() as i64)
}

/// `ring = SEL`: at least [`RING_NODES`] nodes, in the topology's order around the ring.
fn parse_ring(f: &FaultFields) -> Result<FaultAction, ConfigError> {
    let target = f.selector("ring")?;
    if !target.is_dynamic() && target.nodes().len() < RING_NODES {
        return Err(f.error(
            f.span_of("ring"),
            format!(
                "a majorities ring needs at least {RING_NODES} nodes; among {} every node is \
                 every other's neighbour",
                target.nodes().len()
            ),
        ));
    }
    Ok(FaultAction::Ring(target))
}

/// `stall = SEL`, with `from = SEL` for only the links with those nodes.
fn parse_stall(f: &FaultFields) -> Result<FaultAction, ConfigError> {
    let target = f.selector("stall")?;
    let from = match f.get("from") {
        Some(_) => {
            let from = f.selector("from")?;
            if let Some(node) = super::certain_overlap(f.topology, &target, &from) {
                return Err(f.error(
                    f.span_of("from"),
                    format!("`from` overlaps `stall` (both select {node})"),
                ));
            }
            Some(from)
        }
        None => None,
    };
    Ok(FaultAction::Stall { target, from })
}

/// A loss rate: a probability.
fn check_rate(f: &FaultFields) -> Result<f64, ConfigError> {
    let rate = f.number("loss")?;
    crate::scenario::check_loss(rate, f.source)
}

/// The agents whose credentials a fault changes.
fn credentials(f: &FaultFields, key: &str) -> Result<Selector, ConfigError> {
    if !f.authenticates {
        return Err(f.error(
            f.span_of(key),
            format!("`{key}` acts on credentials; add [params.auth] so agents have some"),
        ));
    }
    f.selector_of(key, NodeKind::Agent, "credentials are agents'")
}

const ADMIN_OPS: &str = "status, active, cleanup, force or decommission";

/// `admin = "OP"`, with `agent = SEL` for the operations on agents.
fn parse_admin(f: &FaultFields) -> Result<FaultAction, ConfigError> {
    let op = f.required_text("admin", "an operation's name, like \"force\"")?;
    let name = op.get_ref().as_str();
    let agent = f.get("agent");
    let agents = || match agent {
        Some(_) => f.selector_of("agent", NodeKind::Agent, "admin operations name agents"),
        None => Err(f.error(
            op.span(),
            format!("admin {name:?} needs `agent = SEL`, the agents it is about"),
        )),
    };
    let no_agent = |op: AdminOp| match agent {
        Some(agent) => Err(f.error(
            agent.span(),
            format!("admin {name:?} is about every agent; it takes no `agent`"),
        )),
        None => Ok(op),
    };
    let op = match name {
        "status" => AdminOp::Status(agents()?),
        "force" => AdminOp::Force(agents()?),
        "decommission" => AdminOp::Decommission(agents()?),
        "active" => no_agent(AdminOp::Active)?,
        "cleanup" => no_agent(AdminOp::Cleanup)?,
        other => {
            return Err(f.error(
                op.span(),
                format!("unknown admin operation {other:?}; expected {ADMIN_OPS}"),
            ))
        }
    };
    Ok(FaultAction::Admin(op))
}

/// Refuses a fault only turmoil can do in the simulation build, which runs madsim.
fn turmoil_only(f: &FaultFields, key: &str, what: &str) -> Result<(), ConfigError> {
    if cfg!(madsim) {
        return Err(f.error(
            f.span_of(key),
            format!(
                "{what} needs the turmoil engine, and this build runs madsim: run the scenario \
                 with the native build, `cargo native run --release -p sim -- run FILE`"
            ),
        ));
    }
    Ok(())
}

/// `KEY = [SEL, SEL]`: the two ends of a link fault, which may not share a node.
fn check_pair(f: &FaultFields, key: &str) -> Result<[Selector; 2], ConfigError> {
    let value = f.get(key).expect("the caller found the key");
    let what = format!("`{key}` names the two ends of the links, like [\"master-1\", \"agents\"]");
    let mut spans = f.string_spans(value.span()).into_iter();
    let texts = f.texts(value.get_ref(), value.span(), &mut spans, &what)?;
    let [a, b] = texts.as_slice() else {
        return Err(f.error(value.span(), what));
    };
    let (first, second) = (f.select(a)?, f.select(b)?);
    if let Some(node) = super::certain_overlap(f.topology, &first, &second) {
        return Err(f.error(
            b.span(),
            format!(
                "{:?} overlaps {:?} (both select {node})",
                b.get_ref(),
                a.get_ref()
            ),
        ));
    }
    Ok([first, second])
}
