//! `TaskLog` on the TaskEvents table.
//!
//! One item per event, key (`task_id`, `seq`). An append is a PutItem
//! conditional on `attribute_not_exists(task_id)`, i.e. on that exact key
//! being free, so of two writers racing for the next seq exactly one wins.
//! The whole event is kept as JSON text in `event` (so it reads back exactly
//! as written and hashes the same); `type` and `at` sit beside it for people
//! reading the table, and `owner_id` on `created` events feeds the sparse
//! `by-owner` index. A `created` item also carries `unstarted` (its shard of
//! the sparse `unstarted` index) until `started` is appended: a task whose
//! start died between the two stays in that index, where the scheduled
//! sweep finds it ([`DynamoStore::unstarted_tasks`]).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use taskgate_domain::ports::{Page, StoreError, StoreResult, TaskLog};
use taskgate_domain::task::{EventData, TaskCreated, TaskEvent, TaskId};
use taskgate_domain::user::UserId;

use crate::DynamoStore;
use crate::attr::{n, s};
use crate::errors::{build_error, condition_or, corrupt, store_error, transact};
use crate::tables::{TASKS_BY_OWNER, TASKS_UNSTARTED, UNSTARTED_SHARDS};

fn to_item(event: &TaskEvent) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("task_id".to_owned(), s(event.stream.to_string())),
        ("seq".to_owned(), n(event.seq)),
        ("type".to_owned(), s(event.change.type_name())),
        (
            "at".to_owned(),
            s(taskgate_domain::timestamp::format(event.at)),
        ),
        (
            "event".to_owned(),
            s(serde_json::to_string(event).expect("an event always serialises")),
        ),
    ]);
    if let EventData::Created(TaskCreated { owner_id, .. }) = &event.change {
        item.insert("owner_id".to_owned(), s(owner_id.to_string()));
        item.insert("unstarted".to_owned(), s(unstarted_shard(&event.stream)));
    }
    item
}

/// The shard of the `unstarted` index a task's marker goes to: from the
/// id's last byte, which is random in a UUIDv7.
fn unstarted_shard(task: &TaskId) -> String {
    let last = task
        .to_string()
        .chars()
        .last()
        .and_then(|c| c.to_digit(16))
        .unwrap_or(0);
    (last % u32::from(UNSTARTED_SHARDS)).to_string()
}

/// The smallest UUIDv7 of the millisecond `at` (as text, how ids sort in
/// the index): every task created before `at` sorts below it.
fn first_id_at(at: time::OffsetDateTime) -> String {
    // A UUIDv7 holds the Unix time in milliseconds in its first 48 bits.
    let millis =
        u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    format!(
        "{:08x}-{:04x}-7000-8000-000000000000",
        millis >> 16,
        millis & 0xFFFF
    )
}

fn from_item(item: &HashMap<String, AttributeValue>) -> StoreResult<TaskEvent> {
    match item.get("event") {
        Some(AttributeValue::S(json)) => {
            serde_json::from_str(json).map_err(|e| corrupt("task event", e))
        }
        _ => Err(corrupt("task event", "no event attribute")),
    }
}

fn key_of(item: &HashMap<String, AttributeValue>, attribute: &str) -> StoreResult<String> {
    match item.get(attribute) {
        Some(AttributeValue::S(value)) => Ok(value.clone()),
        Some(AttributeValue::N(value)) => Ok(value.clone()),
        _ => Err(corrupt("task event key", format!("no {attribute}"))),
    }
}

fn active_key(owner: &UserId) -> String {
    format!("#active#{owner}")
}

/// The count of an owner's unfinished exports, beside their tasks' count.
fn active_exports_key(owner: &UserId) -> String {
    format!("#active-exports#{owner}")
}

/// How often a creation is tried again when another transaction was
/// changing the owner's count at the same moment.
const COUNT_ATTEMPTS: u64 = 32;

enum Cancelled {
    First,
    Second,
    Third,
    Conflict,
}

