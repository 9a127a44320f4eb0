//! The HTTP side of the client: which server, which certificate to trust,
//! the saved token, and turning answers into values or one-line errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::Failure;
use super::config::{Credentials, Store};

/// The local server's address, where the client looks by default.
pub const DEFAULT_SERVER: &str = "https://localhost:8443";

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

    /// Sends `request`; a 2xx answer's JSON body (null when empty).
    pub async fn json(&self, request: RequestBuilder) -> Result<Value, Failure> {
        let response = self.send(request).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::Other(format!("the answer broke off: {e}")))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Other(format!(
                "the server answered something that is not JSON: {e}"
            ))
        })
    }

    /// Sends `request`; the response if it is a success, else the failure
    /// its problem+json describes.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, Failure> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() || response.status().is_redirection() {
            return Ok(response);
        }
        Err(problem(response).await)
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

/// One line from a problem+json answer: title, detail and field errors.
pub async fn problem(response: Response) -> Failure {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let mut line = match (body["title"].as_str(), body["detail"].as_str()) {
        (Some(title), Some(detail)) => format!("{title}: {detail}"),
        (Some(title), None) => title.to_owned(),
        (None, Some(detail)) => detail.to_owned(),
        (None, None) => format!("the server answered {status}"),
    };
    if let Some(errors) = body["errors"].as_array() {
        let fields: Vec<String> = errors
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["field"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("is invalid")
                )
            })
            .collect();
        if !fields.is_empty() {
            line.push_str(&format!(" ({})", fields.join("; ")));
        }
    }
    match status {
        StatusCode::UNAUTHORIZED => {
            Failure::Auth(format!("{line}. Log in again with `taskgate login`"))
        }
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => Failure::Missing(line),
        _ => Failure::Other(line),
    }
}
