//! Changes under contention: read, decide, append on the condition that
//! nothing changed since the read, and after a lost race
//! ([`Attempt::Lost`]) read and decide again. Each lost race means another
//! writer's change landed, so the loop advances; after as many tries as
//! the aggregate's [`Policy`] allows it gives up, by default with
//! [`StoreError::Conflict`] (`edit-conflict`), which only a storm of
//! writers on one aggregate can cause.
//!
//! [`change`] is that loop over an [`Aggregate`]: the aggregate says how
//! it is read, how a change is written, and how hard to contend for it;
//! the caller says what to decide; the loop is written once, here.
//!
//! It lives in the domain, not in the use-case crate, because its users
//! sit on both sides of that crate: `taskgate-app` changes projects, items
//! and accounts through it (its `conflict` module is this one), and the
//! task [`Recorder`](crate::recorder::Recorder), which the adapters and the
//! Lambda steps use without the use cases, changes a task's log through it.
//! The aggregates differ only in what their [`Policy`] and
//! [`Aggregate::gave_up`] say:
//!
//! | aggregate | tries | after a lost race | giving up |
//! |---|---|---|---|
//! | project, item, account | [`ATTEMPTS`] (12) | jittered pause ([`after_conflict`]) | `Conflict` (409 `edit-conflict`) |
//! | task | 8 | none | `Unavailable` (503) |

use std::future::Future;

use crate::ports::StoreError;

/// How often a change re-reads and re-decides after losing a race, unless
/// its aggregate says otherwise. An edit that names no version lands
/// however busy its aggregate is: each lost race is followed by a pause
/// ([`after_conflict`]), so writers do not keep colliding; `edit-conflict`
/// is left for what truly cannot land.
pub const ATTEMPTS: usize = 12;

/// The pause after the `attempt`-th lost race: a random time up to 2 ms
/// doubling with each attempt, at most 64 ms (jittered, so racing writers
/// spread out).
pub async fn after_conflict(attempt: usize) {
    let ceiling_ms = 2u64 << attempt.min(5);
    let jitter = u64::try_from(uuid::Uuid::new_v4().as_u128() % 1000).unwrap_or(0);
    let pause = std::time::Duration::from_micros(ceiling_ms * jitter);
    tokio::time::sleep(pause).await;
}

/// What a writer does after losing a race, before it reads again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pause {
    /// Reads again at once: for an aggregate whose every lost race brings
    /// it nearer an end where nothing more is decided (a task's log).
    None,
    /// Waits a jittered while ([`after_conflict`]), so writers that keep
    /// colliding spread out.
    Jittered,
}

/// How hard a change contends for its aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Tries in all, the first one included; after the last lost race the
    /// change gives up ([`Aggregate::gave_up`]).
    pub attempts: usize,
    /// What follows a lost race that is not the last.
    pub pause: Pause,
}

impl Policy {
    /// Any number of writers, none of them bounded by the aggregate:
    /// [`ATTEMPTS`] tries, a jittered pause after each lost race.
    pub const CONTENDED: Self = Self {
        attempts: ATTEMPTS,
        pause: Pause::Jittered,
    };
}

/// How one try of a change ended, short of landing.
#[derive(Debug)]
pub enum Attempt<E> {
    /// The append's condition failed: another change landed first. Read
    /// and decide again.
    Lost,
    /// Anything else: the change is refused or the store failed. Final.
    Failed(E),
}

impl<E> From<E> for Attempt<E> {
    fn from(e: E) -> Self {
        Self::Failed(e)
    }
}

impl<E: From<StoreError>> Attempt<E> {
    /// A conditional write's failure: a lost race, or final.
    pub fn of(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => Self::Lost,
            e => Self::Failed(e.into()),
        }
    }
}

/// Runs `attempt` (read, decide, append) until it lands or fails finally,
/// under [`Policy::CONTENDED`]; after [`ATTEMPTS`] lost races,
/// [`StoreError::Conflict`].
///
/// `attempt` makes a fresh future per try (`move || async move { … }`
/// over references), so the future is `Send` wherever its parts are.
pub async fn retry<T, E, F, Fut>(attempt: F) -> Result<T, E>
where
    E: From<StoreError>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt<E>>>,
{
    retry_with(Policy::CONTENDED, || StoreError::Conflict.into(), attempt).await
}

/// Runs `attempt` until it lands or fails finally, at most
/// `policy.attempts` times, pausing after a lost race as `policy` says;
/// after the last lost race, what `gave_up` makes. Every iteration either
/// returns or counts one try, so the loop ends.
pub async fn retry_with<T, E, F, Fut>(
    policy: Policy,
    gave_up: impl FnOnce() -> E,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt<E>>>,
{
    for tries in 0..policy.attempts {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(Attempt::Failed(e)) => return Err(e),
            Err(Attempt::Lost)
                if policy.pause == Pause::Jittered && tries + 1 < policy.attempts =>
            {
                after_conflict(tries).await;
            }
            Err(Attempt::Lost) => {}
        }
    }
    Err(gave_up())
}

