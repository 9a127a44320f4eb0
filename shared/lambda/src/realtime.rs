//! Real-time updates on AWS: the API Gateway WebSocket API's routes and the
//! fan-out from DynamoDB Streams.
//!
//! - `$connect` ([`Realtime::connect`]) checks the token (the `taskgate.bearer.`
//!   subprotocol a browser offers, query `token` or
//!   `Authorization: Bearer`) and the per-user connection limit, and records
//!   the connection; a refusal is an HTTP status, and API Gateway then
//!   refuses the upgrade.
//! - `$default` ([`Realtime::message`]) takes `subscribe`/`unsubscribe`,
//!   checks them as the local server does (the rule of the matching GET),
//!   records the subscription, answers and replays (`after`) by posting to
//!   the connection.
//! - `$disconnect` ([`Realtime::disconnect`]) forgets the connection.
//! - The fan-out ([`Realtime::fan_out`]) gets the new entries of the task
//!   and project logs from their tables' streams, renders each for every
//!   subscriber allowed to see it (checking the subscriber's token first),
//!   and posts it (`PostToConnection`). A connection API Gateway reports gone
//!   (410) is forgotten; a revoked token's connection is closed.
//!
//! The messages are those of the local server ([`taskgate_api::realtime`]).

use std::collections::HashMap;
use std::sync::Arc;
use taskgate_console::socket_protocol;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::encodings::Body;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use serde_json::json;
use taskgate_api::realtime::Topic;
use taskgate_api::realtime::message;
use taskgate_api::realtime::replay::{
    Allowed, ClientMessage, Folds, Refusal, Rendered, already_subscribed, authorize, may_subscribe,
    store_failed,
};
use taskgate_api::{AppState, auth};
use taskgate_aws::connections::{Connection, Connections, Subscriber};
use taskgate_domain::permission::{Actor, may_see_task};
use taskgate_domain::ports::{FeedChange, FeedEntry};
use taskgate_domain::project::ProjectId;
use taskgate_domain::project::access::{Action, may};
use taskgate_domain::project::log::Project;
use taskgate_domain::task::{TaskId, fold};

/// API Gateway closes a WebSocket after two hours whatever happens.
const MAX_CONNECTION_SECONDS: i64 = 2 * 3600;
/// Entries posted per feed read when replaying.
const REPLAY_PAGE: usize = 100;

/// Where a replay stopped for want of time, carried on by the next
/// invocation of `$default` (an asynchronous invoke of itself).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Continuation {
    pub connection: String,
    pub topic: String,
    /// The feed position of the last entry posted.
    pub after: u64,
}

/// The event `$default` sends itself to carry a replay on:
/// `{"taskgate_replay": Continuation}`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ReplayEvent {
    pub taskgate_replay: Continuation,
}

/// How `$default` carries a long replay over to its next invocation: it
/// replays for at most `budget`, then invokes `function` (itself)
/// asynchronously with where it stopped. A function has 10 s
/// (infra/template.yaml); the budget leaves room for the posts.
pub struct Replays {
    pub lambda: aws_sdk_lambda::Client,
    pub function: String,
    pub budget: std::time::Duration,
}

/// What every real-time function holds: the application state (store,
/// token keys, settings), the Connections table and the management API.
pub struct Realtime {
    pub state: Arc<AppState>,
    pub connections: Connections,
    pub management: aws_sdk_apigatewaymanagement::Client,
    /// `$default` only: how long replays carry on (see [`Replays`]);
    /// without it a replay runs to its end in one invocation.
    pub replays: Option<Replays>,
}

fn respond(status: u16, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response.body = body.map(Body::Text);
    if response.body.is_some() {
        response.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/problem+json"),
        );
    }
    response
}

fn connection_id(request: &ApiGatewayWebsocketProxyRequest) -> Option<&str> {
    request.request_context.connection_id.as_deref()
}

/// The key a topic's subscribers are found under (`tasks` is per user).
fn topic_key(topic: &Topic, user: &taskgate_domain::user::UserId) -> String {
    match topic {
        Topic::Tasks => format!("tasks:{user}"),
        other => other.to_string(),
    }
}

