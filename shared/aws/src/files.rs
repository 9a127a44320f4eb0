//! `FileStore` on DynamoDB: the Files table, one item per file (the record
//! as JSON beside its keys), and one usage item per owner
//! (`file_id` = `usage#<user id>`, `bytes`) that a file's creation and
//! deletion change in the same transaction. The creation is conditional on
//! the usage staying within the quota, so concurrent uploads cannot pass it
//! together. An unfinished upload carries the keys of the sparse
//! `uploads-by-expiry` index.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use taskgate_domain::file::{FileId, FileStatus, StoredFile};
use taskgate_domain::ports::{FileStore, Page, StoreError, StoreResult};
use taskgate_domain::user::UserId;
use time::OffsetDateTime;

use crate::DynamoStore;
use crate::attr::{Row, n, s};
use crate::errors::{build_error, corrupt, store_error, transact};
use crate::tables::{FILES_BY_OWNER, UPLOADS_BY_EXPIRY};

fn usage_key(owner: &UserId) -> String {
    format!("usage#{owner}")
}

fn row(file: &StoredFile) -> Row {
    let mut row = HashMap::from([
        ("file_id".to_owned(), s(file.id.to_string())),
        ("owner_id".to_owned(), s(file.owner_id.to_string())),
        ("size".to_owned(), n(file.size)),
        ("version".to_owned(), n(file.version)),
        (
            "item".to_owned(),
            s(serde_json::to_string(file).expect("a file record always serialises")),
        ),
    ]);
    if file.status == FileStatus::Uploading
        && let Some(expires_at) = file.expires_at
    {
        row.insert("uploading".to_owned(), s("uploading"));
        row.insert(
            "expires_at".to_owned(),
            s(taskgate_domain::timestamp::format(expires_at)),
        );
    }
    row
}

fn from_row(row: &Row) -> StoreResult<StoredFile> {
    match row.get("item") {
        Some(AttributeValue::S(item)) => serde_json::from_str(item).map_err(|e| corrupt("file", e)),
        _ => Err(corrupt("file", "no item attribute")),
    }
}

impl DynamoStore {
    async fn transact_files(
        &self,
        items: Vec<TransactWriteItem>,
        first_failed: StoreError,
        second_failed: StoreError,
    ) -> StoreResult<()> {
        match transact(&self.client, items).await? {
            Ok(()) => Ok(()),
            Err(c) if c.failed_at(0) => Err(first_failed),
            Err(c) if c.failed_at(1) => Err(second_failed),
            Err(_) => Err(StoreError::Conflict),
        }
    }
}

