//! The JSON a task and its events are shown as, for every kind and every
//! status, pinned byte for byte: the view is written from the folded task,
//! so this is what proves a change of the domain's types left the wire as
//! it was.

use serde_json::json;
use taskgate_domain::task::{EventData, Task, TaskError, TaskEvent, fold};
use taskgate_domain::user::Username;
use taskgate_views::{EventView, TaskView, owned};
use time::OffsetDateTime;
use time::macros::datetime;

const DELAY: &str = r#"{"task_id":"01a24237-abce-740c-a719-f486838ee690","seq":1,"at":"2026-12-04T18:01:14.446Z","actor":"alice","type":"created","data":{"kind":"delay","seconds":3600.0,"owner":"alice","owner_id":"0bdbd1d9-6150-412a-a953-d8954f70cb91","owner_level":"user","due_at":"2026-12-04T19:01:14.446Z","engine":"local:bc205bbecbc648d0957129c65078a0b2"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"54228402bb41ee015ff70ad9d788b5e614e1736a3ab00a352040f166b56760df"}"#;
const SCRIPT: &str = r#"{"task_id":"01a24237-abac-761d-b24f-44be43d57967","seq":1,"at":"2026-12-04T18:01:14.412Z","actor":"admin","type":"created","data":{"kind":"js","code":"throw new Error(\"boom\")","owner":"admin","owner_id":"223980ea-ad24-4436-b348-17ea488d7732","owner_level":"admin","engine":"local:bc205bbecbc648d0957129c65078a0b2"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"4ba2de67ee0470d0c46bc4f0ecffca88ae24cf065a1ce07167031667530a3945"}"#;
const EXPORT: &str = r#"{"task_id":"01a24237-ae88-749e-934a-4847f78290da","seq":1,"at":"2026-12-04T18:01:15.144Z","actor":"alice","type":"created","data":{"kind":"export","export":{"format":"csv","project":"01a24237-ac42-7279-b730-476c47f8c3af"},"owner":"alice","owner_id":"0bdbd1d9-6150-412a-a953-d8954f70cb91","owner_level":"user","engine":"local:bc205bbecbc648d0957129c65078a0b2"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"53708262ea786316884d0a43477879f2ace9a563b2580b6fcebfa6f405e7145c"}"#;

/// Half an hour into the delay.
const NOW: OffsetDateTime = datetime!(2026-12-04 18:31:14.446 UTC);

/// The log that starts with the stored `created`, then `changes`, a
/// millisecond apart.
fn log(created: &str, changes: Vec<EventData>) -> Vec<TaskEvent> {
    let mut events: Vec<TaskEvent> = vec![serde_json::from_str(created).unwrap()];
    for change in changes {
        let last = events.last().unwrap();
        let at = last.at + time::Duration::milliseconds(1);
        events.push(last.next(at, None, change));
    }
    events
}

fn started() -> EventData {
    EventData::Started {
        execution: Some("local:engine:task".into()),
    }
}

fn shown(events: &[TaskEvent]) -> String {
    let task: Task = fold(events).unwrap();
    serde_json::to_string(&TaskView::at(&task, NOW)).unwrap()
}