/// Why a post did not arrive.
enum Undelivered {
    /// API Gateway no longer has the connection (410).
    Gone,
    Failed,
}

impl Realtime {
    /// `$connect`.
    pub async fn connect(
        &self,
        request: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        let Some(id) = connection_id(&request) else {
            return respond(400, None);
        };
        let from_header = match auth::bearer(&request.headers) {
            Ok(token) => token.map(str::to_owned),
            Err(e) => return respond(e.status().as_u16(), Some(problem(&e))),
        };
        // A browser (the web console) offers the token as a subprotocol,
        // beside `taskgate`, which the answer then selects.
        let from_protocol = socket_protocol::offered_token(&request.headers).map(str::to_owned);
        let speaks_taskgate = from_protocol.is_some();
        let Some(token) = from_header.or(from_protocol).or_else(|| {
            request
                .query_string_parameters
                .first("token")
                .map(str::to_owned)
        }) else {
            return respond(401, Some(problem(&auth::token_required())));
        };
        let session = match auth::authenticate(&self.state, &token).await {
            Ok(session) => session,
            Err(e) => return respond(e.status().as_u16(), Some(problem(&e))),
        };
        let limit = self.state.settings.realtime.max_connections_per_user;
        match self.connections.count_of(&session.user.user_id).await {
            Ok(open) if open >= limit => {
                let e = taskgate_api::problem::ApiError::TooManyConnections { limit };
                return respond(429, Some(problem(&e)));
            }
            Ok(_) => {}
            Err(e) => return respond(503, Some(store_failed(&e).1)),
        }
        let now = self.state.clock.now().unix_timestamp();
        let connection = Connection {
            id: id.to_owned(),
            user_id: session.user.user_id,
            username: session.user.username.clone(),
            jti: session.token.jti,
            expires_at: session
                .token
                .expires_at
                .unix_timestamp()
                .min(now + MAX_CONNECTION_SECONDS),
        };
        match self.connections.open(&connection).await {
            Ok(()) => {
                let mut response = respond(200, None);
                if speaks_taskgate {
                    socket_protocol::select_protocol(&mut response.headers);
                }
                response
            }
            Err(e) => respond(503, Some(store_failed(&e).1)),
        }
    }

    /// `$disconnect`.
    pub async fn disconnect(
        &self,
        request: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        if let Some(id) = connection_id(&request)
            && let Err(e) = self.connections.forget(id).await
        {
            store_failed(&e);
            return respond(503, None);
        }
        respond(200, None)
    }

    /// `$default`: a message from a client.
    pub async fn message(
        &self,
        request: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        let Some(id) = connection_id(&request) else {
            return respond(400, None);
        };
        let connection = match self.connections.get(id).await {
            Ok(Some(connection)) => connection,
            Ok(None) => return respond(410, None),
            Err(e) => return respond(503, Some(store_failed(&e).1)),
        };
        let Some(actor) = self.session_of(&connection).await else {
            return respond(401, None);
        };
        let mut continuation = None;
        let outgoing = match ClientMessage::parse(request.body.as_deref().unwrap_or_default()) {
            Err(detail) => vec![message::error(None, 400, &detail)],
            Ok(ClientMessage::Subscribe { topic, after }) => match Topic::parse(&topic) {
                Err(detail) => vec![message::error(None, 400, &detail)],
                Ok(topic) => match self.subscribe(&connection, &actor, &topic, after).await {
                    Ok((messages, rest)) => {
                        if let Some(rest) = rest {
                            continuation = Some(rest);
                        }
                        messages
                    }
                    Err((status, detail)) => vec![message::error(Some(&topic), status, &detail)],
                },
            },
            Ok(ClientMessage::Unsubscribe { topic }) => match Topic::parse(&topic) {
                Err(detail) => vec![message::error(None, 400, &detail)],
                Ok(topic) => match self.connections.unsubscribe(id, &topic.to_string()).await {
                    Ok(true) => vec![message::unsubscribed(&topic)],
                    Ok(false) => vec![message::error(
                        Some(&topic),
                        400,
                        "not subscribed to this topic",
                    )],
                    Err(e) => {
                        let (status, detail) = store_failed(&e);
                        vec![message::error(Some(&topic), status, &detail)]
                    }
                },
            },
        };
        for text in outgoing {
            if let Err(Undelivered::Gone) = self.post(id, text).await {
                let _ = self.connections.forget(id).await;
                return respond(200, None);
            }
        }
        if let Some(rest) = continuation {
            self.carry_on(rest).await;
        }
        respond(200, None)
    }

