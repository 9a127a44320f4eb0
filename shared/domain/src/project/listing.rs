//! Listing items: the filters and sort orders of `GET /projects/{id}/items`
//! and `GET /items`, what they mean, and where a page stops.
//!
//! The stores answer these with indexes (SQLite) and keys (DynamoDB); this
//! module says what the answer must be: [`ItemFilter::matches`] and
//! [`Sort::position`] are the reference both stores are tested against.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use jiff::civil::Date;
use time::OffsetDateTime;

use super::log::Item;
use super::{DueDate, ItemId, ItemStatus};
use crate::user::{InvalidValue, Username};

/// `?due=`: relative to "today" in the listing's time zone. Items without a
/// due date match none of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Due {
    /// Due before today and not completed.
    Overdue,
    Today,
    /// Due after today.
    Future,
}

impl Due {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "overdue" => Ok(Self::Overdue),
            "today" => Ok(Self::Today),
            "future" => Ok(Self::Future),
            _ => Err(InvalidValue("must be overdue, today or future".into())),
        }
    }
}

/// `?assignee=`: a username, `me` (resolved to the caller when parsed) or
/// `none` (unassigned).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Assignee {
    Named(Username),
    Nobody,
}

impl Assignee {
    pub fn parse(raw: &str, me: &Username) -> Result<Self, InvalidValue> {
        match raw {
            "me" => Ok(Self::Named(me.clone())),
            "none" => Ok(Self::Nobody),
            name => Username::parse(name)
                .map(Self::Named)
                .map_err(|_| InvalidValue("must be a username, me or none".into())),
        }
    }
}

/// Parses `?status=pending,in_progress`: one or more (a repeat changes
/// nothing).
pub fn parse_statuses(raw: &str) -> Result<BTreeSet<ItemStatus>, InvalidValue> {
    raw.split(',')
        .map(|part| {
            ItemStatus::parse(part).map_err(|_| {
                InvalidValue(
                    "must be one or more of pending, in_progress, completed, comma-separated"
                        .into(),
                )
            })
        })
        .collect()
}

/// An IANA time zone (`Europe/Paris`); `UTC` by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone(jiff::tz::TimeZone);

impl Zone {
    pub fn utc() -> Self {
        Self(jiff::tz::TimeZone::UTC)
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        jiff::tz::TimeZone::get(raw)
            .map(Self)
            .map_err(|_| InvalidValue("must be an IANA time zone, such as Europe/Paris".into()))
    }

    /// The calendar date at `now` in this zone.
    pub fn today(&self, now: OffsetDateTime) -> Date {
        let instant = jiff::Timestamp::from_second(now.unix_timestamp())
            .expect("a time the clock gives is within jiff's range");
        instant.to_zoned_datetime(self.0.clone()).date()
    }
}

impl Default for Zone {
    fn default() -> Self {
        Self::utc()
    }
}

/// Which items a listing keeps. Every filter given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ItemFilter {
    pub statuses: Option<BTreeSet<ItemStatus>>,
    pub due: Option<Due>,
    pub assignee: Option<Assignee>,
}

impl ItemFilter {
    /// Whether `item` is listed, "today" being `today`.
    pub fn matches(&self, item: &Item, today: Date) -> bool {
        if item.deleted {
            return false;
        }
        if let Some(statuses) = &self.statuses
            && !statuses.contains(&item.status)
        {
            return false;
        }
        if let Some(due) = self.due {
            let Some(date) = item.due_date.map(DueDate::date) else {
                return false;
            };
            let matched = match due {
                Due::Overdue => date < today && item.status != ItemStatus::Completed,
                Due::Today => date == today,
                Due::Future => date > today,
            };
            if !matched {
                return false;
            }
        }
        match &self.assignee {
            None => true,
            Some(Assignee::Nobody) => item.assignee.is_none(),
            Some(Assignee::Named(name)) => item.assignee.as_ref() == Some(name),
        }
    }
}

/// What a listing is ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortKey {
    DueDate,
    Status,
    CreatedAt,
}

/// `?sort=`: a key, ascending or (with `-`) descending; `-created_at` by
/// default. Ties go by id in the same direction, so an order is total and
/// a page never repeats or skips an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Self {
            key: SortKey::CreatedAt,
            descending: true,
        }
    }
}

impl Sort {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let (descending, name) = match raw.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, raw),
        };
        let key = match name {
            "due_date" => SortKey::DueDate,
            "status" => SortKey::Status,
            "created_at" => SortKey::CreatedAt,
            _ => {
                return Err(InvalidValue(
                    "must be due_date, status or created_at, with - for descending".into(),
                ));
            }
        };
        Ok(Self { key, descending })
    }

    /// Where `item` stands in this order: positions compare as the items
    /// are listed (smaller first).
    pub fn position(&self, item: &Item) -> Position {
        let value = match self.key {
            SortKey::DueDate => Value::Due(item.due_date),
            SortKey::Status => Value::Status(item.status),
            SortKey::CreatedAt => Value::CreatedAt(item.created_at),
        };
        Position {
            descending: self.descending,
            value,
            id: item.id,
        }
    }
}

/// The value an item is sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    Due(Option<DueDate>),
    Status(ItemStatus),
    CreatedAt(OffsetDateTime),
}

