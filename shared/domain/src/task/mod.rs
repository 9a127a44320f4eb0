//! Tasks: what a task is, the events that make up its history, and the fold
//! that turns those events into its state.
//!
//! A task's status is never stored; it is computed from its append-only event
//! log. Events are numbered from 1 without gaps; the first is `created`, at
//! most one is terminal (`succeeded`, `failed`, `cancelled`) and nothing
//! follows it. Each event carries the hash of the one before it, and its own
//! hash covers all its fields, so [`verify`] can prove a log was not edited.
//!
//! The state is valid by construction: a [`Task`] holds the [`TaskSpec`] it
//! was created with (a delay has its seconds and no code), and its
//! [`Status`] holds the outcome (a succeeded task has its result, a
//! cancelled one who cancelled it). The stored forms are older than these
//! types and do not follow them: [`TaskCreated`] is written and read in the
//! flat form `created` has always had, so stored hashes stay valid.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::file::FileId;
use crate::project::ProjectId;
use crate::user::{InvalidValue, Level, UserId, Username};

mod created;
mod status;

pub use created::TaskCreated;
pub use status::{Status, StatusKind};

/// A task's id: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(Uuid);

impl TaskId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Uuid::try_parse(raw)
            .map(Self)
            .map_err(|_| InvalidValue("is not a task id".into()))
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl TryFrom<String> for TaskId {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TaskId> for String {
    fn from(value: TaskId) -> Self {
        value.to_string()
    }
}

/// The kinds of task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Wait, then succeed with `0`. Any user may start one.
    Delay,
    /// Run JavaScript; the result is the script's value. Admins only.
    Js,
    /// Write a project's items or a set of files into a new file of the
    /// caller's. Any user may start one.
    Export,
}

impl TaskKind {
    pub const ALL: [TaskKind; 3] = [Self::Delay, Self::Js, Self::Export];

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "delay" => Ok(Self::Delay),
            "js" => Ok(Self::Js),
            "export" => Ok(Self::Export),
            _ => Err(InvalidValue(r#"must be "delay", "js" or "export""#.into())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delay => "delay",
            Self::Js => "js",
            Self::Export => "export",
        }
    }
}

/// What an export writes, and from what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum Export {
    /// A project's items as CSV, one row each, with a header row.
    Csv { project: ProjectId },
    /// A project's items as newline-delimited JSON, one item per line.
    Ndjson { project: ProjectId },
    /// The caller's files in one zip archive.
    Zip { files: Vec<FileId> },
}

impl Export {
    /// Most files one zip export may take.
    pub const MAX_FILES: usize = 1000;