impl DynamoStore {
    /// Runs a two-item transaction; which condition failed, if one did.
    /// Runs a transaction; which condition failed, if one did.
    async fn transact_all(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> StoreResult<Result<(), Cancelled>> {
        Ok(match transact(&self.client, items).await? {
            Ok(()) => Ok(()),
            Err(c) if c.failed_at(0) => Err(Cancelled::First),
            Err(c) if c.failed_at(1) => Err(Cancelled::Second),
            Err(c) if c.failed_at(2) => Err(Cancelled::Third),
            Err(_) => Err(Cancelled::Conflict),
        })
    }

    /// `+1` on the count at `key`, if it is below `max`.
    fn count_up(&self, key: String, max: u64) -> StoreResult<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&self.tables.users)
            .key("username", s(key))
            .update_expression("SET active = if_not_exists(active, :zero) + :one")
            .condition_expression("attribute_not_exists(active) OR active < :max")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// An ending whose counts are not all there (tasks from before a count
    /// began): the event alone, then each count that can go down, each on
    /// its own (a count at zero stays there).
    async fn append_ending_uncounted(
        &self,
        event: &TaskEvent,
        owner: &UserId,
        export: bool,
    ) -> StoreResult<()> {
        self.append_event(event).await?;
        let mut keys = vec![active_key(owner)];
        if export {
            keys.push(active_exports_key(owner));
        }
        for key in keys {
            // A count at zero fails its condition and stays there.
            let _ = transact(&self.client, vec![self.count_down(key)?]).await?;
        }
        Ok(())
    }

    /// `-1` on the count at `key`, if it is above zero.
    fn count_down(&self, key: String) -> StoreResult<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&self.tables.users)
            .key("username", s(key))
            .update_expression("SET active = active - :one")
            .condition_expression("active > :zero")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn event_put(&self, event: &TaskEvent) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.tables.task_events)
            .set_item(Some(to_item(event)))
            .condition_expression("attribute_not_exists(task_id)")
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[async_trait]
impl TaskLog for DynamoStore {
    async fn append_created(
        &self,
        event: &TaskEvent,
        max_active: u64,
        max_exports: Option<u64>,
    ) -> StoreResult<()> {
        let EventData::Created(TaskCreated { owner_id, .. }) = &event.change else {
            return Err(StoreError::other("append_created takes a created event"));
        };
        if max_active == 0 {
            return Err(StoreError::OverQuota);
        }
        if max_exports == Some(0) {
            return Err(StoreError::TooManyExports);
        }
        for attempt in 0..COUNT_ATTEMPTS {
            if attempt > 0 {
                // Others are creating at the same moment: let them through.
                tokio::time::sleep(std::time::Duration::from_millis(2 * attempt)).await;
            }
            let mut items = vec![
                self.event_put(event)?,
                self.count_up(active_key(owner_id), max_active)?,
            ];
            if let Some(max_exports) = max_exports {
                items.push(self.count_up(active_exports_key(owner_id), max_exports)?);
            }
            match self.transact_all(items).await? {
                Ok(()) => return Ok(()),
                Err(Cancelled::First) => return Err(StoreError::AlreadyExists),
                Err(Cancelled::Second) => return Err(StoreError::OverQuota),
                Err(Cancelled::Third) => return Err(StoreError::TooManyExports),
                Err(Cancelled::Conflict) => continue,
            }
        }
        Err(StoreError::unavailable(
            "the owner's task count kept changing; try again",
        ))
    }

