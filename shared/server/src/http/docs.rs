//! `GET /openapi.json` (the API's OpenAPI 3.1 document) and `GET /docs`
//! (Swagger UI for it). Every asset of the page is compiled into the binary
//! (`utoipa-swagger-ui`'s vendored build), and the online validator badge is
//! off, so the page works with no internet access.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use taskgate_api::app::{finish_headers, problem};
use taskgate_api::{ApiError, RequestId};
use utoipa_swagger_ui::Config;

pub(super) fn routes(router: Router, settings: &taskgate_app::settings::Settings) -> Router {
    // Built once, with this server's limits; each response shares the bytes.
    let document = Bytes::from(taskgate_api::openapi::document_json_for(settings));
    let config = Arc::new(
        Config::from("/openapi.json")
            .validator_url("none")
            .try_it_out_enabled(true)
            .persist_authorization(false),
    );
    let index_config = Arc::clone(&config);
    router
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { respond(StatusCode::OK, "application/json", document) }
            }),
        )
        // The page's assets are relative to it, so it lives at /docs/.
        .route("/docs", get(|| async { Redirect::permanent("/docs/") }))
        .route(
            "/docs/",
            get(move || {
                let config = Arc::clone(&index_config);
                async move { asset("", config) }
            }),
        )
        .route(
            "/docs/{*file}",
            get(move |Path(file): Path<String>| {
                let config = Arc::clone(&config);
                async move { asset(&file, config) }
            }),
        )
}

fn asset(file: &str, config: Arc<Config<'static>>) -> Response {
    match utoipa_swagger_ui::serve(file, config) {
        Ok(Some(found)) => {
            let mut response = respond(
                StatusCode::OK,
                &found.content_type,
                // The vendored assets are compiled in: served without a copy.
                match found.bytes {
                    Cow::Borrowed(bytes) => Bytes::from_static(bytes),
                    Cow::Owned(bytes) => Bytes::from(bytes),
                },
            );
            if found.gzpipped {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response
        }
        Ok(None) => problem(ApiError::NotFound(format!("there is no file /docs/{file}"))),
        Err(e) => problem(ApiError::internal(format!("swagger ui: {e}"))),
    }
}

fn respond(status: StatusCode, content_type: &str, body: Bytes) -> Response {
    let mut response = http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .expect("a static response is always valid");
    finish_headers(&mut response, &RequestId::generate().0);
    response.map(Body::from).into_response()
}
