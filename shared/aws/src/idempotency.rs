//! `IdempotencyStore` on DynamoDB: items of the Security table (`pk` =
//! `idem#<scope>`, `sk` = `-`), claimed with a conditional put (free, or
//! expired) and expiring by the table's TTL on `expires_at`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use taskgate_domain::ports::{Claim, IdempotencyStore, KeptResponse, StoreError, StoreResult};
use time::OffsetDateTime;

use crate::DynamoStore;
use crate::errors::{corrupt, store_error};

fn key(scope: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(format!("idem#{scope}"))),
        ("sk".to_owned(), AttributeValue::S("-".to_owned())),
    ])
}

/// How often a claim is read again when it vanished or changed under us.
const CLAIM_ATTEMPTS: usize = 4;

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim_key(
        &self,
        scope: &str,
        fingerprint: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> StoreResult<Claim> {
        for _ in 0..CLAIM_ATTEMPTS {
            let mut item = key(scope);
            item.insert("fingerprint".into(), AttributeValue::S(fingerprint.into()));
            item.insert(
                "expires_at".into(),
                AttributeValue::N(expires_at.unix_timestamp().to_string()),
            );
            let put = self
                .client
                .put_item()
                .table_name(&self.tables.security)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
                .expression_attribute_values(
                    ":now",
                    AttributeValue::N(now.unix_timestamp().to_string()),
                )
                .send()
                .await;
            match put {
                Ok(_) => return Ok(Claim::New),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(store_error(e)),
            }
            let output = self
                .client
                .get_item()
                .table_name(&self.tables.security)
                .set_key(Some(key(scope)))
                .consistent_read(true)
                .send()
                .await
                .map_err(store_error)?;
            let Some(found) = output.item else {
                continue; // released meanwhile: claim again
            };
            let held = match found.get("fingerprint") {
                Some(AttributeValue::S(held)) => held,
                _ => return Err(corrupt("idempotency claim", "no fingerprint")),
            };
            if held != fingerprint {
                return Ok(Claim::Mismatch);
            }
            return match found.get("response") {
                Some(AttributeValue::S(response)) => Ok(Claim::Done(
                    serde_json::from_str(response).map_err(|e| corrupt("kept response", e))?,
                )),
                _ => Ok(Claim::InProgress),
            };
        }
        Err(StoreError::unavailable(
            "the idempotency key kept changing; try again",
        ))
    }

    async fn keep_response(
        &self,
        scope: &str,
        fingerprint: &str,
        response: &KeptResponse,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()> {
        let response = serde_json::to_string(response).expect("a response always serialises");
        self.client
            .update_item()
            .table_name(&self.tables.security)
            .set_key(Some(key(scope)))
            .update_expression("SET #response = :response, expires_at = :expires")
            .condition_expression("fingerprint = :fingerprint")
            .expression_attribute_names("#response", "response")
            .expression_attribute_values(":response", AttributeValue::S(response))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N(expires_at.unix_timestamp().to_string()),
            )
            .expression_attribute_values(":fingerprint", AttributeValue::S(fingerprint.into()))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn release_key(&self, scope: &str, fingerprint: &str) -> StoreResult<()> {
        match self
            .client
            .delete_item()
            .table_name(&self.tables.security)
            .set_key(Some(key(scope)))
            .condition_expression("fingerprint = :fingerprint AND attribute_not_exists(#response)")
            .expression_attribute_names("#response", "response")
            .expression_attribute_values(":fingerprint", AttributeValue::S(fingerprint.into()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(store_error(e)),
        }
    }
}
