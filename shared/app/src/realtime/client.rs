//! What a client sends, and the refusals it can get: the messages'
//! parser, the checks of a subscription that need no store, and the
//! status and detail of every `error` a subscription can end with.

use serde::Deserialize;
use taskgate_domain::permission::Denied;
use taskgate_domain::ports::StoreError;

use super::Topic;

/// What a client sends: `{"type": "subscribe", "topic": T, "after"?: N}` or
/// `{"type": "unsubscribe", "topic": T}`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage {
    Subscribe { topic: String, after: Option<u64> },
    Unsubscribe { topic: String },
}

impl ClientMessage {
    /// Parses a text frame; the error is the `detail` of the answer.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| {
            format!(
                "bad message ({e}); send {{\"type\": \"subscribe\", \"topic\": ..., \"after\"?: N}} \
                 or {{\"type\": \"unsubscribe\", \"topic\": ...}}"
            )
        })
    }
}

/// A status and a detail for an `error` message.
pub type Refusal = (u16, String);

/// The refusal for a store failure (logged; the client is told to retry).
pub fn store_failed(e: &StoreError) -> Refusal {
    tracing::warn!(error = %taskgate_domain::ports::Chain(e), "real-time: store failed");
    (
        503,
        "a service Taskgate depends on is unavailable; try again shortly".into(),
    )
}

/// The refusal for a denied check: its status and reason, as the matching
/// GET answers.
pub fn denied(denied: Denied) -> Refusal {
    match denied {
        Denied::Unauthenticated(why) => (401, why.into()),
        Denied::Forbidden(why) => (403, why.into()),
        Denied::NotFound(why) => (404, why.into()),
    }
}

/// The 400 for a topic subscribed to twice.
pub fn already_subscribed() -> Refusal {
    (
        400,
        "already subscribed to this topic; unsubscribe first".into(),
    )
}

/// The 400 for an unsubscribe from a topic not subscribed to.
pub fn not_subscribed() -> Refusal {
    (400, "not subscribed to this topic".into())
}

/// The checks of a subscription that need no store: not twice, not past
/// `limit` (`held` are open already), no `after` on `tasks`.
pub fn may_subscribe(
    topic: &Topic,
    after: Option<u64>,
    already: bool,
    held: usize,
    limit: usize,
) -> Result<(), Refusal> {
    if already {
        return Err(already_subscribed());
    }
    if held >= limit {
        return Err((
            400,
            format!("at most {limit} subscriptions per connection; unsubscribe from one first"),
        ));
    }
    if *topic == Topic::Tasks && after.is_some() {
        return Err((
            400,
            "after is not supported for tasks (each task has its own log); \
             subscribe to task:{id} with after to resume one"
                .into(),
        ));
    }
    Ok(())
}

/// The WebSocket message and topic parsers over any input and `after` from
/// the edges of its range: never a panic; every whole number from 0 to
/// 2^64 - 1 is taken as it is, anything else is a clear error.
#[cfg(test)]
mod message_fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_text_is_a_message_or_an_error(text in "\\PC{0,128}") {
            let _ = ClientMessage::parse(&text);
            let _ = Topic::parse(&text);
        }

        #[test]
        fn every_after_in_range_is_kept_exactly(after in prop_oneof![
            Just(0u64), Just(1), Just((1u64 << 53) + 1), Just((1u64 << 63) - 1),
            Just(1u64 << 63), Just(u64::MAX), any::<u64>(),
        ]) {
            let text = format!(r#"{{"type":"subscribe","topic":"tasks","after":{after}}}"#);
            match ClientMessage::parse(&text) {
                Ok(ClientMessage::Subscribe { after: Some(parsed), .. }) => prop_assert_eq!(parsed, after),
                other => prop_assert!(false, "{text}: {other:?}"),
            }
        }

        #[test]
        fn an_after_out_of_range_is_refused(raw in prop_oneof![
            Just("-1".to_owned()), Just("18446744073709551616".to_owned()), Just("1e19".to_owned()),
            Just("0.5".to_owned()), Just("\"1\"".to_owned()), Just("null".to_owned()),
            (1u128 << 64..u128::MAX).prop_map(|n| n.to_string()),
            (i64::MIN..0i64).prop_map(|n| n.to_string()),
        ]) {
            let text = format!(r#"{{"type":"subscribe","topic":"tasks","after":{raw}}}"#);
            let parsed = ClientMessage::parse(&text);
            // `null` is no after at all; everything else is an error.
            if raw == "null" {
                let none = matches!(parsed, Ok(ClientMessage::Subscribe { after: None, .. }));
                prop_assert!(none, "{}: {:?}", text, parsed);
            } else {
                prop_assert!(parsed.is_err(), "{}: {:?}", text, parsed);
            }
        }
    }
}
