//! The extractors handlers declare in their signatures, so a glance at a
//! handler shows what it needs:
//!
//! - [`Session`] (a token is required) or `Option<Session>` (anonymous is
//!   fine, a bad token is still 401);
//! - [`Body<T>`]: the body read as `T` and made its use case's input
//!   ([`RequestBody`]), with every rejection as problem+json: 413 over the
//!   size limit, 408 when it stops arriving, 415 for a wrong content type,
//!   400 for malformed or too deeply nested JSON, 422 listing every
//!   unknown, missing or invalid field;
//! - [`Params<T>`]: the query string parsed into `T` ([`FromQuery`]);
//! - [`RequestId`]: the id of this request (in logs and error bodies).
//!
//! Path parameters are typed by the resource modules (e.g. a task id that
//! cannot be valid is a 404, not a 400).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, RawPathParams};
use bytes::Bytes;
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::auth::{self, Session};
use crate::problem::{ApiError, FieldError};
use crate::request;
use crate::state::AppState;

/// The state every handler shares.
pub type SharedState = Arc<AppState>;

/// The id of this request: the Lambda request id on AWS, a fresh one
/// locally. Appears in every log line and error body, and in `X-Request-Id`.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

tokio::task_local! {
    /// The id of the request being served, for errors rendered outside a
    /// handler's reach (extractor rejections, the fallbacks).
    static CURRENT: RequestId;
}

impl RequestId {
    /// A fresh id, for transports that have none of their own.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The id of the request being served on this task, or a fresh one
    /// outside any request (e.g. a request refused before it was admitted).
    pub fn current() -> Self {
        CURRENT
            .try_with(Clone::clone)
            .unwrap_or_else(|_| Self::generate())
    }

    /// Runs `serve` as the request with this id.
    pub(crate) async fn scope<F: Future>(self, serve: F) -> F::Output {
        CURRENT.scope(self, serve).await
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(Self::current))
    }
}

impl OptionalFromRequestParts<SharedState> for Session {
    type Rejection = ApiError;

    /// Authenticates once per request: the session is kept in the request's
    /// extensions, where [`Body`] finds it too.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Option<Self>, ApiError> {
        if let Some(session) = parts.extensions.get::<Session>() {
            return Ok(Some(session.clone()));
        }
        let session = auth::session(state, &parts.headers).await?;
        if let Some(session) = &session {
            parts.extensions.insert(session.clone());
        }
        Ok(session)
    }
}

impl FromRequestParts<SharedState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        <Self as OptionalFromRequestParts<SharedState>>::from_request_parts(parts, state)
            .await?
            .ok_or_else(auth::token_required)
    }
}

/// The value of a route's one path parameter, as sent (the typed path
/// extractors of the resource modules parse it).
pub async fn path_value(parts: &mut Parts) -> Result<String, ApiError> {
    let axum::extract::Path(raw) =
        <axum::extract::Path<String> as FromRequestParts<()>>::from_request_parts(parts, &())
            .await
            .map_err(|e| ApiError::internal(format!("no path parameter on this route: {e}")))?;
    Ok(raw)
}

/// The values of a route's path parameters, by name, as sent.
pub async fn path_values(parts: &mut Parts) -> Result<HashMap<String, String>, ApiError> {
    let axum::extract::Path(values) =
        <axum::extract::Path<HashMap<String, String>> as FromRequestParts<()>>::from_request_parts(
            parts,
            &(),
        )
        .await
        .map_err(|e| ApiError::internal(format!("no path parameters on this route: {e}")))?;
    Ok(values)
}

/// A request body type (one of [`taskgate_views::body`]): what it becomes
/// for the use case, and what else that takes.
///
/// Not plain `TryFrom`: some bodies need what the request knows beyond
/// them (the settings' limits for a task's `seconds` or a profile, the
/// path's username a new password must not contain, the session for who
/// may start which task), and a conversion trait cannot be given those.
/// Bodies that need nothing say so with [`context_free!`], through their
/// `TryFrom` (or `From`) into the input.
///
/// Every field is judged on its own first ([`request::collect`]); `check`
/// adds the rules across fields and settings, and runs only once every
/// field is valid.
pub trait RequestBody: DeserializeOwned {
    /// What the use case takes.
    type Input;
    /// Whether `application/x-www-form-urlencoded` is accepted too (every
    /// value a string).
    const FORM: bool = false;