/// Something changed by reading it, deciding, and writing on the condition
/// that what was read is still what is stored: a project's row, an item's,
/// an account, a task's log. [`change`] runs the loop over it.
pub trait Aggregate: Sync {
    /// What is read, and what a write leaves.
    type State: Send + Sync;
    /// What a decision writes.
    type Change: Send;
    /// Why a change does not happen; a lost race is not one of them.
    type Error: From<StoreError> + Send;

    /// How hard a change contends for it; [`Policy::CONTENDED`] unless the
    /// aggregate knows better.
    const POLICY: Policy = Policy::CONTENDED;

    /// Reads it as it stands. A refusal here (missing, hidden, not
    /// allowed) is final.
    fn load(&self) -> impl Future<Output = Result<Self::State, Self::Error>> + Send;

    /// Writes `change`, decided on `current`, if `current` is still what
    /// is stored; [`StoreError::Conflict`] if not (the loop then reads and
    /// decides again). Returns what it is now.
    fn append(
        &self,
        current: &Self::State,
        change: Self::Change,
    ) -> impl Future<Output = Result<Self::State, StoreError>> + Send;

    /// What a change fails with once it has lost the race as often as
    /// [`Aggregate::POLICY`] allows; [`StoreError::Conflict`]
    /// (`edit-conflict`) unless the aggregate says otherwise.
    fn gave_up(&self) -> Self::Error {
        StoreError::Conflict.into()
    }
}

/// How [`change`] ended: the last decision and what it left.
#[derive(Debug)]
pub struct Outcome<T, S> {
    /// What the decision said besides its change (e.g. whether a member
    /// was added or had their role changed).
    pub decided: T,
    /// The aggregate as it stands afterwards.
    pub state: S,
    /// Whether the decision wrote a change (deciding on no change writes
    /// nothing, and a caller may have nothing to report then).
    pub appended: bool,
}

/// Reads `aggregate`, asks `decide` what to write (`None`: nothing), and
/// writes it conditionally; after a lost race, all again on the fresh
/// state, as the aggregate's [`Policy`] allows ([`retry_with`]). `decide`
/// is pure, so deciding again is harmless; a refusal from it or from the
/// read is final.
pub async fn change<A, T>(
    aggregate: &A,
    decide: impl Fn(&A::State) -> Result<(T, Option<A::Change>), A::Error>,
) -> Result<Outcome<T, A::State>, A::Error>
where
    A: Aggregate,
{
    change_from(aggregate, None, decide).await
}

