//! `--set KEY=VALUE`: a change to a scenario file made on the command line, applied to its
//! text before it is checked, so an override meets exactly the checks a file would.
//!
//! KEY is a dotted path into the file (`params.heartbeat.max_miss`, `cluster.election_timeout`,
//! `faults.2.at` for the third `[[faults]]` entry); missing tables are created. VALUE is read as
//! TOML (`2`, `0.25`, `true`, `"1s"`), and as a string when it is not TOML (`150ms..300ms`).

use crate::scenario::source::{error_at, ConfigError, Position};
use std::fmt;
use toml_edit::{DocumentMut, Item, Table, Value};

/// One `--set KEY=VALUE`.
#[derive(Clone, Debug)]
pub struct Override {
    pub key: Vec<String>,
    /// VALUE as given, for messages and reproduce commands.
    pub raw: String,
    value: Value,
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key.join("."), self.raw)
    }
}

impl Override {
    /// Reads `KEY=VALUE` (a clap value parser).
    pub fn parse(text: &str) -> Result<Override, String> {
        let (key, raw) = text.split_once('=').ok_or_else(|| {
            format!("{text:?} is not KEY=VALUE, like params.heartbeat.max_miss=2")
        })?;
        let key: Vec<String> = key.trim().split('.').map(str::to_string).collect();
        if let Some(bad) = key.iter().find(|part| {
            part.is_empty()
                || !(part.chars()).all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }) {
            return Err(format!(
                "{text:?}: {bad:?} is not a key; a KEY is dotted names, like params.backoff.max"
            ));
        }
        let raw = raw.trim().to_string();
        let value = read_value(&raw);
        Ok(Override { key, raw, value })
    }

    /// KEY (its dotted parts) set to a value already typed, as the scenario builder sets them.
    pub(crate) fn typed(key: &[&str], value: Value) -> Override {
        Override {
            key: key.iter().map(|part| part.to_string()).collect(),
            raw: value.to_string().trim().to_string(),
            value,
        }
    }

    /// `--set KEY=VALUE`, as a command line says it again.
    pub fn flag(&self) -> String {
        let text = self.to_string();
        let plain = (text.chars()).all(|c| c.is_ascii_alphanumeric() || "._-=:".contains(c));
        if plain {
            format!("--set {text}")
        } else {
            format!("--set '{}'", text.replace('\'', r"'\''"))
        }
    }

    /// Writes the value into `document`, creating the tables on the way.
    pub(crate) fn write(&self, document: &mut DocumentMut) -> Result<(), String> {
        let (last, path) = self.key.split_last().expect("a key has a name");
        let mut table: &mut Table = document.as_table_mut();
        let mut walked = Vec::new();
        let mut parts = path.iter().peekable();
        while let Some(part) = parts.next() {
            walked.push(part.as_str());
            let here = walked.join(".");
            let item = table
                .entry(part)
                .or_insert_with(|| Item::Table(implicit_table()));
            table = match item {
                Item::Table(inner) => inner,
                Item::ArrayOfTables(array) => {
                    let index = parts.next().and_then(|index| index.parse::<usize>().ok());
                    let Some(index) = index else {
                        return Err(format!(
                            "`{here}` is a list of tables; name one by its index, like {here}.0"
                        ));
                    };
                    walked.push("");
                    let count = array.len();
                    array.get_mut(index).ok_or_else(|| {
                        format!(
                            "`{here}` has {count} entries; {index} is not one (they count from 0)"
                        )
                    })?
                }
                Item::Value(Value::InlineTable(_)) => {
                    return Err(format!(
                        "`{here}` is written inline; set the whole of it, like {here}={{ ... }}"
                    ))
                }
                _ => return Err(format!("`{here}` is a value, not a table")),
            };
        }
        if matches!(
            table.get(last),
            Some(Item::Table(_) | Item::ArrayOfTables(_))
        ) {
            return Err(format!(
                "`{}` is a table; set one of its keys",
                self.key.join(".")
            ));
        }
        table[last.as_str()] = Item::Value(self.value.clone());
        Ok(())
    }
}

