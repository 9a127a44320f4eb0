//! Changes under contention: read, decide, append on the condition that
//! nothing changed since the read, and after a lost race
//! ([`Attempt::Lost`]) read and decide again. Each lost race means another
//! writer's change landed, so the loop advances; after [`ATTEMPTS`] it gives
//! up with [`StoreError::Conflict`] (`edit-conflict`), which only a storm of
//! writers on one aggregate can cause.
//!
//! [`change`] is that loop over an [`Aggregate`] (a project, an item, an
//! account): the aggregate says how it is read and how a change is written;
//! the caller says what to decide; the loop is written once, here.

use std::future::Future;

use taskgate_domain::ports::StoreError;

/// How often a change re-reads and re-decides after losing a race. An edit
/// that names no version lands however busy its aggregate is: each lost
/// race is followed by a pause ([`after_conflict`]), so writers do not keep
/// colliding; `edit-conflict` is left for what truly cannot land.
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
/// pausing after each lost race; after [`ATTEMPTS`] lost races,
/// [`StoreError::Conflict`].
///
/// `attempt` makes a fresh future per try (`move || async move { … }`
/// over references), so the future is `Send` wherever its parts are.
pub async fn retry<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    E: From<StoreError>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt<E>>>,
{
    for tries in 0..ATTEMPTS {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(Attempt::Failed(e)) => return Err(e),
            Err(Attempt::Lost) if tries + 1 < ATTEMPTS => after_conflict(tries).await,
            Err(Attempt::Lost) => {}
        }
    }
    Err(StoreError::Conflict.into())
}

/// Something changed by reading it, deciding, and writing on the condition
/// that what was read is still what is stored: a project's row, an item's,
/// an account. [`change`] runs the loop over it.
pub trait Aggregate: Sync {
    /// What is read, and what a write leaves.
    type State: Send + Sync;
    /// What a decision writes.
    type Change: Send;
    /// Why a change does not happen; a lost race is not one of them.
    type Error: From<StoreError> + Send;

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
/// state ([`retry`]). `decide` is pure, so deciding again is harmless; a
/// refusal from it or from the read is final.
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
    retry(move || {
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
    })
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
}
