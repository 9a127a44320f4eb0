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
//! The messages, and what each subscriber may see, are those of the local
//! server: both apply the rules and state machines of
//! [`taskgate_app::realtime`]. No state is kept between invocations, so the
//! fan-out applies the rules to each entry with the project as it is now,
//! and a replay runs a state machine rebuilt from where it stands.

use std::collections::HashMap;
use std::sync::Arc;
use taskgate_console::socket_protocol;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::encodings::Body;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use serde_json::json;
use taskgate_api::{AppState, auth};
use taskgate_app::realtime::client::{
    ClientMessage, Refusal, already_subscribed, may_subscribe, not_subscribed, store_failed,
};
use taskgate_app::realtime::read::{Allowed, Folds, authorize};
use taskgate_app::realtime::{
    ProjectFeed, Rendered, Source, Step, TaskFeed, Topic, message, project_entry, resume_at,
    task_entry,
};
use taskgate_aws::connections::{Connection, Connections, Subscriber};
use taskgate_domain::permission::Actor;
use taskgate_domain::ports::{FeedChange, FeedEntry};
use taskgate_domain::project::ProjectId;
use taskgate_domain::project::log::Project;
use taskgate_domain::task::{TaskId, fold};

/// API Gateway closes a WebSocket after two hours whatever happens.
const MAX_CONNECTION_SECONDS: i64 = 2 * 3600;

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

/// 503 with a problem+json body for a failed store call (logged once,
/// by [`store_failed`]; the client reads the fixed sentence only).
fn unavailable(e: taskgate_domain::ports::StoreError) -> ApiGatewayProxyResponse {
    store_failed(&e);
    let e = taskgate_api::problem::ApiError::Unavailable(Box::new(e));
    respond(e.status().as_u16(), Some(problem(&e)))
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
            Err(e) => return unavailable(e),
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
            Err(e) => unavailable(e),
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
            Err(e) => return unavailable(e),
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
                    Ok(false) => {
                        let (status, detail) = not_subscribed();
                        vec![message::error(Some(&topic), status, &detail)]
                    }
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
        let Ok(Allowed::Project(project)) = self.authorize(&actor, &topic).await else {
            return;
        };
        let (step, more) = match self.replay_project(project, &actor, rest.after).await {
            Ok(replayed) => replayed,
            // The rest could not be read: the subscription ends with the
            // error (unsubscribed below), so the client may subscribe again.
            Err((status, detail)) => (
                Step::end(vec![message::error(Some(&topic), status, &detail)]),
                None,
            ),
        };
        for text in step.messages {
            if let Err(Undelivered::Gone) = self.post(&connection.id, text).await {
                let _ = self.connections.forget(&connection.id).await;
                return;
            }
        }
        if step.ended {
            self.unsubscribe(&connection.id, &rest.topic).await;
            return;
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

    /// The rule of the matching GET, read from the store.
    async fn authorize(&self, actor: &Actor, topic: &Topic) -> Result<Allowed, Refusal> {
        authorize(
            self.state.store.as_ref(),
            &self.state.recorder,
            actor,
            topic,
        )
        .await
    }

    /// A project's feed after `from`, page by page as its state machine
    /// asks, for at most the replay budget (at least one page): what to
    /// send, and where it stopped if there is more.
    async fn replay_project(
        &self,
        project: Project,
        actor: &Actor,
        from: u64,
    ) -> Result<(Step, Option<u64>), Refusal> {
        let begun = std::time::Instant::now();
        let budget = self.replays.as_ref().map(|r| r.budget);
        let id = project.id;
        let mut feed = ProjectFeed::new(project, from);
        let mut folds = Folds::default();
        let mut step = Step::default();
        // Each page taken moves the feed's last position past where it was
        // read from (`Read::advanced`), or ends the subscription.
        loop {
            let Some(read) = feed.next_read(None) else {
                return Ok((step, None));
            };
            let page = self
                .state
                .store
                .project_feed(&id, read.after, read.limit)
                .await
                .map_err(|e| store_failed(&e))?;
            let Some(last) = page.last().map(|entry| entry.position) else {
                return Ok((step, None));
            };
            if !read.advanced(&page) {
                tracing::error!(project = %id, from = read.after, last, "the feed did not advance; the replay stops");
                return Ok((step, None));
            }
            let full = page.len() == read.limit;
            for entry in page {
                let rendered = folds.render(self.state.store.as_ref(), entry).await?;
                step.extend(feed.replayed(rendered, actor));
                if step.ended {
                    return Ok((step, None));
                }
            }
            if !full {
                return Ok((step, None));
            }
            if budget.is_some_and(|budget| begun.elapsed() >= budget) {
                return Ok((step, Some(feed.last())));
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
        let allowed = self.authorize(actor, topic).await?;
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
        let replay = match allowed {
            Allowed::Project(project) => {
                self.replay_project(project, actor, after)
                    .await
                    .map(|(replayed, more)| {
                        let rest = more.map(|after| Continuation {
                            connection: connection.id.clone(),
                            topic: topic.to_string(),
                            after,
                        });
                        (replayed, rest)
                    })
            }
            Allowed::Task(task, events) => {
                let head = task.last_seq;
                let mut feed = TaskFeed::one(task, resume_at(Some(after), head));
                feed.replayed(&events, actor, self.state.clock.now())
                    .map(|replayed| (replayed, None))
                    .map_err(|e| store_failed(&e))
            }
            Allowed::Tasks => Ok((Step::default(), None)),
        };
        // A replay that failed ends the subscription it recorded, so the
        // client may subscribe again.
        let (replayed, rest) = match replay {
            Ok(replayed) => replayed,
            Err(refusal) => {
                self.unsubscribe(&connection.id, &topic.to_string()).await;
                return Err(refusal);
            }
        };
        messages.extend(replayed.messages);
        if replayed.ended {
            self.unsubscribe(&connection.id, &topic.to_string()).await;
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

    /// Posts a step to a subscriber, and forgets the subscription if it
    /// ended.
    async fn settle(&self, subscriber: &Subscriber, step: Step) {
        self.deliver(subscriber, step.messages).await;
        if step.ended {
            self.unsubscribe(&subscriber.connection.id, &subscriber.topic)
                .await;
        }
    }

    /// Forgets a connection's subscription to `topic`. A failure is only
    /// logged: every later entry is checked against the rules again, so the
    /// subscriber still gets nothing it may not see.
    async fn unsubscribe(&self, connection: &str, topic: &str) {
        if let Err(e) = self.connections.unsubscribe(connection, topic).await {
            store_failed(&e);
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
            .render(self.state.store.as_ref(), FeedEntry { position, change })
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
            let step = project_entry(&topic, &rendered, current.as_ref(), &actor, Source::Live);
            self.settle(subscriber, step).await;
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
            (Topic::Tasks, topic_key(&Topic::Tasks, &task.owner_id)),
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
                let step = task_entry(&topic, event, &task, &actor, now);
                self.settle(subscriber, step).await;
            }
        }
        Ok(())
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