/// A task in every state, and the JSON it is shown as.
fn states() -> Vec<(&'static str, Vec<TaskEvent>, &'static str)> {
    let succeeded = |result, logs: &[&str]| EventData::Succeeded {
        result,
        logs: logs.iter().map(|l| (*l).to_owned()).collect(),
    };
    let failed = EventData::Failed {
        error: TaskError::new("script-error", "uncaught Error: boom"),
        logs: vec!["before".into()],
    };
    let cancelled = EventData::Cancelled {
        by: Username::parse("bob").unwrap(),
    };
    vec![
        (
            "a pending delay",
            log(DELAY, vec![]),
            r#"{"id":"01a24237-abce-740c-a719-f486838ee690","type":"delay","status":"pending","owner":"alice","created_at":"2026-12-04T18:01:14.446Z","updated_at":"2026-12-04T18:01:14.446Z","progress":0.0,"seconds":3600.0,"due_at":"2026-12-04T19:01:14.446Z"}"#,
        ),
        (
            "a running delay",
            log(DELAY, vec![started()]),
            r#"{"id":"01a24237-abce-740c-a719-f486838ee690","type":"delay","status":"running","owner":"alice","created_at":"2026-12-04T18:01:14.446Z","updated_at":"2026-12-04T18:01:14.447Z","progress":0.5,"seconds":3600.0,"due_at":"2026-12-04T19:01:14.446Z"}"#,
        ),
        (
            "a delay that succeeded",
            log(DELAY, vec![started(), succeeded(json!(0), &[])]),
            r#"{"id":"01a24237-abce-740c-a719-f486838ee690","type":"delay","status":"succeeded","owner":"alice","created_at":"2026-12-04T18:01:14.446Z","updated_at":"2026-12-04T18:01:14.448Z","result":0,"progress":1.0,"seconds":3600.0,"due_at":"2026-12-04T19:01:14.446Z"}"#,
        ),
        (
            "a delay cancelled",
            log(DELAY, vec![started(), cancelled.clone()]),
            r#"{"id":"01a24237-abce-740c-a719-f486838ee690","type":"delay","status":"cancelled","owner":"alice","created_at":"2026-12-04T18:01:14.446Z","updated_at":"2026-12-04T18:01:14.448Z","cancelled_by":"bob","seconds":3600.0,"due_at":"2026-12-04T19:01:14.446Z"}"#,
        ),
        (
            "a running script",
            log(SCRIPT, vec![started()]),
            r#"{"id":"01a24237-abac-761d-b24f-44be43d57967","type":"js","status":"running","owner":"admin","created_at":"2026-12-04T18:01:14.412Z","updated_at":"2026-12-04T18:01:14.413Z"}"#,
        ),
        (
            "a script that succeeded",
            log(
                SCRIPT,
                vec![started(), succeeded(json!([2, 4, 6]), &["hi", "there"])],
            ),
            r#"{"id":"01a24237-abac-761d-b24f-44be43d57967","type":"js","status":"succeeded","owner":"admin","created_at":"2026-12-04T18:01:14.412Z","updated_at":"2026-12-04T18:01:14.414Z","result":[2,4,6],"logs":["hi","there"]}"#,
        ),
        (
            "a script that failed",
            log(SCRIPT, vec![started(), failed.clone()]),
            r#"{"id":"01a24237-abac-761d-b24f-44be43d57967","type":"js","status":"failed","owner":"admin","created_at":"2026-12-04T18:01:14.412Z","updated_at":"2026-12-04T18:01:14.414Z","error":{"code":"script-error","message":"uncaught Error: boom"},"logs":["before"]}"#,
        ),
        (
            "a script cancelled before it started",
            log(SCRIPT, vec![cancelled.clone()]),
            r#"{"id":"01a24237-abac-761d-b24f-44be43d57967","type":"js","status":"cancelled","owner":"admin","created_at":"2026-12-04T18:01:14.412Z","updated_at":"2026-12-04T18:01:14.413Z","cancelled_by":"bob","logs":[]}"#,
        ),
        (
            "a pending export",
            log(EXPORT, vec![]),
            r#"{"id":"01a24237-ae88-749e-934a-4847f78290da","type":"export","status":"pending","owner":"alice","created_at":"2026-12-04T18:01:15.144Z","updated_at":"2026-12-04T18:01:15.144Z","progress":0.0}"#,
        ),
        (
            "a running export",
            log(EXPORT, vec![started()]),
            r#"{"id":"01a24237-ae88-749e-934a-4847f78290da","type":"export","status":"running","owner":"alice","created_at":"2026-12-04T18:01:15.144Z","updated_at":"2026-12-04T18:01:15.145Z","progress":0.0}"#,
        ),
        (
            "an export that succeeded",
            log(
                EXPORT,
                vec![started(), succeeded(json!({"file": "f", "size": 1}), &[])],
            ),
            r#"{"id":"01a24237-ae88-749e-934a-4847f78290da","type":"export","status":"succeeded","owner":"alice","created_at":"2026-12-04T18:01:15.144Z","updated_at":"2026-12-04T18:01:15.146Z","result":{"file":"f","size":1},"progress":1.0}"#,
        ),
        (
            "an export that failed",
            log(EXPORT, vec![started(), failed]),
            r#"{"id":"01a24237-ae88-749e-934a-4847f78290da","type":"export","status":"failed","owner":"alice","created_at":"2026-12-04T18:01:15.144Z","updated_at":"2026-12-04T18:01:15.146Z","error":{"code":"script-error","message":"uncaught Error: boom"}}"#,
        ),
    ]
}

#[test]
fn a_task_is_shown_the_same_in_every_state() {
    for (description, events, expected) in states() {
        assert_eq!(shown(&events), expected, "{description}");
    }
}

/// What the client reads: the same view, owned, written back unchanged.
#[test]
fn a_task_reads_back_as_it_was_shown() {
    for (description, _, expected) in states() {
        let read: owned::Task = serde_json::from_str(expected).unwrap();
        assert_eq!(
            serde_json::to_string(&read).unwrap(),
            expected,
            "{description}"
        );
    }
}

#[test]
fn a_created_event_is_shown_with_its_stored_fields() {
    let events = log(EXPORT, vec![]);
    assert_eq!(
        serde_json::to_string(&EventView::from(&events[0])).unwrap(),
        r#"{"seq":1,"at":"2026-12-04T18:01:15.144Z","actor":"alice","type":"created","data":{"kind":"export","export":{"format":"csv","project":"01a24237-ac42-7279-b730-476c47f8c3af"},"owner":"alice","owner_id":"0bdbd1d9-6150-412a-a953-d8954f70cb91","owner_level":"user","engine":"local:bc205bbecbc648d0957129c65078a0b2"},"hash":"53708262ea786316884d0a43477879f2ace9a563b2580b6fcebfa6f405e7145c","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000"}"#
    );
}

#[test]
fn an_event_reads_back_as_it_was_shown() {
    let events = log(SCRIPT, vec![started(), succeeded_with_logs()]);
    for event in &events {
        let shown = serde_json::to_string(&EventView::from(event)).unwrap();
        let read: owned::TaskEvent = serde_json::from_str(&shown).unwrap();
        assert_eq!(*read.data, event.change);
        assert_eq!(serde_json::to_string(&read).unwrap(), shown);
    }
}

fn succeeded_with_logs() -> EventData {
    EventData::Succeeded {
        result: json!({"answer": 42}),
        logs: vec!["hi".into()],
    }
}
