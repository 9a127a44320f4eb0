//! Printing answers: tables for people, read from the views the answers
//! are; the API's own JSON for scripts (`--json`).

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;
use serde_json::Value;
use taskgate_domain::file::FileStatus;
use taskgate_views::owned::{File, Item, ItemEvent, Member, Project, Task, TaskEvent, User};
use taskgate_views::{List, Page};

use super::api::Answer;

/// How a listing's columns come out of each item.
pub struct Column<T> {
    pub title: &'static str,
    pub cell: fn(&T) -> String,
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `2026-11-26T07:44:02.388Z` as `2026-11-26 07:44:02`.
fn time(raw: &str) -> String {
    match raw.split_once('T') {
        Some((date, rest)) => format!("{date} {}", rest.get(..8).unwrap_or(rest)),
        None => raw.to_owned(),
    }
}

/// An optional text field, empty when absent.
fn or_empty(value: Option<&str>) -> String {
    value.unwrap_or_default().to_owned()
}

/// A change's `type` and `data` (an event's, as the API writes them).
fn tagged(change: &impl Serialize) -> (String, String) {
    match serde_json::to_value(change) {
        Ok(Value::Object(mut fields)) => (
            fields.remove("type").map(|t| text(&t)).unwrap_or_default(),
            fields
                .remove("data")
                .map(|d| d.to_string())
                .unwrap_or_default(),
        ),
        _ => Default::default(),
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn table(headers: Vec<&str>) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers);
    table
}

/// `items` as a table.
fn rows<T>(items: &[T], columns: &[Column<T>]) {
    if items.is_empty() {
        println!("(none)");
        return;
    }
    let mut table = table(columns.iter().map(|c| c.title).collect());
    for item in items {
        table.add_row(columns.iter().map(|c| (c.cell)(item)).collect::<Vec<_>>());
    }
    println!("{table}");
}

/// A page of a listing as a table; says how to get the next page.
pub fn page<T>(json: bool, answer: &Answer<Page<T>>, columns: &[Column<T>]) {
    if json {
        println!("{}", answer.json);
        return;
    }
    rows(&answer.value.items, columns);
    if let Some(next) = &answer.value.next {
        eprintln!("more: add --cursor {next}");
    }
}

/// Every item (a log) as a table.
pub fn list<T>(json: bool, answer: &Answer<List<T>>, columns: &[Column<T>]) {
    if json {
        println!("{}", answer.json);
        return;
    }
    rows(&answer.value.items, columns);
}

/// One view as a two-column table of its fields (or its JSON).
pub fn object<T: Serialize>(json: bool, answer: &Answer<T>) {
    if json {
        println!("{}", answer.json);
        return;
    }
    let mut table = table(vec!["field", "value"]);
    if let Ok(Value::Object(fields)) = serde_json::to_value(&answer.value) {
        for (key, field) in fields {
            let shown = match field {
                Value::Object(_) | Value::Array(_) => field.to_string(),
                other => text(&other),
            };
            table.add_row(vec![key, shown]);
        }
    }
    println!("{table}");
}

pub const TASKS: &[Column<Task>] = &[
    Column {
        title: "ID",
        cell: |t| t.id.clone(),
    },
    Column {
        title: "TYPE",
        cell: |t| t.kind.as_str().to_owned(),
    },
    Column {
        title: "STATUS",
        cell: |t| t.status.as_str().to_owned(),
    },
    Column {
        title: "PROGRESS",
        cell: |t| {
            t.progress
                .map(|p| format!("{:.0}%", p * 100.0))
                .unwrap_or_default()
        },
    },
    Column {
        title: "CREATED",
        cell: |t| time(&t.created_at),
    },
    Column {
        title: "RESULT",
        cell: |t| match (&t.error, &t.result) {
            (Some(error), _) => format!("{}: {}", error.code, error.message),
            (None, Some(result)) => result.to_string(),
            (None, None) => String::new(),
        },
    },
];

pub const TASK_EVENTS: &[Column<TaskEvent>] = &[
    Column {
        title: "SEQ",
        cell: |e| e.seq.to_string(),
    },
    Column {
        title: "TYPE",
        cell: |e| e.data.type_name().to_owned(),
    },
    Column {
        title: "AT",
        cell: |e| time(&e.at),
    },
    Column {
        title: "ACTOR",
        cell: |e| or_empty(e.actor.as_deref()),
    },
    Column {
        title: "DATA",
        cell: |e| tagged(&e.data).1,
    },
];

pub const ITEM_EVENTS: &[Column<ItemEvent>] = &[
    Column {
        title: "SEQ",
        cell: |e| e.seq.to_string(),
    },
    Column {
        title: "TYPE",
        cell: |e| tagged(&e.change).0,
    },
    Column {
        title: "AT",
        cell: |e| time(&e.at),
    },
    Column {
        title: "ACTOR",
        cell: |e| or_empty(e.actor.as_deref()),
    },
    Column {
        title: "DATA",
        cell: |e| tagged(&e.change).1,
    },
];

pub const FILES: &[Column<File>] = &[
    Column {
        title: "ID",
        cell: |f| f.id.clone(),
    },
    Column {
        title: "NAME",
        cell: |f| f.name.to_string(),
    },
    Column {
        title: "SIZE",
        cell: |f| bytes(f.size),
    },
    Column {
        title: "STATUS",
        cell: |f| match f.status {
            FileStatus::Uploading => format!(
                "uploading {:.0}%",
                100.0 * f.offset as f64 / (f.size as f64).max(1.0)
            ),
            FileStatus::Complete => "complete".to_owned(),
        },
    },
    Column {
        title: "CREATED",
        cell: |f| time(&f.created_at),
    },
];

pub const PROJECTS: &[Column<Project>] = &[
    Column {
        title: "ID",
        cell: |p| p.id.clone(),
    },
    Column {
        title: "NAME",
        cell: |p| p.name.to_string(),
    },
    Column {
        title: "OWNER",
        cell: |p| p.owner.to_string(),
    },
    Column {
        title: "ROLE",
        cell: |p| p.role.as_str().to_owned(),
    },
    Column {
        title: "UPDATED",
        cell: |p| time(&p.updated_at),
    },
];

pub const MEMBERS: &[Column<Member>] = &[
    Column {
        title: "USERNAME",
        cell: |m| m.username.to_string(),
    },
    Column {
        title: "ROLE",
        cell: |m| m.role.as_str().to_owned(),
    },
    Column {
        title: "ADDED",
        cell: |m| time(&m.added_at),
    },
];

pub const ITEMS: &[Column<Item>] = &[
    Column {
        title: "ID",
        cell: |i| i.id.clone(),
    },
    Column {
        title: "TITLE",
        cell: |i| i.title.to_string(),
    },
    Column {
        title: "STATUS",
        cell: |i| i.status.as_str().to_owned(),
    },
    Column {
        title: "DUE",
        cell: |i| or_empty(i.due_date.as_deref()),
    },
    Column {
        title: "ASSIGNEE",
        cell: |i| or_empty(i.assignee.as_deref()),
    },
    Column {
        title: "UPDATED",
        cell: |i| time(&i.updated_at),
    },
];

pub const USERS: &[Column<User>] = &[
    Column {
        title: "USERNAME",
        cell: |u| u.username.to_string(),
    },
    Column {
        title: "LEVEL",
        cell: |u| u.level.as_str().to_owned(),
    },
    Column {
        title: "EMAIL",
        cell: |u| or_empty(u.email.as_deref()),
    },
    Column {
        title: "CREATED",
        cell: |u| time(&taskgate_views::timestamp(u.created_at)),
    },
];