    async fn append_ending(
        &self,
        event: &TaskEvent,
        owner: &UserId,
        export: bool,
    ) -> StoreResult<()> {
        for attempt in 0..COUNT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(2 * attempt)).await;
            }
            let mut items = vec![self.event_put(event)?, self.count_down(active_key(owner))?];
            if export {
                items.push(self.count_down(active_exports_key(owner))?);
            }
            match self.transact_all(items).await? {
                Ok(()) => return Ok(()),
                Err(Cancelled::First) => return Err(StoreError::AlreadyExists),
                // A count that is not there (a task from before the count
                // began): the event, and the other count if there is one.
                Err(Cancelled::Second | Cancelled::Third) => {
                    return self.append_ending_uncounted(event, owner, export).await;
                }
                Err(Cancelled::Conflict) => continue,
            }
        }
        Err(StoreError::unavailable(
            "the owner's task count kept changing; try again",
        ))
    }

    async fn active_tasks(&self, owner: &UserId) -> StoreResult<u64> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.users)
            .key("username", s(active_key(owner)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        match output.item.as_ref().and_then(|item| item.get("active")) {
            None => Ok(0),
            Some(AttributeValue::N(active)) => active
                .parse::<i64>()
                .map(|a| a.max(0) as u64)
                .map_err(|e| corrupt("active task count", e)),
            Some(_) => Err(corrupt("active task count", "not a number")),
        }
    }

    async fn append_event(&self, event: &TaskEvent) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.tables.task_events)
            .set_item(Some(to_item(event)))
            .condition_expression("attribute_not_exists(task_id)")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| condition_or(e, StoreError::AlreadyExists))?;
        if matches!(event.change, EventData::Started { .. }) {
            // Best effort: a marker left behind is cleared by the sweep,
            // which finds the task started and leaves it be.
            if let Err(e) = self.clear_unstarted(&event.stream).await {
                tracing::warn!(task = %event.stream, error = %e, "could not clear a started task's unstarted marker");
            }
        }
        Ok(())
    }

    // Progress is an attribute of the task's `created` item, outside the
    // event's JSON (so outside its hash); the TaskEvents stream carries it
    // as a MODIFY, which the fan-out does not treat as an event.
    async fn record_progress(&self, task: &TaskId, progress: f64) -> StoreResult<()> {
        self.client
            .update_item()
            .table_name(&self.tables.task_events)
            .key("task_id", s(task.to_string()))
            .key("seq", n(1))
            .update_expression("SET progress = :p")
            .condition_expression("attribute_exists(task_id)")
            .expression_attribute_values(":p", n(progress))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| match condition_or(e, StoreError::Conflict) {
                // No such task: nothing to record progress on.
                StoreError::Conflict => Ok(()),
                other => Err(other),
            })
    }

    async fn task_progress(&self, task: &TaskId) -> StoreResult<Option<f64>> {
        let item = self
            .client
            .get_item()
            .table_name(&self.tables.task_events)
            .key("task_id", s(task.to_string()))
            .key("seq", n(1))
            .projection_expression("progress")
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?
            .item;
        match item.as_ref().and_then(|item| item.get("progress")) {
            Some(AttributeValue::N(value)) => value
                .parse()
                .map(Some)
                .map_err(|e| corrupt("task progress", e)),
            _ => Ok(None),
        }
    }

    async fn task_events(&self, task: &TaskId) -> StoreResult<Vec<TaskEvent>> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.tables.task_events)
            .key_condition_expression("task_id = :t")
            .expression_attribute_values(":t", s(task.to_string()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut events = Vec::new();
        while let Some(item) = pages.next().await {
            events.push(from_item(&item.map_err(store_error)?)?);
        }
        Ok(events)
    }

    async fn owner_tasks(
        &self,
        owner: &UserId,
        after: Option<&TaskId>,
        limit: usize,
    ) -> StoreResult<Page<TaskId, TaskId>> {
        // An index's start key names the index keys and the table keys; the
        // indexed item is always the task's `created` event, seq 1.
        let start = after.map(|task| {
            HashMap::from([
                ("owner_id".to_owned(), s(owner.to_string())),
                ("task_id".to_owned(), s(task.to_string())),
                ("seq".to_owned(), n(1)),
            ])
        });
        let output = self
            .client
            .query()
            .table_name(&self.tables.task_events)
            .index_name(TASKS_BY_OWNER)
            .key_condition_expression("owner_id = :o")
            .expression_attribute_values(":o", s(owner.to_string()))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(store_error)?;
        let items = output
            .items()
            .iter()
            .map(|item| {
                let id = key_of(item, "task_id")?;
                TaskId::parse(&id).map_err(|e| corrupt("task id", e))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let next = output
            .last_evaluated_key()
            .and_then(|_| items.last().copied());
        Ok(Page { items, next })
    }

    async fn scan_events(
        &self,
        after: Option<&(TaskId, u64)>,
        limit: usize,
    ) -> StoreResult<Page<TaskEvent, (TaskId, u64)>> {
        let start = after.map(|(task, seq)| {
            HashMap::from([
                ("task_id".to_owned(), s(task.to_string())),
                ("seq".to_owned(), n(seq)),
            ])
        });
        let output = self
            .client
            .scan()
            .table_name(&self.tables.task_events)
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(store_error)?;
        let items = output
            .items()
            .iter()
            .map(from_item)
            .collect::<StoreResult<Vec<_>>>()?;
        let next = match output.last_evaluated_key() {
            Some(key) => {
                let task =
                    TaskId::parse(&key_of(key, "task_id")?).map_err(|e| corrupt("task id", e))?;
                let seq = key_of(key, "seq")?.parse().map_err(|e| corrupt("seq", e))?;
                Some((task, seq))
            }
            None => None,
        };
        Ok(Page { items, next })
    }
}

impl DynamoStore {
    /// Tasks created before `before` that may not have started: their
    /// `created` item still carries the `unstarted` marker. Oldest first
    /// within each shard, at most `limit` per shard (the sweep runs again
    /// for the rest).
    pub async fn unstarted_tasks(
        &self,
        before: time::OffsetDateTime,
        limit: usize,
    ) -> StoreResult<Vec<TaskId>> {
        let bound = first_id_at(before);
        let mut found = Vec::new();
        for shard in 0..UNSTARTED_SHARDS {
            let output = self
                .client
                .query()
                .table_name(&self.tables.task_events)
                .index_name(TASKS_UNSTARTED)
                .key_condition_expression("unstarted = :s AND task_id < :bound")
                .expression_attribute_values(":s", s(shard.to_string()))
                .expression_attribute_values(":bound", s(bound.clone()))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(store_error)?;
            for item in output.items() {
                let id = key_of(item, "task_id")?;
                found.push(TaskId::parse(&id).map_err(|e| corrupt("task id", e))?);
            }
        }
        Ok(found)
    }

    /// Removes `task`'s `unstarted` marker (nothing if it has none).
    pub async fn clear_unstarted(&self, task: &TaskId) -> StoreResult<()> {
        self.client
            .update_item()
            .table_name(&self.tables.task_events)
            .key("task_id", s(task.to_string()))
            .key("seq", n(1))
            .update_expression("REMOVE unstarted")
            .condition_expression("attribute_exists(unstarted)")
            .send()
            .await
            .map(|_| ())
            .or_else(|e| match condition_or(e, StoreError::Conflict) {
                StoreError::Conflict => Ok(()),
                other => Err(other),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_sorts_after_every_id_of_an_earlier_millisecond_and_before_later_ones() {
        let at = time::macros::datetime!(2026-12-04 12:00:00.500 UTC);
        let bound = first_id_at(at);
        let millis = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap();
        let id = |ms: u64, random: u128| {
            let value = (u128::from(ms) << 80) | (0x7u128 << 76) | (0x2u128 << 62) | random;
            uuid::Uuid::from_u128(value).hyphenated().to_string()
        };
        assert!(id(millis - 1, u128::from(u64::MAX >> 2)) < bound);
        assert!(id(millis, 1) > bound);
        assert!(id(millis + 1, 0) > bound);
        assert_eq!(bound.len(), 36);
    }
}
