//! The state machine of one `project:{id}` subscription: the rules of
//! [`super::project_entry`] applied in feed order, each position once,
//! with the gaps that a pushed entry can open held until they are closed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use taskgate_domain::permission::Actor;
use taskgate_domain::ports::FeedEntry;
use taskgate_domain::project::access::{Action, may};
use taskgate_domain::project::log::Project;

use super::Topic;
use super::rules::{Rendered, Source, Step, no_longer_a_member, project_entry};

/// How long an entry pushed ahead of its turn waits for the ones before it
/// to be pushed too before they are read from the store ([`ProjectFeed::stale`]).
pub const GAP_WAIT: Duration = Duration::from_millis(200);
/// Entries held waiting for a gap to close, at most: one more asks for the
/// gap to be read at once ([`Live::Fill`]).
pub const MAX_PENDING: usize = 256;
/// Entries read from a feed per round trip ([`ProjectFeed::next_read`]).
pub const REPLAY_PAGE: usize = 100;

/// Positions missing before the first held entry: those after
/// [`ProjectFeed::last`] and before `until` must be read from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub until: u64,
}

/// A page of the feed to read: up to `limit` entries after position `after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    pub after: u64,
    pub limit: usize,
}

impl Read {
    /// Whether `page` moved past where it was read from. A page that did
    /// not (empty, or a store that answered at or before `after` again)
    /// ends the read: taking it would ask for the same page for ever.
    pub fn advanced(&self, page: &[FeedEntry]) -> bool {
        page.last().is_some_and(|entry| entry.position > self.after)
    }
}

/// What a pushed entry did.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Live {
    /// Delivered (with the held entries that followed it), dropped as a
    /// repeat, or held.
    Step(Step),
    /// Held, and too many are: read the gap now ([`ProjectFeed::next_read`]
    /// with it, then [`ProjectFeed::gap_filled`]).
    Fill(Gap),
}

/// One `project:{id}` subscription. See the module documentation of
/// [`super`] for the inputs and their order.
#[derive(Debug)]
pub struct ProjectFeed {
    topic: Topic,
    /// The project as of the last live entry delivered (or as it was when
    /// the subscription began): items are checked against it.
    project: Project,
    /// The feed position last delivered (or taken as delivered): anything
    /// at or before it is a repeat.
    last: u64,
    /// Entries pushed ahead of the next position, by position. One more
    /// than [`MAX_PENDING`] asks for the gap to be read, which delivers at
    /// least the first of them: the store has every entry that was pushed
    /// (reads see every append that has returned).
    pending: BTreeMap<u64, Rendered>,
    /// Since when the next position is missing.
    gap_since: Option<Instant>,
    ended: bool,
}

