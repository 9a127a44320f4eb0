//! `taskgate audit`: replay the task event log and check it.
//!
//! `verify` reads every event of the configured store, groups them by task
//! and checks each task's invariants (`taskgate_domain::task::verify`): seq
//! without gaps from 1, `created` first, at most one terminal event and
//! nothing after it, and an unbroken hash chain. `replay` shows one task's
//! events and the state they fold to, now or at a given time. `security`
//! prints the security log.

use serde::Serialize;
use taskgate_api::response::{EventView, TaskView};
use taskgate_domain::ports::{SecurityStore, StoreResult, TaskLog};
use taskgate_domain::security::{SecurityEvent, SecurityKind};
use taskgate_domain::task::{TaskEvent, TaskId, Violation, events_until, fold, verify};
use time::OffsetDateTime;

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Report {
    pub tasks: usize,
    pub events: usize,
    pub violations: Vec<(TaskId, Violation)>,
}

impl Report {
    pub fn is_sound(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Replays the whole log and reports every broken invariant.
pub async fn verify_log(log: &dyn TaskLog) -> StoreResult<Report> {
    let by_task = log.events_by_task().await?;
    let mut report = Report {
        tasks: by_task.len(),
        ..Report::default()
    };
    for (id, events) in &by_task {
        report.events += events.len();
        report
            .violations
            .extend(verify(id, events).into_iter().map(|v| (*id, v)));
    }
    Ok(report)
}

/// One task's history and the state it folds to at `at` (default: now).
#[derive(Serialize)]
pub struct Replay<'a> {
    pub at: String,
    pub state: Option<TaskView<'a>>,
    pub events: Vec<EventView<'a>>,
    pub violations: Vec<String>,
}

pub struct Loaded {
    pub events: Vec<TaskEvent>,
    pub state: Option<taskgate_domain::task::Task>,
    pub violations: Vec<Violation>,
    pub at: OffsetDateTime,
}

/// Loads a task and folds its events up to `at`. `None` if there is no such task.
pub async fn replay_task(
    log: &dyn TaskLog,
    id: &TaskId,
    at: Option<OffsetDateTime>,
) -> StoreResult<Option<Loaded>> {
    let events = log.task_events(id).await?;
    if events.is_empty() {
        return Ok(None);
    }
    let violations = verify(id, &events);
    let at = at.unwrap_or_else(taskgate_domain::now);
    let until = events_until(&events, at).to_vec();
    let state = fold(&until).ok();
    Ok(Some(Loaded {
        events: until,
        state,
        violations,
        at,
    }))
}

impl Loaded {
    pub fn view(&self) -> Replay<'_> {
        Replay {
            at: taskgate_domain::timestamp::format(self.at),
            state: self.state.as_ref().map(|task| TaskView::at(task, self.at)),
            events: self.events.iter().map(EventView::from).collect(),
            violations: self.violations.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Which security events `taskgate audit security` prints.
#[derive(Debug, Default)]
pub struct SecurityFilter {
    /// Only events whose subject is this (lower-case) name.
    pub subject: Option<String>,
    /// Only these kinds; empty means all.
    pub kinds: Vec<SecurityKind>,
}

impl SecurityFilter {
    fn matches(&self, event: &SecurityEvent) -> bool {
        self.subject.as_ref().is_none_or(|s| *s == event.subject)
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
    }
}

/// Walks the security log newest first, handing each event that passes
/// `filter` to `print`, at most `limit` of them. Returns how many it printed.
pub async fn security_events(
    store: &dyn SecurityStore,
    filter: &SecurityFilter,
    limit: Option<usize>,
    mut print: impl FnMut(&SecurityEvent) -> std::io::Result<()>,
) -> anyhow::Result<usize> {
    let mut printed = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store.security_events(after.as_deref(), 500).await?;
        for event in page.items.iter().filter(|e| filter.matches(e)) {
            if limit.is_some_and(|limit| printed >= limit) {
                return Ok(printed);
            }
            print(event)?;
            printed += 1;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(printed),
        }
    }
}
