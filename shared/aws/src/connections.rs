//! The Connections table of the AWS WebSocket API: who is connected, and
//! to which topics.
//!
//! One item per connection (`connection` = the API Gateway connection id,
//! `topic` = `#`) with the user and token it was opened with, and one item
//! per subscription (`topic` = the topic as the client named it, e.g.
//! `project:…` or `tasks`) whose `topic_key` names what it listens to
//! (`project:…`, `task:…`, `tasks:<user id>`): the fan-out Lambda queries
//! the `by-topic` index for a stored change's subscribers. Every item
//! expires (TTL on `expires_at`) when its token does, and at most after the
//! two hours API Gateway keeps a connection open.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use taskgate_domain::ports::StoreResult;
use taskgate_domain::token::TokenId;
use taskgate_domain::user::{UserId, Username};

use crate::attr::{Row, s};
use crate::errors::{corrupt, store_error};
use crate::tables::{CONNECTIONS_BY_TOPIC, CONNECTIONS_BY_USER};

/// The sort key of a connection's own item.
const CONNECTION_ROW: &str = "#";

/// An open connection and the session it was opened with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub user_id: UserId,
    pub username: Username,
    pub jti: TokenId,
    /// Unix seconds: when the token expires or API Gateway drops the
    /// connection, whichever comes first (the items' TTL).
    pub expires_at: i64,
}

/// A connection subscribed to a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscriber {
    pub connection: Connection,
    /// The topic as the client named it (what its events say).
    pub topic: String,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Connections {
    client: Client,
    table: String,
}

fn text<'r>(row: &'r Row, name: &str) -> StoreResult<&'r str> {
    match row.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(corrupt("connection", format!("no {name}"))),
    }
}

fn connection_of(row: &Row) -> StoreResult<Connection> {
    Ok(Connection {
        id: text(row, "connection")?.to_owned(),
        user_id: UserId::parse(text(row, "user_id")?).map_err(|e| corrupt("connection", e))?,
        username: Username::parse(text(row, "username")?).map_err(|e| corrupt("connection", e))?,
        jti: TokenId::parse(text(row, "jti")?).map_err(|e| corrupt("connection", e))?,
        expires_at: match row.get("expires_at") {
            Some(AttributeValue::N(n)) => n.parse().map_err(|e| corrupt("connection", e))?,
            _ => return Err(corrupt("connection", "no expires_at")),
        },
    })
}

fn session_attributes(connection: &Connection) -> Row {
    HashMap::from([
        ("connection".to_owned(), s(&connection.id)),
        ("user_id".to_owned(), s(connection.user_id.to_string())),
        ("username".to_owned(), s(connection.username.as_str())),
        ("jti".to_owned(), s(connection.jti.to_string())),
        (
            "expires_at".to_owned(),
            AttributeValue::N(connection.expires_at.to_string()),
        ),
    ])
}

impl Connections {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Records an opened connection.
    pub async fn open(&self, connection: &Connection) -> StoreResult<()> {
        let mut item = session_attributes(connection);
        item.insert("topic".to_owned(), s(CONNECTION_ROW));
        item.insert("user_key".to_owned(), s(connection.user_id.to_string()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// The connection with this id, if it is still recorded.
    pub async fn get(&self, id: &str) -> StoreResult<Option<Connection>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("connection", s(id))
            .key("topic", s(CONNECTION_ROW))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        output.item.as_ref().map(connection_of).transpose()
    }

    /// How many connections `user` has open (as recorded).
    pub async fn count_of(&self, user: &UserId) -> StoreResult<usize> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(CONNECTIONS_BY_USER)
            .key_condition_expression("user_key = :u")
            .expression_attribute_values(":u", s(user.to_string()))
            .select(aws_sdk_dynamodb::types::Select::Count)
            .send()
            .await
            .map_err(store_error)?;
        Ok(output.count() as usize)
    }

    /// The topics `connection` is subscribed to.
    pub async fn topics_of(&self, connection: &str) -> StoreResult<Vec<String>> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#c = :c")
            .expression_attribute_names("#c", "connection")
            .expression_attribute_values(":c", s(connection))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut topics = Vec::new();
        while let Some(row) = pages.next().await {
            let row = row.map_err(store_error)?;
            let topic = text(&row, "topic")?;
            if topic != CONNECTION_ROW {
                topics.push(topic.to_owned());
            }
        }
        Ok(topics)
    }

    /// Subscribes `connection` to `topic` (listening to `key`). `false` if
    /// it already was.
    pub async fn subscribe(
        &self,
        connection: &Connection,
        topic: &str,
        key: &str,
    ) -> StoreResult<bool> {
        let mut item = session_attributes(connection);
        item.insert("topic".to_owned(), s(topic));
        item.insert("topic_key".to_owned(), s(key));
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(topic)")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// Ends a subscription. `false` if there was none.
    pub async fn unsubscribe(&self, connection: &str, topic: &str) -> StoreResult<bool> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("connection", s(connection))
            .key("topic", s(topic))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(store_error)?;
        Ok(output.attributes.is_some())
    }

    /// Every connection subscribed to `key`.
    pub async fn subscribers(&self, key: &str) -> StoreResult<Vec<Subscriber>> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(CONNECTIONS_BY_TOPIC)
            .key_condition_expression("topic_key = :k")
            .expression_attribute_values(":k", s(key))
            .into_paginator()
            .items()
            .send();
        let mut found = Vec::new();
        while let Some(row) = pages.next().await {
            let row = row.map_err(store_error)?;
            found.push(Subscriber {
                connection: connection_of(&row)?,
                topic: text(&row, "topic")?.to_owned(),
            });
        }
        Ok(found)
    }

    /// Forgets a connection and all its subscriptions (it closed, or is
    /// gone).
    pub async fn forget(&self, connection: &str) -> StoreResult<()> {
        let mut topics = self.topics_of(connection).await?;
        topics.push(CONNECTION_ROW.to_owned());
        for topic in topics {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("connection", s(connection))
                .key("topic", s(topic))
                .send()
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }
}