    /// A project export (`format` is `csv` or `ndjson`).
    pub fn project(project: ProjectId, format: &str) -> Result<Self, InvalidValue> {
        match format {
            "csv" => Ok(Self::Csv { project }),
            "ndjson" => Ok(Self::Ndjson { project }),
            "zip" => Err(InvalidValue(
                r#"a project exports as "csv" or "ndjson"; "zip" is for files"#.into(),
            )),
            _ => Err(InvalidValue(r#"must be "csv", "ndjson" or "zip""#.into())),
        }
    }

    /// A zip of `files`: 1 to [`Self::MAX_FILES`], each once.
    pub fn files(files: Vec<FileId>) -> Result<Self, InvalidValue> {
        if files.is_empty() {
            return Err(InvalidValue("must name at least one file".into()));
        }
        if files.len() > Self::MAX_FILES {
            return Err(InvalidValue(format!(
                "must name at most {} files",
                Self::MAX_FILES
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = files.iter().find(|id| !seen.insert(**id)) {
            return Err(InvalidValue(format!("names the file {twice} twice")));
        }
        Ok(Self::Zip { files })
    }

    /// `csv`, `ndjson` or `zip`.
    pub fn format(&self) -> &'static str {
        match self {
            Self::Csv { .. } => "csv",
            Self::Ndjson { .. } => "ndjson",
            Self::Zip { .. } => "zip",
        }
    }

    /// The project exported, for project exports.
    pub fn project_id(&self) -> Option<ProjectId> {
        match self {
            Self::Csv { project } | Self::Ndjson { project } => Some(*project),
            Self::Zip { .. } => None,
        }
    }
}

/// Limits on what a task may ask for and use. Configuration, with defaults
/// documented in the README.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskLimits {
    /// Longest delay, in seconds (`TASKGATE_MAX_DELAY_SECONDS`, default one day).
    pub max_delay_seconds: f64,
    /// Largest script, in bytes of UTF-8 (`TASKGATE_MAX_CODE_BYTES`, default 32 KiB).
    pub max_code_bytes: usize,
    /// Limits of one script run.
    pub js: JsLimits,
}

impl Default for TaskLimits {
    fn default() -> Self {
        Self {
            max_delay_seconds: 86_400.0,
            max_code_bytes: 32 * 1024,
            js: JsLimits::default(),
        }
    }
}

/// Limits of one JavaScript run, enforced on the child process that runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsLimits {
    /// Wall-clock time before the run is killed (`TASKGATE_JS_TIMEOUT_SECONDS`, default 10 s).
    pub wall_time: Duration,
    /// CPU time before the kernel stops the run (`TASKGATE_JS_CPU_SECONDS`, default 10 s).
    pub cpu_time: Duration,
    /// Address space of the child process (`TASKGATE_JS_MEMORY_MB`, default 512 MiB).
    pub memory_bytes: u64,
    /// Largest result, as JSON text (default 256 KiB).
    pub max_result_bytes: usize,
    /// Console lines kept (default 100) and bytes per line (default 1 KiB).
    pub max_log_lines: usize,
    pub max_log_line_bytes: usize,
}

impl Default for JsLimits {
    fn default() -> Self {
        Self {
            wall_time: Duration::from_secs(10),
            cpu_time: Duration::from_secs(10),
            memory_bytes: 512 * 1024 * 1024,
            max_result_bytes: 256 * 1024,
            max_log_lines: 100,
            max_log_line_bytes: 1024,
        }
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskSpec {
    Delay { seconds: f64 },
    Js { code: String },
    Export(Export),
}

impl TaskSpec {
    /// A delay of `seconds`: finite, not negative, at most the limit.
    pub fn delay(seconds: f64, limits: &TaskLimits) -> Result<Self, InvalidValue> {
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(InvalidValue(
                "must be a number of seconds, 0 or more".into(),
            ));
        }
        if seconds > limits.max_delay_seconds {
            return Err(InvalidValue(format!(
                "must be at most {} seconds",
                limits.max_delay_seconds
            )));
        }
        // `-0` passes the check above; adding zero makes it `0`, so it is
        // stored and shown as the client would expect.
        Ok(Self::Delay {
            seconds: seconds + 0.0,
        })
    }

    /// A script: not blank, at most the limit in bytes.
    pub fn js(code: &str, limits: &TaskLimits) -> Result<Self, InvalidValue> {
        if code.trim().is_empty() {
            return Err(InvalidValue("must not be empty".into()));
        }
        if code.len() > limits.max_code_bytes {
            return Err(InvalidValue(format!(
                "must be at most {} bytes",
                limits.max_code_bytes
            )));
        }
        Ok(Self::Js {
            code: code.to_owned(),
        })
    }

    pub fn kind(&self) -> TaskKind {
        match self {
            Self::Delay { .. } => TaskKind::Delay,
            Self::Js { .. } => TaskKind::Js,
            Self::Export(_) => TaskKind::Export,
        }
    }
}

/// Why a task failed: a stable code clients can match, and a sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    pub code: String,
    pub message: String,
}

impl TaskError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// What happened, per event type. Serialised as `{"type": ..., "data": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "lowercase")]
pub enum EventData {
    /// The task was accepted. Holds everything needed to run it.
    Created(TaskCreated),
    /// The workflow took the task on.
    Started {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        execution: Option<String>,
    },
    Succeeded {
        result: serde_json::Value,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        logs: Vec<String>,
    },
    Failed {
        error: TaskError,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        logs: Vec<String>,
    },
    Cancelled {
        by: Username,
    },
}

impl EventData {
    /// Every [`Self::type_name`], in the order events come.
    pub const TYPE_NAMES: [&'static str; 5] =
        ["created", "started", "succeeded", "failed", "cancelled"];

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Succeeded { .. } | Self::Failed { .. } | Self::Cancelled { .. }
        )
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Started { .. } => "started",
            Self::Succeeded { .. } => "succeeded",
            Self::Failed { .. } => "failed",
            Self::Cancelled { .. } => "cancelled",
        }
    }
}

/// The `prev_hash` of a task's first event.
pub use crate::chain::GENESIS_HASH;

/// One entry of a task's log: `task_id`, `seq`, `at`, `actor`, the event
/// (`type` and its fields), `prev_hash`, `hash` ([`crate::chain`]).
pub type TaskEvent = crate::chain::Entry<TaskId, EventData>;

impl crate::chain::StreamId for TaskId {
    const FIELD: &'static str = "task_id";
}

/// A task's state: the fold of its events.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub id: TaskId,
    /// What it runs, as `created` recorded it.
    pub spec: TaskSpec,
    pub owner: Username,
    pub owner_id: UserId,
    pub owner_level: Level,
    /// Where it is, and how it ended once it has.
    pub status: Status,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    /// When a delay is due (created + seconds); `None` for other kinds.
    pub due_at: Option<OffsetDateTime>,
    /// How far a running export has got, as it last reported (kept beside
    /// the log, not in it: see [`crate::ports::TaskLog::record_progress`]).
    pub reported_progress: Option<f64>,
    /// The last event's seq and hash, for appending the next one.
    pub last_seq: u64,
}