    /// Looks at the object before any field is read: a refusal here comes
    /// before any 422 (a task's kind decides whether the caller may start
    /// it at all).
    fn admit(_object: &Map<String, Value>, _context: &BodyContext<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    /// The input, or every rule across fields and settings it breaks.
    fn check(self, context: &BodyContext<'_>) -> Result<Self::Input, Vec<FieldError>>;
}

/// The errors of a body's `TryFrom` into its input: none (`From`) or
/// field errors.
pub trait FieldErrors {
    fn into_errors(self) -> Vec<FieldError>;
}

impl FieldErrors for std::convert::Infallible {
    fn into_errors(self) -> Vec<FieldError> {
        match self {}
    }
}

impl FieldErrors for Vec<FieldError> {
    fn into_errors(self) -> Vec<FieldError> {
        self
    }
}

/// `body => input`: a body that becomes its input through `TryFrom` alone.
macro_rules! context_free {
    ($($body:ty => $input:ty),* $(,)?) => {$(
        impl $crate::extract::RequestBody for $body {
            type Input = $input;

            fn check(
                self,
                _: &$crate::extract::BodyContext<'_>,
            ) -> Result<$input, Vec<$crate::problem::FieldError>> {
                <$input as TryFrom<$body>>::try_from(self)
                    .map_err($crate::extract::FieldErrors::into_errors)
            }
        }
    )*};
}
pub(crate) use context_free;

/// What a body may need to know beyond itself: the settings, who is asking
/// (a task's kind decides whether a plain user may even start it) and the
/// path (a password may not contain the username it is for).
pub struct BodyContext<'a> {
    pub state: &'a AppState,
    pub session: Option<&'a Session>,
    path: HashMap<String, String>,
}

impl BodyContext<'_> {
    /// A parameter of the route's path, as sent.
    pub fn path(&self, name: &str) -> Option<&str> {
        self.path.get(name).map(String::as_str)
    }
}

/// The request body, read as `T` and made `T`'s input. Put it last among
/// the extractors: the session is checked before the body is looked at.
pub struct Body<T: RequestBody>(pub T::Input);

impl<T: RequestBody> FromRequest<SharedState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &SharedState,
    ) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let bytes = read_body(body, state.settings.max_body_bytes).await?;
        let path = RawPathParams::from_request_parts(&mut parts, state)
            .await
            .map(|params| {
                params
                    .iter()
                    .map(|(name, value)| (name.to_owned(), value.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let object = request::object(
            &parts.headers,
            &bytes,
            T::FORM,
            state.settings.max_json_depth,
        )?;
        let context = BodyContext {
            state,
            session: parts.extensions.get::<Session>(),
            path,
        };
        T::admit(&object, &context)?;
        let body: T = request::collect(&object)?;
        body.check(&context).map(Body).map_err(ApiError::Invalid)
    }
}

/// Reads a whole (small) body: 413 past `limit`, 408 when the local server's
/// body timeout ([`crate::app::limit_body_time`]) ends the wait.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(error) = cause {
            if error.is::<http_body_util::LengthLimitError>() {
                return ApiError::PayloadTooLarge { limit };
            }
            if let Some(timeout) = error.downcast_ref::<crate::app::BodyTimedOut>() {
                return ApiError::RequestTimeout {
                    seconds: timeout.seconds,
                };
            }
            cause = error.source();
        }
        // The client's body stream broke: nothing of theirs to point at.
        ApiError::Malformed(format!("the request body could not be read: {e}"))
    })
}

/// A query string type: how its parameters become `Self`.
pub trait FromQuery: Sized {
    /// The parameter names it may have; any other is a 422.
    const NAMES: &'static [&'static str];

    fn from_params(params: HashMap<String, String>) -> Result<Self, ApiError>;
}

/// The query string, parsed into `T`; a parameter given twice is a 400.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: FromQuery> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let params = request::query(parts.uri.query().unwrap_or(""), T::NAMES)?;
        T::from_params(params).map(Params)
    }
}
