//! Projects and their work items: the to-dos teams keep, beside the
//! long-running tasks of [`crate::task`].
//!
//! - this module: the value types (ids, names, titles, statuses, due dates,
//!   roles), each with a `parse` that refuses what the contract refuses;
//! - [`log`]: the hash-chained event logs (one per project for the project
//!   and its members, one per item) and the folds that turn them into state;
//! - [`access`]: who may do what, as functions walked cell by cell by tests;
//! - [`commands`]: deciding the entry a change appends, guarding the
//!   project's state (the owner stays, assignees are members, `If-Match`);
//! - [`listing`]: the filters and sorts of item listings, and "today" in a
//!   time zone.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::user::InvalidValue;

pub mod access;
pub mod commands;
pub mod listing;
pub mod log;

macro_rules! uuid_id {
    ($(#[doc = $doc:literal])* $name:ident) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Uuid);

        impl $name {
            /// A new id: a UUID v7, so ids sort by creation time.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                Uuid::parse_str(raw)
                    .map(Self)
                    .map_err(|_| InvalidValue("is not an id this API made".into()))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.to_string()
            }
        }
    };
}

uuid_id!(
    /// A project's id.
    ProjectId
);
uuid_id!(
    /// A work item's id.
    ItemId
);

/// Trimmed text of `min..=max` characters that is not blank.
fn text(raw: &str, min: usize, max: usize) -> Result<String, InvalidValue> {
    let chars = raw.chars().count();
    if raw.trim().is_empty() && min > 0 {
        return Err(InvalidValue("must not be blank".into()));
    }
    if chars < min || chars > max {
        return Err(InvalidValue(format!(
            "must be {min} to {max} characters long"
        )));
    }
    Ok(raw.to_owned())
}

/// A project's name: 1 to 200 characters, not blank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectName(String);

impl ProjectName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        text(raw, 1, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A work item's title: 1 to 200 characters, not blank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        text(raw, 1, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A description (of a project or an item): at most 10,000 characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 10_000;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue(format!(
                "must be at most {} characters long",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_conversions {
    ($($name:ident),*) => {$(
        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    )*};
}

string_conversions!(ProjectName, Title, Description);

/// Where a work item stands. The order is the contract's status order:
/// pending < in_progress < completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Pending,
    InProgress,
    Completed,
}

impl ItemStatus {
    pub const ALL: [ItemStatus; 3] = [Self::Pending, Self::InProgress, Self::Completed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| InvalidValue("must be pending, in_progress or completed".into()))
    }
}

/// A member's role in a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectRole {
    Admin,
    Member,
}

impl ProjectRole {
    pub const ALL: [ProjectRole; 2] = [Self::Admin, Self::Member];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == raw)
            .ok_or_else(|| InvalidValue("must be admin or member".into()))
    }
}

/// A calendar date, `YYYY-MM-DD`, that exists (`2026-02-30` does not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DueDate(jiff::civil::Date);

impl DueDate {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let invalid = || InvalidValue("must be a calendar date, YYYY-MM-DD".into());
        // Exactly the ten characters of the contract's form.
        if raw.len() != 10 || raw.as_bytes()[4] != b'-' || raw.as_bytes()[7] != b'-' {
            return Err(invalid());
        }
        jiff::civil::Date::from_str(raw)
            .map(Self)
            .map_err(|_| invalid())
    }

    pub fn date(self) -> jiff::civil::Date {
        self.0
    }

    pub fn from_date(date: jiff::civil::Date) -> Self {
        Self(date)
    }
}

impl fmt::Display for DueDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // jiff writes civil dates as YYYY-MM-DD (years past 9999 aside,
        // which `parse` never accepts).
        self.0.fmt(f)
    }
}

impl TryFrom<String> for DueDate {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<DueDate> for String {
    fn from(value: DueDate) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_dates_must_exist_on_the_calendar() {
        assert_eq!(
            DueDate::parse("2028-02-29").unwrap().to_string(),
            "2028-02-29"
        );
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-1-01",
            "26-01-01",
            "2026/01/01",
            "",
            "2026-01-01T00:00:00Z",
        ] {
            assert!(DueDate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn titles_and_names_are_not_blank_and_not_too_long() {
        assert!(Title::parse("Write the report").is_ok());
        assert!(Title::parse("   ").is_err());
        assert!(Title::parse("").is_err());
        assert!(Title::parse(&"x".repeat(200)).is_ok());
        assert!(Title::parse(&"x".repeat(201)).is_err());
        assert!(ProjectName::parse(&"é".repeat(200)).is_ok());
        assert!(Description::parse("").is_ok());
        assert!(Description::parse(&"x".repeat(10_001)).is_err());
    }

    #[test]
    fn statuses_order_as_the_contract_says() {
        assert!(ItemStatus::Pending < ItemStatus::InProgress);
        assert!(ItemStatus::InProgress < ItemStatus::Completed);
        assert_eq!(
            ItemStatus::parse("in_progress").unwrap(),
            ItemStatus::InProgress
        );
        assert!(ItemStatus::parse("done").is_err());
    }
}
