//! # The AWS deployment, emulated on this machine
//!
//! [`Deployment::create`] deploys `infra/template.yaml` as far as this
//! machine allows, without Docker and without an account:
//!
//! - the tables on DynamoDB Local (with their streams), the files bucket on
//!   moto's S3, the signing secret in moto's Secrets Manager;
//! - the state machine (`infra/statemachine/task.asl.json`, its definition
//!   substitutions filled from the template) on moto's Step Functions
//!   engine, whose Lambda invocations moto forwards (infra/local/
//!   moto-server.py) to [`Deployment`]'s invoke endpoint;
//! - every function as its real binary under an emulated Lambda runtime
//!   ([`lambda`]), started on first use with the environment the template
//!   gives it, and its AWS endpoints pointed at a recording proxy
//!   ([`proxy`]) port of its own, so every call it makes is recorded as the
//!   IAM authorisations AWS would check ([`iam`] checks them against its
//!   role);
//! - HTTP requests routed to functions by the template's HttpApi events, as
//!   API Gateway routes them, and delivered as API Gateway (v2) events.

pub mod iam;
pub mod lambda;
pub mod proxy;
pub mod template;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use taskgate_aws::TableNames;
use tokio::sync::Mutex;

use lambda::{Answer, FunctionProcess};
use template::{ACCOUNT, Function, Physical, REGION, Template};

/// The id the emulation gives the WebSocket API.
pub const WEBSOCKET_API_ID: &str = "wsapi0test";

/// An answer of an HTTP function, as API Gateway turns it into a response.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The function that served it.
    pub function: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

pub struct Deployment {
    pub template: Template,
    pub physical: Physical,
    pub functions: Vec<Function>,
    pub tables: TableNames,
    pub bucket: String,
    pub moto_endpoint: String,
    pub state_machine_arn: String,
    pub recorder: Mutex<proxy::Recorder>,
    processes: Mutex<BTreeMap<String, Arc<FunctionProcess>>>,
    /// Extra environment per function (logical id), set before it starts.
    overrides: std::sync::Mutex<BTreeMap<String, Vec<(String, String)>>>,
    logs: tempfile::TempDir,
    /// (method, path template, function) of every HttpApi event.
    http_routes: Vec<(String, String, String)>,
}

