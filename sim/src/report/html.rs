//! `sim run FILE --html OUT.html`: one self-contained page (no network) with a lane per node,
//! its events placed in time, the fault periods shaded, who leads drawn as a band, and every
//! event's fields shown on hover. The run's data is embedded as JSON and a small script lays
//! it out, so a browser test can check what it drew.

use crate::history::leaders::LeaderHistory;
use crate::history::{Entry, Happening};
use crate::scenario::Scenario;
use serde::Serialize;

#[derive(Serialize)]
struct Page<'a> {
    name: &'a str,
    seed: u64,
    end_ms: u64,
    nodes: Vec<String>,
    events: Vec<PageEvent>,
    faults: Vec<Band>,
    leaders: Vec<Band>,
}

#[derive(Serialize)]
struct PageEvent {
    t_ms: u64,
    node: String,
    kind: String,
    fields: String,
    fault: bool,
}

#[derive(Serialize)]
struct Band {
    from_ms: u64,
    to_ms: u64,
    label: String,
}

/// The periods faults were in force, labelled with the fault that opened each.
fn fault_bands(entries: &[Entry], end_ms: u64) -> Vec<Band> {
    super::plot::fault_periods(entries, end_ms)
        .into_iter()
        .map(|(from_ms, to_ms, label)| Band {
            from_ms,
            to_ms,
            label,
        })
        .collect()
}

/// The page for one run.
pub fn page(scenario: &Scenario, seed: u64, entries: &[Entry]) -> String {
    let end_ms = scenario.duration.as_millis() as u64;
    let mut nodes = vec![crate::history::HARNESS.to_string()];
    nodes.extend(scenario.topology.nodes());
    let events = (entries.iter())
        .map(|entry| {
            let (kind, fields) = entry.parts();
            PageEvent {
                t_ms: entry.t_ms,
                node: entry.node.clone(),
                kind,
                fields,
                fault: matches!(entry.event, Happening::Fault(_)),
            }
        })
        .collect();
    let leaders = LeaderHistory::from_entries(entries);
    let leaders = (leaders.spans.iter())
        .map(|span| Band {
            from_ms: span.from_ms,
            to_ms: span.to_ms.unwrap_or(end_ms),
            label: format!("{} leads (term {})", span.node, span.term),
        })
        .collect();
    let data = Page {
        name: &scenario.name,
        seed,
        end_ms,
        nodes,
        events,
        faults: fault_bands(entries, end_ms),
        leaders,
    };
    // `</` cannot end the script early: JSON escapes it as `<\/`.
    let json = serde_json::to_string(&data)
        .expect("the page serializes")
        .replace("</", "<\\/");
    TEMPLATE
        .replace(
            "{{TITLE}}",
            &escape(&format!("{} · seed {seed}", scenario.name)),
        )
        .replace("{{DATA}}", &json)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const TEMPLATE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{TITLE}}</title>
<style>
  body { font: 13px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
  h1 { font-size: 18px; margin: 0 0 4px; }
  #legend { margin: 0 0 12px; color: #555; }
  #legend span { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 12px; vertical-align: middle; }
  #chart { position: relative; border-top: 1px solid #ccc; }
  .row { position: relative; height: 22px; border-bottom: 1px solid #eee; }
  .label { position: absolute; left: 0; width: 110px; top: 3px; font-family: monospace; color: #333; }
  .lane, .leaders { position: absolute; left: 120px; right: 0; top: 0; bottom: 0; }
  .leader:nth-child(even) { background: rgba(60, 150, 90, 0.7); }
  .fault { position: absolute; top: 0; bottom: 0; background: rgba(230, 120, 90, 0.18); border-left: 1px solid rgba(230, 120, 90, 0.6); }
  .leader { position: absolute; top: 4px; bottom: 4px; background: rgba(60, 150, 90, 0.45); border-radius: 3px; }
  .event { position: absolute; top: 5px; width: 6px; height: 12px; margin-left: -3px; border-radius: 2px; background: #3b6fc4; cursor: default; }
  .event.fault-event { background: #d0502a; }
  .event:hover::after { content: attr(data-tip); position: absolute; left: 8px; top: -4px; z-index: 10;
    white-space: pre; background: #222; color: #fff; padding: 4px 6px; border-radius: 3px; font-family: monospace; }
  .axis { position: relative; height: 20px; margin-left: 120px; color: #777; }
  .tick { position: absolute; top: 2px; font-family: monospace; }
  .tick:last-child { transform: translateX(-100%); }
</style>
</head>
<body>
<h1 id="title"></h1>
<div id="legend"><span style="background: rgba(230,120,90,0.35)"></span>faults in force<span style="background: rgba(60,150,90,0.45)"></span>who leads<span style="background: #3b6fc4"></span>event (hover for its fields)<span style="background: #d0502a"></span>fault</div>
<div class="axis" id="axis"></div>
<div id="chart"></div>
<script id="data" type="application/json">{{DATA}}</script>
<script>
  const data = JSON.parse(document.getElementById('data').textContent);
  const at = (ms) => (100 * ms / Math.max(data.end_ms, 1)) + '%';
  const clock = (ms) => {
    const s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    return (h ? h + ':' : '') + String(m).padStart(h ? 2 : 1, '0') + ':' + String(s % 60).padStart(2, '0');
  };
  document.getElementById('title').textContent = data.name + ' · seed ' + data.seed;
  const axis = document.getElementById('axis');
  for (let i = 0; i <= 10; i++) {
    const tick = document.createElement('div');
    tick.className = 'tick';
    tick.style.left = (i * 10) + '%';
    tick.textContent = clock(data.end_ms * i / 10);
    axis.appendChild(tick);
  }
  const chart = document.getElementById('chart');
  const lanes = {};
  const row = (name) => {
    const div = document.createElement('div');
    div.className = 'row';
    const label = document.createElement('div');
    label.className = 'label';
    label.textContent = name;
    const lane = document.createElement('div');
    lane.className = 'lane';
    lane.dataset.node = name;
    div.appendChild(label);
    div.appendChild(lane);
    chart.appendChild(div);
    return lane;
  };
  const leading = row('leader');
  leading.classList.remove('lane');
  leading.classList.add('leaders');
  const band = (lane, b, kind) => {
    const div = document.createElement('div');
    div.className = kind;
    div.style.left = at(b.from_ms);
    div.style.width = at(b.to_ms - b.from_ms);
    div.title = b.label;
    lane.appendChild(div);
  };
  for (const b of data.leaders) band(leading, b, 'leader');
  for (const node of data.nodes) lanes[node] = row(node);
  for (const lane of Object.values(lanes)) {
    for (const b of data.faults) band(lane, b, 'fault');
  }
  for (const event of data.events) {
    const lane = lanes[event.node] || (lanes[event.node] = row(event.node));
    const div = document.createElement('div');
    div.className = 'event' + (event.fault ? ' fault-event' : '');
    div.style.left = at(event.t_ms);
    div.dataset.tip = clock(event.t_ms) + '.' + String(event.t_ms % 1000).padStart(3, '0') + '  ' + event.kind + '\n' + event.fields.split(' ').join('\n');
    div.dataset.kind = event.kind;
    lane.appendChild(div);
  }
</script>
</body>
</html>
"#;
