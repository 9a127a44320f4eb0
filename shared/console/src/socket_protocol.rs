//! A browser cannot set `Authorization` on a WebSocket, and a token in the
//! URL ends up in logs and history. So the console offers two subprotocols,
//! `taskgate` and `taskgate.bearer.<token>`; [`layer`] (around `GET /ws`)
//! turns the second into `Authorization: Bearer <token>` before the
//! socket's own authentication runs, and answers the handshake with
//! `taskgate` (a browser fails a handshake that selects none of the
//! protocols it offered). The token is read only beside `taskgate`, so no
//! other client's subprotocol is ever taken for a credential, and an
//! `Authorization` header, when sent, wins.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

/// The subprotocol the console speaks.
pub const PROTOCOL: &str = "taskgate";
/// The prefix of the subprotocol that carries the token.
pub const BEARER_PREFIX: &str = "taskgate.bearer.";

/// The token offered in a `Sec-WebSocket-Protocol` list, if the list also
/// offers [`PROTOCOL`] and names exactly one non-empty token.
pub fn bearer(offered: &str) -> Option<&str> {
    let mut speaks_taskgate = false;
    let mut token = None;
    for protocol in offered.split(',').map(str::trim) {
        if protocol == PROTOCOL {
            speaks_taskgate = true;
        } else if let Some(t) = protocol.strip_prefix(BEARER_PREFIX) {
            if token.is_some() {
                return None;
            }
            token = Some(t);
        }
    }
    token.filter(|t| speaks_taskgate && !t.is_empty())
}

/// The token a handshake's `Sec-WebSocket-Protocol` offers ([`bearer`]).
/// Both transports read it here: the local `/ws` ([`layer`]) and the
/// WebSocket API's `$connect` on AWS.
pub fn offered_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer)
}

/// Selects [`PROTOCOL`] in a handshake's answer (a browser fails a
/// handshake that selects none of the protocols it offered).
pub fn select_protocol(headers: &mut HeaderMap) {
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(PROTOCOL),
    );
}

/// Moves a subprotocol token into `Authorization` and selects
/// [`PROTOCOL`] in the handshake's answer.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let authorization = offered_token(request.headers())
        .and_then(|token| HeaderValue::from_str(&format!("Bearer {token}")).ok());
    let Some(mut authorization) = authorization else {
        return next.run(request).await;
    };
    let headers = request.headers_mut();
    if !headers.contains_key(header::AUTHORIZATION) {
        authorization.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, authorization);
    }
    // Nothing after this layer sees the token as a protocol name.
    select_protocol(headers);
    let mut response = next.run(request).await;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        select_protocol(response.headers_mut());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_only_beside_the_taskgate_protocol() {
        assert_eq!(
            bearer("taskgate, taskgate.bearer.abc.def-_1"),
            Some("abc.def-_1")
        );
        assert_eq!(bearer("taskgate.bearer.xyz,taskgate"), Some("xyz"));
        // Without `taskgate` the name is some other protocol, not a token.
        assert_eq!(bearer("taskgate.bearer.abc"), None);
        assert_eq!(bearer("chat, taskgate.bearer.abc"), None);
        // Empty or twice: nothing.
        assert_eq!(bearer("taskgate, taskgate.bearer."), None);
        assert_eq!(
            bearer("taskgate, taskgate.bearer.a, taskgate.bearer.b"),
            None
        );
        assert_eq!(bearer("taskgate"), None);
        assert_eq!(bearer(""), None);
    }
}