/// Where an item stands in a sort order; the page after a cursor holds the
/// items whose positions are greater than the cursor's. Positions of
/// different orders are never compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    pub descending: bool,
    pub value: Value,
    pub id: ItemId,
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_value = match (self.value, other.value) {
            // Undated items come last whichever way dates are sorted.
            (Value::Due(None), Value::Due(Some(_))) => return Ordering::Greater,
            (Value::Due(Some(_)), Value::Due(None)) => return Ordering::Less,
            (Value::Due(a), Value::Due(b)) => a.cmp(&b),
            (Value::Status(a), Value::Status(b)) => a.cmp(&b),
            (Value::CreatedAt(a), Value::CreatedAt(b)) => a.cmp(&b),
            _ => Ordering::Equal,
        };
        let ordering = by_value.then(self.id.cmp(&other.id));
        if self.descending {
            ordering.reverse()
        } else {
            ordering
        }
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{ProjectId, Title};

    fn name(raw: &str) -> Username {
        Username::parse(raw).unwrap()
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    fn item(n: i64, status: ItemStatus, due: Option<&str>, assignee: Option<&str>) -> Item {
        Item {
            id: ItemId::new(),
            project_id: ProjectId::new(),
            title: Title::parse(&format!("item {n}")).unwrap(),
            description: None,
            status,
            due_date: due.map(|d| DueDate::parse(d).unwrap()),
            assignee: assignee.map(name),
            created_by: name("alice"),
            created_at: at(n),
            updated_at: at(n),
            version: 1,
            hash: String::new(),
            deleted: false,
        }
    }

    /// At one instant it is already Tuesday in Kiritimati (UTC+14) and still
    /// Monday in Pago Pago (UTC-11): "today", and so overdue, follows `tz`.
    #[test]
    fn today_follows_the_time_zone_across_the_date_line() {
        // 2026-12-01T12:00:00Z
        let now = OffsetDateTime::from_unix_timestamp(1_796_126_400).unwrap();
        let east = Zone::parse("Pacific/Kiritimati").unwrap();
        let west = Zone::parse("Pacific/Pago_Pago").unwrap();
        assert_eq!(east.today(now).to_string(), "2026-12-02");
        assert_eq!(west.today(now).to_string(), "2026-12-01");
        assert_eq!(Zone::utc().today(now).to_string(), "2026-12-01");

        let due_today_in_samoa = item(1, ItemStatus::Pending, Some("2026-12-01"), None);
        let overdue = ItemFilter {
            due: Some(Due::Overdue),
            ..ItemFilter::default()
        };
        let today = ItemFilter {
            due: Some(Due::Today),
            ..ItemFilter::default()
        };
        assert!(overdue.matches(&due_today_in_samoa, east.today(now)));
        assert!(!overdue.matches(&due_today_in_samoa, west.today(now)));
        assert!(today.matches(&due_today_in_samoa, west.today(now)));
        assert!(Zone::parse("Mars/Olympus_Mons").is_err());
    }

    #[test]
    fn filters_combine_and_undated_items_match_no_due_filter() {
        let today = DueDate::parse("2026-12-01").unwrap().date();
        let me = name("bob");
        let late_mine = item(1, ItemStatus::InProgress, Some("2026-11-30"), Some("bob"));
        let late_done = item(2, ItemStatus::Completed, Some("2026-11-30"), Some("bob"));
        let undated = item(3, ItemStatus::Pending, None, None);
        let filter = ItemFilter {
            statuses: Some(parse_statuses("pending,in_progress").unwrap()),
            due: Some(Due::Overdue),
            assignee: Some(Assignee::parse("me", &me).unwrap()),
        };
        assert!(filter.matches(&late_mine, today));
        assert!(!filter.matches(&late_done, today));
        assert!(!filter.matches(&undated, today));
        let unassigned = ItemFilter {
            assignee: Some(Assignee::parse("none", &me).unwrap()),
            ..ItemFilter::default()
        };
        assert!(unassigned.matches(&undated, today));
        assert!(!unassigned.matches(&late_mine, today));
        assert_eq!(parse_statuses("pending,pending").unwrap().len(), 1);
        assert!(parse_statuses("").is_err());
        assert!(Assignee::parse("not a name!", &me).is_err());
    }

    #[test]
    fn undated_items_come_last_in_either_due_order_and_ties_go_by_id() {
        let items = [
            item(1, ItemStatus::Pending, Some("2026-12-03"), None),
            item(2, ItemStatus::Pending, None, None),
            item(3, ItemStatus::Pending, Some("2026-12-01"), None),
            item(4, ItemStatus::Pending, Some("2026-12-01"), None),
        ];
        let order = |raw: &str| {
            let sort = Sort::parse(raw).unwrap();
            let mut sorted: Vec<&Item> = items.iter().collect();
            sorted.sort_by_key(|i| sort.position(i));
            sorted
                .iter()
                .map(|i| i.title.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(order("due_date"), ["item 3", "item 4", "item 1", "item 2"]);
        assert_eq!(order("-due_date"), ["item 1", "item 4", "item 3", "item 2"]);
        assert_eq!(
            order("-created_at"),
            ["item 4", "item 3", "item 2", "item 1"]
        );
        assert_eq!(Sort::default(), Sort::parse("-created_at").unwrap());
        assert!(Sort::parse("title").is_err());
    }

    #[test]
    fn status_order_is_pending_in_progress_completed() {
        let items = [
            item(1, ItemStatus::Completed, None, None),
            item(2, ItemStatus::Pending, None, None),
            item(3, ItemStatus::InProgress, None, None),
        ];
        let sort = Sort::parse("status").unwrap();
        let mut sorted: Vec<&Item> = items.iter().collect();
        sorted.sort_by_key(|i| sort.position(i));
        let statuses: Vec<ItemStatus> = sorted.iter().map(|i| i.status).collect();
        assert_eq!(statuses, ItemStatus::ALL);
    }
}
