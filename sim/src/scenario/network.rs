//! `[network]`: the simulated network's latency, loss and turmoil's step.

use crate::scenario::duration::{Dur, DurRange};
use crate::scenario::source::{ConfigError, Source};
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub latency: (Duration, Duration),
    pub loss: f64,
    /// turmoil's step: every host runs this long per step, so no timer or message resolves
    /// finer. madsim has no steps and ignores it.
    pub tick: Duration,
}

/// turmoil's step unless `[network] tick` says otherwise: turmoil's own default.
pub const DEFAULT_TICK: Duration = Duration::from_millis(1);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    latency: Option<DurRange>,
    loss: Option<Spanned<f64>>,
    tick: Option<Spanned<Dur>>,
}

pub(crate) fn check_network(raw: RawNetwork, source: &Source) -> Result<Network, ConfigError> {
    Ok(Network {
        latency: raw.latency.map_or(
            (Duration::from_millis(1), Duration::from_millis(10)),
            |range| (range.0, range.1),
        ),
        loss: match raw.loss {
            Some(loss) => check_loss(loss, source)?,
            None => 0.0,
        },
        tick: match raw.tick {
            Some(tick) if tick.get_ref().0.is_zero() => {
                return Err(source.error(tick.span(), "`tick` must be greater than 0"))
            }
            Some(tick) => tick.get_ref().0,
            None => DEFAULT_TICK,
        },
    })
}

pub(crate) fn check_loss(loss: Spanned<f64>, source: &Source) -> Result<f64, ConfigError> {
    let value = *loss.get_ref();
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(source.error(
            loss.span(),
            format!("loss is a probability from 0.0 to 1.0, got {value}"),
        ))
    }
}
