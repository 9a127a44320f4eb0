//! The security audit log and login throttling.
//!
//! [`SecurityEvent`]s record logins (success, failure, lockout) and every
//! change to accounts and tokens; the log is append-only and admins read it
//! newest first. [`LoginThrottle`] decides, from the failures counted for a
//! login key ([`LoginKey`]), whether a login attempt may go ahead at all.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::token::TokenId;
use crate::user::Username;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityKind {
    LoginSucceeded,
    LoginFailed,
    /// An attempt refused unheard because the login key was locked.
    LoginLocked,
    UserCreated,
    UserUpdated,
    UserDeleted,
    /// A logout: one token revoked.
    TokenRevoked,
}

impl SecurityKind {
    pub const ALL: &'static [SecurityKind] = &[
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::LoginLocked,
        Self::UserCreated,
        Self::UserUpdated,
        Self::UserDeleted,
        Self::TokenRevoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login-succeeded",
            Self::LoginFailed => "login-failed",
            Self::LoginLocked => "login-locked",
            Self::UserCreated => "user-created",
            Self::UserUpdated => "user-updated",
            Self::UserDeleted => "user-deleted",
            Self::TokenRevoked => "token-revoked",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == raw)
    }
}

/// One entry of the security audit log. Never holds a secret: no password,
/// no token (a token is named by its id, `jti`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecurityEvent {
    /// A UUID v7: ids sort by time.
    pub id: String,
    #[serde(with = "crate::timestamp")]
    pub at: OffsetDateTime,
    pub kind: SecurityKind,
    /// Who acted (the caller's username); `None` for anonymous requests
    /// (logins, open sign-up).
    pub actor: Option<Username>,
    /// Whom or what it concerns: a username. For logins, the username as
    /// typed (lower-cased, at most 64 characters), whether or not it exists.
    pub subject: String,
    /// The request that caused it, to find its log lines.
    pub request_id: Option<String>,
    /// Event-specific facts: changed field names (never values), token id,
    /// failure count, lock end.
    pub detail: serde_json::Map<String, serde_json::Value>,
}

impl SecurityEvent {
    pub fn new(kind: SecurityKind, actor: Option<&Username>, subject: impl Into<String>) -> Self {
        let at = crate::now();
        let mut subject: String = subject.into().to_lowercase();
        if let Some((cut, _)) = subject.char_indices().nth(64) {
            subject.truncate(cut);
        }
        Self {
            id: new_event_id(),
            at,
            kind,
            actor: actor.cloned(),
            subject,
            request_id: None,
            detail: serde_json::Map::new(),
        }
    }

    pub fn with_request_id(mut self, request_id: &str) -> Self {
        self.request_id = Some(request_id.to_owned());
        self
    }

    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.detail.insert(name.to_owned(), value.into());
        self
    }
}

fn new_event_id() -> String {
    Uuid::now_v7().to_string()
}

/// Whose failures an attempt counts against: the username for clients the
/// server does not know, or a device that has logged in as that user before
/// (see docs/adr/0008). An attacker hammering a username locks out the
/// former, never the latter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginKey {
    Username(Username),
    Device(TokenId),
}

impl LoginKey {
    /// The key as stored: `user:<name>` or `device:<id>`.
    pub fn as_key(&self) -> String {
        match self {
            Self::Username(name) => format!("user:{name}"),
            Self::Device(id) => format!("device:{id}"),
        }
    }
}

/// Consecutive failed logins counted for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginAttempts {
    pub failures: u32,
    /// When the last one was made.
    pub last_at: OffsetDateTime,
}

/// What may happen next for a login key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; count the attempt as `next` (a failure until it succeeds).
    Allowed { next: LoginAttempts },
    /// Refuse without checking the password until `until`.
    Locked { until: OffsetDateTime },
}

