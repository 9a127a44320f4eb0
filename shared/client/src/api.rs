//! The HTTP side of the client: which server, which certificate to trust,
//! the saved token, and turning answers into the views they are (the
//! server's own types, [`taskgate_views::owned`]) or one-line errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use taskgate_views::Problem;

use super::Failure;
use super::config::{Credentials, Store};

/// The local server's address, where the client looks by default.
pub const DEFAULT_SERVER: &str = "https://localhost:8443";

/// A 2xx answer: read into the view it is (`value`), and its JSON as the
/// server sent it (`json`, what `--json` prints).
pub struct Answer<T> {
    pub json: Value,
    pub value: T,
}

/// A connection to one server, with the token saved for it (if any).
pub struct Api {
    pub http: reqwest::Client,
    /// The base URL, without a trailing `/`.
    pub base: String,
    /// The certificate trusted besides the system's (PEM), for WebSockets.
    pub ca_pem: Option<Vec<u8>>,
    pub store: Store,
    pub credentials: Option<Credentials>,
}

/// The local server's certificate, where a server on this machine keeps it:
/// `$TASKGATE_DATA_DIR/tls-cert.pem`, else `.taskgate/tls-cert.pem` here.
fn local_certificate(base: &str) -> Option<PathBuf> {
    let host = reqwest::Url::parse(base).ok()?.host_str()?.to_owned();
    if !["localhost", "127.0.0.1", "[::1]", "::1"].contains(&host.as_str()) {
        return None;
    }
    let data_dir = std::env::var_os("TASKGATE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".taskgate"));
    let cert = data_dir.join("tls-cert.pem");
    cert.exists().then_some(cert)
}

impl Api {
    /// A client for `server`, trusting `cacert` (or the local server's own
    /// certificate, found in its data directory) besides the system's.
    pub fn new(server: &str, cacert: Option<&Path>, store: Store) -> Result<Self, Failure> {
        let base = server.trim_end_matches('/').to_owned();
        if reqwest::Url::parse(&base).is_err() {
            return Err(Failure::Usage(format!(
                "--server {server:?} is not a URL (e.g. {DEFAULT_SERVER})"
            )));
        }
        let ca = match cacert {
            Some(path) => Some(path.to_owned()),
            None => local_certificate(&base),
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("taskgate-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10));
        let ca_pem = match &ca {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Failure::Usage(format!(
                        "cannot read the certificate {}: {e}",
                        path.display()
                    ))
                })?;
                let certificate = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                    Failure::Usage(format!("{} is not a PEM certificate: {e}", path.display()))
                })?;
                builder = builder.add_root_certificate(certificate);
                Some(pem)
            }
            None => None,
        };
        let http = builder
            .build()
            .map_err(|e| Failure::Other(format!("cannot set up HTTPS: {e}")))?;
        let credentials = store.credentials(&base)?;
        Ok(Self {
            http,
            base,
            ca_pem,
            store,
            credentials,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The saved token, or the advice to log in.
    pub fn token(&self) -> Result<&str, Failure> {
        self.credentials
            .as_ref()
            .map(|c| c.token.as_str())
            .ok_or_else(|| {
                Failure::Auth(format!(
                    "not logged in to {}: run `taskgate login` first",
                    self.base
                ))
            })
    }

    /// A request with the saved token.
    pub fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, Failure> {
        Ok(self
            .http
            .request(method, self.url(path))
            .bearer_auth(self.token()?))
    }

    /// Sends `request`; a 2xx answer read into `T`, with its JSON as sent.
    /// An answer that is not a `T` is a failure naming the endpoint.
    pub async fn json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<Answer<T>, Failure> {
        let (http, request) = request.build_split();
        let request = request.map_err(|e| self.unreachable(e))?;
        let endpoint = format!("{} {}", request.method(), request.url().path());
        let response = http
            .execute(request)
            .await
            .map_err(|e| self.unreachable(e))?;
        let bytes = successful(response)
            .await?
            .bytes()
            .await
            .map_err(|e| Failure::Other(format!("the answer to {endpoint} broke off: {e}")))?;
        let json: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Other(format!(
                "the server answered {endpoint} with something that is not JSON: {e}"
            ))
        })?;
        let value = T::deserialize(&json).map_err(|e| {
            Failure::Other(format!(
                "the server's answer to {endpoint} is not what this client reads: {e}"
            ))
        })?;
        Ok(Answer { json, value })
    }

    /// Sends `request`; the response if it is a success, else the failure
    /// its problem+json describes.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, Failure> {
        successful(request.send().await.map_err(|e| self.unreachable(e))?).await
    }

    pub fn unreachable(&self, e: reqwest::Error) -> Failure {
        let mut cause = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(error) = source {
            cause = error.to_string();
            source = error.source();
        }
        let hint = if cause.contains("certificate") || cause.contains("UnknownIssuer") {
            " (a self-signed certificate? pass --cacert PATH, or run this where the server's \
             data directory is)"
        } else {
            ""
        };
        Failure::Other(format!("cannot reach {}: {cause}{hint}", self.base))
    }

    /// The WebSocket address of this server (`/ws`, `ws` or `wss`).
    pub fn websocket_url(&self) -> String {
        let url = self.url("/ws");
        if let Some(rest) = url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            url
        }
    }

    /// A TLS set-up for WebSockets that trusts what this client trusts.
    pub fn websocket_tls(&self) -> Option<tokio_tungstenite::Connector> {
        let pem = self.ca_pem.as_ref()?;
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(pem).flatten() {
            let _ = roots.add(certificate);
        }
        for certificate in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(certificate);
        }
        // The process's crypto provider (the one the HTTP client uses too).
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
    }
}

