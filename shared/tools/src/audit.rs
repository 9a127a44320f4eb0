//! `taskgate audit`: replay the task event log and the logs of projects and
//! items, and check them.
//!
//! `verify` reads every event of the configured store, groups them by task
//! and checks each task's invariants (`taskgate_domain::task::verify`): seq
//! without gaps from 1, `created` first, at most one terminal event and
//! nothing after it, and an unbroken hash chain. `replay` shows one task's
//! events and the state they fold to, now or at a given time. `security`
//! prints the security log.

use serde::Serialize;
use taskgate_api::response::{EventView, TaskView};
use taskgate_domain::ports::{ProjectStore, SecurityStore, StoreResult, TaskLog};
use taskgate_domain::project::ItemId;
use taskgate_domain::project::log::{self, Item, Project};
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

/// What `verify` found in the logs of projects and items.
#[derive(Debug, Default)]
pub struct ProjectReport {
    pub projects: usize,
    pub items: usize,
    pub entries: usize,
    /// (`project <id>` or `item <id>`, what is wrong).
    pub problems: Vec<(String, String)>,
}

/// Checks every project's and item's log (chain, seqs, creation first,
/// nothing after a deletion) and that each stored row is exactly the fold
/// of its log: the rows can always be rebuilt from the history.
pub async fn verify_projects(store: &dyn ProjectStore) -> StoreResult<ProjectReport> {
    let logs = store.all_logs().await?;
    let mut report = ProjectReport {
        projects: logs.projects.len(),
        items: logs.items.len(),
        entries: logs.projects.values().map(Vec::len).sum::<usize>()
            + logs.items.values().map(Vec::len).sum::<usize>(),
        problems: Vec::new(),
    };
    for (id, log) in &logs.projects {
        let name = format!("project {id}");
        for broken in log::verify_project(log) {
            report.problems.push((name.clone(), broken.to_string()));
        }
        let row = store.get_project(id).await?;
        if row != Project::fold(log) {
            report
                .problems
                .push((name, "its stored row is not the fold of its log".into()));
        }
    }
    for (id, log) in &logs.items {
        let name = format!("item {id}");
        for broken in log::verify_item(log) {
            report.problems.push((name.clone(), broken.to_string()));
        }
        let row = store.get_item(id).await?;
        if row != Item::fold(log) {
            report
                .problems
                .push((name, "its stored row is not the fold of its log".into()));
        }
    }
    Ok(report)
}

/// An item's history and the state it folds to (`None`: no such item).
pub async fn replay_item(
    store: &dyn ProjectStore,
    id: &ItemId,
) -> StoreResult<Option<serde_json::Value>> {
    let log = store.item_log(id).await?;
    if log.is_empty() {
        return Ok(None);
    }
    let problems: Vec<String> = log::verify_item(&log)
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(Some(serde_json::json!({
        "state": Item::fold(&log),
        "events": log,
        "violations": problems,
    })))
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
