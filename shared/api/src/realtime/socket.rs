//! One WebSocket connection (`GET /ws`).
//!
//! The token is checked before the upgrade (401 otherwise) and then every
//! [`SESSION_CHECK`]: a revoked or expired token, or a deleted user, closes
//! the socket with 4401. Each subscription is checked like the matching GET
//! when it is made, and again on every event (a member removed from a
//! project gets an `error` for the topic and nothing more from it).
//!
//! Ordering: live events come from the hub; each subscription remembers the
//! last `seq` it delivered and skips what it has already sent. A live event
//! that skips ahead (two writers published out of commit order) is held
//! until the ones before it arrive, which they do within microseconds; if
//! they have not after [`GAP_WAIT`] (or too many are held), they are read
//! from the store. Reading is the exception: it folds an item's whole log. Replay with `after` reads the store after subscribing to the
//! hub, so nothing committed around the seam is lost or sent twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};

use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use http::HeaderMap;
use taskgate_domain::permission::{Actor, may_see_task};
use taskgate_domain::ports::StoreError;
use taskgate_domain::project::access::{Action, may};
use taskgate_domain::project::log::Project;
use taskgate_domain::task::{Status, Task, TaskEvent, TaskId, TaskKind, fold};
use tokio::time::{Instant, interval, timeout};
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::hub::{ConnectionGuard, Key, Notice};
use super::replay::{
    Allowed, ClientMessage, Folds, Refusal, Rendered, authorize, may_subscribe, store_failed,
};
use super::{Topic, message};
use crate::auth::{self, Session};
use crate::extract::SharedState;
use crate::problem::ApiError;

/// How often an open socket's token is checked again (revocation and expiry
/// close it within this, well inside the contract's 5 s).
pub const SESSION_CHECK: Duration = Duration::from_secs(2);
/// How often the subscribers of a running delay or export are sent its progress (the
/// contract asks for at least every 2 s).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long an event that came ahead of its turn waits for the ones before
/// it to arrive from the hub before they are read from the store.
const GAP_WAIT: Duration = Duration::from_millis(200);
/// Events held waiting for a gap to close, at most (then the store is read).
const MAX_PENDING: usize = 256;
/// How long one message may take to go out before the client is deemed gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message a client may send (subscriptions are small).
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Entries read from a feed per round trip when replaying.
const REPLAY_PAGE: usize = 100;
/// The caller's newest tasks looked at, when subscribing to `tasks`, for
/// running delays whose progress to report.
const RUNNING_LOOKBACK: usize = 50;
/// Close codes.
const CLOSE_UNAUTHENTICATED: u16 = 4401;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_GOING_AWAY: u16 = 1001;

/// `GET /ws`: authenticates (header or `?token=`), then upgrades.
pub async fn upgrade(
    State(state): State<SharedState>,
    headers: HeaderMap,
    uri: http::Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match accept(state, &headers, &uri, upgrade).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn accept(
    state: SharedState,
    headers: &HeaderMap,
    uri: &http::Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = match auth::bearer(headers)? {
        Some(token) => token.to_owned(),
        None => query_token(uri)?.ok_or_else(|| {
            ApiError::Unauthenticated(
                "this endpoint needs a token: send Authorization: Bearer <token> or ?token=<token>"
                    .into(),
            )
        })?,
    };
    let session = auth::authenticate(&state, &token).await?;
    let upgrade = upgrade.map_err(|_| ApiError::UpgradeRequired)?;
    let limit = state.settings.realtime.max_connections_per_user;
    let guard = state
        .hub
        .connect(session.user.user_id, limit)
        .ok_or(ApiError::TooManyConnections { limit })?;
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let mut connection = Connection {
                state,
                token,
                session,
                subscriptions: HashMap::new(),
                streams: StreamMap::new(),
                _guard: guard,
            };
            connection.run(socket).await;
            connection.unsubscribe_all();
        }))
}

/// The `token` query parameter, if any.
fn query_token(uri: &http::Uri) -> Result<Option<String>, ApiError> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| ApiError::Malformed("the query string does not parse".into()))?;
    Ok(pairs
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v))
}

/// What one subscription remembers.
enum Subscription {
    Project {
        /// The project as of the last event delivered (permissions are
        /// checked against it).
        project: Project,
        /// The feed position last delivered: `after`, or the feed's head
        /// when the subscription began without one.
        last: u64,
        /// Events that came ahead of the next position, by position.
        pending: BTreeMap<u64, Rendered>,
        /// Since when the next position is missing.
        gap_since: Option<Instant>,
    },
    Task {
        task: Task,
        last: u64,
    },
    Tasks {
        /// The last seq delivered per unfinished task.
        last: HashMap<TaskId, u64>,
        /// Running delays, for progress.
        running: HashMap<TaskId, Task>,
    },
}