/// [`change`], with the first decision made on `known` (just read by the
/// caller, e.g. in a listing) instead of a fresh read; after a lost race
/// the aggregate is read as usual.
pub async fn change_from<A, T>(
    aggregate: &A,
    mut known: Option<A::State>,
    decide: impl Fn(&A::State) -> Result<(T, Option<A::Change>), A::Error>,
) -> Result<Outcome<T, A::State>, A::Error>
where
    A: Aggregate,
{
    let decide = &decide;
    retry_with(
        A::POLICY,
        || aggregate.gave_up(),
        move || {
            // Taken once: every later try reads afresh.
            let known = known.take();
            async move {
                let current = match known {
                    Some(state) => state,
                    None => aggregate.load().await?,
                };
                let (decided, change) = decide(&current)?;
                let Some(change) = change else {
                    return Ok(Outcome {
                        decided,
                        state: current,
                        appended: false,
                    });
                };
                let state = aggregate
                    .append(&current, change)
                    .await
                    .map_err(Attempt::of)?;
                Ok(Outcome {
                    decided,
                    state,
                    appended: true,
                })
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_change_is_tried_again_after_each_lost_race_and_lands() {
        let tries = AtomicUsize::new(0);
        let result: Result<usize, StoreError> = retry(|| async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                n if n < 5 => Err(Attempt::of(StoreError::Conflict)),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn it_gives_up_after_the_last_attempt_with_the_conflict() {
        let tries = AtomicUsize::new(0);
        let result: Result<(), StoreError> = retry(|| async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(Attempt::Lost)
        })
        .await;
        assert!(matches!(result, Err(StoreError::Conflict)));
        assert_eq!(tries.load(Ordering::SeqCst), ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn other_failures_are_not_retried() {
        let tries = AtomicUsize::new(0);
        let result: Result<(), StoreError> = retry(|| async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(Attempt::of(StoreError::other("down")))
        })
        .await;
        assert!(matches!(result, Err(StoreError::Other(_))));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_contended_policy_pauses_between_tries_and_the_unpaused_does_not() {
        for (policy, pauses) in [(Policy::CONTENDED, true), (UNPAUSED, false)] {
            let before = tokio::time::Instant::now();
            let tries = AtomicUsize::new(0);
            let result: Result<(), StoreError> = retry_with(
                policy,
                || StoreError::unavailable("gave up"),
                || async {
                    tries.fetch_add(1, Ordering::SeqCst);
                    Err(Attempt::Lost)
                },
            )
            .await;
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "{policy:?}"
            );
            assert_eq!(tries.load(Ordering::SeqCst), policy.attempts, "{policy:?}");
            assert_eq!(tokio::time::Instant::now() > before, pauses, "{policy:?}");
        }
    }

    /// Three tries, none paused: what a task's log contends under, in small.
    const UNPAUSED: Policy = Policy {
        attempts: 3,
        pause: Pause::None,
    };

    /// A counter whose writes lose the race while `losses` lasts; it
    /// counts its reads and writes.
    struct Counter {
        stored: std::sync::Mutex<u64>,
        losses: AtomicUsize,
        reads: AtomicUsize,
        writes: AtomicUsize,
    }

    impl Counter {
        fn losing(times: usize) -> Self {
            Self {
                stored: std::sync::Mutex::new(0),
                losses: AtomicUsize::new(times),
                reads: AtomicUsize::new(0),
                writes: AtomicUsize::new(0),
            }
        }
    }

    impl Aggregate for Counter {
        type State = u64;
        type Change = u64;
        type Error = StoreError;

        async fn load(&self) -> Result<u64, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(*self.stored.lock().unwrap())
        }

        async fn append(&self, current: &u64, next: u64) -> Result<u64, StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            let lost = self
                .losses
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let mut stored = self.stored.lock().unwrap();
            if lost {
                // Someone else's change landed first.
                *stored += 10;
                return Err(StoreError::Conflict);
            }
            assert_eq!(*stored, *current, "written only on what was read");
            *stored = next;
            Ok(next)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_lost_race_is_decided_again_on_a_fresh_read() {
        let counter = Counter::losing(2);
        let done = change(&counter, |n| Ok((*n, Some(n + 1)))).await.unwrap();
        // Decided on 0, then 10, then 20 (what the winners left).
        assert_eq!((done.decided, done.state, done.appended), (20, 21, true));
        assert_eq!(counter.reads.load(Ordering::SeqCst), 3);
        assert_eq!(counter.writes.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_state_saves_the_first_read_only() {
        let counter = Counter::losing(1);
        let done = change_from(&counter, Some(0), |n| Ok(((), Some(n + 1))))
            .await
            .unwrap();
        assert_eq!(done.state, 11);
        assert_eq!(
            counter.reads.load(Ordering::SeqCst),
            1,
            "after the lost race"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn deciding_on_no_change_writes_nothing_and_a_refusal_is_final() {
        let counter = Counter::losing(0);
        let done = change(&counter, |_| Ok(((), None))).await.unwrap();
        assert!(!done.appended);
        let refused = change(&counter, |_| {
            Err::<((), Option<u64>), _>(StoreError::LastAdmin)
        })
        .await;
        assert!(matches!(refused, Err(StoreError::LastAdmin)));
        assert_eq!(counter.writes.load(Ordering::SeqCst), 0);
        assert_eq!(counter.reads.load(Ordering::SeqCst), 2);
    }

    /// [`Counter`] under a policy of its own, giving up its own way.
    struct Impatient(Counter);

    impl Aggregate for Impatient {
        type State = u64;
        type Change = u64;
        type Error = StoreError;

        const POLICY: Policy = UNPAUSED;

        async fn load(&self) -> Result<u64, StoreError> {
            self.0.load().await
        }

        async fn append(&self, current: &u64, next: u64) -> Result<u64, StoreError> {
            self.0.append(current, next).await
        }

        fn gave_up(&self) -> StoreError {
            StoreError::unavailable("impatient")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_aggregate_contends_under_its_own_policy() {
        let impatient = Impatient(Counter::losing(usize::MAX));
        let lost = change(&impatient, |n| Ok(((), Some(n + 1)))).await;
        assert!(matches!(lost, Err(StoreError::Unavailable(_))));
        assert_eq!(impatient.0.writes.load(Ordering::SeqCst), UNPAUSED.attempts);
    }

    #[tokio::test(start_paused = true)]
    async fn an_aggregate_that_always_loses_gives_up_with_the_conflict() {
        let counter = Counter::losing(usize::MAX);
        let lost = change(&counter, |n| Ok(((), Some(n + 1)))).await;
        assert!(matches!(lost, Err(StoreError::Conflict)));
        assert_eq!(counter.writes.load(Ordering::SeqCst), ATTEMPTS);
    }
}