impl ProjectFeed {
    /// A subscription to `project` that has delivered everything up to
    /// position `last` ([`super::resume_at`]).
    pub fn new(project: Project, last: u64) -> Self {
        Self {
            topic: Topic::Project(project.id),
            project,
            last,
            pending: BTreeMap::new(),
            gap_since: None,
            ended: false,
        }
    }

    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The feed position last delivered.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Whether a step ended the subscription.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next page to read: of the replay (`gap: None`, up to the feed's
    /// end) or of the gap. `None` when there is nothing (more) to read.
    ///
    /// A read loop advances: a page it takes ([`Read::advanced`]) has an
    /// entry past `last`, whose delivery moves `last` past it, so the next
    /// read starts further on, or there is none (the subscription ended, or
    /// the gap is closed).
    pub fn next_read(&self, gap: Option<Gap>) -> Option<Read> {
        if self.ended {
            return None;
        }
        let limit = match gap {
            Some(Gap { until }) if until <= self.last.saturating_add(1) => return None,
            Some(Gap { until }) => usize::try_from(until - self.last - 1)
                .unwrap_or(usize::MAX)
                .min(REPLAY_PAGE),
            None => REPLAY_PAGE,
        };
        Some(Read {
            after: self.last,
            limit,
        })
    }

    /// An entry read by the replay (`after`): [`Source::History`].
    pub fn replayed(&mut self, rendered: Rendered, viewer: &Actor) -> Step {
        self.deliver(rendered, Source::History, viewer)
    }

    /// The replay reached the feed's end and `current` is the project now.
    /// The history was shown as the subscriber may see the project; if
    /// that changed while it was read, the live entries that said so were
    /// dropped as repeats, so it is said now.
    /// Items are shown against `current` from here on: the replay showed
    /// history as of each entry and left the project as it was when the
    /// subscription began.
    pub fn replay_done(&mut self, current: Option<&Project>, viewer: &Actor) -> Step {
        if self.ended {
            return Step::default();
        }
        if let Some(project) = current
            && may(Some(viewer), project, Action::View).is_ok()
        {
            self.project = project.clone();
            return Step::default();
        }
        self.end();
        Step::end(vec![no_longer_a_member(&self.topic)])
    }

    /// An entry pushed as it was stored (`now` is when it arrived). A
    /// repeat is dropped; the next position is delivered with the held
    /// entries that follow it; one further on is held: the ones between
    /// were stored first and are on their way (writers can overtake each
    /// other when they publish).
    pub fn live(&mut self, rendered: Rendered, viewer: &Actor, now: Instant) -> Live {
        let position = rendered.position();
        if self.ended || position <= self.last {
            return Live::Step(Step::default());
        }
        // `position > last`, so `last + 1` does not overflow.
        if position > self.last + 1 {
            self.pending.insert(position, rendered);
            self.gap_since.get_or_insert(now);
            return match self.gap() {
                Some(gap) if self.pending.len() > MAX_PENDING => Live::Fill(gap),
                _ => Live::Step(Step::default()),
            };
        }
        let mut step = self.deliver(rendered, Source::Live, viewer);
        step.extend(self.drain(viewer));
        Live::Step(step)
    }

    /// An entry read to close a gap: [`Source::Live`], never held.
    pub fn filled(&mut self, rendered: Rendered, viewer: &Actor) -> Step {
        self.deliver(rendered, Source::Live, viewer)
    }

    /// The gap's read is done (`now`): the held entries that now follow
    /// are delivered; if some are still held, their wait starts again.
    pub fn gap_filled(&mut self, viewer: &Actor, now: Instant) -> Step {
        let step = self.drain(viewer);
        self.gap_since = (!self.pending.is_empty()).then_some(now);
        step
    }

    /// Whether a gap is open, so that [`ProjectFeed::stale`] may soon
    /// have one to read. Connections tick for gaps only then.
    pub fn gap_open(&self) -> bool {
        !self.ended && self.gap_since.is_some()
    }

    /// The gap to read if it has not closed by itself within [`GAP_WAIT`]
    /// of opening (or of the last read of it).
    pub fn stale(&self, now: Instant) -> Option<Gap> {
        let since = self.gap_since?;
        if self.ended || now.saturating_duration_since(since) < GAP_WAIT {
            return None;
        }
        self.gap()
    }

    fn gap(&self) -> Option<Gap> {
        let (&until, _) = self.pending.first_key_value()?;
        Some(Gap { until })
    }

    fn end(&mut self) {
        self.ended = true;
        self.pending.clear();
        self.gap_since = None;
    }

    /// Delivers `rendered` unless it is a repeat.
    fn deliver(&mut self, rendered: Rendered, source: Source, viewer: &Actor) -> Step {
        let position = rendered.position();
        if self.ended || position <= self.last {
            return Step::default();
        }
        self.last = position;
        let step = project_entry(&self.topic, &rendered, Some(&self.project), viewer, source);
        if let Rendered::Project { after, .. } = rendered
            && (source == Source::Live || after.deleted)
        {
            self.project = after;
        }
        if step.ended {
            self.end();
        }
        step
    }

    /// Delivers the held entries that now follow on, dropping the held
    /// repeats. Every turn removes a held entry or returns.
    fn drain(&mut self, viewer: &Actor) -> Step {
        let mut step = Step::default();
        while !self.ended {
            let next = self.last.saturating_add(1);
            while self
                .pending
                .first_key_value()
                .is_some_and(|(p, _)| *p < next)
            {
                self.pending.pop_first();
            }
            match self.pending.first_entry() {
                Some(held) if *held.key() == next => {
                    let rendered = held.remove();
                    step.extend(self.deliver(rendered, Source::Live, viewer));
                }
                Some(_) => break,
                None => {
                    self.gap_since = None;
                    break;
                }
            }
        }
        step
    }
}
