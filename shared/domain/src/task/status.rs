//! Where a task is in its life, and how it ended.
//!
//! [`Status`] carries the outcome with the state that has it: a task that
//! succeeded holds its result, one that failed its error, one that was
//! cancelled who cancelled it, and no other state holds any of them, so a
//! "succeeded" task without a result cannot be written down. [`StatusKind`]
//! is the same state without its outcome: what `?status=` filters on and
//! what the API writes as `"status"`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::TaskError;
use crate::user::{InvalidValue, Username};

/// A task's state, as the fold of its events leaves it.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// Created; no engine has taken it on yet.
    Pending,
    /// An engine took it on (`started`).
    Running,
    /// It ended with `result` (0 for a delay, the script's value, an
    /// export's `{"file", "size", "sha256"}`) and, for a script, what it
    /// printed.
    Succeeded { result: Value, logs: Vec<String> },
    /// It ended with `error`, and for a script what it printed before.
    Failed { error: TaskError, logs: Vec<String> },
    /// `by` cancelled it before it ended.
    Cancelled { by: Username },
}

impl Status {
    /// The state without its outcome.
    pub fn kind(&self) -> StatusKind {
        match self {
            Self::Pending => StatusKind::Pending,
            Self::Running => StatusKind::Running,
            Self::Succeeded { .. } => StatusKind::Succeeded,
            Self::Failed { .. } => StatusKind::Failed,
            Self::Cancelled { .. } => StatusKind::Cancelled,
        }
    }

    /// Whether the task has ended: nothing can change it any more.
    pub fn is_terminal(&self) -> bool {
        self.kind().is_terminal()
    }

    /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
    pub fn as_str(&self) -> &'static str {
        self.kind().as_str()
    }

    /// What a script printed, recorded with its outcome: empty until it
    /// ends, and for a task that was cancelled (nothing is kept of a run
    /// that was stopped).
    pub fn logs(&self) -> &[String] {
        match self {
            Self::Succeeded { logs, .. } | Self::Failed { logs, .. } => logs,
            Self::Pending | Self::Running | Self::Cancelled { .. } => &[],
        }
    }
}

/// A [`Status`] without its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusKind {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl StatusKind {
    pub const ALL: [StatusKind; 5] = [
        Self::Pending,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "pending" => Ok(Self::Pending),
            "running" => Ok(Self::Running),
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            _ => Err(InvalidValue(
                "must be one of pending, running, succeeded, failed, cancelled".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_from_its_own_spelling() {
        for kind in StatusKind::ALL {
            assert_eq!(StatusKind::parse(kind.as_str()), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        assert!(StatusKind::parse("done").is_err());
    }

    #[test]
    fn only_an_outcome_is_terminal_and_only_scripts_outcomes_have_logs() {
        let bob = Username::parse("bob").unwrap();
        let logs = vec!["hi".to_owned()];
        let rows = [
            (Status::Pending, StatusKind::Pending, false, 0),
            (Status::Running, StatusKind::Running, false, 0),
            (
                Status::Succeeded {
                    result: serde_json::json!(1),
                    logs: logs.clone(),
                },
                StatusKind::Succeeded,
                true,
                1,
            ),
            (
                Status::Failed {
                    error: TaskError::new("timeout", "too long"),
                    logs,
                },
                StatusKind::Failed,
                true,
                1,
            ),
            (
                Status::Cancelled { by: bob },
                StatusKind::Cancelled,
                true,
                0,
            ),
        ];
        for (status, kind, terminal, logs) in rows {
            assert_eq!(status.kind(), kind, "{status:?}");
            assert_eq!(status.as_str(), kind.as_str(), "{status:?}");
            assert_eq!(status.is_terminal(), terminal, "{status:?}");
            assert_eq!(status.logs().len(), logs, "{status:?}");
        }
    }
}