    /// Hands the rest of a replay to the next invocation of `$default`.
    async fn carry_on(&self, rest: Continuation) {
        let Some(replays) = &self.replays else {
            return;
        };
        let payload = serde_json::to_vec(&ReplayEvent {
            taskgate_replay: rest.clone(),
        })
        .expect("a continuation serialises");
        let sent = replays
            .lambda
            .invoke()
            .function_name(&replays.function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await;
        if let Err(e) = sent {
            // The client misses the rest of this replay; it can resubscribe
            // with `after` set to the last seq it got.
            tracing::error!(
                connection = rest.connection,
                topic = rest.topic,
                after = rest.after,
                error = %aws_sdk_lambda::error::DisplayErrorContext(&e),
                "could not carry a replay over to the next invocation"
            );
        }
    }

    /// A replay carried over from an earlier invocation (see [`Replays`]):
    /// only while the connection is still open, its token good, it still
    /// subscribes to the topic, and it may still see it.
    pub async fn resume(&self, rest: Continuation) {
        let Ok(Some(connection)) = self.connections.get(&rest.connection).await else {
            return;
        };
        let Some(actor) = self.session_of(&connection).await else {
            return;
        };
        let Ok(topic) = Topic::parse(&rest.topic) else {
            return;
        };
        match self.connections.topics_of(&connection.id).await {
            Ok(topics) if topics.contains(&rest.topic) => {}
            _ => return,
        }
        let Ok(Allowed::Project(project)) = authorize(&self.state, &actor, &topic).await else {
            return;
        };
        let (messages, more) = match self
            .replay_project(&topic, &project, &actor, rest.after)
            .await
        {
            Ok(replayed) => replayed,
            Err((status, detail)) => (vec![message::error(Some(&topic), status, &detail)], None),
        };
        for text in messages {
            if let Err(Undelivered::Gone) = self.post(&connection.id, text).await {
                let _ = self.connections.forget(&connection.id).await;
                return;
            }
        }
        if let Some(after) = more {
            self.carry_on(Continuation {
                connection: connection.id.clone(),
                topic: rest.topic,
                after,
            })
            .await;
        }
    }

    /// A project's feed after `from`, page by page, for at most the replay
    /// budget (at least one page): the messages, and where it stopped if
    /// there is more.
    async fn replay_project(
        &self,
        topic: &Topic,
        project: &Project,
        actor: &Actor,
        from: u64,
    ) -> Result<(Vec<String>, Option<u64>), Refusal> {
        let begun = std::time::Instant::now();
        let budget = self.replays.as_ref().map(|r| r.budget);
        let mut folds = Folds::default();
        let mut messages = Vec::new();
        let mut from = from;
        loop {
            let page = self
                .state
                .store
                .project_feed(&project.id, from, REPLAY_PAGE)
                .await
                .map_err(|e| store_failed(&e))?;
            let Some(last) = page.last().map(|entry| entry.position) else {
                return Ok((messages, None));
            };
            // Every page must move on; a store that answered the same page
            // again would otherwise hold this loop for good.
            if last <= from {
                tracing::error!(project = %project.id, from, last, "the feed did not advance; the replay stops");
                return Ok((messages, None));
            }
            from = last;
            let full = page.len() == REPLAY_PAGE;
            for entry in page {
                let rendered = folds.render(&self.state, entry).await?;
                messages.extend(history(topic, rendered, project, actor));
            }
            if !full {
                return Ok((messages, None));
            }
            if budget.is_some_and(|budget| begun.elapsed() >= budget) {
                return Ok((messages, Some(from)));
            }
        }
    }

    async fn subscribe(
        &self,
        connection: &Connection,
        actor: &Actor,
        topic: &Topic,
        after: Option<u64>,
    ) -> Result<(Vec<String>, Option<Continuation>), Refusal> {
        let limit = self.state.settings.realtime.max_subscriptions;
        let topics = self
            .connections
            .topics_of(&connection.id)
            .await
            .map_err(|e| store_failed(&e))?;
        may_subscribe(
            topic,
            after,
            topics.contains(&topic.to_string()),
            topics.len(),
            limit,
        )?;
        let allowed = authorize(&self.state, actor, topic).await?;
        // Recorded first, then the history read: what is stored from here
        // on reaches the connection through the fan-out.
        let recorded = self
            .connections
            .subscribe(
                connection,
                &topic.to_string(),
                &topic_key(topic, &actor.user_id),
            )
            .await
            .map_err(|e| store_failed(&e))?;
        if !recorded {
            return Err(already_subscribed());
        }
        let mut messages = vec![message::subscribed(topic)];
        let Some(after) = after else {
            return Ok((messages, None));
        };
        let mut rest = None;
        match allowed {
            Allowed::Project(project) => {
                let (replayed, more) = self.replay_project(topic, &project, actor, after).await?;
                messages.extend(replayed);
                rest = more.map(|after| Continuation {
                    connection: connection.id.clone(),
                    topic: topic.to_string(),
                    after,
                });
            }
            Allowed::Task(_, events) => {
                let now = self.state.clock.now();
                let skip = usize::try_from(after).unwrap_or(usize::MAX);
                for (index, event) in events.iter().enumerate().skip(skip) {
                    if let Ok(task) = fold(&events[..=index]) {
                        messages.push(message::task_event(topic, event, &task, now));
                    }
                }
            }
            Allowed::Tasks => {}
        }
        Ok((messages, rest))
    }

    /// The actor behind a connection if its token is still good; otherwise
    /// the connection is closed and forgotten, and `None`.
    async fn session_of(&self, connection: &Connection) -> Option<Actor> {
        let now = self.state.clock.now();
        let loaded = self
            .state
            .store
            .load_session(&connection.jti, &connection.username)
            .await;
        let valid = match &loaded {
            Ok((Some(record), Some(user))) => {
                record.user_id == connection.user_id
                    && !record.is_expired(now)
                    && user.user_id == connection.user_id
            }
            Ok(_) => false,
            // The store is down: nothing is sent, and the connection stays.
            Err(e) => {
                store_failed(e);
                return None;
            }
        };
        match loaded {
            Ok((_, Some(user))) if valid => Some(Actor {
                username: user.username,
                user_id: user.user_id,
                level: user.level,
            }),
            _ => {
                tracing::info!(connection = %connection.id, "closing a connection whose token is no longer valid");
                let _ = self
                    .management
                    .delete_connection()
                    .connection_id(&connection.id)
                    .send()
                    .await;
                if let Err(e) = self.connections.forget(&connection.id).await {
                    store_failed(&e);
                }
                None
            }
        }
    }

    async fn post(&self, connection: &str, text: String) -> Result<(), Undelivered> {
        // API Gateway refuses a message over 128 KB: a large one becomes a
        // notice naming what to read.
        let text = message::fit(text, self.state.settings.realtime.max_message_bytes);
        match self
            .management
            .post_to_connection()
            .connection_id(connection)
            .data(Blob::new(text.into_bytes()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_gone_exception()) => {
                Err(Undelivered::Gone)
            }
            Err(e) => {
                tracing::warn!(
                    connection,
                    error = %aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&e),
                    "could not post to a connection"
                );
                Err(Undelivered::Failed)
            }
        }
    }

