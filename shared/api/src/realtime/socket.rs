//! One WebSocket connection (`GET /ws`): its I/O.
//!
//! The token is checked before the upgrade (401 otherwise) and then every
//! [`SESSION_CHECK`]: a revoked or expired token, or a deleted user, closes
//! the socket with 4401. Each subscription is checked like the matching GET
//! when it is made, and again on every event (a member removed from a
//! project gets an `error` for the topic and nothing more from it).
//!
//! What each subscription sends, and in which order, is decided by its
//! state machine ([`ProjectFeed`], [`TaskFeed`]; see
//! [`taskgate_app::realtime`]). This connection feeds it what the hub
//! pushes, the store reads it asks for (the replay of `after`, and the gaps
//! left by events pushed out of commit order, read after [`GAP_WAIT`] or
//! when too many are held), the time, and the account as the session check
//! last found it; and sends what it answers. The replay of `after` reads
//! the store after subscribing to the hub, so nothing committed around the
//! seam is lost or sent twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};

use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use http::HeaderMap;
use taskgate_app::realtime::client::{
    ClientMessage, Refusal, may_subscribe, not_subscribed, store_failed,
};
use taskgate_app::realtime::read::{Allowed, Folds, authorize};
use taskgate_app::realtime::{
    Behind, GAP_WAIT, Gap, Live, ProjectFeed, Step, TaskFeed, Topic, message, resume_at,
};
use taskgate_domain::permission::Actor;
use taskgate_domain::task::{Task, TaskEvent, TaskId};
use tokio::time::{Instant, MissedTickBehavior, interval, timeout};
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::hub::{ConnectionGuard, Key, Notice};
use crate::auth::{self, Session};
use crate::extract::SharedState;
use crate::problem::ApiError;

/// How often an open socket's token is checked again (revocation and expiry
/// close it within this, well inside the contract's 5 s).
pub const SESSION_CHECK: Duration = Duration::from_secs(2);
/// How often the subscribers of a running delay or export are sent its progress (the
/// contract asks for at least every 2 s).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long one message may take to go out before the client is deemed gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message a client may send (subscriptions are small).
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// What one read from a client's socket takes at most. tungstenite zeroes
/// this much of its buffer before every read, its default (128 KiB) on each
/// wake-up of every connection: at 10,000 subscribers that was 44% of the
/// server's CPU in a fan-out and 128 KiB of memory per connection
/// (docs/benchmarks/suite.md). Client messages are small; a longer one
/// takes several reads.
const READ_BUFFER_BYTES: usize = 4 * 1024;
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
        .read_buffer_size(READ_BUFFER_BYTES)
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

