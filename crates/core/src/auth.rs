//! Agent credentials: a token is an HMAC-SHA256 of the agent's name under the cluster's secret,
//! so any master holding the secret verifies any agent without asking anyone, and one agent's
//! token says nothing about another's.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeSet;

/// The token `agent` presents when it registers, as lowercase hex.
pub fn token(secret: &str, agent: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(agent.as_bytes());
    let digest = mac.finalize().into_bytes();
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What a master checks registrations against: the cluster's secret and the agents whose
/// credentials were revoked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    secret: String,
    revoked: BTreeSet<String>,
}

/// Why a registration failed authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Wrong,
    Revoked,
}

impl AuthError {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthError::Missing => "no token",
            AuthError::Wrong => "wrong token",
            AuthError::Revoked => "credentials revoked",
        }
    }
}

impl Credentials {
    pub fn new(secret: &str) -> Credentials {
        Credentials {
            secret: secret.to_string(),
            revoked: BTreeSet::new(),
        }
    }

    /// Whether `agent` may register with `token`.
    pub fn verify(&self, agent: &str, token: &str) -> Result<(), AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        // Comparing digests of both sides would hide timing; in a simulation, equality is enough.
        if token != crate::auth::token(&self.secret, agent) {
            return Err(AuthError::Wrong);
        }
        if self.revoked.contains(agent) {
            return Err(AuthError::Revoked);
        }
        Ok(())
    }

    /// Invalidates `agent`'s credentials (`valid = false`) or makes them good again.
    pub fn set_valid(&mut self, agent: &str, valid: bool) {
        if valid {
            self.revoked.remove(agent);
        } else {
            self.revoked.insert(agent.to_string());
        }
    }

    pub fn is_revoked(&self, agent: &str) -> bool {
        self.revoked.contains(agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_the_agents_own_and_the_secrets() {
        let credentials = Credentials::new("s3cret");
        let good = token("s3cret", "agent-1");
        assert_eq!(good.len(), 64);
        assert_eq!(credentials.verify("agent-1", &good), Ok(()));
        assert_eq!(credentials.verify("agent-2", &good), Err(AuthError::Wrong));
        let forged = token("guess", "agent-1");
        assert_eq!(
            credentials.verify("agent-1", &forged),
            Err(AuthError::Wrong)
        );
        assert_eq!(credentials.verify("agent-1", ""), Err(AuthError::Missing));
    }

    #[test]
    fn revoked_credentials_fail_until_restored() {
        let mut credentials = Credentials::new("s3cret");
        let good = token("s3cret", "agent-1");
        credentials.set_valid("agent-1", false);
        assert_eq!(
            credentials.verify("agent-1", &good),
            Err(AuthError::Revoked)
        );
        credentials.set_valid("agent-1", true);
        assert_eq!(credentials.verify("agent-1", &good), Ok(()));
    }
}
