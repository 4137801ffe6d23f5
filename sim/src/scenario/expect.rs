//! `[[expect]]` entries as written: the check's name, whether it should hold, and its other
//! fields with their positions. The judge stage owns the checks and compiles these.

use crate::scenario::source::{error_at, ConfigError, Located, Position, Source};
use std::collections::BTreeMap;
use toml::Spanned;

pub(crate) type RawExpect = BTreeMap<String, Spanned<toml::Value>>;

#[derive(Clone, Debug, PartialEq)]
pub struct ExpectSpec {
    /// The `[[expect]]` table itself.
    pub at: Position,
    pub check: Located<String>,
    /// `holds = false` documents a failure a scenario exists to show.
    pub holds: bool,
    /// `every` and `until`: the check repeats, shifted by `every`, while it starts before
    /// `until`.
    pub every: Option<Located<toml::Value>>,
    pub until: Option<Located<toml::Value>>,
    /// Every other field, by name.
    pub fields: BTreeMap<String, Located<toml::Value>>,
}

pub(crate) fn check(raw: Spanned<RawExpect>, source: &Source) -> Result<ExpectSpec, ConfigError> {
    let at = source.position(raw.span());
    let span = raw.span();
    let mut fields: BTreeMap<String, Located<toml::Value>> = raw
        .into_inner()
        .into_iter()
        .map(|(name, value)| (name, source.locate(value)))
        .collect();
    let check = match fields.remove("check") {
        Some(Located {
            value: toml::Value::String(name),
            at,
        }) => Located { value: name, at },
        Some(other) => {
            return Err(error_at(
                source.path,
                other.at,
                "`check` is a check's name, like \"all_online\"",
            ))
        }
        None => return Err(source.error(span, "an [[expect]] entry needs `check`")),
    };
    let holds = match fields.remove("holds") {
        None => true,
        Some(Located {
            value: toml::Value::Boolean(holds),
            ..
        }) => holds,
        Some(other) => return Err(error_at(source.path, other.at, "`holds` is true or false")),
    };
    let (every, until) = (fields.remove("every"), fields.remove("until"));
    Ok(ExpectSpec {
        at,
        check,
        holds,
        every,
        until,
        fields,
    })
}