    /// Posts to a subscriber; forgets its connection if API Gateway says
    /// it is gone.
    async fn deliver(&self, subscriber: &Subscriber, messages: Vec<String>) {
        for text in messages {
            if let Err(Undelivered::Gone) = self.post(&subscriber.connection.id, text).await {
                tracing::info!(connection = %subscriber.connection.id, "forgetting a connection that is gone");
                if let Err(e) = self.connections.forget(&subscriber.connection.id).await {
                    store_failed(&e);
                }
                return;
            }
        }
    }

    /// The fan-out: each new log entry in the stream batch, to its
    /// subscribers. A record that cannot be handled is logged and skipped,
    /// so one bad record does not hold back (or repeat) the others.
    pub async fn fan_out(&self, event: Event) {
        let mut sessions: HashMap<String, Option<Actor>> = HashMap::new();
        for record in event.records {
            if record.event_name != "INSERT" {
                continue;
            }
            if let Err((status, detail)) = self.fan_out_record(&record, &mut sessions).await {
                tracing::warn!(status, detail, event_id = %record.event_id, "a stream record was not fanned out");
            }
        }
    }

    async fn actor_of(
        &self,
        sessions: &mut HashMap<String, Option<Actor>>,
        subscriber: &Subscriber,
    ) -> Option<Actor> {
        if let Some(known) = sessions.get(&subscriber.connection.id) {
            return known.clone();
        }
        let actor = self.session_of(&subscriber.connection).await;
        sessions.insert(subscriber.connection.id.clone(), actor.clone());
        actor
    }

