//! `[params.auth]` and `[params.master]`: how masters check and limit the agents that
//! register with them.

use crate::duration::Dur;
use crate::source::{ConfigError, Source};
use fleet_core::attempts::{Admission, AttemptPolicy};
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// Authentication: every agent presents its token under `secret`.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthParams {
    pub secret: String,
}

/// How masters protect themselves.
#[derive(Clone, Debug, PartialEq)]
pub struct MasterParams {
    pub admission: Option<Admission>,
    pub attempts: AttemptPolicy,
}

/// An agent whose credentials were refused tries again after this long, unless
/// `[params.auth] reauth_delay` says otherwise.
pub const REAUTH_DELAY: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    secret: Option<Spanned<String>>,
    reauth_delay: Option<Spanned<Dur>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaster {
    capacity: Option<Spanned<u32>>,
    retry_after: Option<Spanned<Dur>>,
    attempts: Option<Spanned<RawAttempts>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttempts {
    enforce: Option<bool>,
    base: Option<Dur>,
    max: Option<Dur>,
    max_retries: Option<u32>,
    expiry: Option<Dur>,
}

fn positive(value: &Spanned<Dur>, what: &str, source: &Source) -> Result<Duration, ConfigError> {
    if value.get_ref().0.is_zero() {
        return Err(source.error(value.span(), format!("`{what}` must be greater than 0")));
    }
    Ok(value.get_ref().0)
}

/// The auth settings, and the agents' re-auth delay (which applies only with auth).
pub fn check_auth(
    raw: Option<RawAuth>,
    source: &Source,
) -> Result<(Option<AuthParams>, Duration), ConfigError> {
    let Some(raw) = raw else {
        return Ok((None, REAUTH_DELAY));
    };
    let secret = match raw.secret {
        None => "fleet-secret".to_string(),
        Some(secret) if secret.get_ref().is_empty() => {
            return Err(source.error(secret.span(), "`secret` must not be empty"))
        }
        Some(secret) => secret.into_inner(),
    };
    let reauth_delay = match &raw.reauth_delay {
        None => REAUTH_DELAY,
        Some(delay) => positive(delay, "reauth_delay", source)?,
    };
    Ok((Some(AuthParams { secret }), reauth_delay))
}

pub fn check_master(
    raw: Option<RawMaster>,
    defaults: AttemptPolicy,
    source: &Source,
) -> Result<MasterParams, ConfigError> {
    let Some(raw) = raw else {
        return Ok(MasterParams {
            admission: None,
            attempts: defaults,
        });
    };
    let retry_after = match &raw.retry_after {
        None => None,
        Some(after) => Some(positive(after, "retry_after", source)?),
    };
    let admission = match &raw.capacity {
        Some(capacity) if *capacity.get_ref() == 0 => {
            return Err(source.error(
                capacity.span(),
                "`capacity` is registrations per second, at least 1",
            ))
        }
        Some(capacity) => Some(Admission {
            capacity: *capacity.get_ref(),
            retry_after,
        }),
        None => {
            if let Some(after) = &raw.retry_after {
                return Err(source.error(
                    after.span(),
                    "`retry_after` is what a master at `capacity` tells agents; set `capacity` too",
                ));
            }
            None
        }
    };
    let attempts = match raw.attempts {
        None => defaults,
        Some(attempts) => {
            let span = attempts.span();
            let raw = attempts.into_inner();
            let policy = AttemptPolicy {
                enforce: raw.enforce.unwrap_or(defaults.enforce),
                base: raw.base.map_or(defaults.base, |d| d.0),
                max: raw.max.map_or(defaults.max, |d| d.0),
                max_retries: raw.max_retries.unwrap_or(defaults.max_retries),
                expiry: raw.expiry.map_or(defaults.expiry, |d| d.0),
            };
            if policy.base.is_zero() || policy.max < policy.base || policy.expiry.is_zero() {
                return Err(source.error(
                    span,
                    "[params.master.attempts]: base and expiry must be greater than 0, and max at least base",
                ));
            }
            policy
        }
    };
    Ok(MasterParams {
        admission,
        attempts,
    })
}