impl Deployment {
    /// Deploys the template; see the module docs.
    pub async fn create(dynamodb_endpoint: String, moto_endpoint: String) -> Arc<Self> {
        let template = Template::load();
        let stack = format!("tg{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let tables = TableNames::with_prefix(&stack);

        // Tables, with their streams.
        let sdk = taskgate_aws::load_sdk_config(Some(&dynamodb_endpoint)).await;
        let dynamodb = taskgate_aws::dynamodb_client(&sdk, Some(&dynamodb_endpoint));
        taskgate_aws::ensure_tables(&dynamodb, &tables)
            .await
            .expect("DynamoDB Local creates the tables");
        let mut physical = Physical {
            stack: stack.clone(),
            ..Physical::default()
        };
        for (id, name) in [
            ("UsersTable", &tables.users),
            ("TokensTable", &tables.tokens),
            ("TaskEventsTable", &tables.task_events),
            ("SecurityTable", &tables.security),
            ("ProjectsTable", &tables.projects),
            ("ProjectLogTable", &tables.project_log),
            ("ConnectionsTable", &tables.connections),
            ("FilesTable", &tables.files),
        ] {
            physical.names.insert(id.to_owned(), name.clone());
            let described = dynamodb
                .describe_table()
                .table_name(name)
                .send()
                .await
                .unwrap();
            if let Some(stream) = described.table().and_then(|t| t.latest_stream_arn()) {
                physical.streams.insert(id.to_owned(), stream.to_owned());
            }
        }
        assert_eq!(
            template.ids_of_type("AWS::DynamoDB::Table").len(),
            8,
            "a table the emulation does not create"
        );

        // The bucket.
        let bucket = format!("{stack}-files");
        let moto_sdk = taskgate_aws::load_sdk_config(Some(&moto_endpoint)).await;
        let s3 = taskgate_aws::s3_client(&moto_sdk, Some(&moto_endpoint));
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("a bucket");
        physical
            .names
            .insert("FilesBucket".to_owned(), bucket.clone());
        physical
            .names
            .insert("WebSocketApi".to_owned(), WEBSOCKET_API_ID.to_owned());

        // The signing secret.
        let secret = create_secret(
            &moto_endpoint,
            &format!("{stack}-jwt"),
            &uuid::Uuid::new_v4().simple().to_string().repeat(2),
        )
        .await;
        physical.arns.insert("JwtSecret".to_owned(), secret);

        // The state machine, by the name the template gives it.
        let machine = template.resource("TaskStateMachine").clone();
        let machine_name = template.resolve(&physical, &machine["Properties"]["Name"]);
        physical
            .names
            .insert("TaskStateMachine".to_owned(), machine_name.clone());

        let functions = template.functions(&physical);
        let mut http_routes = Vec::new();
        for id in template.ids_of_type("AWS::Serverless::Function") {
            if let Some(events) = template.resource(&id)["Properties"]["Events"].as_mapping() {
                for event in events.values() {
                    if event["Type"].as_str() == Some("HttpApi") {
                        http_routes.push((
                            event["Properties"]["Method"]
                                .as_str()
                                .unwrap()
                                .to_uppercase(),
                            event["Properties"]["Path"].as_str().unwrap().to_owned(),
                            id.clone(),
                        ));
                    }
                }
            }
        }

        let deployment = Arc::new(Self {
            recorder: Mutex::new(proxy::Recorder::new(
                dynamodb_endpoint.clone(),
                moto_endpoint.clone(),
                WEBSOCKET_API_ID.to_owned(),
            )),
            template,
            state_machine_arn: format!(
                "arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{machine_name}"
            ),
            physical,
            functions,
            tables,
            bucket,
            moto_endpoint,
            processes: Mutex::default(),
            overrides: Default::default(),
            logs: tempfile::tempdir().unwrap(),
            http_routes,
        });
        deployment
            .deploy_state_machine(&machine, &reqwest::Client::new())
            .await;
        deployment
    }

    /// The functions the state machine invokes exist in moto's Lambda (so
    /// that its invoke API knows them) and their invocations are forwarded
    /// to [`Self::invoke_endpoint`]; the state machine is created from the
    /// ASL file with the template's substitutions.
    async fn deploy_state_machine(
        self: &Arc<Self>,
        machine: &serde_norway::Value,
        http: &reqwest::Client,
    ) {
        let moto = &self.moto_endpoint;
        let role = format!("arn:aws:iam::{ACCOUNT}:role/{}-states", self.physical.stack);
        http.post(format!("{moto}/"))
            .header("authorization", moto_auth("iam"))
            .form(&[
                ("Action", "CreateRole"),
                ("Version", "2010-05-08"),
                ("RoleName", &format!("{}-states", self.physical.stack)),
                ("AssumeRolePolicyDocument", r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":["lambda.amazonaws.com","states.amazonaws.com"]},"Action":"sts:AssumeRole"}]}"#),
            ])
            .send()
            .await
            .unwrap();
        let invoke = self.invoke_endpoint().await;
        let empty_zip = STANDARD.encode(b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        let mut targets = serde_json::Map::new();
        let mut definition = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../infra/statemachine/task.asl.json"
        ))
        .unwrap();
        // moto's Lambda must know a function to invoke it: the ones the
        // state machine invokes, and those that invoke themselves (the
        // `$default` replay). Each invocation is forwarded to the test.
        let mut invoked = Vec::new();
        for (placeholder, value) in machine["Properties"]["DefinitionSubstitutions"]
            .as_mapping()
            .expect("substitutions")
        {
            let arn = self.template.resolve(&self.physical, value);
            definition =
                definition.replace(&format!("${{{}}}", placeholder.as_str().unwrap()), &arn);
            invoked.push(arn.rsplit(':').next().unwrap().to_owned());
        }
        for function in &self.functions {
            if function
                .environment
                .contains_key("TASKGATE_LAMBDA_ENDPOINT")
            {
                invoked.push(function.name.clone());
            }
        }
        for name in invoked {
            let response: Value = http
                .post(format!("{moto}/2015-03-31/functions"))
                .header("authorization", moto_auth("lambda"))
                .json(&json!({
                    "FunctionName": name,
                    "Runtime": "provided.al2023",
                    "Role": role,
                    "Handler": "bootstrap",
                    "Code": {"ZipFile": empty_zip},
                }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                response["FunctionArn"].as_str(),
                Some(format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}").as_str()),
                "{response}"
            );
            targets.insert(name.clone(), json!(format!("{invoke}/invoke/{name}")));
        }
        let registered = http
            .post(format!("{moto}/_taskgate/lambda-targets"))
            .json(&targets)
            .send()
            .await
            .unwrap();
        assert!(
            registered.status().is_success(),
            "moto-server.py forwards invocations"
        );
        let sdk = taskgate_aws::load_sdk_config(Some(moto)).await;
        let sfn = taskgate_aws::sfn_client(&sdk, Some(moto));
        let created = sfn
            .create_state_machine()
            .name(self.physical.names["TaskStateMachine"].clone())
            .definition(definition)
            .role_arn(role)
            .r#type(aws_sdk_sfn::types::StateMachineType::Standard)
            .send()
            .await
            .expect("moto creates the state machine");
        assert_eq!(created.state_machine_arn(), self.state_machine_arn);
    }

    /// The endpoint moto forwards Lambda invocations to:
    /// `POST /invoke/{function name}` runs the function and answers as
    /// Lambda's invoke API does (`X-Amz-Function-Error` on a failure).
    async fn invoke_endpoint(self: &Arc<Self>) -> String {
        async fn invoke(
            State(deployment): State<std::sync::Weak<Deployment>>,
            UrlPath(name): UrlPath<String>,
            body: Bytes,
        ) -> Response {
            let Some(deployment) = deployment.upgrade() else {
                return (StatusCode::GONE, "the deployment is gone").into_response();
            };
            let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let Some(id) = deployment
                .functions
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.logical_id.clone())
            else {
                return (StatusCode::NOT_FOUND, format!("no function {name}")).into_response();
            };
            match deployment
                .invoke(&id, event, Duration::from_secs(900))
                .await
            {
                Answer::Response(value) => (StatusCode::OK, value.to_string()).into_response(),
                Answer::Error(value) => (
                    StatusCode::OK,
                    [("x-amz-function-error", "Unhandled")],
                    value.to_string(),
                )
                    .into_response(),
            }
        }
        // Weak, so the endpoint does not keep the deployment alive.
        let app = axum::Router::new()
            .route("/invoke/{name}", axum::routing::post(invoke))
            .with_state(Arc::downgrade(self));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    pub fn function(&self, id: &str) -> &Function {
        self.functions
            .iter()
            .find(|f| f.logical_id == id)
            .unwrap_or_else(|| panic!("the template has no function {id}"))
    }

    /// Sets extra environment for `id` (before its first invocation).
    pub fn set_environment(&self, id: &str, name: &str, value: &str) {
        self.overrides
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .push((name.to_owned(), value.to_owned()));
    }

    /// The running process of function `id`, started on first use.
    pub async fn process(&self, id: &str) -> Arc<FunctionProcess> {
        let mut processes = self.processes.lock().await;
        if let Some(process) = processes.get(id) {
            return Arc::clone(process);
        }
        let function = self.function(id).clone();
        let endpoint = self.recorder.lock().await.endpoint_for(id).await;
        let mut environment: Vec<(String, String)> = function
            .environment
            .iter()
            .map(|(name, value)| {
                let value = match name.as_str() {
                    "TASKGATE_DYNAMODB_ENDPOINT"
                    | "TASKGATE_STEPFUNCTIONS_ENDPOINT"
                    | "TASKGATE_SECRETSMANAGER_ENDPOINT"
                    | "TASKGATE_S3_ENDPOINT"
                    | "TASKGATE_LAMBDA_ENDPOINT" => endpoint.clone(),
                    // The management API at the same stage path, on the proxy.
                    "TASKGATE_WS_ENDPOINT" => {
                        let path = value
                            .strip_prefix("https://")
                            .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
                            .unwrap_or("");
                        format!("{endpoint}{path}")
                    }
                    _ => value.clone(),
                };
                (name.clone(), value)
            })
            .collect();
        // Functions that do not name an endpoint variable still reach AWS
        // only through the proxy.
        for name in [
            "TASKGATE_DYNAMODB_ENDPOINT",
            "TASKGATE_STEPFUNCTIONS_ENDPOINT",
            "TASKGATE_SECRETSMANAGER_ENDPOINT",
            "TASKGATE_S3_ENDPOINT",
        ] {
            if !function.environment.contains_key(name) {
                environment.push((name.to_owned(), endpoint.clone()));
            }
        }
        if let Some(extra) = self.overrides.lock().unwrap().get(id) {
            environment.extend(extra.iter().cloned());
        }
        let process = Arc::new(
            FunctionProcess::start(
                &function.name,
                &crate::workspace_binary(&function.binary),
                &environment,
                self.logs.path().join(format!("{id}.log")),
            )
            .await,
        );
        processes.insert(id.to_owned(), Arc::clone(&process));
        process
    }

    /// Invokes function `id` with `event`.
    pub async fn invoke(&self, id: &str, event: Value, limit: Duration) -> Answer {
        self.process(id).await.invoke(event, limit).await
    }

    /// The function API Gateway routes `method path` to (the most specific
    /// matching route, as API Gateway chooses), and the route's path
    /// parameters.
    pub fn route(
        &self,
        method: &str,
        path: &str,
    ) -> Option<(String, String, BTreeMap<String, String>)> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // Rank: a route without a greedy `{name+}` beats one with; then the
        // more literal segments, the more specific.
        type Candidate = ((bool, usize), String, String, BTreeMap<String, String>);
        let mut best: Option<Candidate> = None;
        for (route_method, template, function) in &self.http_routes {
            if route_method != method {
                continue;
            }
            let mut pattern: Vec<&str> = template.trim_start_matches('/').split('/').collect();
            let mut parameters = BTreeMap::new();
            // A greedy last segment (`{proxy+}`) takes the rest of the path,
            // one segment or more.
            let greedy = pattern
                .last()
                .and_then(|p| p.strip_prefix('{'))
                .and_then(|p| p.strip_suffix("+}"))
                .map(str::to_owned);
            let segments_here: &[&str] = match &greedy {
                Some(name) => {
                    pattern.pop();
                    if segments.len() <= pattern.len() {
                        continue;
                    }
                    let rest = segments[pattern.len()..].join("/");
                    if rest.is_empty() {
                        continue;
                    }
                    parameters.insert(name.clone(), rest);
                    &segments[..pattern.len()]
                }
                None => &segments,
            };
            if pattern.len() != segments_here.len() {
                continue;
            }
            let mut literal = 0;
            let fits = pattern.iter().zip(segments_here).all(|(p, s)| {
                if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    parameters.insert(name.to_owned(), (*s).to_owned());
                    !s.is_empty()
                } else {
                    literal += 1;
                    p == s
                }
            });
            let rank = (greedy.is_none(), literal);
            if fits && best.as_ref().is_none_or(|(r, ..)| rank > *r) {
                best = Some((rank, template.clone(), function.clone(), parameters));
            }
        }
        best.map(|(_, template, function, parameters)| (function, template, parameters))
    }

