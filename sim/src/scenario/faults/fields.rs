//! Reads one `[[faults]]` entry's fields with their types, pointing at the value when one is
//! wrong.

use crate::scenario::duration::{parse_duration, parse_range, Dur};
use crate::scenario::selector::{NodeKind, Selector, Topology};
use crate::scenario::source::{ConfigError, Source};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// A `[[faults]]` entry as written: every key and its located value.
pub(crate) type RawFault = BTreeMap<String, Spanned<toml::Value>>;

/// One entry's fields, read against the topology and the captures defined before it.
pub(crate) struct FaultFields<'a> {
    pub(crate) raw: &'a RawFault,
    pub(crate) topology: &'a Topology,
    pub(crate) source: &'a Source<'a>,
    /// The names faults earlier in the file capture: `@NAME` must be one.
    pub(crate) defined: &'a BTreeSet<String>,
    pub(crate) authenticates: bool,
    /// The entry itself.
    pub(crate) span: Range<usize>,
}

impl FaultFields<'_> {
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        self.source.error(span, message)
    }

    /// The error about the entry as a whole.
    pub fn whole(&self, message: impl Into<String>) -> ConfigError {
        self.error(self.span.clone(), message)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Spanned<toml::Value>> {
        self.raw.get(key)
    }

    /// The span of `key`'s value, or of the entry when it is absent.
    pub(crate) fn span_of(&self, key: &str) -> Range<usize> {
        self.get(key).map_or(self.span.clone(), Spanned::span)
    }

    /// A string field, with its span.
    pub fn text(&self, key: &str, what: &str) -> Result<Option<Spanned<String>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => match value.get_ref() {
                toml::Value::String(text) => Ok(Some(Spanned::new(value.span(), text.clone()))),
                _ => Err(self.error(value.span(), format!("`{key}` is {what}"))),
            },
        }
    }

    /// A string field the action needs.
    pub(crate) fn required_text(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Spanned<String>, ConfigError> {
        self.text(key, what)?
            .ok_or_else(|| self.whole(format!("this fault needs `{key}`")))
    }

    /// A selector, whose captures must be defined by an earlier fault.
    pub fn select(&self, text: &Spanned<String>) -> Result<Selector, ConfigError> {
        let selector = (self.topology.select(text.get_ref()))
            .map_err(|message| self.error(text.span(), message))?;
        super::captured_before(selector, self.defined, text, self.source)
    }

    /// The selector under `key`.
    pub fn selector(&self, key: &str) -> Result<Selector, ConfigError> {
        let text = self.required_text(key, r#"a selector like "master-1" or "leader""#)?;
        self.select(&text)
    }

    /// The selector under `key`, which must name only nodes of `kind`.
    pub(crate) fn selector_of(
        &self,
        key: &str,
        kind: NodeKind,
        what: &str,
    ) -> Result<Selector, ConfigError> {
        let selector = self.selector(key)?;
        (selector.only_of(kind, what)).map_err(|message| self.error(self.span_of(key), message))?;
        Ok(selector)
    }

    /// A list of selectors written as strings, each located by the next of `spans` (those of
    /// the strings written inside the value, in order; see [`Self::string_spans`]).
    pub(crate) fn texts(
        &self,
        value: &toml::Value,
        span: Range<usize>,
        spans: &mut impl Iterator<Item = Range<usize>>,
        what: &str,
    ) -> Result<Vec<Spanned<String>>, ConfigError> {
        let toml::Value::Array(items) = value else {
            return Err(self.error(span, what.to_string()));
        };
        let mut texts = Vec::new();
        for item in items {
            let at = spans.next().unwrap_or_else(|| span.clone());
            match item {
                toml::Value::String(text) => texts.push(Spanned::new(at, text.clone())),
                _ => return Err(self.error(at, what.to_string())),
            }
        }
        Ok(texts)
    }

    /// Where each string written inside `span` of the file starts and ends, in order: a
    /// `toml::Value` keeps no positions of its own, so an error about one selector of an
    /// array points at that selector.
    pub(crate) fn string_spans(&self, span: Range<usize>) -> Vec<Range<usize>> {
        let text = self.source.text.get(span.clone()).unwrap_or_default();
        let mut spans = Vec::new();
        let mut chars = text.char_indices();
        while let Some((start, quote)) = chars.next() {
            if quote != '"' && quote != '\'' {
                continue;
            }
            let mut escaped = false;
            for (end, c) in chars.by_ref() {
                if c == quote && !escaped {
                    spans.push(span.start + start..span.start + end + 1);
                    break;
                }
                escaped = quote == '"' && c == '\\' && !escaped;
            }
        }
        spans
    }

    pub(crate) fn duration_range(&self, key: &str) -> Result<(Duration, Duration), ConfigError> {
        let text = self.required_text(key, r#"a range like "1ms..10ms""#)?;
        parse_range(text.get_ref()).map_err(|why| self.error(text.span(), why))
    }

    pub fn flag(&self, key: &str) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(false),
            Some(value) => match value.get_ref() {
                toml::Value::Boolean(flag) => Ok(*flag),
                _ => Err(self.error(value.span(), format!("`{key}` is true or false"))),
            },
        }
    }

    /// A number, integer or float.
    pub fn number(&self, key: &str) -> Result<Spanned<f64>, ConfigError> {
        let value =
            (self.get(key)).ok_or_else(|| self.whole(format!("this fault needs `{key}`")))?;
        match value.get_ref() {
            toml::Value::Float(number) => Ok(Spanned::new(value.span(), *number)),
            toml::Value::Integer(number) => Ok(Spanned::new(value.span(), *number as f64)),
            _ => Err(self.error(value.span(), format!("`{key}` is a number"))),
        }
    }

    /// A duration field, as the shared repetition reads it.
    pub fn duration(&self, key: &str) -> Result<Option<Spanned<Dur>>, ConfigError> {
        let Some(text) = self.text(key, r#"a duration like "10s""#)? else {
            return Ok(None);
        };
        let duration =
            parse_duration(text.get_ref()).map_err(|why| self.error(text.span(), why))?;
        Ok(Some(Spanned::new(text.span(), Dur(duration))))
    }
}