/// The throttling rule: the first `free_failures` failures cost nothing;
/// after that, each failure locks the key for `backoff`, doubling with every
/// further failure, but never longer than `max_lock`. A key whose last
/// failure is `forget_after` old starts again from zero. A success clears it.
///
/// With the defaults (5, 1 s, 15 min, 1 day) a username can be tried about
/// 100 times a day by someone who does not know the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginThrottle {
    pub free_failures: u32,
    pub backoff: Duration,
    pub max_lock: Duration,
    pub forget_after: Duration,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            free_failures: 5,
            backoff: Duration::from_secs(1),
            max_lock: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl LoginThrottle {
    /// The attempts that still count at `now` (`None` once forgotten).
    pub fn current(
        &self,
        attempts: Option<LoginAttempts>,
        now: OffsetDateTime,
    ) -> Option<LoginAttempts> {
        attempts.filter(|a| now - a.last_at < self.forget_after)
    }

    /// Until when `attempts` lock their key; `None` if they do not.
    pub fn locked_until(&self, attempts: &LoginAttempts) -> Option<OffsetDateTime> {
        let over = attempts.failures.checked_sub(self.free_failures)?;
        // backoff · 2^over, saturating well before it could overflow.
        let factor = 1u32.checked_shl(over.min(30)).unwrap_or(u32::MAX);
        let lock = self.backoff.saturating_mul(factor).min(self.max_lock);
        Some(attempts.last_at + lock)
    }

    /// Whether an attempt at `now` may go ahead, given what is stored.
    pub fn admit(&self, stored: Option<LoginAttempts>, now: OffsetDateTime) -> Admission {
        let current = self.current(stored, now);
        if let Some(until) = current.as_ref().and_then(|a| self.locked_until(a))
            && until > now
        {
            return Admission::Locked { until };
        }
        Admission::Allowed {
            next: LoginAttempts {
                failures: current.map_or(0, |a| a.failures).saturating_add(1),
                last_at: now,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    fn attempts(failures: u32, last: i64) -> Option<LoginAttempts> {
        Some(LoginAttempts {
            failures,
            last_at: at(last),
        })
    }

    #[test]
    fn free_failures_never_lock() {
        let throttle = LoginThrottle::default();
        for failures in 0..5 {
            assert!(matches!(
                throttle.admit(attempts(failures, 0), at(0)),
                Admission::Allowed { .. }
            ));
        }
    }

    #[test]
    fn locks_grow_by_doubling_up_to_the_cap() {
        let throttle = LoginThrottle::default();
        let lock = |failures| {
            let a = attempts(failures, 0).unwrap();
            (throttle.locked_until(&a).unwrap() - at(0)).whole_seconds()
        };
        assert_eq!(
            [5, 6, 7, 8, 14, 15, 16, 40, u32::MAX].map(lock),
            [1, 2, 4, 8, 512, 900, 900, 900, 900]
        );
    }

    #[test]
    fn a_lock_ends_and_the_next_attempt_counts_on() {
        let throttle = LoginThrottle::default();
        assert_eq!(
            throttle.admit(attempts(7, 100), at(103)),
            Admission::Locked { until: at(104) }
        );
        assert_eq!(
            throttle.admit(attempts(7, 100), at(104)),
            Admission::Allowed {
                next: LoginAttempts {
                    failures: 8,
                    last_at: at(104)
                }
            }
        );
    }

    #[test]
    fn old_failures_are_forgotten() {
        let throttle = LoginThrottle::default();
        let day = 24 * 3600;
        assert_eq!(
            throttle.admit(attempts(40, 0), at(day)),
            Admission::Allowed {
                next: LoginAttempts {
                    failures: 1,
                    last_at: at(day)
                }
            }
        );
    }

    #[test]
    fn subjects_are_lower_cased_and_bounded() {
        let event = SecurityEvent::new(SecurityKind::LoginFailed, None, "É".repeat(100));
        assert_eq!(event.subject, "é".repeat(64));
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"], "login-failed");
        let back: SecurityEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