    async fn fan_out_record(
        &self,
        record: &EventRecord,
        sessions: &mut HashMap<String, Option<Actor>>,
    ) -> Result<(), Refusal> {
        let image = &record.change.new_image;
        let bad = |what: &str| (500, format!("the stream record has no {what}"));
        if let Some(task) = text(image, "task_id") {
            let id = TaskId::parse(task).map_err(|_| bad("valid task_id"))?;
            let seq = number(image, "seq").ok_or_else(|| bad("seq"))?;
            return self.fan_out_task(&id, seq, sessions).await;
        }
        let Some(project) = text(image, "feed_project") else {
            // An entry written before feeds existed: no position to send.
            return Ok(());
        };
        let project = ProjectId::parse(project).map_err(|_| bad("valid feed_project"))?;
        let position = number(image, "feed").ok_or_else(|| bad("feed"))?;
        let topic = Topic::Project(project);
        let subscribers = self
            .connections
            .subscribers(&topic.to_string())
            .await
            .map_err(|e| store_failed(&e))?;
        if subscribers.is_empty() {
            return Ok(());
        }
        // The record carries the whole entry; only the state it produced
        // is read (from its log).
        let stream = text(image, "stream").ok_or_else(|| bad("stream"))?;
        let entry = text(image, "entry").ok_or_else(|| bad("entry"))?;
        let unreadable = |e: serde_json::Error| {
            (
                500,
                format!("the stream record's entry does not parse: {e}"),
            )
        };
        let change = if stream.starts_with("project#") {
            FeedChange::Project(serde_json::from_str(entry).map_err(unreadable)?)
        } else {
            FeedChange::Item(serde_json::from_str(entry).map_err(unreadable)?)
        };
        let rendered = Folds::default()
            .render(&self.state, FeedEntry { position, change })
            .await?;
        // Item events are checked against the project as it is now.
        let current = match &rendered {
            Rendered::Item { .. } => self
                .state
                .store
                .get_project(&project)
                .await
                .map_err(|e| store_failed(&e))?,
            Rendered::Project { .. } => None,
        };
        for subscriber in &subscribers {
            let Some(actor) = self.actor_of(sessions, subscriber).await else {
                continue;
            };
            let (messages, ends) = live(&topic, &rendered, current.as_ref(), &actor);
            self.deliver(subscriber, messages).await;
            if ends
                && let Err(e) = self
                    .connections
                    .unsubscribe(&subscriber.connection.id, &subscriber.topic)
                    .await
            {
                store_failed(&e);
            }
        }
        Ok(())
    }

