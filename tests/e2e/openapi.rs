//! The API's own description: `GET /openapi.json` is exactly the committed
//! `docs/openapi.json`, and `GET /docs` is a page that needs nothing from
//! the internet.

use reqwest::StatusCode;
use serde_json::Value;
use taskgate_e2e::{Backend, TestApp};

const COMMITTED: &str = include_str!("../../docs/openapi.json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_the_committed_one() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let response = app.get("/openapi.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "the document's content type"
    );
    let served = response.text().await.unwrap();
    assert!(
        served == COMMITTED,
        "docs/openapi.json is stale: regenerate it with `cargo run -- openapi > docs/openapi.json`"
    );
    let document: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["title"], "Taskgate");
}

/// `src="..."` and `href="..."` values of an HTML page.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in html.split(attribute).skip(1) {
            found.push(piece.split('"').next().unwrap().to_owned());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_is_served_whole_from_the_server() {
    let app = TestApp::spawn(Backend::Embedded).await;
    // /docs redirects to /docs/, where the page's relative assets resolve.
    let page = app.get("/docs", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.url().path(), "/docs/");
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");

    let assets = references(&html);
    assert!(assets.len() >= 3, "{assets:?}");
    for asset in &assets {
        assert!(
            !asset.contains("://") && !asset.starts_with("//"),
            "the page loads {asset} from elsewhere"
        );
        let response = app
            .get(&format!("/docs/{}", asset.trim_start_matches("./")), None)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{asset}");
    }
    // The script that starts the page points it at our document, and turns
    // off the validator badge (which would fetch from validator.swagger.io).
    let initializer = app
        .get("/docs/swagger-initializer.js", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("\"/openapi.json\""), "{initializer}");
    assert!(
        initializer.contains("\"validatorUrl\": \"none\""),
        "{initializer}"
    );
    assert!(
        !initializer.contains("http://") && !initializer.contains("https://"),
        "{initializer}"
    );

    let missing = app.get("/docs/nope.js", None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}