/// VALUE as `--set` reads it: a number, a boolean, a quoted string, or an array or inline
/// table written as one, as TOML; anything else as the string it is (`150ms..300ms`).
pub(crate) fn read_value(raw: &str) -> Value {
    match raw.parse::<Value>() {
        Ok(value) if !matches!(value, Value::Array(_) | Value::InlineTable(_)) => value,
        Ok(value) if raw.starts_with('[') || raw.starts_with('{') => value,
        _ => Value::from(raw),
    }
}

fn implicit_table() -> Table {
    let mut table = Table::new();
    table.set_implicit(true);
    table
}

/// `text` with `overrides` applied, in order. An override that cannot be written (a key that
/// runs through a value), or whose result the checks refuse, is the error, named by its flag;
/// `check` is the scenario's own parser, so an override meets exactly a file's checks.
pub(crate) fn apply<T>(
    path: &str,
    text: &str,
    overrides: &[Override],
    check: impl Fn(&str) -> Result<T, ConfigError>,
) -> Result<(String, T), ConfigError> {
    let mut checked = check(text)?;
    if overrides.is_empty() {
        return Ok((text.to_string(), checked));
    }
    let mut document: DocumentMut = text.parse().map_err(|error: toml_edit::TomlError| {
        error_at(path, Position::default(), error.message().to_string())
    })?;
    let mut current = text.to_string();
    for one in overrides {
        let named = |message: String| {
            error_at(
                path,
                Position::default(),
                format!("{}: {message}", one.flag()),
            )
        };
        one.write(&mut document).map_err(named)?;
        current = document.to_string();
        checked = check(&current).map_err(|error| named(error.message))?;
    }
    Ok((current, checked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use std::time::Duration;

    const BASE: &str =
        "name = \"t\"\nduration = \"1m\"\n[topology]\nagents = 3\n[[faults]]\nat = \"10s\"\ncrash = \"agent-1\"\n";

    fn with(sets: &[&str]) -> Result<Scenario, ConfigError> {
        let overrides: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
        apply("t.toml", BASE, &overrides, |text| {
            Scenario::parse("t.toml", text)
        })
        .map(|(_, s)| s)
    }

    #[test]
    fn values_land_where_their_keys_say_creating_tables_on_the_way() {
        let scenario = with(&[
            "params.heartbeat.max_miss=5",
            "params.backoff.jitter=0.1",
            "duration=2m",
            "faults.0.at=20s",
            "params.backoff.first_delay=0s..2s",
        ])
        .unwrap();
        assert_eq!(scenario.heartbeat.max_miss, 5);
        assert_eq!(scenario.backoff.jitter, 0.1);
        assert_eq!(scenario.duration, Duration::from_secs(120));
        assert_eq!(scenario.faults[0].at, Duration::from_secs(20));
        assert_eq!(
            scenario.backoff.first_delay,
            Some((Duration::ZERO, Duration::from_secs(2)))
        );
    }

    #[test]
    fn a_bad_key_or_value_is_named_by_its_flag() {
        let cases = [
            ("params.heartbeat.max_miss=0", "greater than 0"),
            ("params.heartbeat.max_mis=2", "max_mis"),
            ("duration=10x", "\"250ms\""),
            ("faults.3.at=1s", "1 entries; 3 is not one"),
            ("faults.at=1s", "name one by its index"),
            ("name.first=x", "is a value, not a table"),
            ("topology=3", "is a table"),
        ];
        for (set, expected) in cases {
            let error = with(&[set]).unwrap_err();
            assert!(
                error.message.starts_with(&format!("--set {set}")),
                "{set}: {error}"
            );
            assert!(error.message.contains(expected), "{set}: {error}");
        }
        assert!(Override::parse("max_miss").is_err());
        assert!(Override::parse("a..b=1").is_err());
    }

    #[test]
    fn a_flag_says_itself_again_quoted_when_it_must_be() {
        let plain = Override::parse("params.heartbeat.max_miss=2").unwrap();
        assert_eq!(plain.flag(), "--set params.heartbeat.max_miss=2");
        let spaced = Override::parse("name=a b").unwrap();
        assert_eq!(spaced.flag(), "--set 'name=a b'");
        let range = Override::parse("cluster.election_timeout=150ms..300ms").unwrap();
        assert_eq!(range.flag(), "--set cluster.election_timeout=150ms..300ms");
    }
}
