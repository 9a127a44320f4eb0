//! Reading requests: content types, bodies and query strings, with errors
//! that say exactly what is wrong. The extractors in [`crate::extract`] are
//! built on these.
//!
//! Bodies are read in two steps: bytes to a JSON object ([`object`]: 400 if
//! that is impossible, 415 for a wrong content type), then object to a body
//! type ([`collect`]), which lists every field error in one 422.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, header};
use serde_json::{Map, Value};
use taskgate_domain::user::json_depth;

use crate::problem::{ApiError, FieldError};

mod collect;

pub use collect::collect;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyFormat {
    Json,
    Form,
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType(
            "send a Content-Type header: application/json".into(),
        ));
    };
    let media_type = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "application/json" => Ok(BodyFormat::Json),
        t if t.starts_with("application/") && t.ends_with("+json") => Ok(BodyFormat::Json),
        "application/x-www-form-urlencoded" => Ok(BodyFormat::Form),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "content type {other:?} is not supported; send application/json"
        ))),
    }
}

fn non_empty_body(body: &[u8]) -> Result<&[u8], ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Malformed(
            "the request body is empty; send a JSON object".into(),
        ));
    }
    Ok(body)
}

/// Parses a JSON object nested at most `max_depth` levels deep (the object
/// itself is level 1). `max_depth` is at most serde_json's own limit (128),
/// past which parsing stops before the depth can be measured.
fn parse_json_object(body: &[u8], max_depth: usize) -> Result<Map<String, Value>, ApiError> {
    let too_deep = || {
        ApiError::Malformed(format!(
            "the request body is nested too deeply; at most {max_depth} levels of objects and arrays are allowed"
        ))
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            too_deep()
        } else {
            ApiError::Malformed(format!("the request body is not valid JSON: {e}"))
        }
    })?;
    if json_depth(&value) > max_depth {
        return Err(too_deep());
    }
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::Malformed(
            "the request body must be a JSON object".into(),
        )),
    }
}

/// The body as a JSON object, nested at most `max_depth` levels deep; with
/// `form`, also from `application/x-www-form-urlencoded` (every value a
/// string). Anything else is 415.
pub fn object(
    headers: &HeaderMap,
    body: &[u8],
    form: bool,
    max_depth: usize,
) -> Result<Map<String, Value>, ApiError> {
    match body_format(headers)? {
        BodyFormat::Json => parse_json_object(non_empty_body(body)?, max_depth),
        BodyFormat::Form if !form => Err(ApiError::UnsupportedMediaType(
            "this endpoint takes application/json".into(),
        )),
        BodyFormat::Form => {
            let pairs = form_pairs(non_empty_body(body)?)?;
            let mut map = Map::new();
            for (name, value) in pairs {
                if map.insert(name.clone(), Value::String(value)).is_some() {
                    return Err(ApiError::Malformed(format!(
                        "the field {name:?} is given twice"
                    )));
                }
            }
            Ok(map)
        }
    }
}

fn form_pairs(raw: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_bytes(raw)
        .map_err(|e| ApiError::Malformed(format!("the form body does not parse: {e}")))
}

/// The query string as name → value. Every name must be one of `allowed`
/// (422 otherwise) and appear once (400 otherwise).
pub fn query(raw: &str, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut params = HashMap::new();
    let mut errors = Vec::new();
    for (name, value) in form_pairs(raw.as_bytes())? {
        if !allowed.contains(&name.as_str()) {
            errors.push(FieldError {
                field: name,
                message: format!(
                    "is not a query parameter here (known: {})",
                    allowed.join(", ")
                ),
            });
        } else if params.insert(name.clone(), value).is_some() {
            return Err(ApiError::Malformed(format!(
                "the query parameter {name:?} is given twice"
            )));
        }
    }
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// Page size of a listing: `?limit=` from 1 to 100, default 50.
pub fn page_size(params: &HashMap<String, String>) -> Result<usize, ApiError> {
    const DEFAULT: usize = 50;
    const MAX: usize = 100;
    match params.get("limit") {
        None => Ok(DEFAULT),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX).contains(n))
            .ok_or_else(|| {
                ApiError::invalid("limit", format!("must be a whole number from 1 to {MAX}"))
            }),
    }
}

/// Where a listing continues: `?cursor=`, an opaque token this API handed
/// out as `next` (the base64url of the last item's key).
pub fn cursor<T>(
    raw: Option<&str>,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|key| parse(&key))
        .map(Some)
        .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this API returned"))
}

/// The `next` cursor for a listing that stopped after the item with `key`.
pub fn next_cursor(key: impl std::fmt::Display) -> String {
    URL_SAFE_NO_PAD.encode(key.to_string())
}
