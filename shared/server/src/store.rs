//! Opening the configured store, for serving or for auditing.

use std::sync::Arc;

use anyhow::{Context, bail};
use taskgate_domain::ports::Store;

use crate::config::{ServeConfig, StoreConfig};
use crate::server::DATABASE_FILE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Create what is missing (database file, DynamoDB tables).
    Serve,
    /// Open what exists; never create anything.
    Audit,
}

pub async fn open(config: &ServeConfig, purpose: Purpose) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.store {
        StoreConfig::Embedded => {
            let path = config.data_dir.join(DATABASE_FILE);
            if purpose == Purpose::Audit && !path.exists() {
                bail!(
                    "there is no embedded store at {} (set TASKGATE_DATA_DIR, or TASKGATE_STORE=dynamodb)",
                    path.display()
                );
            }
            Arc::new(taskgate_embedded::EmbeddedStore::open(&path)?)
        }
        StoreConfig::Memory => {
            if purpose == Purpose::Audit {
                bail!("TASKGATE_STORE=memory keeps nothing to audit");
            }
            Arc::new(taskgate_embedded::EmbeddedStore::in_memory()?)
        }
        StoreConfig::DynamoDb { endpoint, tables } => {
            let sdk = taskgate_aws::load_sdk_config(endpoint.as_deref()).await;
            let client = taskgate_aws::dynamodb_client(&sdk, endpoint.as_deref());
            if purpose == Purpose::Serve {
                taskgate_aws::ensure_tables(&client, tables)
                    .await
                    .with_context(|| match endpoint {
                        Some(endpoint) => {
                            format!("cannot reach DynamoDB at {endpoint} to prepare the tables")
                        }
                        None => "cannot reach DynamoDB to prepare the tables".into(),
                    })?;
            }
            Arc::new(taskgate_aws::DynamoStore::new(client, tables.clone()))
        }
    })
}
