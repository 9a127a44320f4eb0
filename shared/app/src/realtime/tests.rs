//! The state machines without a store or a socket: given the entries (as
//! the hub pushes them or a read finds them), then the messages.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use taskgate_domain::permission::Actor;
use taskgate_domain::project::log::{
    Item, ItemChange, ItemEntry, Project, ProjectChange, ProjectChanges, ProjectEntry,
};
use taskgate_domain::project::{ItemId, ItemStatus, ProjectId, ProjectName, ProjectRole, Title};
use taskgate_domain::task::{
    EventData, Export, Task, TaskCreated, TaskEvent, TaskId, TaskKind, TaskSpec, fold,
};
use taskgate_domain::user::{Level, UserId, Username};
use time::OffsetDateTime;
use time::macros::datetime;

use super::*;

const AT: OffsetDateTime = datetime!(2026-12-04 00:00 UTC);

fn actor(name: &str, level: Level) -> Actor {
    Actor {
        username: Username::parse(name).unwrap(),
        user_id: UserId::new(),
        level,
    }
}

/// A project's log, its feed positions counted from 1 over this project's
/// entries and the items' (the test says which position each gets).
struct Fixture {
    owner: Actor,
    member: Actor,
    /// A global admin who is not a member.
    root: Actor,
    log: Vec<ProjectEntry>,
}

impl Fixture {
    /// A project of `owner`'s with `member` in it.
    fn new() -> Self {
        let owner = actor("ann", Level::User);
        let member = actor("bob", Level::User);
        let root = actor("root", Level::Admin);
        let id = ProjectId::new();
        let created = ProjectEntry::first(
            id,
            AT,
            Some(owner.username.clone()),
            ProjectChange::Created {
                name: ProjectName::parse("Launch").unwrap(),
                description: None,
                owner: owner.username.clone(),
                owner_id: owner.user_id,
            },
        );
        let added = created.next(
            AT,
            Some(owner.username.clone()),
            ProjectChange::MemberAdded {
                username: member.username.clone(),
                user_id: member.user_id,
                role: ProjectRole::Member,
            },
        );
        Self {
            owner,
            member,
            root,
            log: vec![created, added],
        }
    }

    fn project(&self) -> Project {
        Project::fold(&self.log).unwrap()
    }

    /// Appends `change` to the project's log: the entry at `position`.
    fn change(&mut self, position: u64, change: ProjectChange) -> Rendered {
        let before = self.project();
        let entry = self
            .log
            .last()
            .unwrap()
            .next(AT, Some(self.owner.username.clone()), change);
        self.log.push(entry.clone());
        Rendered::Project {
            position,
            entry,
            before: Some(before),
            after: self.project(),
        }
    }

    fn renamed(&mut self, position: u64) -> Rendered {
        self.change(
            position,
            ProjectChange::Updated(ProjectChanges {
                name: Some(ProjectName::parse(&format!("Launch {position}")).unwrap()),
                ..ProjectChanges::default()
            }),
        )
    }

    /// A new item of the project's: the entry at `position`.
    fn item(&self, position: u64) -> Rendered {
        let entry = ItemEntry::first(
            ItemId::new(),
            AT,
            Some(self.owner.username.clone()),
            ItemChange::Created {
                project_id: self.project().id,
                title: Title::parse("Ship it").unwrap(),
                description: None,
                status: ItemStatus::Pending,
                due_date: None,
                assignee: None,
                created_by: self.owner.username.clone(),
            },
        );
        let item = Item::fold(std::slice::from_ref(&entry)).unwrap();
        Rendered::Item {
            position,
            entry,
            item,
            shown: Shown::default(),
        }
    }

    /// Renamings at `positions`.
    fn renamings(&mut self, positions: impl IntoIterator<Item = u64>) -> Vec<Rendered> {
        positions.into_iter().map(|p| self.renamed(p)).collect()
    }
}

fn parsed(step: &Step) -> Vec<Value> {
    step.messages
        .iter()
        .map(|m| serde_json::from_str(m).unwrap())
        .collect()
}

/// The `seq` of each message (`None` for those without one).
fn seqs(step: &Step) -> Vec<Option<u64>> {
    parsed(step).iter().map(|m| m["seq"].as_u64()).collect()
}

fn delivered(positions: impl IntoIterator<Item = u64>) -> Vec<Option<u64>> {
    positions.into_iter().map(Some).collect()
}

