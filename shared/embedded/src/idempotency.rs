//! `IdempotencyStore` on SQLite: one row per key (its scope), claimed in an
//! `IMMEDIATE` transaction so two claims at once cannot both succeed.

use async_trait::async_trait;
use rusqlite::{OptionalExtension as _, params};
use taskgate_domain::ports::{Claim, IdempotencyStore, KeptResponse, StoreResult};
use time::OffsetDateTime;

use crate::{EmbeddedStore, corrupt, sql};

#[async_trait]
impl IdempotencyStore for EmbeddedStore {
    async fn claim_key(
        &self,
        scope: &str,
        fingerprint: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> StoreResult<Claim> {
        let (scope, fingerprint) = (scope.to_owned(), fingerprint.to_owned());
        let (now, expires_at) = (
            taskgate_domain::timestamp::format(now),
            taskgate_domain::timestamp::format(expires_at),
        );
        self.with_conn(move |conn| {
            let found: Option<(String, Option<String>, String)> = conn
                .query_row(
                    "SELECT fingerprint, response, expires_at FROM idempotency WHERE scope = ?1",
                    [&scope],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(sql)?;
            let claim = match found {
                Some((_, _, until)) if until <= now => None,
                Some((held, _, _)) if held != fingerprint => Some(Claim::Mismatch),
                Some((_, Some(response), _)) => Some(Claim::Done(
                    serde_json::from_str::<KeptResponse>(&response)
                        .map_err(|e| corrupt("kept response", e))?,
                )),
                Some((_, None, _)) => Some(Claim::InProgress),
                None => None,
            };
            if let Some(claim) = claim {
                return Ok(claim);
            }
            conn.execute(
                "INSERT INTO idempotency (scope, fingerprint, response, expires_at)
                 VALUES (?1, ?2, NULL, ?3)
                 ON CONFLICT (scope) DO UPDATE SET fingerprint = excluded.fingerprint,
                   response = NULL, expires_at = excluded.expires_at",
                params![scope, fingerprint, expires_at],
            )
            .map_err(sql)?;
            // Expired claims of anyone are tidied up on the way.
            conn.execute("DELETE FROM idempotency WHERE expires_at <= ?1", [&now])
                .map_err(sql)?;
            Ok(Claim::New)
        })
        .await
    }

    async fn keep_response(
        &self,
        scope: &str,
        fingerprint: &str,
        response: &KeptResponse,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()> {
        let (scope, fingerprint) = (scope.to_owned(), fingerprint.to_owned());
        let response = serde_json::to_string(response).expect("a response always serialises");
        let expires_at = taskgate_domain::timestamp::format(expires_at);
        self.with_conn(move |conn| {
            conn.execute(
                "UPDATE idempotency SET response = ?3, expires_at = ?4
                 WHERE scope = ?1 AND fingerprint = ?2",
                params![scope, fingerprint, response, expires_at],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn release_key(&self, scope: &str, fingerprint: &str) -> StoreResult<()> {
        let (scope, fingerprint) = (scope.to_owned(), fingerprint.to_owned());
        self.with_conn(move |conn| {
            conn.execute(
                "DELETE FROM idempotency WHERE scope = ?1 AND fingerprint = ?2 AND response IS NULL",
                params![scope, fingerprint],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }
}