    async fn fan_out_task(
        &self,
        id: &TaskId,
        seq: u64,
        sessions: &mut HashMap<String, Option<Actor>>,
    ) -> Result<(), Refusal> {
        let Some((_, events)) = self
            .state
            .recorder
            .load(id)
            .await
            .map_err(|e| store_failed(&e))?
        else {
            return Ok(());
        };
        let Some(index) = events.iter().position(|e| e.seq == seq) else {
            return Ok(());
        };
        let task = fold(&events[..=index])
            .map_err(|e| store_failed(&taskgate_domain::ports::StoreError::other(e.to_string())))?;
        let event = &events[index];
        let now = self.state.clock.now();
        for (topic, key) in [
            (Topic::Task(*id), Topic::Task(*id).to_string()),
            (Topic::Tasks, format!("tasks:{}", task.owner_id)),
        ] {
            let subscribers = self
                .connections
                .subscribers(&key)
                .await
                .map_err(|e| store_failed(&e))?;
            for subscriber in &subscribers {
                let Some(actor) = self.actor_of(sessions, subscriber).await else {
                    continue;
                };
                if may_see_task(&actor, &task).is_err() {
                    continue;
                }
                let text = message::task_event(&topic, event, &task, now);
                self.deliver(subscriber, vec![text]).await;
            }
        }
        Ok(())
    }
}

/// A replayed entry, shown as `actor` may see the project now.
fn history(topic: &Topic, rendered: Rendered, now: &Project, actor: &Actor) -> Vec<String> {
    match rendered {
        Rendered::Project {
            position,
            entry,
            before,
            after,
        } => vec![message::project_event(
            topic,
            position,
            &entry,
            before.as_ref(),
            &after,
            actor,
        )],
        Rendered::Item {
            position,
            entry,
            item,
        } => {
            if may(Some(actor), now, Action::UseItems).is_ok() {
                vec![message::item_event(topic, position, &entry, &item)]
            } else {
                vec![]
            }
        }
    }
}

/// A live entry for `actor`, and whether it ends their subscription (they
/// may no longer see the project). `current` is the project now, for items.
fn live(
    topic: &Topic,
    rendered: &Rendered,
    current: Option<&Project>,
    actor: &Actor,
) -> (Vec<String>, bool) {
    match rendered {
        Rendered::Project {
            position,
            entry,
            before,
            after,
        } => {
            let event =
                || message::project_event(topic, *position, entry, before.as_ref(), after, actor);
            match may(Some(actor), after, Action::View) {
                Ok(()) => (vec![event()], false),
                Err(_) if after.deleted => (
                    vec![
                        event(),
                        message::error(Some(topic), 404, "the project was deleted"),
                    ],
                    true,
                ),
                Err(_) => (
                    vec![message::error(
                        Some(topic),
                        404,
                        "you are no longer a member of this project",
                    )],
                    true,
                ),
            }
        }
        Rendered::Item {
            position,
            entry,
            item,
        } => match current {
            Some(project) if may(Some(actor), project, Action::UseItems).is_ok() => (
                vec![message::item_event(topic, *position, entry, item)],
                false,
            ),
            Some(project) if may(Some(actor), project, Action::View).is_ok() => (vec![], false),
            _ => (
                vec![message::error(
                    Some(topic),
                    404,
                    "you are no longer a member of this project",
                )],
                true,
            ),
        },
    }
}

fn text<'i>(image: &'i serde_dynamo::Item, name: &str) -> Option<&'i str> {
    match image.get(name) {
        Some(serde_dynamo::AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

fn number(image: &serde_dynamo::Item, name: &str) -> Option<u64> {
    match image.get(name) {
        Some(serde_dynamo::AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

fn problem(e: &taskgate_api::problem::ApiError) -> String {
    json!({
        "type": format!("urn:taskgate:problem:{}", e.slug()),
        "status": e.status().as_u16(),
        "detail": e.to_string(),
    })
    .to_string()
}