/// The step of a pushed entry that asks for no read.
fn pushed(feed: &mut ProjectFeed, rendered: Rendered, viewer: &Actor, now: Instant) -> Step {
    match feed.live(rendered, viewer, now) {
        Live::Step(step) => step,
        Live::Fill(gap) => panic!("a fill of {gap:?} was asked for"),
    }
}

fn error_of(message: &Value) -> (u64, &str) {
    assert_eq!(message["type"], "error", "{message}");
    (
        message["status"].as_u64().unwrap(),
        message["detail"].as_str().unwrap(),
    )
}

/// One notice reaches every subscriber: its item message is made once and
/// is the same for each (the owner and a member here), as if made for one.
#[test]
fn an_item_shown_to_many_subscribers_is_the_same_message_for_each() {
    let f = Fixture::new();
    let notice = f.item(1);
    // The same entry, with nothing made yet.
    let Rendered::Item {
        position,
        entry,
        item,
        ..
    } = notice.clone()
    else {
        unreachable!("an item entry")
    };
    let alone = Rendered::Item {
        position,
        entry,
        item,
        shown: Shown::default(),
    };
    let mut messages = Vec::new();
    for viewer in [&f.owner, &f.member] {
        let mut feed = ProjectFeed::new(f.project(), 0);
        let step = pushed(&mut feed, notice.clone(), viewer, Instant::now());
        messages.push(parsed(&step));
    }
    let mut feed = ProjectFeed::new(f.project(), 0);
    let fresh = parsed(&pushed(&mut feed, alone, &f.member, Instant::now()));
    assert_eq!(messages[0], fresh);
    assert_eq!(messages[1], fresh);
    assert_eq!(fresh[0]["event"]["kind"], "item.created");
}

#[test]
fn a_pushed_entry_ahead_of_the_next_is_held_until_the_ones_before_it_arrive() {
    let mut f = Fixture::new();
    let viewer = f.member.clone();
    let mut feed = ProjectFeed::new(f.project(), 0);
    let [one, two, three] = <[Rendered; 3]>::try_from(f.renamings(1..=3)).unwrap();
    let now = Instant::now();
    assert_eq!(seqs(&pushed(&mut feed, one, &viewer, now)), delivered([1]));
    assert_eq!(pushed(&mut feed, three, &viewer, now), Step::default());
    assert_eq!(
        seqs(&pushed(&mut feed, two, &viewer, now)),
        delivered([2, 3]),
        "the held entry follows the one that closed the gap"
    );
    assert_eq!(feed.last(), 3);
    assert_eq!(feed.stale(now + GAP_WAIT), None, "no gap is left");
}

#[test]
fn a_gap_that_does_not_close_within_the_wait_is_read_then_the_held_entries_follow() {
    let mut f = Fixture::new();
    let viewer = f.member.clone();
    let mut feed = ProjectFeed::new(f.project(), 1);
    let mut entries = f.renamings(2..=6).into_iter();
    let (two, three, four) = (
        entries.next().unwrap(),
        entries.next().unwrap(),
        entries.next().unwrap(),
    );
    let (five, six) = (entries.next().unwrap(), entries.next().unwrap());
    let opened = Instant::now();
    assert!(!feed.gap_open(), "nothing waits yet");
    assert_eq!(pushed(&mut feed, five, &viewer, opened), Step::default());
    assert!(feed.gap_open(), "2 to 4 are missing");
    assert_eq!(
        pushed(&mut feed, six, &viewer, opened + Duration::from_millis(150)),
        Step::default()
    );
    // The wait counts from when the gap opened.
    assert_eq!(
        feed.stale(opened + GAP_WAIT - Duration::from_millis(1)),
        None
    );
    let gap = feed.stale(opened + GAP_WAIT).expect("a stale gap");
    assert_eq!(gap, Gap { until: 5 });
    // The read asks for exactly the missing positions, 2 to 4.
    assert_eq!(feed.next_read(Some(gap)), Some(Read { after: 1, limit: 3 }));
    let mut step = Step::default();
    for entry in [two, three] {
        step.extend(feed.filled(entry, &viewer));
    }
    // A page that stopped short: the next read starts after it.
    assert_eq!(feed.next_read(Some(gap)), Some(Read { after: 3, limit: 1 }));
    step.extend(feed.filled(four, &viewer));
    assert_eq!(feed.next_read(Some(gap)), None, "the gap is read");
    step.extend(feed.gap_filled(&viewer, opened + GAP_WAIT));
    assert_eq!(seqs(&step), delivered(2..=6));
    assert_eq!(feed.stale(opened + GAP_WAIT * 10), None);
    assert!(!feed.gap_open(), "the connection may stop ticking for gaps");
}

