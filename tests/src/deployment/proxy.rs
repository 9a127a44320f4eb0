//! A recording proxy in front of DynamoDB Local and moto: each function of
//! the emulated deployment gets a port of its own as every AWS endpoint it
//! uses, so every request that reaches the proxy is one call that function
//! made. Each is recorded as the IAM authorisations AWS would check for it
//! (action and resource ARN; a TransactWriteItems expanded into its parts),
//! then forwarded unchanged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::template::{ACCOUNT, REGION};

/// One authorisation AWS checks for a call: `dynamodb:PutItem` on a
/// table's ARN, `s3:GetObject` on an object's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    pub function: String,
    pub action: String,
    pub resource: String,
}

#[derive(Clone)]
struct Upstreams {
    dynamodb: String,
    moto: String,
    http: reqwest::Client,
}

#[derive(Clone)]
struct Port {
    function: String,
    upstreams: Upstreams,
    calls: Arc<Mutex<Vec<Call>>>,
    /// The WebSocket API's id, for the ARNs of its connections.
    websocket_api: String,
}

/// The proxy: one listening port per function.
pub struct Recorder {
    upstreams: Upstreams,
    pub calls: Arc<Mutex<Vec<Call>>>,
    ports: BTreeMap<String, SocketAddr>,
    websocket_api: String,
}

impl Recorder {
    pub fn new(dynamodb: String, moto: String, websocket_api: String) -> Self {
        Self {
            upstreams: Upstreams {
                dynamodb,
                moto,
                http: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .expect("a client"),
            },
            calls: Arc::default(),
            ports: BTreeMap::new(),
            websocket_api,
        }
    }

    /// The endpoint (`http://127.0.0.1:PORT`) that records as `function`.
    pub async fn endpoint_for(&mut self, function: &str) -> String {
        if let Some(addr) = self.ports.get(function) {
            return format!("http://{addr}");
        }
        let port = Port {
            function: function.to_owned(),
            upstreams: self.upstreams.clone(),
            calls: Arc::clone(&self.calls),
            websocket_api: self.websocket_api.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(port);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        self.ports.insert(function.to_owned(), addr);
        format!("http://{addr}")
    }

    /// Records a call made for `function` by AWS itself (its log lines, its
    /// event source mapping), which its role must allow all the same.
    pub fn record(&self, function: &str, action: &str, resource: &str) {
        self.calls.lock().unwrap().push(Call {
            function: function.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
        });
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

async fn forward(State(port): State<Port>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 256 << 20)
        .await
        .expect("a request body");
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let upstream = if target.starts_with("DynamoDB_") {
        &port.upstreams.dynamodb
    } else {
        &port.upstreams.moto
    };
    let authorisations = classify(
        &parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
        &target,
        &body,
        &port.websocket_api,
    );
    {
        let mut calls = port.calls.lock().unwrap();
        for (action, resource) in authorisations {
            calls.push(Call {
                function: port.function.clone(),
                action,
                resource,
            });
        }
    }
    let mut forwarded = port
        .upstreams
        .http
        .request(parts.method.clone(), format!("{upstream}{path_and_query}"))
        .body(body);
    for (name, value) in &parts.headers {
        if !["host", "content-length", "expect", "connection"].contains(&name.as_str()) {
            forwarded = forwarded.header(name, value);
        }
    }
    match forwarded.send().await {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if !["content-length", "transfer-encoding", "connection"].contains(&name.as_str()) {
                    response = response.header(name, value);
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            response.body(Body::from(bytes)).unwrap()
        }
        Err(e) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(format!(
                "the proxy could not reach {upstream}: {e}"
            )))
            .unwrap(),
    }
}

fn table_arn(table: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}")
}

