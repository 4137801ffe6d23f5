//! `[params.executor]`: how many commands an agent runs at once, queues, and remembers.

use crate::source::{ConfigError, Source};
use fleet_core::command::ExecutorConfig;
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExecutor {
    max_concurrent: Option<Spanned<usize>>,
    queue_limit: Option<Spanned<usize>>,
    remember: Option<Spanned<usize>>,
}

pub fn check_executor(
    raw: Option<RawExecutor>,
    source: &Source,
) -> Result<ExecutorConfig, ConfigError> {
    let defaults = ExecutorConfig::default();
    let Some(raw) = raw else {
        return Ok(defaults);
    };
    let at_least_one = |value: Option<Spanned<usize>>, name: &str, default: usize| match value {
        Some(n) if *n.get_ref() == 0 => {
            Err(source.error(n.span(), format!("`{name}` must be at least 1")))
        }
        Some(n) => Ok(n.into_inner()),
        None => Ok(default),
    };
    let config = ExecutorConfig {
        max_concurrent: at_least_one(
            raw.max_concurrent,
            "max_concurrent",
            defaults.max_concurrent,
        )?,
        queue_limit: at_least_one(raw.queue_limit, "queue_limit", defaults.queue_limit)?,
        remember: defaults.remember,
        ..defaults
    };
    // An agent must remember a result at least as long as a copy of its command can still
    // arrive: every command it holds (running or queued) may come again on one registration.
    let floor = config.max_concurrent + config.queue_limit;
    let remember = match raw.remember {
        Some(n) if *n.get_ref() < floor => {
            return Err(source.error(
                n.span(),
                format!(
                    "`remember` must be at least max_concurrent + queue_limit ({floor}), or a \
                     copy of a command could run again"
                ),
            ))
        }
        Some(n) => n.into_inner(),
        None => defaults.remember.max(floor),
    };
    Ok(ExecutorConfig { remember, ..config })
}