#[test]
fn a_gap_read_that_leaves_another_open_starts_its_wait_again() {
    let mut f = Fixture::new();
    let viewer = f.member.clone();
    let mut feed = ProjectFeed::new(f.project(), 0);
    let mut entries = f.renamings(1..=5).into_iter();
    let (one, two, three, _four, five) = (
        entries.next().unwrap(),
        entries.next().unwrap(),
        entries.next().unwrap(),
        entries.next().unwrap(),
        entries.next().unwrap(),
    );
    let opened = Instant::now();
    for held in [three, five] {
        assert_eq!(pushed(&mut feed, held, &viewer, opened), Step::default());
    }
    let gap = feed.stale(opened + GAP_WAIT).unwrap();
    assert_eq!(gap, Gap { until: 3 }, "the first gap is read first");
    let mut step = feed.filled(one, &viewer);
    step.extend(feed.filled(two, &viewer));
    assert_eq!(feed.next_read(Some(gap)), None);
    let read_at = opened + GAP_WAIT * 2;
    step.extend(feed.gap_filled(&viewer, read_at));
    assert_eq!(seqs(&step), delivered(1..=3), "5 waits for 4");
    assert_eq!(feed.stale(read_at + GAP_WAIT / 2), None);
    assert_eq!(feed.stale(read_at + GAP_WAIT), Some(Gap { until: 5 }));
}

#[test]
fn too_many_held_entries_ask_for_the_gap_to_be_read_at_once() {
    let mut f = Fixture::new();
    let viewer = f.member.clone();
    let mut feed = ProjectFeed::new(f.project(), 0);
    let now = Instant::now();
    let last_held = 2 + u64::try_from(MAX_PENDING).unwrap();
    for rendered in f.renamings(2..last_held) {
        assert_eq!(pushed(&mut feed, rendered, &viewer, now), Step::default());
    }
    let one_more = f.renamed(last_held);
    assert_eq!(
        feed.live(one_more, &viewer, now),
        Live::Fill(Gap { until: 2 })
    );
    assert_eq!(
        feed.next_read(Some(Gap { until: 2 })),
        Some(Read { after: 0, limit: 1 })
    );
}

#[test]
fn repeats_and_older_positions_are_dropped() {
    let mut f = Fixture::new();
    let viewer = f.member.clone();
    let mut feed = ProjectFeed::new(f.project(), 0);
    let entries = f.renamings(1..=2);
    let now = Instant::now();
    let mut step = Step::default();
    for rendered in entries.iter().cloned() {
        step.extend(pushed(&mut feed, rendered, &viewer, now));
    }
    assert_eq!(seqs(&step), delivered([1, 2]));
    for rendered in entries.iter().rev().cloned() {
        assert_eq!(pushed(&mut feed, rendered, &viewer, now), Step::default());
    }
    for rendered in entries {
        assert_eq!(feed.replayed(rendered.clone(), &viewer), Step::default());
        assert_eq!(feed.filled(rendered, &viewer), Step::default());
    }
    assert_eq!(feed.last(), 2);
}

#[test]
fn the_replay_then_live_entries_around_the_seam_are_each_delivered_once_in_order() {
    let mut f = Fixture::new();
    let viewer = f.member.clone();
    // Subscribed after 0 with the head at 5: 1 to 5 are read, while 3 to 7
    // are pushed (stored around the time the subscription began).
    let mut feed = ProjectFeed::new(f.project(), resume_at(Some(0), 5));
    let entries = f.renamings(1..=7);
    let mut step = Step::default();
    while let Some(read) = feed.next_read(None) {
        let page: Vec<Rendered> = entries
            .iter()
            .filter(|r| r.position() > read.after && r.position() <= 5)
            .take(read.limit)
            .cloned()
            .collect();
        if page.is_empty() {
            break;
        }
        for rendered in page {
            step.extend(feed.replayed(rendered, &viewer));
        }
    }
    step.extend(feed.replay_done(Some(&f.project()), &viewer));
    let now = Instant::now();
    for rendered in entries[2..].iter().cloned() {
        step.extend(pushed(&mut feed, rendered, &viewer, now));
    }
    assert_eq!(seqs(&step), delivered(1..=7));
    assert!(!step.ended);
}

