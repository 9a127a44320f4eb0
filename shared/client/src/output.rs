//! Printing answers: tables for people, the API's own JSON for scripts
//! (`--json`).

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

/// How a listing's columns come out of each item.
pub struct Column {
    pub title: &'static str,
    pub cell: fn(&Value) -> String,
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `2026-11-26T07:44:02.388Z` as `2026-11-26 07:44:02`.
fn time(value: &Value) -> String {
    let raw = text(value);
    match raw.split_once('T') {
        Some((date, rest)) => format!("{date} {}", rest.get(..8).unwrap_or(rest)),
        None => raw,
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

/// A page of `items` as a table; says how to get the next page.
pub fn list(json: bool, page: &Value, columns: &[Column]) {
    if json {
        println!("{page}");
        return;
    }
    let items = page["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("(none)");
    } else {
        let mut table = table(columns.iter().map(|c| c.title).collect());
        for item in &items {
            table.add_row(columns.iter().map(|c| (c.cell)(item)).collect::<Vec<_>>());
        }
        println!("{table}");
    }
    if let Some(next) = page["next"].as_str() {
        eprintln!("more: add --cursor {next}");
    }
}

/// One object as a two-column table (or its JSON).
pub fn object(json: bool, value: &Value) {
    if json {
        println!("{value}");
        return;
    }
    let mut table = table(vec!["field", "value"]);
    if let Some(map) = value.as_object() {
        for (key, field) in map {
            let shown = match field {
                Value::Object(_) | Value::Array(_) => field.to_string(),
                other => text(other),
            };
            table.add_row(vec![key.clone(), shown]);
        }
    }
    println!("{table}");
}

pub const TASKS: &[Column] = &[
    Column {
        title: "ID",
        cell: |t| text(&t["id"]),
    },
    Column {
        title: "TYPE",
        cell: |t| text(&t["type"]),
    },
    Column {
        title: "STATUS",
        cell: |t| text(&t["status"]),
    },
    Column {
        title: "PROGRESS",
        cell: |t| {
            t["progress"]
                .as_f64()
                .map(|p| format!("{:.0}%", p * 100.0))
                .unwrap_or_default()
        },
    },
    Column {
        title: "CREATED",
        cell: |t| time(&t["created_at"]),
    },
    Column {
        title: "RESULT",
        cell: |t| {
            if let Some(error) = t.get("error") {
                format!("{}: {}", text(&error["code"]), text(&error["message"]))
            } else {
                t.get("result").map(|r| r.to_string()).unwrap_or_default()
            }
        },
    },
];

/// A task's or an item's events.
pub const EVENTS: &[Column] = &[
    Column {
        title: "SEQ",
        cell: |e| text(&e["seq"]),
    },
    Column {
        title: "TYPE",
        cell: |e| text(&e["type"]),
    },
    Column {
        title: "AT",
        cell: |e| time(&e["at"]),
    },
    Column {
        title: "ACTOR",
        cell: |e| text(&e["actor"]),
    },
    Column {
        title: "DATA",
        cell: |e| e.get("data").map(|d| d.to_string()).unwrap_or_default(),
    },
];

pub const FILES: &[Column] = &[
    Column {
        title: "ID",
        cell: |f| text(&f["id"]),
    },
    Column {
        title: "NAME",
        cell: |f| text(&f["name"]),
    },
    Column {
        title: "SIZE",
        cell: |f| bytes(f["size"].as_u64().unwrap_or(0)),
    },
    Column {
        title: "STATUS",
        cell: |f| match f["status"].as_str() {
            Some("uploading") => format!(
                "uploading {:.0}%",
                100.0 * f["offset"].as_f64().unwrap_or(0.0)
                    / f["size"].as_f64().unwrap_or(1.0).max(1.0)
            ),
            _ => text(&f["status"]),
        },
    },
    Column {
        title: "CREATED",
        cell: |f| time(&f["created_at"]),
    },
];

pub const PROJECTS: &[Column] = &[
    Column {
        title: "ID",
        cell: |p| text(&p["id"]),
    },
    Column {
        title: "NAME",
        cell: |p| text(&p["name"]),
    },
    Column {
        title: "OWNER",
        cell: |p| text(&p["owner"]),
    },
    Column {
        title: "ROLE",
        cell: |p| text(&p["role"]),
    },
    Column {
        title: "UPDATED",
        cell: |p| time(&p["updated_at"]),
    },
];

pub const MEMBERS: &[Column] = &[
    Column {
        title: "USERNAME",
        cell: |m| text(&m["username"]),
    },
    Column {
        title: "ROLE",
        cell: |m| text(&m["role"]),
    },
    Column {
        title: "ADDED",
        cell: |m| time(&m["added_at"]),
    },
];

pub const ITEMS: &[Column] = &[
    Column {
        title: "ID",
        cell: |i| text(&i["id"]),
    },
    Column {
        title: "TITLE",
        cell: |i| text(&i["title"]),
    },
    Column {
        title: "STATUS",
        cell: |i| text(&i["status"]),
    },
    Column {
        title: "DUE",
        cell: |i| text(&i["due_date"]),
    },
    Column {
        title: "ASSIGNEE",
        cell: |i| text(&i["assignee"]),
    },
    Column {
        title: "UPDATED",
        cell: |i| time(&i["updated_at"]),
    },
];

pub const USERS: &[Column] = &[
    Column {
        title: "USERNAME",
        cell: |u| text(&u["username"]),
    },
    Column {
        title: "LEVEL",
        cell: |u| text(&u["level"]),
    },
    Column {
        title: "EMAIL",
        cell: |u| text(&u["email"]),
    },
    Column {
        title: "CREATED",
        cell: |u| time(&u["created_at"]),
    },
];