impl Task {
    /// The account that started the task, as it was then (its level at
    /// creation): whom an export acts for.
    pub fn owner_actor(&self) -> crate::permission::Actor {
        crate::permission::Actor {
            username: self.owner.clone(),
            user_id: self.owner_id,
            level: self.owner_level,
        }
    }

    /// Its kind, from its spec.
    pub fn kind(&self) -> TaskKind {
        self.spec.kind()
    }

    /// How far a delay or an export has got, from 0 to 1, at `now`. `None`
    /// for scripts (they cannot tell) and for tasks that ended without
    /// succeeding.
    pub fn progress(&self, now: OffsetDateTime) -> Option<f64> {
        match (&self.spec, &self.status) {
            (TaskSpec::Js { .. }, _) => None,
            (_, Status::Failed { .. } | Status::Cancelled { .. }) => None,
            (_, Status::Succeeded { .. }) => Some(1.0),
            (_, Status::Pending) => Some(0.0),
            (TaskSpec::Export(_), Status::Running) => {
                Some(self.reported_progress.unwrap_or(0.0).clamp(0.0, 1.0))
            }
            (TaskSpec::Delay { .. }, Status::Running) => {
                let (start, due) = (self.created_at, self.due_at?);
                let total = (due - start).as_seconds_f64();
                if total <= 0.0 {
                    return Some(1.0);
                }
                Some(((now - start).as_seconds_f64() / total).clamp(0.0, 1.0))
            }
        }
    }
}

/// A broken rule of the event log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("the task has no events")]
    Empty,
    #[error("event {seq} belongs to task {other}")]
    WrongTask { seq: u64, other: TaskId },
    #[error("expected event {expected}, found {found} (a gap or a duplicate)")]
    SeqGap { expected: u64, found: u64 },
    #[error("the first event is {found}, not created")]
    FirstNotCreated { found: &'static str },
    #[error("event {seq} is a second created event")]
    CreatedAgain { seq: u64 },
    #[error("event {seq} ({kind}) follows the terminal event {terminal_seq}")]
    AfterTerminal {
        seq: u64,
        kind: &'static str,
        terminal_seq: u64,
    },
    #[error("event {seq} is a second terminal event (the first is {first})")]
    SecondTerminal { seq: u64, first: u64 },
    #[error("event {seq}'s prev_hash does not match event {previous}'s hash")]
    BrokenChain { seq: u64, previous: u64 },
    #[error("event {seq}'s hash does not match its contents (edited?)")]
    HashMismatch { seq: u64 },
}

impl From<crate::chain::Fault<TaskId>> for Violation {
    fn from(fault: crate::chain::Fault<TaskId>) -> Self {
        use crate::chain::Fault;
        match fault {
            Fault::Stream { seq, other } => Self::WrongTask { seq, other },
            Fault::Sequence { seq, expected } => Self::SeqGap {
                expected,
                found: seq,
            },
            Fault::Hash { seq } => Self::HashMismatch { seq },
            Fault::Chain { seq, previous } => Self::BrokenChain { seq, previous },
        }
    }
}