#[test]
fn an_after_past_the_head_counts_as_the_head() {
    assert_eq!(resume_at(Some(u64::MAX), 7), 7);
    assert_eq!(resume_at(Some(3), 7), 3);
    assert_eq!(resume_at(None, 7), 7);
}

#[test]
fn a_replay_read_stops_at_the_feeds_end_and_never_reads_the_same_page_twice() {
    let f = Fixture::new();
    let feed = ProjectFeed::new(f.project(), u64::MAX - 1);
    let read = feed.next_read(None).unwrap();
    assert_eq!(
        read,
        Read {
            after: u64::MAX - 1,
            limit: REPLAY_PAGE
        }
    );
    assert!(!read.advanced(&[]));
    assert_eq!(
        feed.next_read(Some(Gap { until: u64::MAX })),
        None,
        "no position lies between"
    );
}

#[test]
fn a_removed_member_gets_a_404_and_nothing_more() {
    let mut f = Fixture::new();
    let viewer = f.member.clone();
    let mut feed = ProjectFeed::new(f.project(), 2);
    let removed = f.change(
        3,
        ProjectChange::MemberRemoved {
            username: viewer.username.clone(),
        },
    );
    let later = f.renamed(4);
    let now = Instant::now();
    let step = pushed(&mut feed, removed, &viewer, now);
    assert!(step.ended);
    let messages = parsed(&step);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(error_of(&messages[0]), (404, NO_LONGER_A_MEMBER));
    assert_eq!(messages[0]["topic"], feed.topic().to_string());
    assert!(feed.ended());
    assert_eq!(pushed(&mut feed, later, &viewer, now), Step::default());
    assert_eq!(feed.stale(now + GAP_WAIT), None);
    assert_eq!(feed.next_read(None), None);
}

#[test]
fn a_deleted_project_sends_its_deletion_then_a_404() {
    let mut f = Fixture::new();
    let viewer = f.member.clone();
    let deleted = f.change(3, ProjectChange::Deleted {});
    // Live, and in a replay alike.
    for replayed in [false, true] {
        let mut feed = ProjectFeed::new(f.project(), 2);
        let step = if replayed {
            feed.replayed(deleted.clone(), &viewer)
        } else {
            pushed(&mut feed, deleted.clone(), &viewer, Instant::now())
        };
        assert!(step.ended);
        let messages = parsed(&step);
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(messages[0]["event"]["kind"], "project.deleted");
        assert_eq!(messages[0]["seq"], 3);
        assert_eq!(error_of(&messages[1]), (404, PROJECT_DELETED));
    }
}

#[test]
fn a_replay_shows_the_projects_history_as_it_was_and_ends_if_the_subscriber_left_meanwhile() {
    let mut f = Fixture::new();
    let viewer = f.member.clone();
    let subscribed = f.project();
    let removed = f.change(
        3,
        ProjectChange::MemberRemoved {
            username: viewer.username.clone(),
        },
    );
    let mut feed = ProjectFeed::new(subscribed, 2);
    let step = feed.replayed(removed, &viewer);
    assert_eq!(parsed(&step)[0]["event"]["kind"], "member.removed");
    assert!(!step.ended, "history is shown as it was");
    let step = feed.replay_done(Some(&f.project()), &viewer);
    assert!(step.ended);
    assert_eq!(error_of(&parsed(&step)[0]), (404, NO_LONGER_A_MEMBER));
}

#[test]
fn after_a_replay_items_follow_the_project_as_it_is_now() {
    // A global admin who was a member when they subscribed, removed while
    // the replay was read: they still see the project, no longer its items.
    let mut f = Fixture::new();
    let viewer = actor("carl", Level::Admin);
    f.change(
        3,
        ProjectChange::MemberAdded {
            username: viewer.username.clone(),
            user_id: viewer.user_id,
            role: ProjectRole::Member,
        },
    );
    let mut feed = ProjectFeed::new(f.project(), 3);
    let removed = f.change(
        4,
        ProjectChange::MemberRemoved {
            username: viewer.username.clone(),
        },
    );
    let step = feed.replayed(removed, &viewer);
    assert_eq!(parsed(&step)[0]["event"]["kind"], "member.removed");
    let step = feed.replay_done(Some(&f.project()), &viewer);
    assert_eq!(step, Step::default(), "an admin still sees the project");
    let step = pushed(&mut feed, f.item(5), &viewer, Instant::now());
    assert_eq!(step, Step::default(), "but not its items");
}