/// `response` if it is a success, else the failure its problem+json
/// describes.
async fn successful(response: Response) -> Result<Response, Failure> {
    if response.status().is_success() || response.status().is_redirection() {
        return Ok(response);
    }
    Err(problem(response).await)
}

/// One line from a problem+json answer: title, detail and field errors
/// (the status alone when the body is not a problem).
pub async fn problem(response: Response) -> Failure {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let line = match serde_json::from_slice::<Problem>(&body) {
        Ok(problem) => {
            let mut line = format!("{}: {}", problem.title, problem.detail);
            let fields: Vec<String> = problem
                .errors
                .iter()
                .flatten()
                .map(|e| format!("{} {}", e.field, e.message))
                .collect();
            if !fields.is_empty() {
                line.push_str(&format!(" ({})", fields.join("; ")));
            }
            line
        }
        Err(_) => format!("the server answered {status}"),
    };
    match status {
        StatusCode::UNAUTHORIZED => {
            Failure::Auth(format!("{line}. Log in again with `taskgate login`"))
        }
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => Failure::Missing(line),
        _ => Failure::Other(line),
    }
}

#[cfg(test)]
mod tests {
    use taskgate_views::owned::Task;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A server on a local port that answers one request with `status` and
    /// `body`; a client of it (and the directory its store is in).
    async fn answering(status: &str, body: &'static str) -> (Api, tempfile::TempDir) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 4096];
            let _ = socket.read(&mut request).await.unwrap();
            socket.write_all(response.as_bytes()).await.unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let api = Api::new(&base, None, Store::at(dir.path().to_owned())).unwrap();
        (api, dir)
    }

    async fn failure<T: DeserializeOwned>(api: &Api, path: &str) -> Failure {
        match api.json::<T>(api.http.get(api.url(path))).await {
            Ok(_) => panic!("{path} was read"),
            Err(failure) => failure,
        }
    }

    #[tokio::test]
    async fn an_answer_that_is_not_its_view_is_an_error_naming_the_endpoint() {
        let (api, _dir) = answering("200 OK", r#"{"id": 7}"#).await;
        let Failure::Other(message) = failure::<Task>(&api, "/tasks/t1").await else {
            panic!("another kind of failure")
        };
        assert!(message.contains("GET /tasks/t1"), "{message}");
        let (api, _dir) = answering("200 OK", "<html>").await;
        let Failure::Other(message) = failure::<Task>(&api, "/tasks/t1").await else {
            panic!("another kind of failure")
        };
        assert!(
            message.contains("GET /tasks/t1") && message.contains("not JSON"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_problem_is_one_line_with_its_invalid_fields() {
        let (api, _dir) = answering(
            "422 Unprocessable Entity",
            r#"{"type":"urn:taskgate:problem:invalid-field","title":"Invalid fields","status":422,"detail":"invalid value for: seconds","errors":[{"field":"seconds","message":"must be at most 86400"}],"request_id":"r1"}"#,
        )
        .await;
        let Failure::Other(message) = failure::<Task>(&api, "/tasks").await else {
            panic!("another kind of failure")
        };
        assert_eq!(
            message,
            "Invalid fields: invalid value for: seconds (seconds must be at most 86400)"
        );
        let (api, _dir) = answering(
            "404 Not Found",
            r#"{"type":"urn:taskgate:problem:not-found","title":"Not found","status":404,"detail":"there is no task","request_id":"r2"}"#,
        )
        .await;
        let Failure::Missing(message) = failure::<Task>(&api, "/tasks/t1").await else {
            panic!("another kind of failure")
        };
        assert_eq!(message, "Not found: there is no task");
    }

    #[tokio::test]
    async fn an_error_that_is_no_problem_is_its_status() {
        let (api, _dir) = answering("502 Bad Gateway", r#"{"message":"Bad Gateway"}"#).await;
        let Failure::Other(message) = failure::<Task>(&api, "/tasks").await else {
            panic!("another kind of failure")
        };
        assert_eq!(message, "the server answered 502 Bad Gateway");
    }
}