/// Every rule the log of one task breaks, in order of the events: the
/// chain's ([`crate::chain::verify`]), then a task's own (`created` first
/// and once, nothing after the outcome). Empty means the log is sound.
pub fn verify(task_id: &TaskId, events: &[TaskEvent]) -> Vec<Violation> {
    if events.is_empty() {
        return vec![Violation::Empty];
    }
    let mut terminal: Option<u64> = None;
    crate::chain::verify(task_id, events, |violations, i, event| {
        let is_created = matches!(event.change, EventData::Created(_));
        if i == 0 && !is_created {
            violations.push(Violation::FirstNotCreated {
                found: event.change.type_name(),
            });
        } else if i > 0 && is_created {
            violations.push(Violation::CreatedAgain { seq: event.seq });
        }
        if let Some(terminal_seq) = terminal {
            if event.change.is_terminal() {
                violations.push(Violation::SecondTerminal {
                    seq: event.seq,
                    first: terminal_seq,
                });
            } else {
                violations.push(Violation::AfterTerminal {
                    seq: event.seq,
                    kind: event.change.type_name(),
                    terminal_seq,
                });
            }
        } else if event.change.is_terminal() {
            terminal = Some(event.seq);
        }
    })
}

/// The state the events describe. Fails on a log whose structure is broken
/// (no `created` first, a gap); hashes are [`verify`]'s business.
pub fn fold(events: &[TaskEvent]) -> Result<Task, Violation> {
    let Some(first) = events.first() else {
        return Err(Violation::Empty);
    };
    let EventData::Created(created) = &first.change else {
        return Err(Violation::FirstNotCreated {
            found: first.change.type_name(),
        });
    };
    let mut task = Task {
        id: first.stream,
        spec: created.spec.clone(),
        owner: created.owner.clone(),
        owner_id: created.owner_id,
        owner_level: created.owner_level,
        status: Status::Pending,
        created_at: first.at,
        updated_at: first.at,
        started_at: None,
        due_at: created.due_at,
        reported_progress: None,
        last_seq: first.seq,
    };
    if first.seq != 1 {
        return Err(Violation::SeqGap {
            expected: 1,
            found: first.seq,
        });
    }
    for event in &events[1..] {
        if event.seq != task.last_seq + 1 {
            return Err(Violation::SeqGap {
                expected: task.last_seq + 1,
                found: event.seq,
            });
        }
        task.last_seq = event.seq;
        // After a terminal event nothing changes the state: the first
        // outcome stands (verify reports the extra events).
        if task.status.is_terminal() {
            continue;
        }
        task.updated_at = event.at;
        match &event.change {
            EventData::Created(_) => return Err(Violation::CreatedAgain { seq: event.seq }),
            EventData::Started { .. } => {
                task.status = Status::Running;
                task.started_at = Some(event.at);
            }
            EventData::Succeeded { result, logs } => {
                task.status = Status::Succeeded {
                    result: result.clone(),
                    logs: logs.clone(),
                };
            }
            EventData::Failed { error, logs } => {
                task.status = Status::Failed {
                    error: error.clone(),
                    logs: logs.clone(),
                };
            }
            EventData::Cancelled { by } => {
                task.status = Status::Cancelled { by: by.clone() };
            }
        }
    }
    Ok(task)
}