#[test]
fn a_global_admin_who_is_not_a_member_sees_the_projects_changes_but_not_its_items() {
    let mut f = Fixture::new();
    let mut root_feed = ProjectFeed::new(f.project(), 0);
    let mut member_feed = ProjectFeed::new(f.project(), 0);
    let item = f.item(1);
    let renamed = f.renamed(2);
    let now = Instant::now();
    let (root, member) = (f.root.clone(), f.member.clone());
    let mut seen = Step::default();
    for rendered in [item.clone(), renamed.clone()] {
        seen.extend(pushed(&mut root_feed, rendered, &root, now));
    }
    let kinds: Vec<Value> = parsed(&seen)
        .iter()
        .map(|m| m["event"]["kind"].clone())
        .collect();
    assert_eq!(kinds, ["project.updated"]);
    assert_eq!(root_feed.last(), 2, "the hidden item still counts");
    let mut seen = Step::default();
    for rendered in [item.clone(), renamed] {
        seen.extend(pushed(&mut member_feed, rendered, &member, now));
    }
    let kinds: Vec<Value> = parsed(&seen)
        .iter()
        .map(|m| m["event"]["kind"].clone())
        .collect();
    assert_eq!(kinds, ["item.created", "project.updated"]);
    // The rule alone (the AWS fan-out's): against the project as it is now.
    let project = f.project();
    assert_eq!(
        project_entry(
            &Topic::Project(project.id),
            &item,
            Some(&project),
            &root,
            Source::Live
        ),
        Step::default()
    );
    assert_eq!(
        project_entry(
            &Topic::Project(project.id),
            &item,
            None,
            &member,
            Source::Live
        ),
        Step::default(),
        "no project, no item"
    );
}

/// One task's log: created, started, then `end` if given.
fn task_log(owner: &Actor, kind: TaskKind, end: Option<EventData>) -> Vec<TaskEvent> {
    let created = TaskEvent::first(
        TaskId::new(),
        AT,
        Some(owner.username.clone()),
        EventData::Created(TaskCreated {
            spec: match kind {
                TaskKind::Delay => TaskSpec::Delay { seconds: 60.0 },
                TaskKind::Js => TaskSpec::Js { code: "1".into() },
                TaskKind::Export => TaskSpec::Export(Export::Zip { files: Vec::new() }),
            },
            owner: owner.username.clone(),
            owner_id: owner.user_id,
            owner_level: owner.level,
            due_at: None,
            engine: None,
        }),
    );
    let started = created.next(AT, None, EventData::Started { execution: None });
    let mut events = vec![created, started];
    if let Some(end) = end {
        let ended = events.last().unwrap().next(AT, None, end);
        events.push(ended);
    }
    events
}

fn succeeded() -> EventData {
    EventData::Succeeded {
        result: serde_json::json!(0),
        logs: Vec::new(),
    }
}

/// Each event with the task as it stood after it.
fn folded(events: &[TaskEvent]) -> Vec<(TaskEvent, Task)> {
    (1..=events.len())
        .map(|n| (events[n - 1].clone(), fold(&events[..n]).unwrap()))
        .collect()
}

#[test]
fn a_task_subscription_delivers_each_event_once_and_catches_up_when_one_skips_ahead() {
    let owner = actor("ann", Level::User);
    let events = task_log(&owner, TaskKind::Delay, Some(succeeded()));
    let steps = folded(&events);
    let mut feed = TaskFeed::one(steps[0].1.clone(), 1);
    let (event, task) = &steps[0];
    assert_eq!(feed.live(event, task, &owner, AT), Ok(Step::default()));
    let (event, task) = &steps[2];
    assert_eq!(feed.live(event, task, &owner, AT), Err(Behind));
    let step = feed.caught_up(&events, event, task, &owner, AT).unwrap();
    assert_eq!(seqs(&step), delivered([2, 3]));
    let changes: Vec<Value> = parsed(&step)
        .iter()
        .map(|m| m["event"]["change"].clone())
        .collect();
    assert_eq!(changes, ["started", "succeeded"]);
    let (event, task) = &steps[1];
    assert_eq!(feed.live(event, task, &owner, AT), Ok(Step::default()));
}

#[test]
fn a_replayed_task_log_sends_the_events_after_after() {
    let owner = actor("ann", Level::User);
    let events = task_log(&owner, TaskKind::Js, Some(succeeded()));
    let mut feed = TaskFeed::one(fold(&events).unwrap(), resume_at(Some(1), 3));
    let step = feed.replayed(&events, &owner, AT).unwrap();
    assert_eq!(seqs(&step), delivered([2, 3]));
    assert_eq!(feed.replayed(&events, &owner, AT).unwrap(), Step::default());
}

