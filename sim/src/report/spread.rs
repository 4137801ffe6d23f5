//! What many seeds of one scenario measured: each check's value, as median, p90 and max over
//! the seeds, so a property run also says how close to its bound each seed came.

use crate::history::metrics::quantile;
use crate::judge::Verdict;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One line per check that measures a number (or an object of numbers: one column each), in
/// the scenario's order; empty when none does.
pub(crate) fn spread(runs: &[&[Verdict]]) -> String {
    let Some(first) = runs.first() else {
        return String::new();
    };
    let mut lines = Vec::new();
    for (index, verdict) in first.iter().enumerate() {
        // Field name ("" for a bare number) → the value of every seed.
        let mut columns: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for run in runs {
            let Some(value) = run.get(index).and_then(|verdict| verdict.value.as_ref()) else {
                continue;
            };
            for (key, x) in numbers(value) {
                if !order.contains(&key) {
                    order.push(key.clone());
                }
                columns.entry(key).or_default().push(x);
            }
        }
        if order.is_empty() {
            continue;
        }
        let mut line = format!("  {}", verdict.check);
        for key in &order {
            let values = columns.remove(key).unwrap_or_default();
            let label = if key.is_empty() {
                String::new()
            } else {
                format!("{key} ")
            };
            let _ = write!(line, "  {label}{}", show_spread(values, " · "));
        }
        lines.push(line);
    }
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "measured over {} seeds (median · p90 · max)\n{}\n",
        runs.len(),
        lines.join("\n")
    )
}

/// The numbers in a check's value: `("", x)` for a number, `(field, x)` for each numeric
/// field of an object.
pub fn numbers(value: &serde_json::Value) -> Vec<(String, f64)> {
    match value {
        serde_json::Value::Object(map) => (map.iter())
            .filter_map(|(key, value)| Some((key.clone(), value.as_f64()?)))
            .collect(),
        other => other
            .as_f64()
            .map(|x| (String::new(), x))
            .into_iter()
            .collect(),
    }
}

/// `median{sep}p90{sep}max` of `values`, or `-` when there are none.
pub(crate) fn show_spread(mut values: Vec<f64>, sep: &str) -> String {
    if values.is_empty() {
        return "-".to_string();
    }
    values.sort_by(f64::total_cmp);
    let rank = |q| quantile(&values, q).map_or_else(String::new, show);
    format!("{}{sep}{}{sep}{}", rank(0.5), rank(0.9), rank(1.0))
}

pub(crate) fn show(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(value: serde_json::Value) -> Verdict {
        Verdict {
            check: "all_back_within agents 10m after 2m".into(),
            args: serde_json::Map::new(),
            ok: true,
            detail: String::new(),
            value: Some(value),
        }
    }

    #[test]
    fn each_measured_field_gets_its_median_p90_and_max() {
        let runs: Vec<Vec<Verdict>> = (1..=10)
            .map(|i| {
                vec![verdict(
                    serde_json::json!({ "ms": i * 100, "attempts": 100 + i % 2 }),
                )]
            })
            .collect();
        let runs: Vec<&[Verdict]> = runs.iter().map(Vec::as_slice).collect();
        let text = spread(&runs);
        assert!(text.starts_with("measured over 10 seeds"), "{text}");
        assert!(text.contains("ms 500 · 900 · 1000"), "{text}");
        assert!(text.contains("attempts 100 · 101 · 101"), "{text}");
    }

    #[test]
    fn checks_without_a_value_print_nothing() {
        let mut quiet = verdict(serde_json::Value::Null);
        quiet.value = None;
        let runs = [vec![quiet]];
        let runs: Vec<&[Verdict]> = runs.iter().map(Vec::as_slice).collect();
        assert_eq!(spread(&runs), "");
    }
}
