//! Token attacks: every forged, altered, expired or revoked token is a 401
//! on every route, including `GET /` (never treated as anonymous).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskgate_domain::token::{Claims, TokenId};
use taskgate_e2e::{Backend, PASSWORD, TestApp, assert_problem, on_each_backend};

on_each_backend!(every_attack_is_refused_on_every_route);

/// The claims inside a token we were issued.
fn claims_of(token: &str) -> Claims {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn sign(claims: &Claims, algorithm: Algorithm, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// The routes each bad token is tried on: the optional-auth root, a read and a write.
async fn assert_refused_everywhere(app: &TestApp, description: &str, token: &str) {
    for (method, path, body) in [
        (Method::GET, "/", None),
        (Method::GET, "/users/alice", None),
        (
            Method::PATCH,
            "/users/alice",
            Some(json!({"email": "attacker@example.com"})),
        ),
        (Method::DELETE, "/auth", None),
    ] {
        let mut request = app
            .request(method.clone(), path, None)
            .header("authorization", format!("Bearer {token}"));
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{description}: {method} {path} answered {status}"
        );
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
}

async fn every_attack_is_refused_on_every_route(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let secret = app.jwt_secret();
    app.create_user(&admin, "alice", "user").await;
    let valid = app.login("alice", PASSWORD).await;
    let claims = claims_of(&valid);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let parts: Vec<&str> = valid.split('.').collect();
    let (header, payload, signature) = (parts[0], parts[1], parts[2]);

    let attacks: Vec<(&str, String)> = vec![
        (
            "unsigned (alg none)",
            format!("{}.{payload}.", b64(&json!({"alg": "none", "typ": "JWT"}))),
        ),
        (
            "unsigned (alg None, no dot)",
            format!("{}.{payload}", b64(&json!({"alg": "None"}))),
        ),
        (
            "signed with another key",
            sign(&claims, Algorithm::HS256, &[0x42; 64]),
        ),
        (
            "signed with the right key but HS512",
            sign(&claims, Algorithm::HS512, &secret),
        ),
        (
            "claims tampered (sub = admin), signature kept",
            format!(
                "{header}.{}.{signature}",
                b64(&serde_json::to_value(Claims {
                    sub: "admin".into(),
                    ..claims.clone()
                })
                .unwrap())
            ),
        ),
        (
            "expired",
            sign(
                &Claims {
                    iat: now - 7200,
                    exp: now - 60,
                    ..claims.clone()
                },
                Algorithm::HS256,
                &secret,
            ),
        ),
        (
            "validly signed, but never issued (unknown jti)",
            sign(
                &Claims {
                    jti: TokenId::new().to_string(),
                    ..claims.clone()
                },
                Algorithm::HS256,
                &secret,
            ),
        ),
        (
            "validly signed, sub changed to admin (the jti is alice's)",
            sign(
                &Claims {
                    sub: "admin".into(),
                    ..claims.clone()
                },
                Algorithm::HS256,
                &secret,
            ),
        ),
        (
            "validly signed, wrong issuer",
            sign(
                &Claims {
                    iss: "someone-else".into(),
                    ..claims.clone()
                },
                Algorithm::HS256,
                &secret,
            ),
        ),
        ("not a JWT", "definitely-not-a-token".into()),
        ("empty segments", "..".into()),
    ];
    for (description, token) in &attacks {
        assert_refused_everywhere(&app, description, token).await;
    }

    // Wrong scheme and an empty bearer are 401 too, never anonymous.
    for header in [
        "Basic YWxpY2U6cHc=",
        "Bearer",
        "Bearer ",
        &format!("Token {valid}"),
    ] {
        let response = app
            .request(Method::GET, "/", None)
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }

    // The genuine token still works after all that.
    assert_eq!(
        app.get("/users/alice", Some(&valid)).await.status(),
        StatusCode::OK
    );

    // Revoked by logout.
    let other = app.login("alice", PASSWORD).await;
    assert_eq!(
        app.delete("/auth", Some(&other)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_refused_everywhere(&app, "revoked by logout", &other).await;

    // Revoked by deleting the user; and a user re-created under the same
    // name does not inherit the old tokens, even re-signed with the real key.
    assert_eq!(
        app.delete("/users/alice", Some(&admin)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_refused_everywhere(&app, "revoked by user deletion", &valid).await;
    app.create_user(&admin, "alice", "user").await;
    assert_refused_everywhere(&app, "old token of a re-created user", &valid).await;
    let resigned = sign(
        &Claims {
            exp: now + 3600,
            ..claims.clone()
        },
        Algorithm::HS256,
        &secret,
    );
    assert_refused_everywhere(
        &app,
        "old identity re-signed for a re-created user",
        &resigned,
    )
    .await;
    // Revoking a deleted user's token records can miss one (on DynamoDB the
    // by-username index lags writes). Such a leftover record must still be
    // refused: it names the old account's id, not the re-created one's.
    let store = app.store().await;
    let issued_at = time::OffsetDateTime::from_unix_timestamp(now).unwrap();
    let leftover = taskgate_domain::token::TokenRecord {
        jti: TokenId::new(),
        username: taskgate_domain::user::Username::parse("alice").unwrap(),
        user_id: taskgate_domain::user::UserId::parse(&claims.uid).unwrap(),
        issued_at,
        expires_at: issued_at + std::time::Duration::from_secs(3600),
    };
    store.insert_token(&leftover).await.unwrap();
    let leftover_token = sign(
        &Claims {
            jti: leftover.jti.to_string(),
            exp: now + 3600,
            ..claims.clone()
        },
        Algorithm::HS256,
        &secret,
    );
    assert_refused_everywhere(
        &app,
        "leftover token record of the deleted account",
        &leftover_token,
    )
    .await;
    let fresh = app.login("alice", PASSWORD).await;
    assert_eq!(
        app.get("/users/alice", Some(&fresh)).await.status(),
        StatusCode::OK
    );

    // None of it changed alice.
    let (_, alice): (_, Value) =
        taskgate_e2e::status_and_json(app.get("/users/alice", Some(&admin)).await).await;
    assert!(alice.get("email").is_none(), "{alice}");
}