#[test]
fn a_demoted_admin_loses_another_users_task_on_the_check_or_its_next_event() {
    let owner = actor("ann", Level::User);
    let admin = actor("root", Level::Admin);
    let demoted = Actor {
        level: Level::User,
        ..admin.clone()
    };
    let events = task_log(&owner, TaskKind::Delay, None);
    let steps = folded(&events);
    let running = steps[1].1.clone();

    let mut feed = TaskFeed::one(running.clone(), 2);
    assert_eq!(feed.recheck(&admin), Step::default());
    assert_eq!(feed.progress(&HashMap::new(), AT).len(), 1);
    let step = feed.recheck(&demoted);
    assert!(step.ended);
    let messages = parsed(&step);
    assert_eq!(error_of(&messages[0]).0, 403);
    assert_eq!(messages[0]["topic"], format!("task:{}", running.id));
    assert!(
        feed.progress(&HashMap::new(), AT).is_empty(),
        "no progress after"
    );

    let mut feed = TaskFeed::one(steps[0].1.clone(), 1);
    let (event, task) = &steps[1];
    let step = feed.live(event, task, &demoted, AT).unwrap();
    assert!(step.ended);
    assert_eq!(error_of(&parsed(&step)[0]).0, 403);
    // The rule alone (the AWS fan-out's) says the same.
    assert_eq!(
        task_entry(feed.topic(), event, task, &demoted, AT),
        step,
        "one rule"
    );
}

#[test]
fn the_tasks_topic_follows_each_task_by_its_own_seq_and_forgets_finished_ones() {
    let owner = actor("ann", Level::User);
    let delay = folded(&task_log(&owner, TaskKind::Delay, Some(succeeded())));
    let script = folded(&task_log(&owner, TaskKind::Js, None));
    let mut feed = TaskFeed::owner();
    let mut step = Step::default();
    for (event, task) in [&delay[0], &script[0], &delay[1], &script[1]] {
        step.extend(feed.live(event, task, &owner, AT).unwrap());
    }
    assert!(feed.follows_progress(), "the delay runs");
    let ids: Vec<(Value, Option<u64>)> = parsed(&step)
        .iter()
        .map(|m| (m["event"]["task"]["id"].clone(), m["seq"].as_u64()))
        .collect();
    let (d, s) = (
        Value::from(delay[0].1.id.to_string()),
        Value::from(script[0].1.id.to_string()),
    );
    assert_eq!(
        ids,
        [
            (d.clone(), Some(1)),
            (s.clone(), Some(1)),
            (d, Some(2)),
            (s, Some(2))
        ]
    );
    let (event, task) = &delay[1];
    assert_eq!(feed.live(event, task, &owner, AT), Ok(Step::default()));
    // The running delay reports progress; the script cannot tell.
    let progress = feed.progress(&HashMap::new(), AT);
    assert_eq!(progress.len(), 1);
    let report: Value = serde_json::from_str(&progress[0]).unwrap();
    assert_eq!(report["event"]["change"], "progress");
    assert_eq!(report["event"]["task"]["id"], delay[0].1.id.to_string());

    let (event, task) = &delay[2];
    assert_eq!(
        seqs(&feed.live(event, task, &owner, AT).unwrap()),
        delivered([3])
    );
    assert!(feed.progress(&HashMap::new(), AT).is_empty());
    assert!(
        !feed.follows_progress(),
        "only the script runs, which cannot tell"
    );
    // Forgotten: a later event of it is not taken as one skipping ahead.
    assert!(feed.live(event, task, &owner, AT).is_ok());
}

#[test]
fn the_tasks_topic_reports_a_running_export_as_it_last_reported() {
    let owner = actor("ann", Level::User);
    let export = folded(&task_log(&owner, TaskKind::Export, None));
    let mut feed = TaskFeed::owner();
    let (event, task) = &export[1];
    feed.found(task.clone(), event.seq);
    assert_eq!(feed.running_exports(), [task.id]);
    let progress = feed.progress(&HashMap::from([(task.id, 0.25)]), AT);
    let report: Value = serde_json::from_str(&progress[0]).unwrap();
    assert_eq!(report["event"]["task"]["progress"], 0.25);
    // Found running at seq 2: its seq 2 again is a repeat.
    assert_eq!(feed.live(event, task, &owner, AT), Ok(Step::default()));
}