/// The events up to and including `at` (for replaying a task's past).
pub fn events_until(events: &[TaskEvent], at: OffsetDateTime) -> &[TaskEvent] {
    let end = events.iter().take_while(|e| e.at <= at).count();
    &events[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Username {
        Username::parse("alice").unwrap()
    }

    fn created(id: TaskId) -> TaskEvent {
        created_as(
            id,
            TaskSpec::Delay { seconds: 5.0 },
            Some(crate::now() + Duration::from_secs(5)),
        )
    }

    fn created_as(id: TaskId, spec: TaskSpec, due_at: Option<OffsetDateTime>) -> TaskEvent {
        TaskEvent::first(
            id,
            crate::now(),
            Some(owner()),
            EventData::Created(TaskCreated {
                spec,
                owner: owner(),
                owner_id: UserId::new(),
                owner_level: Level::User,
                due_at,
                engine: None,
            }),
        )
    }

    /// given `data` appended in order after `created`
    fn log(data: Vec<EventData>) -> Vec<TaskEvent> {
        log_of(created(TaskId::new()), data)
    }

    /// given `data` appended in order after `first`
    fn log_of(first: TaskEvent, data: Vec<EventData>) -> Vec<TaskEvent> {
        let mut events = vec![first];
        for data in data {
            let next = events.last().unwrap().next(crate::now(), None, data);
            events.push(next);
        }
        events
    }

    fn succeeded() -> EventData {
        EventData::Succeeded {
            result: serde_json::json!(0),
            logs: vec![],
        }
    }

    #[test]
    fn type_names_lists_every_event_type_in_order() {
        let names: Vec<&str> = [
            created(TaskId::new()).change,
            EventData::Started { execution: None },
            succeeded(),
            EventData::Failed {
                error: TaskError::new("script-error", "x"),
                logs: Vec::new(),
            },
            EventData::Cancelled { by: owner() },
        ]
        .iter()
        .map(EventData::type_name)
        .collect();
        assert_eq!(names, EventData::TYPE_NAMES);
    }

    #[test]
    fn a_new_task_is_pending_then_running_then_done() {
        let events = log(vec![]);
        assert_eq!(fold(&events).unwrap().status, Status::Pending);
        let events = log(vec![EventData::Started { execution: None }]);
        assert_eq!(fold(&events).unwrap().status, Status::Running);
        let events = log(vec![EventData::Started { execution: None }, succeeded()]);
        let task = fold(&events).unwrap();
        assert_eq!(
            task.status,
            Status::Succeeded {
                result: serde_json::json!(0),
                logs: vec![]
            }
        );
        assert!(verify(&task.id, &events).is_empty());
    }

    #[test]
    fn the_first_terminal_event_decides_the_outcome() {
        let events = log(vec![EventData::Cancelled { by: owner() }, succeeded()]);
        let task = fold(&events).unwrap();
        assert_eq!(task.status, Status::Cancelled { by: owner() });
        assert_eq!(
            verify(&task.id, &events),
            vec![Violation::SecondTerminal { seq: 3, first: 2 }]
        );
    }

    #[test]
    fn verify_names_every_broken_rule() {
        let started = EventData::Started { execution: None };
        // An event after the terminal one.
        let events = log(vec![succeeded(), started.clone()]);
        assert_eq!(
            verify(&events[0].stream, &events),
            vec![Violation::AfterTerminal {
                seq: 3,
                kind: "started",
                terminal_seq: 2
            }]
        );
        // A gap.
        let mut events = log(vec![started.clone(), succeeded()]);
        events.remove(1);
        let violations = verify(&events[0].stream, &events);
        assert!(
            violations.contains(&Violation::SeqGap {
                expected: 2,
                found: 3
            }),
            "{violations:?}"
        );
        assert!(
            violations.contains(&Violation::BrokenChain {
                seq: 3,
                previous: 1
            }),
            "{violations:?}"
        );
        // An edited event: its own hash no longer matches.
        let mut events = log(vec![succeeded()]);
        events[1].change = EventData::Succeeded {
            result: serde_json::json!(42),
            logs: vec![],
        };
        assert_eq!(
            verify(&events[0].stream, &events),
            vec![Violation::HashMismatch { seq: 2 }]
        );
        // An edited and re-hashed event: the next event's prev_hash betrays it.
        let mut events = log(vec![started, succeeded()]);
        events[1].actor = Some(owner());
        events[1].hash = events[1].computed_hash();
        assert_eq!(
            verify(&events[0].stream, &events),
            vec![Violation::BrokenChain {
                seq: 3,
                previous: 2
            }]
        );
        // A log that does not start with created.
        let events = log(vec![succeeded()]);
        assert_eq!(
            verify(&events[0].stream, &events[1..]),
            vec![
                Violation::SeqGap {
                    expected: 1,
                    found: 2
                },
                Violation::BrokenChain {
                    seq: 2,
                    previous: 0
                },
                Violation::FirstNotCreated { found: "succeeded" },
            ]
        );
    }

    #[test]
    fn events_round_trip_through_json_with_the_same_hash() {
        let events = log(vec![EventData::Failed {
            error: TaskError::new("script-error", "x is not defined"),
            logs: vec!["line".into()],
        }]);
        for event in &events {
            let text = serde_json::to_string(event).unwrap();
            let back: TaskEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(&back, event);
            assert_eq!(back.computed_hash(), event.hash);
        }
    }

    #[test]
    fn delay_progress_runs_from_zero_to_one() {
        let events = log(vec![EventData::Started { execution: None }]);
        let task = fold(&events).unwrap();
        let due = task.due_at.unwrap();
        assert_eq!(task.progress(task.created_at), Some(0.0));
        let halfway = task
            .progress(task.created_at + (due - task.created_at) / 2)
            .unwrap();
        assert!((halfway - 0.5).abs() < 0.01, "{halfway}");
        assert_eq!(task.progress(due + Duration::from_secs(60)), Some(1.0));
    }

    #[test]
    fn delays_and_scripts_are_checked_against_the_limits() {
        let limits = TaskLimits::default();
        assert!(TaskSpec::delay(0.5, &limits).is_ok());
        for bad in [
            -1.0,
            f64::NAN,
            f64::INFINITY,
            limits.max_delay_seconds + 1.0,
        ] {
            assert!(TaskSpec::delay(bad, &limits).is_err(), "{bad}");
        }
        // Negative zero is zero, not a delay that shows as `-0.0`.
        match TaskSpec::delay(-0.0, &limits).unwrap() {
            TaskSpec::Delay { seconds } => assert!(seconds.is_sign_positive()),
            other => panic!("{other:?}"),
        }
        assert!(TaskSpec::js("1 + 1", &limits).is_ok());
        assert!(TaskSpec::js("  ", &limits).is_err());
        assert!(TaskSpec::js(&"1;".repeat(limits.max_code_bytes), &limits).is_err());
    }

    fn started() -> EventData {
        EventData::Started { execution: None }
    }

    #[test]
    fn each_outcome_is_folded_into_a_status_that_carries_it() {
        let error = TaskError::new("script-error", "x is not defined");
        let logs = vec!["line".to_owned()];
        let rows = [
            (
                "succeeded",
                EventData::Succeeded {
                    result: serde_json::json!({"n": 42}),
                    logs: logs.clone(),
                },
                Status::Succeeded {
                    result: serde_json::json!({"n": 42}),
                    logs: logs.clone(),
                },
            ),
            (
                "failed",
                EventData::Failed {
                    error: error.clone(),
                    logs: logs.clone(),
                },
                Status::Failed {
                    error,
                    logs: logs.clone(),
                },
            ),
            (
                "cancelled",
                EventData::Cancelled { by: owner() },
                Status::Cancelled { by: owner() },
            ),
        ];
        for (outcome, data, expected) in rows {
            let events = log(vec![started(), data]);
            let task = fold(&events).unwrap();
            assert_eq!(task.status, expected, "{outcome}");
            assert_eq!(task.status.as_str(), outcome);
            assert_eq!(task.updated_at, events[2].at, "{outcome}");
            assert_eq!(task.started_at, Some(events[1].at), "{outcome}");
        }
    }

    #[test]
    fn an_outcome_recorded_before_any_start_is_folded_the_same() {
        let events = log(vec![succeeded()]);
        let task = fold(&events).unwrap();
        assert_eq!(
            task.status,
            Status::Succeeded {
                result: serde_json::json!(0),
                logs: vec![]
            }
        );
        assert_eq!(task.started_at, None);
    }

    #[test]
    fn a_task_keeps_the_spec_it_was_created_with() {
        let project = ProjectId::parse("01a24237-ac42-7279-b730-476c47f8c3af").unwrap();
        let rows = [
            (TaskSpec::Delay { seconds: 2.5 }, TaskKind::Delay),
            (
                TaskSpec::Js {
                    code: "1 + 1".into(),
                },
                TaskKind::Js,
            ),
            (TaskSpec::Export(Export::Csv { project }), TaskKind::Export),
        ];
        for (spec, kind) in rows {
            let first = created_as(TaskId::new(), spec.clone(), None);
            let task = fold(&[first]).unwrap();
            assert_eq!((&task.spec, task.kind()), (&spec, kind));
        }
    }

    #[test]
    fn progress_follows_the_kind_and_the_status() {
        let project = ProjectId::parse("01a24237-ac42-7279-b730-476c47f8c3af").unwrap();
        let script = || TaskSpec::Js { code: "1".into() };
        let export = || TaskSpec::Export(Export::Csv { project });
        let failed = || EventData::Failed {
            error: TaskError::new("timeout", "too long"),
            logs: vec![],
        };
        let cancelled = || EventData::Cancelled { by: owner() };
        let rows: [(TaskSpec, Vec<EventData>, Option<f64>); 8] = [
            (script(), vec![started()], None),
            (script(), vec![succeeded()], None),
            (export(), vec![], Some(0.0)),
            (export(), vec![started()], Some(0.25)),
            (export(), vec![started(), succeeded()], Some(1.0)),
            (export(), vec![started(), failed()], None),
            (export(), vec![cancelled()], None),
            (TaskSpec::Delay { seconds: 5.0 }, vec![failed()], None),
        ];
        for (spec, data, expected) in rows {
            let first = created_as(TaskId::new(), spec.clone(), None);
            let mut task = fold(&log_of(first, data.clone())).unwrap();
            task.reported_progress = Some(0.25);
            assert_eq!(task.progress(crate::now()), expected, "{spec:?} {data:?}");
        }
    }

    #[test]
    fn a_created_event_is_written_in_its_stored_form() {
        let id = TaskId::parse("01a24237-ae88-749e-934a-4847f78290db").unwrap();
        let at = time::macros::datetime!(2026-12-05 09:00:00.125 UTC);
        let owner_id = UserId::parse("0bdbd1d9-6150-412a-a953-d8954f70cb91").unwrap();
        let project = ProjectId::parse("01a24237-ac42-7279-b730-476c47f8c3af").unwrap();
        let event = |spec, due_at, engine: Option<&str>| {
            TaskEvent::first(
                id,
                at,
                Some(owner()),
                EventData::Created(TaskCreated {
                    spec,
                    owner: owner(),
                    owner_id,
                    owner_level: Level::Admin,
                    due_at,
                    engine: engine.map(str::to_owned),
                }),
            )
        };
        let rows = [
            (
                event(
                    TaskSpec::Delay { seconds: 2.75 },
                    Some(at + Duration::from_millis(2750)),
                    None,
                ),
                // Written by the build before `created` held a TaskSpec.
                r#"{"task_id":"01a24237-ae88-749e-934a-4847f78290db","seq":1,"at":"2026-12-05T09:00:00.125Z","actor":"alice","type":"created","data":{"kind":"delay","seconds":2.75,"owner":"alice","owner_id":"0bdbd1d9-6150-412a-a953-d8954f70cb91","owner_level":"admin","due_at":"2026-12-05T09:00:02.875Z"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"454ca24493f8f9c83cf33ee13e3e1dbef15bf6309227c5a8baee037f8a097e77"}"#,
            ),
            (
                event(
                    TaskSpec::Js {
                        code: "throw new Error(\"boom\")".into(),
                    },
                    None,
                    Some("local:engine"),
                ),
                r#"{"task_id":"01a24237-ae88-749e-934a-4847f78290db","seq":1,"at":"2026-12-05T09:00:00.125Z","actor":"alice","type":"created","data":{"kind":"js","code":"throw new Error(\"boom\")","owner":"alice","owner_id":"0bdbd1d9-6150-412a-a953-d8954f70cb91","owner_level":"admin","engine":"local:engine"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"#,
            ),
            (
                event(
                    TaskSpec::Export(Export::Ndjson { project }),
                    None,
                    Some("step-functions"),
                ),
                r#"{"task_id":"01a24237-ae88-749e-934a-4847f78290db","seq":1,"at":"2026-12-05T09:00:00.125Z","actor":"alice","type":"created","data":{"kind":"export","export":{"format":"ndjson","project":"01a24237-ac42-7279-b730-476c47f8c3af"},"owner":"alice","owner_id":"0bdbd1d9-6150-412a-a953-d8954f70cb91","owner_level":"admin","engine":"step-functions"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"#,
            ),
        ];
        for (event, stored) in rows {
            let text = serde_json::to_string(&event).unwrap();
            assert!(text.starts_with(stored), "{text}\n  is not\n{stored}");
            let back: TaskEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(back, event);
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
            assert_eq!(back.computed_hash(), event.hash);
        }
    }
}