    /// An HTTP request through API Gateway to the function of its route.
    pub async fn http(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpAnswer {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let (function, template, parameters) = self
            .route(method, path)
            .unwrap_or_else(|| panic!("API Gateway has no route for {method} {path}"));
        let route_key = format!("{method} {template}");
        let mut header_map = serde_json::Map::new();
        header_map.insert(
            "host".into(),
            json!("api0test.execute-api.us-east-1.amazonaws.com"),
        );
        header_map.insert("x-forwarded-proto".into(), json!("https"));
        for (name, value) in headers {
            header_map.insert(name.to_ascii_lowercase(), json!(value));
        }
        let now = time::OffsetDateTime::now_utc();
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": path,
            "rawQueryString": query,
            "headers": header_map,
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": "api0test",
                "domainName": "api0test.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "api0test",
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "203.0.113.10",
                    "userAgent": "taskgate-deployment-test"
                },
                "requestId": uuid::Uuid::new_v4().to_string(),
                "routeKey": route_key,
                "stage": "$default",
                "time": "04/Dec/2026:12:00:00 +0000",
                "timeEpoch": now.unix_timestamp() * 1000
            },
            "isBase64Encoded": false
        });
        if !parameters.is_empty() {
            event["pathParameters"] = json!(parameters);
        }
        if !query.is_empty() {
            let mut parameters = serde_json::Map::new();
            for (name, value) in url_pairs(query) {
                parameters.insert(name, json!(value));
            }
            event["queryStringParameters"] = Value::Object(parameters);
        }
        if let Some(body) = body {
            match std::str::from_utf8(body) {
                Ok(text)
                    if !headers.iter().any(|(n, v)| {
                        n.eq_ignore_ascii_case("content-type") && v.contains("octet-stream")
                    }) =>
                {
                    event["body"] = json!(text);
                }
                _ => {
                    event["body"] = json!(STANDARD.encode(body));
                    event["isBase64Encoded"] = json!(true);
                }
            }
        }
        let response = self
            .invoke(&function, event, Duration::from_secs(60))
            .await
            .response();
        let mut answer_headers = BTreeMap::new();
        if let Some(map) = response["headers"].as_object() {
            for (name, value) in map {
                answer_headers.insert(
                    name.to_ascii_lowercase(),
                    value.as_str().unwrap_or_default().to_owned(),
                );
            }
        }
        if let Some(map) = response["multiValueHeaders"].as_object() {
            for (name, values) in map {
                let joined: Vec<&str> = values
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                answer_headers.insert(name.to_ascii_lowercase(), joined.join(", "));
            }
        }
        let body = match response["body"].as_str() {
            Some(text) if response["isBase64Encoded"] == json!(true) => {
                STANDARD.decode(text).unwrap()
            }
            Some(text) => text.as_bytes().to_vec(),
            None => Vec::new(),
        };
        HttpAnswer {
            status: response["statusCode"].as_u64().unwrap_or(0) as u16,
            headers: answer_headers,
            body,
            function,
        }
    }

    /// An HTTP request as a JSON API call with a bearer token.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> HttpAnswer {
        let authorization = format!("Bearer {token}");
        let text = body.map(|b| b.to_string());
        let mut headers = vec![("authorization", authorization.as_str())];
        if text.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.http(method, path, &headers, text.as_deref().map(str::as_bytes))
            .await
    }

    /// Records what AWS does for each function on its behalf, which its
    /// role must allow as well: writing its log lines, and reading the
    /// streams its event source mappings name.
    pub async fn record_platform_calls(&self) {
        let recorder = self.recorder.lock().await;
        for function in &self.functions {
            if let Some(group) = &function.log_group {
                let stream = format!(
                    "arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:2026/12/04/[$LATEST]0123"
                );
                recorder.record(&function.logical_id, "logs:CreateLogStream", &stream);
                recorder.record(&function.logical_id, "logs:PutLogEvents", &stream);
            }
            for stream in &function.streams {
                for action in [
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                ] {
                    recorder.record(&function.logical_id, action, stream);
                }
            }
        }
    }

    /// The log of function `id`'s process.
    pub async fn log_of(&self, id: &str) -> String {
        match self.processes.lock().await.get(id) {
            Some(process) => process.log_text(),
            None => String::new(),
        }
    }
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

/// Stores `value` as the secret `name` in moto's Secrets Manager at `moto`;
/// its ARN.
pub async fn create_secret(moto: &str, name: &str, value: &str) -> String {
    let answer: Value = reqwest::Client::new()
        .post(format!("{moto}/"))
        .header("x-amz-target", "secretsmanager.CreateSecret")
        .header("content-type", "application/x-amz-json-1.1")
        .header("authorization", moto_auth("secretsmanager"))
        .body(json!({"Name": name, "SecretString": value}).to_string())
        .send()
        .await
        .expect("moto answers")
        .json()
        .await
        .expect("a JSON answer");
    answer["ARN"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret created: {answer}"))
        .to_owned()
}

/// moto routes a request to a service by its Authorization header's
/// credential scope; these set-up calls need no real signature.
pub fn moto_auth(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    )
}