/// Why a connection ends.
enum End {
    /// The client left or stopped answering: nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
}

struct Connection {
    state: SharedState,
    /// Kept to check again while the socket is open; never logged.
    token: String,
    session: Session,
    subscriptions: HashMap<Topic, Subscription>,
    streams: StreamMap<Topic, BroadcastStream<Arc<Notice>>>,
    _guard: ConnectionGuard,
}

impl Connection {
    fn actor(&self) -> Actor {
        self.session.actor()
    }

    fn key(&self, topic: &Topic) -> Key {
        match topic {
            Topic::Project(id) => Key::Project(*id),
            Topic::Task(id) => Key::Task(*id),
            Topic::Tasks => Key::Owner(self.session.user.user_id),
        }
    }

    async fn run(&mut self, mut socket: WebSocket) {
        let now = Instant::now();
        let mut check = interval(SESSION_CHECK);
        let mut progress = interval(PROGRESS_EVERY);
        let mut gaps = interval(GAP_WAIT / 2);
        let ping_every = self.state.settings.realtime.ping_interval;
        let mut ping = tokio::time::interval_at(now + ping_every, ping_every);
        check.reset();
        let mut heard = now;
        let end = loop {
            let outgoing = tokio::select! {
                incoming = socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break End::Gone,
                    Some(Ok(Message::Text(text))) => {
                        heard = Instant::now();
                        self.on_message(text.as_str()).await
                    }
                    Some(Ok(Message::Binary(_))) => {
                        heard = Instant::now();
                        vec![message::error(None, 400, "send JSON text frames, not binary ones")]
                    }
                    Some(Ok(_)) => {
                        heard = Instant::now();
                        continue;
                    }
                },
                Some((topic, notice)) = self.streams.next(), if !self.streams.is_empty() => {
                    match notice {
                        Ok(notice) => self.on_notice(topic, &notice).await,
                        Err(BroadcastStreamRecvError::Lagged(missed)) => break End::Close(
                            CLOSE_POLICY,
                            format!("too slow: {missed} events of {topic} were dropped; reconnect with after"),
                        ),
                    }
                }
                _ = check.tick() => match auth::authenticate(&self.state, &self.token).await {
                    // The account may have changed (a demoted admin):
                    // every task subscription is checked again.
                    Ok(session) => {
                        self.session = session;
                        self.recheck_tasks()
                    }
                    Err(ApiError::Unauthenticated(why)) => break End::Close(CLOSE_UNAUTHENTICATED, why),
                    // The store is down: keep the socket; check again later.
                    Err(_) => continue,
                },
                () = self.state.shutdown.cancelled() => break End::Close(
                    CLOSE_GOING_AWAY,
                    "the server is shutting down; reconnect with after".into(),
                ),
                _ = progress.tick() => self.progress().await,
                _ = gaps.tick() => self.fill_stale_gaps().await,
                _ = ping.tick() => {
                    if heard.elapsed() > ping_every * 2 {
                        break End::Gone;
                    }
                    if send(&mut socket, Message::Ping(Default::default())).await.is_err() {
                        break End::Gone;
                    }
                    continue;
                }
            };
            let limit = self.state.settings.realtime.max_message_bytes;
            for text in outgoing {
                let text = message::fit(text, limit);
                if send(&mut socket, Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        };
        if let End::Close(code, reason) = end {
            // Reasons are at most 123 bytes.
            let mut reason = reason;
            while reason.len() > 123 {
                reason.pop();
            }
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = timeout(
                Duration::from_secs(1),
                socket.send(Message::Close(Some(frame))),
            )
            .await;
        }
    }

    fn unsubscribe_all(&mut self) {
        let topics: Vec<Topic> = self.subscriptions.keys().copied().collect();
        for topic in topics {
            self.drop_subscription(&topic);
        }
    }

    /// Ends the `task:{id}` subscriptions the account may no longer see
    /// (its level changed since it subscribed), with an `error` for each.
    fn recheck_tasks(&mut self) -> Vec<String> {
        let actor = self.actor();
        let denied: Vec<(Topic, (u16, String))> = self
            .subscriptions
            .iter()
            .filter_map(|(topic, subscription)| match subscription {
                Subscription::Task { task, .. } => may_see_task(&actor, task)
                    .err()
                    .map(|denied| (*topic, super::replay::denied(denied))),
                _ => None,
            })
            .collect();
        denied
            .into_iter()
            .map(|(topic, (status, detail))| {
                self.drop_subscription(&topic);
                message::error(Some(&topic), status, &detail)
            })
            .collect()
    }

    fn drop_subscription(&mut self, topic: &Topic) {
        self.subscriptions.remove(topic);
        self.streams.remove(topic);
        self.state.hub.release(&self.key(topic));
    }

    async fn on_message(&mut self, text: &str) -> Vec<String> {
        let parsed = match ClientMessage::parse(text) {
            Ok(parsed) => parsed,
            Err(detail) => return vec![message::error(None, 400, &detail)],
        };
        match parsed {
            ClientMessage::Subscribe { topic, after } => {
                let topic = match Topic::parse(&topic) {
                    Ok(topic) => topic,
                    Err(detail) => return vec![message::error(None, 400, &detail)],
                };
                match self.subscribe(topic, after).await {
                    Ok(messages) => messages,
                    Err((status, detail)) => vec![message::error(Some(&topic), status, &detail)],
                }
            }
            ClientMessage::Unsubscribe { topic } => {
                let topic = match Topic::parse(&topic) {
                    Ok(topic) => topic,
                    Err(detail) => return vec![message::error(None, 400, &detail)],
                };
                if !self.subscriptions.contains_key(&topic) {
                    return vec![message::error(
                        Some(&topic),
                        400,
                        "not subscribed to this topic",
                    )];
                }
                self.drop_subscription(&topic);
                vec![message::unsubscribed(&topic)]
            }
        }
    }

    async fn subscribe(
        &mut self,
        topic: Topic,
        after: Option<u64>,
    ) -> Result<Vec<String>, Refusal> {
        may_subscribe(
            &topic,
            after,
            self.subscriptions.contains_key(&topic),
            self.subscriptions.len(),
            self.state.settings.realtime.max_subscriptions,
        )?;
        let actor = self.actor();
        // Check first, then listen, then read what came before: whatever is
        // stored from here on is either read below or arrives live.
        let allowed = authorize(&self.state, &actor, &topic).await?;
        let receiver = self.state.hub.subscribe(self.key(&topic));
        self.streams.insert(topic, BroadcastStream::new(receiver));
        let subscription = match allowed {
            Allowed::Project(project) => Subscription::Project {
                // Without `after`, live from the head read now, while
                // listening already: whatever is stored after it arrives.
                // (Taking the first event to arrive as the start lost an
                // earlier one that it had overtaken.)
                //
                // An `after` past the head (no client can have seen such a
                // position) counts as the head, as for a task: nothing is
                // replayed, and what is stored next arrives.
                last: match self.state.store.feed_head(&project.id).await {
                    Ok(head) => after.map_or(head, |after| after.min(head)),
                    Err(e) => {
                        self.drop_subscription(&topic);
                        return Err(store_failed(&e));
                    }
                },
                project,
                pending: BTreeMap::new(),
                gap_since: None,
            },
            Allowed::Task(task, events) => {
                let last = events.last().map_or(0, |e| e.seq);
                Subscription::Task {
                    task,
                    last: after.map_or(last, |a| a.min(last)),
                }
            }
            Allowed::Tasks => Subscription::Tasks {
                last: HashMap::new(),
                running: HashMap::new(),
            },
        };
        self.subscriptions.insert(topic, subscription);
        let mut messages = vec![message::subscribed(&topic)];
        let replayed = match topic {
            Topic::Project(id) if after.is_some() => {
                let mut replayed = self.replay_project(&topic, None).await;
                // History was shown as the subscriber may see it now; if
                // that changed while it was read, say so now.
                if let Ok(messages) = &mut replayed
                    && self.subscriptions.contains_key(&topic)
                {
                    let current = self
                        .state
                        .store
                        .get_project(&id)
                        .await
                        .map_err(|e| store_failed(&e))?;
                    let allowed = current
                        .as_ref()
                        .is_some_and(|p| may(Some(&actor), p, Action::View).is_ok());
                    if !allowed {
                        messages.push(message::error(
                            Some(&topic),
                            404,
                            "you are no longer a member of this project",
                        ));
                        self.drop_subscription(&topic);
                    }
                }
                replayed
            }
            Topic::Task(id) if after.is_some() => self.replay_task(&topic, &id, None).await,
            Topic::Task(_) => Ok(vec![]),
            Topic::Tasks => self.find_running().await.map(|()| vec![]),
            Topic::Project(_) => Ok(vec![]),
        };
        match replayed {
            Ok(replayed) => messages.extend(replayed),
            Err(e) => {
                self.drop_subscription(&topic);
                return Err(e);
            }
        }
        Ok(messages)
    }

    async fn load_task(&self, id: &TaskId) -> Result<(Task, Vec<TaskEvent>), Refusal> {
        self.state
            .recorder
            .load(id)
            .await
            .map_err(|e| store_failed(&e))?
            .ok_or((404, "there is no such task".to_owned()))
    }

    /// The running delays among the caller's newest tasks.
    async fn find_running(&mut self) -> Result<(), Refusal> {
        let user = self.session.user.user_id;
        let page = self
            .state
            .store
            .owner_tasks(&user, None, RUNNING_LOOKBACK)
            .await
            .map_err(|e| store_failed(&e))?;
        let mut found = HashMap::new();
        for id in page.items {
            if let Ok((task, events)) = self.load_task(&id).await
                && reports_progress(&task)
            {
                found.insert(id, (task, events.last().map_or(0, |e| e.seq)));
            }
        }
        if let Some(Subscription::Tasks { last, running }) =
            self.subscriptions.get_mut(&Topic::Tasks)
        {
            for (id, (task, seq)) in found {
                last.insert(id, seq);
                running.insert(id, task);
            }
        }
        Ok(())
    }

    /// Reads a project's feed from the subscription's last position up to
    /// `until` (exclusive; `None`: to the end) and renders it.
    async fn replay_project(
        &mut self,
        topic: &Topic,
        until: Option<u64>,
    ) -> Result<Vec<String>, Refusal> {
        let Topic::Project(id) = *topic else {
            return Ok(vec![]);
        };
        let mut messages = Vec::new();
        let mut folds = Folds::default();
        loop {
            let Some(Subscription::Project { last, .. }) = self.subscriptions.get(topic) else {
                return Ok(messages);
            };
            let from = *last;
            let wanted = match until {
                Some(until) if until <= from.saturating_add(1) => return Ok(messages),
                Some(until) => usize::try_from(until - from - 1)
                    .unwrap_or(usize::MAX)
                    .min(REPLAY_PAGE),
                None => REPLAY_PAGE,
            };
            let page = self
                .state
                .store
                .project_feed(&id, from, wanted)
                .await
                .map_err(|e| store_failed(&e))?;
            // Every page must move past `from`; a store that answered at or
            // before it again would otherwise hold this loop for good.
            if page.last().is_none_or(|entry| entry.position <= from) {
                return Ok(messages);
            }
            for entry in page {
                let rendered = folds.render(&self.state, entry).await?;
                messages.extend(self.deliver_project(topic, rendered, until.is_none()));
                if !self.subscriptions.contains_key(topic) {
                    return Ok(messages);
                }
            }
        }
    }

    /// Sends a task's events from the subscription's last seq up to `until`
    /// (exclusive; `None`: all).
    async fn replay_task(
        &mut self,
        topic: &Topic,
        id: &TaskId,
        until: Option<u64>,
    ) -> Result<Vec<String>, Refusal> {
        let (_, events) = self.load_task(id).await?;
        let now = self.state.clock.now();
        let mut messages = Vec::new();
        for (index, event) in events.iter().enumerate() {
            if until.is_some_and(|until| event.seq >= until) {
                break;
            }
            let task = fold(&events[..=index])
                .map_err(|e| store_failed(&StoreError::other(e.to_string())))?;
            messages.extend(self.deliver_task(topic, event, &task, now));
        }
        Ok(messages)
    }

    /// A project event for this subscriber, or the error that ends the
    /// subscription when they may no longer see the project. `history`:
    /// the event is replayed from before the subscription, and shown as the
    /// subscriber may see the project now (a member sees the history from
    /// before they joined, as `GET …/events` shows it).
    fn deliver_project(&mut self, topic: &Topic, rendered: Rendered, history: bool) -> Vec<String> {
        let actor = self.actor();
        let Some(Subscription::Project { project, last, .. }) = self.subscriptions.get_mut(topic)
        else {
            return vec![];
        };
        let position = rendered.position();
        if position <= *last {
            return vec![];
        }
        *last = position;
        match rendered {
            Rendered::Project {
                position,
                entry,
                before,
                after,
            } => {
                if history && !after.deleted {
                    return vec![message::project_event(
                        topic,
                        position,
                        &entry,
                        before.as_ref(),
                        &after,
                        &actor,
                    )];
                }
                *project = after.clone();
                match may(Some(&actor), &after, Action::View) {
                    Ok(()) => vec![message::project_event(
                        topic,
                        position,
                        &entry,
                        before.as_ref(),
                        &after,
                        &actor,
                    )],
                    Err(_) => {
                        let mut messages = Vec::new();
                        let detail = if after.deleted {
                            messages.push(message::project_event(
                                topic,
                                position,
                                &entry,
                                before.as_ref(),
                                &after,
                                &actor,
                            ));
                            "the project was deleted"
                        } else {
                            "you are no longer a member of this project"
                        };
                        messages.push(message::error(Some(topic), 404, detail));
                        self.drop_subscription(topic);
                        messages
                    }
                }
            }
            Rendered::Item {
                position,
                entry,
                item,
            } => {
                // Global admins who are not members see the project, not
                // its items (as over HTTP).
                if may(Some(&actor), project, Action::UseItems).is_err() {
                    return vec![];
                }
                vec![message::item_event(topic, position, &entry, &item)]
            }
        }
    }

    /// A task event for this subscriber (checked like `GET /tasks/{id}`).
    fn deliver_task(
        &mut self,
        topic: &Topic,
        event: &TaskEvent,
        task: &Task,
        now: time::OffsetDateTime,
    ) -> Vec<String> {
        let actor = self.actor();
        match self.subscriptions.get_mut(topic) {
            Some(Subscription::Task { task: known, last }) => {
                if event.seq <= *last {
                    return vec![];
                }
                if let Err(denied_) = may_see_task(&actor, task) {
                    let (status, detail) = super::replay::denied(denied_);
                    self.drop_subscription(topic);
                    return vec![message::error(Some(topic), status, &detail)];
                }
                *last = event.seq;
                *known = task.clone();
                vec![message::task_event(topic, event, task, now)]
            }
            Some(Subscription::Tasks { last, running }) => {
                let seen = last.get(&task.id).copied().unwrap_or(0);
                if event.seq <= seen {
                    return vec![];
                }
                if task.status.is_terminal() {
                    last.remove(&task.id);
                    running.remove(&task.id);
                } else {
                    last.insert(task.id, event.seq);
                    if reports_progress(task) {
                        running.insert(task.id, task.clone());
                    }
                }
                vec![message::task_event(topic, event, task, now)]
            }
            _ => vec![],
        }
    }

    /// Delivers the held events that now follow on.
    fn drain_pending(&mut self, topic: &Topic) -> Vec<String> {
        let mut messages = Vec::new();
        loop {
            let Some(Subscription::Project {
                last,
                pending,
                gap_since,
                ..
            }) = self.subscriptions.get_mut(topic)
            else {
                return messages;
            };
            let next = *last + 1;
            // Anything at or below what was delivered is a repeat.
            while pending.first_key_value().is_some_and(|(p, _)| *p < next) {
                pending.pop_first();
            }
            match pending.first_key_value() {
                Some((position, _)) if *position == next => {
                    let (_, rendered) = pending.pop_first().expect("just seen");
                    messages.extend(self.deliver_project(topic, rendered, false));
                }
                Some(_) => return messages,
                None => {
                    *gap_since = None;
                    return messages;
                }
            }
        }
    }

    /// Reads the missing positions from the store, then delivers what was
    /// held.
    async fn fill_gap(&mut self, topic: &Topic) -> Vec<String> {
        let until = match self.subscriptions.get(topic) {
            Some(Subscription::Project { pending, .. }) => pending.keys().next().copied(),
            _ => None,
        };
        let Some(until) = until else {
            return vec![];
        };
        let mut messages = match self.replay_project(topic, Some(until)).await {
            Ok(filled) => filled,
            Err((status, detail)) => {
                self.drop_subscription(topic);
                return vec![message::error(Some(topic), status, &detail)];
            }
        };
        messages.extend(self.drain_pending(topic));
        if let Some(Subscription::Project {
            pending, gap_since, ..
        }) = self.subscriptions.get_mut(topic)
        {
            *gap_since = (!pending.is_empty()).then(Instant::now);
        }
        messages
    }

    /// Fills the gaps that did not close by themselves within [`GAP_WAIT`].
    async fn fill_stale_gaps(&mut self) -> Vec<String> {
        let stale: Vec<Topic> = self
            .subscriptions
            .iter()
            .filter_map(|(topic, subscription)| match subscription {
                Subscription::Project {
                    gap_since: Some(since),
                    ..
                } if since.elapsed() >= GAP_WAIT => Some(*topic),
                _ => None,
            })
            .collect();
        let mut messages = Vec::new();
        for topic in stale {
            messages.extend(self.fill_gap(&topic).await);
        }
        messages
    }

    async fn on_notice(&mut self, topic: Topic, notice: &Notice) -> Vec<String> {
        let mut messages = Vec::new();
        match notice {
            Notice::Project { .. } | Notice::Item { .. } => {
                let rendered = match notice {
                    Notice::Project {
                        position,
                        entry,
                        before,
                        after,
                    } => Rendered::Project {
                        position: *position,
                        entry: entry.clone(),
                        before: before.clone(),
                        after: after.clone(),
                    },
                    Notice::Item {
                        position,
                        entry,
                        item,
                    } => Rendered::Item {
                        position: *position,
                        entry: entry.clone(),
                        item: item.clone(),
                    },
                    Notice::Task { .. } => unreachable!("matched above"),
                };
                let position = rendered.position();
                let Some(Subscription::Project {
                    last,
                    pending,
                    gap_since,
                    ..
                }) = self.subscriptions.get_mut(&topic)
                else {
                    return messages;
                };
                if position <= *last {
                    return messages;
                }
                // Ahead of the next: the ones between were stored first and
                // are on their way (publishers can overtake each other);
                // hold it until they come, or read them.
                if position > *last + 1 {
                    pending.insert(position, rendered);
                    gap_since.get_or_insert_with(Instant::now);
                    if pending.len() > MAX_PENDING {
                        return self.fill_gap(&topic).await;
                    }
                    return messages;
                }
                messages.extend(self.deliver_project(&topic, rendered, false));
                messages.extend(self.drain_pending(&topic));
            }
            Notice::Task { event, task } => {
                let now = self.state.clock.now();
                let behind = match self.subscriptions.get(&topic) {
                    Some(Subscription::Task { last, .. }) => event.seq > last + 1,
                    Some(Subscription::Tasks { last, .. }) => {
                        last.get(&task.id).is_some_and(|seen| event.seq > seen + 1)
                    }
                    _ => false,
                };
                if behind {
                    match self.replay_task(&topic, &task.id, Some(event.seq)).await {
                        Ok(filled) => messages.extend(filled),
                        Err((status, detail)) => {
                            messages.push(message::error(Some(&topic), status, &detail));
                            self.drop_subscription(&topic);
                            return messages;
                        }
                    }
                }
                messages.extend(self.deliver_task(&topic, event, task, now));
            }
        }
        messages
    }

    /// Progress of every running delay and export this connection follows
    /// (an export's as it last reported it).
    async fn progress(&mut self) -> Vec<String> {
        // Never a progress report to someone who may no longer see the task.
        let mut denied = self.recheck_tasks();
        let now = self.state.clock.now();
        let mut exports: HashMap<TaskId, Option<f64>> = HashMap::new();
        for subscription in self.subscriptions.values() {
            let tasks: Vec<&Task> = match subscription {
                Subscription::Task { task, .. } => vec![task],
                Subscription::Tasks { running, .. } => running.values().collect(),
                _ => Vec::new(),
            };
            for task in tasks {
                if task.kind() == TaskKind::Export && task.status == Status::Running {
                    exports.insert(task.id, None);
                }
            }
        }
        for (id, progress) in &mut exports {
            *progress = self
                .state
                .recorder
                .log()
                .task_progress(id)
                .await
                .unwrap_or_default();
        }
        let mut messages = Vec::new();
        for (topic, subscription) in &mut self.subscriptions {
            let tasks: Vec<&mut Task> = match subscription {
                Subscription::Task { task, .. } => vec![task],
                Subscription::Tasks { running, .. } => running.values_mut().collect(),
                _ => Vec::new(),
            };
            for task in tasks {
                if !reports_progress(task) {
                    continue;
                }
                if let Some(Some(progress)) = exports.get(&task.id) {
                    task.reported_progress = Some(*progress);
                }
                messages.push(message::task_progress(topic, task, now));
            }
        }
        denied.extend(messages);
        denied
    }
}

/// A running delay or export: its subscribers are sent its progress.
fn reports_progress(task: &Task) -> bool {
    matches!(task.kind(), TaskKind::Delay | TaskKind::Export) && task.status == Status::Running
}

async fn send(socket: &mut WebSocket, message: Message) -> Result<(), ()> {
    match timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