#[async_trait]
impl FileStore for DynamoStore {
    async fn insert_file(&self, file: &StoredFile, quota: u64, max_files: u64) -> StoreResult<()> {
        let Some(room) = quota.checked_sub(file.size) else {
            return Err(StoreError::OverQuota);
        };
        if max_files == 0 {
            return Err(StoreError::TooManyFiles);
        }
        let put = Put::builder()
            .table_name(&self.tables.files)
            .set_item(Some(row(file)))
            .condition_expression("attribute_not_exists(file_id)")
            .build()
            .map_err(build_error)?;
        let usage = Update::builder()
            .table_name(&self.tables.files)
            .key("file_id", s(usage_key(&file.owner_id)))
            .update_expression(
                "SET #bytes = if_not_exists(#bytes, :zero) + :size, \
                     #files = if_not_exists(#files, :zero) + :one",
            )
            .condition_expression(
                "(attribute_not_exists(#bytes) OR #bytes <= :room) \
                 AND (attribute_not_exists(#files) OR #files < :max_files)",
            )
            .expression_attribute_names("#bytes", "bytes")
            .expression_attribute_names("#files", "files")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":size", n(file.size))
            .expression_attribute_values(":room", n(room))
            .expression_attribute_values(":max_files", n(max_files))
            .build()
            .map_err(build_error)?;
        match self
            .transact_files(
                vec![
                    TransactWriteItem::builder().put(put).build(),
                    TransactWriteItem::builder().update(usage).build(),
                ],
                StoreError::AlreadyExists,
                StoreError::OverQuota,
            )
            .await
        {
            // Which bound it was: the usage as it stands now says.
            Err(StoreError::OverQuota) => {
                let used = self.used_bytes(&file.owner_id).await?;
                if used <= room {
                    Err(StoreError::TooManyFiles)
                } else {
                    Err(StoreError::OverQuota)
                }
            }
            other => other,
        }
    }

    async fn get_file(&self, id: &FileId) -> StoreResult<Option<StoredFile>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.files)
            .key("file_id", s(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        output.item.as_ref().map(from_row).transpose()
    }

    async fn update_file(&self, current: &StoredFile, next: &StoredFile) -> StoreResult<()> {
        match self
            .client
            .put_item()
            .table_name(&self.tables.files)
            .set_item(Some(row(next)))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(current.version))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn delete_file(&self, file: &StoredFile) -> StoreResult<()> {
        let delete = Delete::builder()
            .table_name(&self.tables.files)
            .key("file_id", s(file.id.to_string()))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(file.version))
            .build()
            .map_err(build_error)?;
        let usage = Update::builder()
            .table_name(&self.tables.files)
            .key("file_id", s(usage_key(&file.owner_id)))
            .update_expression(
                "SET #bytes = if_not_exists(#bytes, :size) - :size, \
                     #files = if_not_exists(#files, :one) - :one",
            )
            .expression_attribute_names("#bytes", "bytes")
            .expression_attribute_names("#files", "files")
            .expression_attribute_values(":size", n(file.size))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(build_error)?;
        self.transact_files(
            vec![
                TransactWriteItem::builder().delete(delete).build(),
                TransactWriteItem::builder().update(usage).build(),
            ],
            StoreError::Conflict,
            StoreError::Conflict,
        )
        .await
    }

    async fn owner_files(
        &self,
        owner: &UserId,
        after: Option<&FileId>,
        limit: usize,
    ) -> StoreResult<Page<StoredFile, FileId>> {
        let mut query = self
            .client
            .query()
            .table_name(&self.tables.files)
            .index_name(FILES_BY_OWNER)
            .expression_attribute_values(":o", s(owner.to_string()))
            .scan_index_forward(false)
            .limit(limit as i32 + 1);
        query = match after {
            Some(after) => query
                .key_condition_expression("owner_id = :o AND file_id < :after")
                .expression_attribute_values(":after", s(after.to_string())),
            None => query.key_condition_expression("owner_id = :o"),
        };
        let output = query.send().await.map_err(store_error)?;
        let files: Vec<StoredFile> = output
            .items()
            .iter()
            .map(from_row)
            .collect::<StoreResult<_>>()?;
        Ok(Page::from_extra(files, limit, |f| f.id))
    }

    async fn expired_uploads(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreResult<Vec<StoredFile>> {
        let output = self
            .client
            .query()
            .table_name(&self.tables.files)
            .index_name(UPLOADS_BY_EXPIRY)
            .key_condition_expression("uploading = :u AND expires_at < :now")
            .expression_attribute_values(":u", s("uploading"))
            .expression_attribute_values(":now", s(taskgate_domain::timestamp::format(now)))
            .limit(limit as i32)
            .send()
            .await
            .map_err(store_error)?;
        output.items().iter().map(from_row).collect()
    }

    async fn used_bytes(&self, owner: &UserId) -> StoreResult<u64> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.files)
            .key("file_id", s(usage_key(owner)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        match output.item.as_ref().and_then(|row| row.get("bytes")) {
            None => Ok(0),
            Some(AttributeValue::N(bytes)) => bytes
                .parse::<i64>()
                .map(|b| b.max(0) as u64)
                .map_err(|e| corrupt("file usage", e)),
            Some(_) => Err(corrupt("file usage", "not a number")),
        }
    }
}