/// One subscription's state machine.
enum Subscription {
    Project(ProjectFeed),
    /// `task:{id}` or `tasks`.
    Task(TaskFeed),
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
        // Progress and gaps tick only while there is something to do (a
        // running delay or export followed, a gap open): at 10,000 idle
        // connections their ticks were 110,000 wake-ups a second. When one
        // starts again after a pause it fires at once, then every period.
        let mut progress = interval(PROGRESS_EVERY);
        progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut gaps = interval(GAP_WAIT / 2);
        gaps.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let ping_every = self.state.settings.realtime.ping_interval;
        let mut ping = tokio::time::interval_at(now + ping_every, ping_every);
        check.reset();
        let mut heard = now;
        let end = loop {
            let (follows_progress, gap_open) = self.waiting_for();
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
                _ = progress.tick(), if follows_progress => self.progress().await,
                _ = gaps.tick(), if gap_open => self.fill_stale_gaps().await,
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

    /// The messages of `step` for `topic`, forgetting the subscription if
    /// it ended.
    fn settle(&mut self, topic: &Topic, step: Step) -> Vec<String> {
        if step.ended {
            self.drop_subscription(topic);
        }
        step.messages
    }

    /// `topic`'s `error`, the subscription forgotten: a read it needed
    /// failed.
    fn fail(&mut self, topic: &Topic, (status, detail): Refusal) -> Vec<String> {
        self.drop_subscription(topic);
        vec![message::error(Some(topic), status, &detail)]
    }

    fn project_feed(&mut self, topic: &Topic) -> Option<&mut ProjectFeed> {
        match self.subscriptions.get_mut(topic) {
            Some(Subscription::Project(feed)) => Some(feed),
            _ => None,
        }
    }

    fn task_feed(&mut self, topic: &Topic) -> Option<&mut TaskFeed> {
        match self.subscriptions.get_mut(topic) {
            Some(Subscription::Task(feed)) => Some(feed),
            _ => None,
        }
    }

    /// Ends the `task:{id}` subscriptions the account may no longer see
    /// (its level changed since it subscribed), with an `error` for each.
    fn recheck_tasks(&mut self) -> Vec<String> {
        let actor = self.actor();
        let mut messages = Vec::new();
        let mut ended = Vec::new();
        for (topic, subscription) in &mut self.subscriptions {
            if let Subscription::Task(feed) = subscription {
                let step = feed.recheck(&actor);
                if step.ended {
                    ended.push(*topic);
                }
                messages.extend(step.messages);
            }
        }
        for topic in ended {
            self.drop_subscription(&topic);
        }
        messages
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
                    let (status, detail) = not_subscribed();
                    return vec![message::error(Some(&topic), status, &detail)];
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
        let allowed = authorize(
            self.state.store.as_ref(),
            &self.state.recorder,
            &actor,
            &topic,
        )
        .await?;
        let receiver = self.state.hub.subscribe(self.key(&topic));
        self.streams.insert(topic, BroadcastStream::new(receiver));
        let subscription = match allowed {
            // Without `after`, live from the head read now, while listening
            // already: whatever is stored after it arrives. (Taking the
            // first event to arrive as the start lost an earlier one that
            // it had overtaken.)
            Allowed::Project(project) => match self.state.store.feed_head(&project.id).await {
                Ok(head) => {
                    Subscription::Project(ProjectFeed::new(project, resume_at(after, head)))
                }
                Err(e) => {
                    self.drop_subscription(&topic);
                    return Err(store_failed(&e));
                }
            },
            Allowed::Task(task, _) => {
                let head = task.last_seq;
                Subscription::Task(TaskFeed::one(task, resume_at(after, head)))
            }
            Allowed::Tasks => Subscription::Task(TaskFeed::owner()),
        };
        self.subscriptions.insert(topic, subscription);
        let mut messages = vec![message::subscribed(&topic)];
        let replayed = match topic {
            Topic::Project(id) if after.is_some() => {
                let mut replayed = self.replay_project(&topic, None).await;
                if replayed.is_ok() && self.subscriptions.contains_key(&topic) {
                    // A failed read ends the subscription below, as a
                    // failed replay does.
                    match self.state.store.get_project(&id).await {
                        Ok(current) => {
                            if let Some(feed) = self.project_feed(&topic) {
                                let step = feed.replay_done(current.as_ref(), &actor);
                                let settled = self.settle(&topic, step);
                                if let Ok(messages) = &mut replayed {
                                    messages.extend(settled);
                                }
                            }
                        }
                        Err(e) => replayed = Err(store_failed(&e)),
                    }
                }
                replayed
            }
            Topic::Task(id) if after.is_some() => self.replay_task(&topic, &id).await,
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

    /// The running delays and exports among the caller's newest tasks, for
    /// the `tasks` subscription's progress reports.
    async fn find_running(&mut self) -> Result<(), Refusal> {
        let user = self.session.user.user_id;
        let page = self
            .state
            .store
            .owner_tasks(&user, None, RUNNING_LOOKBACK)
            .await
            .map_err(|e| store_failed(&e))?;
        let mut found = Vec::new();
        for id in page.items {
            if let Ok((task, _)) = self.load_task(&id).await {
                let seq = task.last_seq;
                found.push((task, seq));
            }
        }
        if let Some(feed) = self.task_feed(&Topic::Tasks) {
            for (task, seq) in found {
                feed.found(task, seq);
            }
        }
        Ok(())
    }

    /// Reads a project's feed from the subscription's last position, as
    /// its state machine asks: to the end (the replay of `after`), or
    /// through `gap` (then the entries are live ones that came late).
    async fn replay_project(
        &mut self,
        topic: &Topic,
        gap: Option<Gap>,
    ) -> Result<Vec<String>, Refusal> {
        let Topic::Project(id) = *topic else {
            return Ok(vec![]);
        };
        let actor = self.actor();
        let mut messages = Vec::new();
        let mut folds = Folds::default();
        // Each page taken moves the feed's last position past where it was
        // read from, or ends the subscription (`Read::advanced`).
        loop {
            let Some(read) = self
                .project_feed(topic)
                .and_then(|feed| feed.next_read(gap))
            else {
                return Ok(messages);
            };
            let page = self
                .state
                .store
                .project_feed(&id, read.after, read.limit)
                .await
                .map_err(|e| store_failed(&e))?;
            if !read.advanced(&page) {
                return Ok(messages);
            }
            for entry in page {
                let rendered = folds.render(self.state.store.as_ref(), entry).await?;
                let Some(feed) = self.project_feed(topic) else {
                    return Ok(messages);
                };
                let step = match gap {
                    None => feed.replayed(rendered, &actor),
                    Some(_) => feed.filled(rendered, &actor),
                };
                let ended = step.ended;
                messages.extend(self.settle(topic, step));
                if ended {
                    return Ok(messages);
                }
            }
        }
    }

    /// Sends a task's events after the subscription's last seq (the replay
    /// of `after`).
    async fn replay_task(&mut self, topic: &Topic, id: &TaskId) -> Result<Vec<String>, Refusal> {
        let (_, events) = self.load_task(id).await?;
        let now = self.state.clock.now();
        let actor = self.actor();
        let Some(feed) = self.task_feed(topic) else {
            return Ok(vec![]);
        };
        let step = feed
            .replayed(&events, &actor, now)
            .map_err(|e| store_failed(&e))?;
        Ok(self.settle(topic, step))
    }

    /// Reads the gap from the store, then delivers what was held.
    async fn fill_gap(&mut self, topic: &Topic, gap: Gap) -> Vec<String> {
        let mut messages = match self.replay_project(topic, Some(gap)).await {
            Ok(filled) => filled,
            Err(refusal) => return self.fail(topic, refusal),
        };
        let actor = self.actor();
        let now = Instant::now().into_std();
        if let Some(feed) = self.project_feed(topic) {
            let step = feed.gap_filled(&actor, now);
            messages.extend(self.settle(topic, step));
        }
        messages
    }

    /// Fills the gaps that did not close by themselves within [`GAP_WAIT`].
    /// Whether any subscription follows a task that reports progress, and
    /// whether any waits on a gap in its feed.
    fn waiting_for(&self) -> (bool, bool) {
        self.subscriptions
            .values()
            .fold(
                (false, false),
                |(progress, gap), subscription| match subscription {
                    Subscription::Task(feed) => (progress || feed.follows_progress(), gap),
                    Subscription::Project(feed) => (progress, gap || feed.gap_open()),
                },
            )
    }

    async fn fill_stale_gaps(&mut self) -> Vec<String> {
        let now = Instant::now().into_std();
        let stale: Vec<(Topic, Gap)> = self
            .subscriptions
            .iter()
            .filter_map(|(topic, subscription)| match subscription {
                Subscription::Project(feed) => feed.stale(now).map(|gap| (*topic, gap)),
                Subscription::Task(_) => None,
            })
            .collect();
        let mut messages = Vec::new();
        for (topic, gap) in stale {
            messages.extend(self.fill_gap(&topic, gap).await);
        }
        messages
    }

    async fn on_notice(&mut self, topic: Topic, notice: &Notice) -> Vec<String> {
        let actor = self.actor();
        let rendered = match notice {
            Notice::Feed(rendered) => rendered.clone(),
            Notice::Task { event, task } => return self.on_task(topic, event, task).await,
        };
        let now = Instant::now().into_std();
        let Some(feed) = self.project_feed(&topic) else {
            return vec![];
        };
        match feed.live(rendered, &actor, now) {
            Live::Step(step) => self.settle(&topic, step),
            Live::Fill(gap) => self.fill_gap(&topic, gap).await,
        }
    }

    /// A task event from the hub; if it skipped ahead of its task's next
    /// seq, the ones before it are read from the store first.
    async fn on_task(&mut self, topic: Topic, event: &TaskEvent, task: &Task) -> Vec<String> {
        let actor = self.actor();
        let now = self.state.clock.now();
        let Some(feed) = self.task_feed(&topic) else {
            return vec![];
        };
        let step = match feed.live(event, task, &actor, now) {
            Ok(step) => step,
            Err(Behind) => {
                let caught_up = match self.load_task(&task.id).await {
                    Ok((_, events)) => match self.task_feed(&topic) {
                        Some(feed) => feed
                            .caught_up(&events, event, task, &actor, now)
                            .map_err(|e| store_failed(&e)),
                        None => return vec![],
                    },
                    Err(refusal) => Err(refusal),
                };
                match caught_up {
                    Ok(step) => step,
                    Err(refusal) => return self.fail(&topic, refusal),
                }
            }
        };
        self.settle(&topic, step)
    }

    /// Progress of every running delay and export this connection follows
    /// (an export's as it last reported it).
    async fn progress(&mut self) -> Vec<String> {
        // Whom a report may reach changes only with the session, which the
        // check tick reads (and then calls `recheck_tasks`).
        let mut messages = Vec::new();
        let now = self.state.clock.now();
        let exports: HashSet<TaskId> = self
            .subscriptions
            .values()
            .filter_map(|subscription| match subscription {
                Subscription::Task(feed) => Some(feed.running_exports()),
                Subscription::Project(_) => None,
            })
            .flatten()
            .collect();
        let mut reported = HashMap::new();
        for id in exports {
            if let Some(progress) = self
                .state
                .recorder
                .log()
                .task_progress(&id)
                .await
                .unwrap_or_default()
            {
                reported.insert(id, progress);
            }
        }
        for subscription in self.subscriptions.values_mut() {
            if let Subscription::Task(feed) = subscription {
                messages.extend(feed.progress(&reported, now));
            }
        }
        messages
    }
}

async fn send(socket: &mut WebSocket, message: Message) -> Result<(), ()> {
    match timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