/// The service a request is signed for (its credential scope), or, for a
/// presigned URL, the `X-Amz-Credential` in its query.
fn signed_service(headers: &HeaderMap, query: &str) -> String {
    let credential = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .map(|c| c.split([',', ' ']).next().unwrap_or_default().to_owned())
        .or_else(|| {
            query.split('&').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                (name == "X-Amz-Credential").then(|| percent_decode(value))
            })
        })
        .unwrap_or_default();
    credential.split('/').nth(3).unwrap_or_default().to_owned()
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The IAM authorisations a request needs: (action, resource ARN).
fn classify(
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    target: &str,
    body: &[u8],
    websocket_api: &str,
) -> Vec<(String, String)> {
    let json = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    if let Some(action) = target.strip_prefix("DynamoDB_20120810.") {
        return dynamodb(action, &json());
    }
    if let Some(action) = target.strip_prefix("AWSStepFunctions.") {
        let body = json();
        let resource = body["stateMachineArn"]
            .as_str()
            .or(body["executionArn"].as_str())
            .unwrap_or("?")
            .to_owned();
        return vec![(format!("states:{action}"), resource)];
    }
    if let Some(action) = target.strip_prefix("secretsmanager.") {
        let resource = json()["SecretId"].as_str().unwrap_or("?").to_owned();
        return vec![(format!("secretsmanager:{action}"), resource)];
    }
    if let Some((stage, connection)) = path.split_once("/@connections/") {
        let stage = stage.trim_start_matches('/');
        return vec![(
            "execute-api:ManageConnections".to_owned(),
            format!(
                "arn:aws:execute-api:{REGION}:{ACCOUNT}:{websocket_api}/{stage}/{method}/@connections/{connection}"
            ),
        )];
    }
    let service = signed_service(headers, query);
    if service == "lambda"
        && let Some(name) = path
            .strip_prefix("/2015-03-31/functions/")
            .and_then(|rest| rest.strip_suffix("/invocations"))
    {
        let name = percent_decode(name);
        let name = name.rsplit("function:").next().unwrap_or(&name).to_owned();
        return vec![(
            "lambda:InvokeFunction".to_owned(),
            format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"),
        )];
    }
    if service == "s3" {
        return s3(method, path, query, headers, body);
    }
    vec![(
        format!("unknown:{service}"),
        format!("{method} {path}?{query}"),
    )]
}

fn dynamodb(action: &str, body: &Value) -> Vec<(String, String)> {
    let on = |table: &Value, index: &Value| {
        let mut arn = table_arn(table.as_str().unwrap_or("?"));
        if let Some(index) = index.as_str() {
            arn = format!("{arn}/index/{index}");
        }
        arn
    };
    match action {
        "TransactWriteItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let (kind, part) = item.as_object()?.iter().next()?;
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    other => other,
                };
                Some((
                    format!("dynamodb:{action}"),
                    on(&part["TableName"], &Value::Null),
                ))
            })
            .collect(),
        "TransactGetItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                (
                    "dynamodb:GetItem".to_owned(),
                    on(&item["Get"]["TableName"], &Value::Null),
                )
            })
            .collect(),
        "BatchGetItem" | "BatchWriteItem" => body["RequestItems"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(table, _)| (format!("dynamodb:{action}"), table_arn(table)))
            .collect(),
        _ => vec![(
            format!("dynamodb:{action}"),
            on(&body["TableName"], &body["IndexName"]),
        )],
    }
}

/// S3's REST operations (path-style addressing) as IAM actions.
fn s3(
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<(String, String)> {
    let path = percent_decode(path.trim_start_matches('/'));
    let (bucket, key) = match path.split_once('/') {
        Some((bucket, key)) if !key.is_empty() => (bucket.to_owned(), Some(key.to_owned())),
        _ => (path.trim_end_matches('/').to_owned(), None),
    };
    let has = |name: &str| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(name))
    };
    let object = |key: &str| format!("arn:aws:s3:::{bucket}/{key}");
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let one = |action: &str, resource: String| vec![(format!("s3:{action}"), resource)];
    match (method.as_str(), key) {
        ("GET" | "HEAD", Some(key)) if has("uploadId") => {
            one("ListMultipartUploadParts", object(&key))
        }
        ("GET" | "HEAD", Some(key)) => one("GetObject", object(&key)),
        ("PUT", Some(key)) => {
            let mut calls = one("PutObject", object(&key));
            if let Some(source) = headers
                .get("x-amz-copy-source")
                .and_then(|v| v.to_str().ok())
            {
                let source = percent_decode(source.trim_start_matches('/'));
                calls.push(("s3:GetObject".to_owned(), format!("arn:aws:s3:::{source}")));
            }
            calls
        }
        ("POST", Some(key)) => one("PutObject", object(&key)),
        ("DELETE", Some(key)) if has("uploadId") => one("AbortMultipartUpload", object(&key)),
        ("DELETE", Some(key)) => one("DeleteObject", object(&key)),
        ("GET", None) if has("uploads") => one("ListBucketMultipartUploads", bucket_arn),
        ("GET" | "HEAD", None) => one("ListBucket", bucket_arn),
        ("POST", None) if has("delete") => {
            // DeleteObjects: one s3:DeleteObject per key it names.
            let text = String::from_utf8_lossy(body);
            text.split("<Key>")
                .skip(1)
                .filter_map(|rest| rest.split("</Key>").next())
                .map(|key| ("s3:DeleteObject".to_owned(), object(key)))
                .collect()
        }
        (method, key) => one(
            &format!("Unknown-{method}"),
            format!("{bucket_arn}/{}?{query}", key.unwrap_or_default()),
        ),
    }
}
