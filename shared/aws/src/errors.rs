//! Turning SDK errors into `StoreError`s.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::CancellationReason;
use taskgate_domain::ports::StoreError;

/// Error codes that mean "try again later", not "your request is wrong".
const RETRYABLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
];

/// The fallback mapping, for errors a call does not handle itself: transport
/// failures, timeouts and throttling are `Unavailable` (503 to clients),
/// anything else `Other` (500), with the SDK's full context for the log.
pub(crate) fn store_error<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(&err).to_string();
    if is_transient(&err, RETRYABLE_CODES) {
        StoreError::unavailable(detail)
    } else {
        StoreError::other(detail)
    }
}

/// Whether `err` means "try again later": a transport failure or timeout,
/// or a service error whose code is one of `retryable` (each service names
/// its own throttling and outage codes).
pub(crate) fn is_transient<E: ProvideErrorMetadata, R>(
    err: &SdkError<E, R>,
    retryable: &[&str],
) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => retryable.contains(&service.err().code().unwrap_or("")),
        _ => false,
    }
}

/// `on_condition` when a conditional write's condition failed (the item
/// exists, or changed); the fallback mapping otherwise.
pub(crate) fn condition_or<E, R>(err: SdkError<E, R>, on_condition: StoreError) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.as_service_error().and_then(ProvideErrorMetadata::code);
    if code == Some("ConditionalCheckFailedException") {
        on_condition
    } else {
        store_error(err)
    }
}

/// Whether the transaction item at `index` failed its condition.
pub(crate) fn condition_failed_at(reasons: &[CancellationReason], index: usize) -> bool {
    reasons
        .get(index)
        .and_then(|r| r.code())
        .is_some_and(|code| code == "ConditionalCheckFailed")
}

/// How a transaction was cancelled: the items whose condition failed, and
/// those another transaction was writing.
#[derive(Debug)]
pub(crate) struct Cancellation {
    failed: Vec<usize>,
    conflicted: Vec<usize>,
}

impl Cancellation {
    /// Whether item `index`'s condition failed.
    pub fn failed_at(&self, index: usize) -> bool {
        self.failed.contains(&index)
    }

    /// Whether another transaction was writing item `index`.
    pub fn conflicted_at(&self, index: usize) -> bool {
        self.conflicted.contains(&index)
    }

    /// Whether another transaction was writing any of the items.
    pub fn conflicted(&self) -> bool {
        !self.conflicted.is_empty()
    }
}

/// Runs `items` as one transaction. `Ok(Err(_))` when it was cancelled by a
/// failed condition or a conflicting transaction (the caller says what that
/// means); any other failure is the fallback mapping.
pub(crate) async fn transact(
    client: &aws_sdk_dynamodb::Client,
    items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
) -> Result<Result<(), Cancellation>, StoreError> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    let Err(e) = client
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await
    else {
        return Ok(Ok(()));
    };
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        e.as_service_error()
    {
        let reasons = cancelled.cancellation_reasons();
        let cancellation = Cancellation {
            failed: (0..reasons.len())
                .filter(|&i| condition_failed_at(reasons, i))
                .collect(),
            conflicted: (0..reasons.len())
                .filter(|&i| reasons[i].code() == Some("TransactionConflict"))
                .collect(),
        };
        if !cancellation.failed.is_empty() || cancellation.conflicted() {
            return Ok(Err(cancellation));
        }
    }
    Err(store_error(e))
}

/// A request this adapter built is invalid: a programming error, reported as `Other`.
pub(crate) fn build_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::other(format!("invalid DynamoDB request: {e}"))
}

/// A stored item that does not parse back into a domain value.
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::other(format!("stored {what} does not parse: {e}"))
}
