//! `ApiError`: every way a request can fail, and its RFC 9457 problem+json body.
//!
//! Each variant has one status and one stable `type`
//! (`urn:taskgate:problem:<slug>`). Internal causes of 5xx errors are logged
//! with the request id and never sent to the client.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use taskgate_domain::permission::Denied;
use taskgate_domain::ports::{Cause, Chain, StoreError};
use taskgate_domain::project::commands::Refused;

use crate::extract::RequestId;

/// The problem+json body and its field errors, shared with the client.
pub use taskgate_views::{FieldError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot be parsed at all.
    #[error("{0}")]
    Malformed(String),
    /// 401: no valid token where one is needed, or any invalid token.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: the caller is known and not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405; the `Allow` header lists the methods the path does accept.
    #[error("this path does not accept {method}; the Allow header lists the methods it does")]
    MethodNotAllowed { method: http::Method },
    /// 409, with a slug saying which conflict (`username-taken`, `last-admin`...).
    #[error("{detail}")]
    Conflict { kind: &'static str, detail: String },
    /// 412: `If-Match` named another version than the current one.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 408: the local server waited `seconds` for the body
    /// (`TASKGATE_BODY_TIMEOUT_SECONDS`).
    #[error("the request body did not arrive within {seconds} s")]
    RequestTimeout { seconds: u64 },
    /// 413.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 431: the request's headers together (names and values) are larger
    /// than `TASKGATE_MAX_HEADER_BYTES`.
    #[error("the request's headers are larger than {limit} bytes together")]
    HeadersTooLarge { limit: usize },
    /// 413: a file larger than `TASKGATE_MAX_FILE_BYTES`, or a PATCH larger
    /// than `TASKGATE_MAX_PATCH_BYTES`; says which.
    #[error("{0}")]
    TooLarge(String),
    /// 416: a `Range` outside the file.
    #[error("{0}")]
    RangeNotSatisfiable(String),
    /// 429: the client's address holds `limit` requests already (local
    /// server, `TASKGATE_MAX_REQUESTS_PER_ADDRESS`).
    #[error("your address has {limit} requests in progress already; try again shortly")]
    TooManyFromAddress { limit: usize },
    /// 422: an `Idempotency-Key` used before with another request.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// 429: the user has as many unfinished tasks as they may.
    #[error("{0}")]
    TooManyTasks(String),
    /// 423: another request is appending to this upload.
    #[error("{0}")]
    UploadBusy(String),
    /// 460 (tus): the chunk's checksum does not match; it was dropped.
    #[error("{0}")]
    ChecksumMismatch(String),
    /// 413: the user's files would pass their quota; says how far.
    #[error("{0}")]
    FileQuota(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 400: these query parameters are wrong (listings whose contract
    /// answers 400 for a bad parameter).
    #[error("invalid query parameters")]
    BadQuery(Vec<FieldError>),
    /// 422: well-formed, but these fields are wrong.
    #[error("invalid fields")]
    Invalid(Vec<FieldError>),
    /// 429: too many failed logins for this username (or device); try again
    /// after `retry_after` seconds.
    #[error("too many failed logins; try again in {retry_after} s")]
    LoginLocked { retry_after: u64 },
    /// 429: the user has `limit` WebSockets open already
    /// (`TASKGATE_WS_MAX_CONNECTIONS_PER_USER`).
    #[error("you have {limit} real-time connections open already; close one first")]
    TooManyConnections { limit: usize },
    /// 426: a plain request to an endpoint that only speaks WebSocket.
    #[error(
        "this endpoint upgrades to a WebSocket; send Connection: Upgrade and Upgrade: websocket"
    )]
    UpgradeRequired,
    /// 503: a dependency (the store) is down or throttling. The cause is
    /// logged, never sent.
    #[error("a service Taskgate depends on is unavailable")]
    Unavailable(#[source] Cause),
    /// 503: the local server is already handling `limit` requests
    /// (`TASKGATE_MAX_REQUESTS_IN_FLIGHT`); this one was refused unread.
    #[error("the server is handling {limit} requests already; try again shortly")]
    Busy { limit: usize },
    /// 500: a bug or an unexpected reply. The cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Cause),
}

impl ApiError {
    /// A 500 caused by `cause` (a message or an error, kept as the source).
    pub fn internal(cause: impl Into<Cause>) -> Self {
        Self::Internal(cause.into())
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) | Self::BadQuery(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge { .. } | Self::FileQuota(_) | Self::TooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UploadBusy(_) => StatusCode::LOCKED,
            Self::TooManyTasks(_) | Self::TooManyFromAddress { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::ChecksumMismatch(_) => {
                StatusCode::from_u16(460).expect("460 is a valid status code")
            }
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::LoginLocked { .. } | Self::TooManyConnections { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            Self::Unavailable(_) | Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable last segment of the problem `type`.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed-request",
            Self::BadQuery(_) => "invalid-query",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed { .. } => "method-not-allowed",
            Self::Conflict { kind, .. } => kind,
            Self::RequestTimeout { .. } => "request-timeout",
            Self::PreconditionFailed(_) => "precondition-failed",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::HeadersTooLarge { .. } => "headers-too-large",
            Self::FileQuota(_) => "storage-quota-exceeded",
            Self::TooLarge(_) => "file-too-large",
            Self::UploadBusy(_) => "upload-busy",
            Self::TooManyTasks(_) => "quota-exceeded",
            Self::TooManyFromAddress { .. } => "too-many-requests",
            Self::IdempotencyKeyReused(_) => "idempotency-key-reused",
            Self::RangeNotSatisfiable(_) => "range-not-satisfiable",
            Self::ChecksumMismatch(_) => "checksum-mismatch",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::Invalid(_) => "invalid-field",
            Self::LoginLocked { .. } => "login-locked",
            Self::TooManyConnections { .. } => "too-many-connections",
            Self::UpgradeRequired => "upgrade-required",
            Self::Unavailable(_) => "service-unavailable",
            Self::Busy { .. } => "server-busy",
            Self::Internal(_) => "internal-error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "Malformed request",
            Self::BadQuery(_) => "Invalid query parameters",
            Self::Unauthenticated(_) => "Authentication required",
            Self::Forbidden(_) => "Forbidden",
            Self::NotFound(_) => "Not found",
            Self::MethodNotAllowed { .. } => "Method not allowed",
            Self::Conflict { .. } => "Conflict",
            Self::RequestTimeout { .. } => "Request timeout",
            Self::PreconditionFailed(_) => "Precondition failed",
            Self::PayloadTooLarge { .. } => "Payload too large",
            Self::HeadersTooLarge { .. } => "Request headers too large",
            Self::FileQuota(_) => "Quota exceeded",
            Self::TooLarge(_) => "Too large",
            Self::UploadBusy(_) => "Upload busy",
            Self::TooManyTasks(_) => "Quota exceeded",
            Self::TooManyFromAddress { .. } => "Too many requests",
            Self::IdempotencyKeyReused(_) => "Idempotency key reused",
            Self::RangeNotSatisfiable(_) => "Range not satisfiable",
            Self::ChecksumMismatch(_) => "Checksum mismatch",
            Self::UnsupportedMediaType(_) => "Unsupported media type",
            Self::Invalid(_) => "Invalid fields",
            Self::LoginLocked { .. } => "Too many failed logins",
            Self::TooManyConnections { .. } => "Too many connections",
            Self::UpgradeRequired => "Upgrade required",
            Self::Unavailable(_) => "Service unavailable",
            Self::Busy { .. } => "Server busy",
            Self::Internal(_) => "Internal server error",
        }
    }

    /// What the client is told. For 5xx this is a fixed sentence: the real
    /// cause may hold internals and only goes to the log.
    fn detail(&self) -> String {
        match self {
            Self::Unavailable(_) => {
                "a service Taskgate depends on is unavailable; try again shortly".into()
            }
            Self::Internal(_) => {
                "something went wrong on our side; the request id identifies it in the logs".into()
            }
            Self::Invalid(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                format!("invalid value for: {}", fields.join(", "))
            }
            Self::BadQuery(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                format!("invalid query parameter: {}", fields.join(", "))
            }
            other => other.to_string(),
        }
    }

    /// The problem+json response. `request_id` goes into the body so a user
    /// reporting an error can quote it.
    pub fn to_response(&self, request_id: &str) -> Response {
        let status = self.status();
        match self {
            // Load shedding is the server working as configured, not a fault.
            Self::Busy { .. } => tracing::warn!(request_id, error = %self, "request refused"),
            _ if status.is_server_error() => {
                tracing::error!(request_id, error = %Chain(self), "request failed");
            }
            _ => {}
        }
        let body = Problem {
            r#type: format!("urn:taskgate:problem:{}", self.slug()),
            title: self.title().to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            errors: match self {
                Self::Invalid(errors) | Self::BadQuery(errors) => Some(errors.clone()),
                _ => None,
            },
            request_id: request_id.to_owned(),
        };
        let mut response = http::Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/problem+json")
            .body(Body::from(
                serde_json::to_vec(&body).expect("a problem always serialises"),
            ))
            .expect("a problem response is always valid");
        let headers = response.headers_mut();
        match self {
            Self::Unauthenticated(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="taskgate""#),
                );
            }
            Self::Unavailable(_) | Self::Busy { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::LoginLocked { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response
    }
}

impl IntoResponse for ApiError {
    /// The problem for the request being served ([`RequestId::current`]).
    fn into_response(self) -> Response {
        self.to_response(&RequestId::current().0)
    }
}

impl From<StoreError> for ApiError {
    /// The generic mapping. Handlers match the variants that mean something
    /// specific to them (`AlreadyExists` on create is `username-taken`) first.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable(Box::new(e)),
            StoreError::EmailTaken => Self::Conflict {
                kind: "email-taken",
                detail: "that e-mail address belongs to another user".into(),
            },
            StoreError::LastAdmin => Self::Conflict {
                kind: "last-admin",
                detail: "this is the last admin account; it cannot be deleted or demoted".into(),
            },
            StoreError::Conflict => Self::Conflict {
                kind: "edit-conflict",
                detail: "the item was changed by another request at the same time; try again"
                    .into(),
            },
            StoreError::OverQuota => Self::FileQuota(
                "your files would take more than your quota (TASKGATE_USER_QUOTA_BYTES)".into(),
            ),
            StoreError::TooManyFiles => Self::FileQuota(
                "you have as many files as an account may keep (TASKGATE_MAX_FILES_PER_USER); \
                 delete some first"
                    .into(),
            ),
            StoreError::TooManyExports => Self::TooManyTasks(
                "you have as many exports pending or running as an account may \
                 (TASKGATE_MAX_ACTIVE_EXPORTS_PER_USER)"
                    .into(),
            ),
            StoreError::AlreadyExists | StoreError::Other(_) => Self::Internal(Box::new(e)),
        }
    }
}

impl From<taskgate_domain::ports::BlobError> for ApiError {
    fn from(e: taskgate_domain::ports::BlobError) -> Self {
        match e {
            taskgate_domain::ports::BlobError::Missing => {
                Self::NotFound("the file's content is gone".into())
            }
            taskgate_domain::ports::BlobError::Unavailable(_) => Self::Unavailable(Box::new(e)),
            taskgate_domain::ports::BlobError::Other(_) => Self::Internal(Box::new(e)),
        }
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match &refused {
            Refused::OwnerCannotLeave => Self::Conflict {
                kind: "owner-cannot-leave",
                detail: refused.to_string(),
            },
            Refused::OwnerRoleFixed => Self::Conflict {
                kind: "owner-role",
                detail: refused.to_string(),
            },
            Refused::NoSuchMember(_) => Self::NotFound(refused.to_string()),
            Refused::AssigneeNotMember => Self::invalid("assignee", refused.to_string()),
            Refused::OwnerNotAdmin => Self::invalid("owner", refused.to_string()),
            Refused::StaleVersion { .. } => Self::PreconditionFailed(refused.to_string()),
        }
    }
}

impl From<taskgate_app::Error> for ApiError {
    /// Each use-case error as one status and problem type; the detail is
    /// the error's own text.
    fn from(e: taskgate_app::Error) -> Self {
        use taskgate_app::Error;
        match e {
            Error::Denied(denied) => denied.into(),
            Error::Refused(refused) => refused.into(),
            Error::NoSuchProject | Error::NoSuchItem | Error::NoSuchUser(_) => {
                Self::NotFound(e.to_string())
            }
            Error::UsernameTaken(_) => Self::Conflict {
                kind: "username-taken",
                detail: e.to_string(),
            },
            Error::OwnsProjects { .. } => Self::Conflict {
                kind: "owns-projects",
                detail: format!(
                    "{e}; transfer their ownership (PATCH /projects/{{id}} {{\"owner\"}}) first"
                ),
            },
            Error::Store(e) => e.into(),
            Error::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unauthenticated(why) => Self::Unauthenticated(why.into()),
            Denied::Forbidden(why) => Self::Forbidden(why.into()),
            Denied::NotFound(why) => Self::NotFound(why.into()),
        }
    }
}
