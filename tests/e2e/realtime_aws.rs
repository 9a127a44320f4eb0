//! Real-time updates on AWS, with what runs here: the WebSocket API's
//! handlers (`$connect`, `$default`, `$disconnect`) fed API Gateway's event
//! shapes (tests/fixtures/apigw-websocket), against DynamoDB Local; the
//! fan-out fed real stream records, read from DynamoDB Local's Streams with
//! the DynamoDB Streams API and shaped as Lambda delivers them; and moto's
//! API Gateway management API, whose record of the bytes posted to each
//! connection is what the tests check (infra/local/moto-server.py serves it).

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskgate_api::AppState;
use taskgate_aws::TableNames;
use taskgate_aws::connections::Connections;
use taskgate_e2e::{Backend, TestApp, status_and_json};
use taskgate_lambda_http::realtime::Realtime;
use taskgate_server::config::StoreConfig;

use crate::projects::team_on;

fn moto_endpoint() -> String {
    std::env::var("TASKGATE_TEST_SFN_ENDPOINT")
        .expect("tests/run.sh starts moto and sets TASKGATE_TEST_SFN_ENDPOINT")
}

fn tables(app: &TestApp) -> TableNames {
    match &app.config.store {
        StoreConfig::DynamoDb { tables, .. } => tables.clone(),
        _ => panic!("these tests run on DynamoDB Local"),
    }
}

/// The real-time functions' state for `app`'s tables and signing secret,
/// posting to moto.
async fn realtime(app: &TestApp) -> Realtime {
    let endpoint = taskgate_e2e::dynamodb_endpoint();
    let sdk = taskgate_aws::load_sdk_config(Some(&endpoint)).await;
    let client = taskgate_aws::dynamodb_client(&sdk, Some(&endpoint));
    let tables = tables(app);
    let store = taskgate_aws::DynamoStore::new(client.clone(), tables.clone());
    let secret = secrecy::SecretSlice::from(app.jwt_secret());
    let state = AppState::new(Arc::new(store), &secret, app.config.api.clone()).unwrap();
    // Under the stage path, as the template's TASKGATE_WS_ENDPOINT names it.
    let management = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(format!("{}/live", moto_endpoint()))
            .build(),
    );
    Realtime {
        state: Arc::new(state),
        connections: Connections::new(client, tables.connections),
        management,
        replays: None,
    }
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../tests/fixtures/apigw-websocket/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn event(
    name: &str,
    connection: &str,
    edit: impl FnOnce(&mut Value),
) -> aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest {
    let mut event = fixture(name);
    event["requestContext"]["connectionId"] = json!(connection);
    edit(&mut event);
    serde_json::from_value(event).unwrap()
}

/// A connection id no other test uses (moto's record is shared).
fn connection(name: &str) -> String {
    format!(
        "{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn connect(rt: &Realtime, id: &str, token: &str) -> i64 {
    let request = event("connect", id, |event| {
        event["queryStringParameters"] = json!({"token": token});
        event["multiValueQueryStringParameters"] = json!({"token": [token]});
    });
    rt.connect(request).await.status_code
}

async fn send(rt: &Realtime, id: &str, message: Value) {
    let request = event("default", id, |event| {
        event["body"] = json!(message.to_string())
    });
    assert_eq!(rt.message(request).await.status_code, 200);
}

/// What moto recorded as posted to `connection`, message by message.
pub(crate) async fn posted(connection: &str) -> Vec<Value> {
    let recorded: HashMap<String, String> =
        reqwest::get(format!("{}/_taskgate/posted", moto_endpoint()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let Some(data) = recorded.get(connection) else {
        return vec![];
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    // moto appends each post to the last: the messages are back to back.
    serde_json::Deserializer::from_slice(&bytes)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect()
}

/// Reads a table's stream as Lambda's event source mapping does (every
/// shard, from its start), and shapes the records as Lambda's event.
pub(crate) struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    arn: String,
    /// The last sequence number read from each shard seen so far (`None`:
    /// nothing read from it yet).
    read: HashMap<String, Option<String>>,
}

impl StreamReader {
    /// A reader past every record already in `table`'s stream: it reads
    /// only later changes.
    pub(crate) async fn at_end(table: &str) -> Self {
        let endpoint = taskgate_e2e::dynamodb_endpoint();
        let sdk = taskgate_aws::load_sdk_config(Some(&endpoint)).await;
        let dynamodb = taskgate_aws::dynamodb_client(&sdk, Some(&endpoint));
        let described = dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap();
        let arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .expect("the table has a stream")
            .to_owned();
        let client = aws_sdk_dynamodbstreams::Client::from_conf(
            aws_sdk_dynamodbstreams::config::Builder::from(&sdk)
                .endpoint_url(&endpoint)
                .build(),
        );
        let mut reader = Self {
            client,
            arn,
            read: HashMap::new(),
        };
        reader.next_event().await;
        reader
    }

    /// The records written since the last read, as a Lambda event.
    pub(crate) async fn next_event(&mut self) -> aws_lambda_events::dynamodb::Event {
        let stream = self
            .client
            .describe_stream()
            .stream_arn(&self.arn)
            .send()
            .await
            .unwrap();
        let mut records = Vec::new();
        for shard in stream.stream_description().unwrap().shards() {
            let id = shard.shard_id().unwrap();
            let last = self.read.entry(id.to_owned()).or_default();
            // A fresh iterator per read, from where the last read stopped.
            let iterator = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.arn)
                .shard_id(id);
            let iterator = match last.as_deref() {
                None => iterator.shard_iterator_type(ShardIteratorType::TrimHorizon),
                Some(seq) => iterator
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .sequence_number(seq),
            };
            let iterator = iterator.send().await.unwrap();
            let Some(iterator) = iterator.shard_iterator() else {
                continue;
            };
            let output = self
                .client
                .get_records()
                .shard_iterator(iterator)
                .send()
                .await
                .unwrap();
            for record in output.records() {
                let change = record.dynamodb().unwrap();
                *last = change.sequence_number().map(str::to_owned);
                let image = |map: Option<&HashMap<String, AttributeValue>>| {
                    Value::Object(
                        map.into_iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), attribute_json(v)))
                            .collect(),
                    )
                };
                records.push(json!({
                    "eventID": record.event_id(),
                    "eventName": record.event_name().unwrap().as_str(),
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "eventSourceARN": self.arn,
                    "dynamodb": {
                        "ApproximateCreationDateTime": change.approximate_creation_date_time().map_or(0, |t| t.secs()),
                        "Keys": image(change.keys.as_ref()),
                        "NewImage": image(change.new_image.as_ref()),
                        "SequenceNumber": change.sequence_number(),
                        "SizeBytes": change.size_bytes().unwrap_or(0),
                        "StreamViewType": "NEW_IMAGE",
                    },
                }));
            }
        }
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }
}

/// A DynamoDB attribute value in the JSON of a Lambda stream event.
fn attribute_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Null(_) => json!({"NULL": true}),
        AttributeValue::B(b) => {
            json!({"B": base64::engine::general_purpose::STANDARD.encode(b.as_ref())})
        }
        AttributeValue::Ss(items) => json!({"SS": items}),
        AttributeValue::Ns(items) => json!({"NS": items}),
        AttributeValue::L(items) => {
            json!({"L": items.iter().map(attribute_json).collect::<Vec<_>>()})
        }
        AttributeValue::M(map) => {
            json!({"M": map.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>()})
        }
        other => panic!("unexpected attribute value {other:?}"),
    }
}

async fn ok_json(app: &TestApp, method: Method, path: &str, token: &str, body: Value) -> Value {
    let (status, value) =
        status_and_json(app.send_json(method, path, Some(token), &body).await).await;
    assert!(status.is_success(), "{path}: {status} {value}");
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_checks_the_token_and_the_limit_and_disconnect_forgets() {
    let app = TestApp::spawn_with(Backend::DynamoDb, |config| {
        config.api.realtime.max_connections_per_user = 2;
    })
    .await;
    let team = team_on(app).await;
    let rt = realtime(&team.app).await;
    // No token, a bad one: refused (API Gateway then refuses the upgrade).
    let id = connection("anonymous");
    let request = event("connect", &id, |_| {});
    assert_eq!(rt.connect(request).await.status_code, 401);
    assert_eq!(connect(&rt, &id, "not-a-token").await, 401);
    assert!(rt.connections.get(&id).await.unwrap().is_none());
    // The header works as well as the query.
    let first = connection("mia");
    let request = event("connect", &first, |event| {
        event["headers"]["Authorization"] = json!(format!("Bearer {}", team.mia));
        event["multiValueHeaders"]["Authorization"] = json!([format!("Bearer {}", team.mia)]);
    });
    assert_eq!(rt.connect(request).await.status_code, 200);
    let stored = rt.connections.get(&first).await.unwrap().unwrap();
    assert_eq!(stored.username.as_str(), "mia");
    assert!(stored.expires_at <= time::OffsetDateTime::now_utc().unix_timestamp() + 2 * 3600);
    let second = connection("mia");
    assert_eq!(connect(&rt, &second, &team.mia).await, 200);
    // A third is one too many.
    assert_eq!(connect(&rt, &connection("mia"), &team.mia).await, 429);
    // Disconnecting forgets the connection and its subscriptions.
    send(&rt, &first, json!({"type": "subscribe", "topic": "tasks"})).await;
    assert_eq!(rt.connections.topics_of(&first).await.unwrap(), ["tasks"]);
    let request = event("disconnect", &first, |_| {});
    assert_eq!(rt.disconnect(request).await.status_code, 200);
    assert!(rt.connections.get(&first).await.unwrap().is_none());
    assert!(rt.connections.topics_of(&first).await.unwrap().is_empty());
    assert_eq!(connect(&rt, &connection("mia"), &team.mia).await, 200);
    // A browser (the web console) offers the token as a subprotocol beside
    // `taskgate`, never in the URL; the answer selects `taskgate`.
    let offering = |id: &str, offered: String| {
        event("connect", id, move |event| {
            event["headers"]["Sec-WebSocket-Protocol"] = json!(offered);
            event["multiValueHeaders"]["Sec-WebSocket-Protocol"] = json!([offered]);
        })
    };
    let browser = connection("nina");
    let response = rt
        .connect(offering(
            &browser,
            format!("taskgate, taskgate.bearer.{}", team.nina),
        ))
        .await;
    assert_eq!(response.status_code, 200);
    assert_eq!(response.headers["sec-websocket-protocol"], "taskgate");
    let stored = rt.connections.get(&browser).await.unwrap().unwrap();
    assert_eq!(stored.username.as_str(), "nina");
    // Without `taskgate` beside it, the name is some other protocol.
    let stranger = connection("nina");
    let response = rt
        .connect(offering(
            &stranger,
            format!("taskgate.bearer.{}", team.nina),
        ))
        .await;
    assert_eq!(response.status_code, 401);
    assert!(rt.connections.get(&stranger).await.unwrap().is_none());
}

/// From a change made through the API to the bytes moto recorded for each
/// connection: members get the event, others nothing; a removed member gets
/// an error and nothing more; a gone connection (410) and a revoked token's
/// are forgotten; task events reach `tasks` and `task:{id}` subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_records_reach_exactly_the_connections_that_may_see_them() {
    let team = team_on(TestApp::spawn(Backend::DynamoDb).await).await;
    let app = &team.app;
    let rt = realtime(app).await;
    let project = team.project().await;
    let topic = format!("project:{project}");
    let [mia, nina, adam, gone, olga] = ["mia", "nina", "adam", "gone", "olga"].map(connection);
    for (id, token) in [
        (&mia, &team.mia),
        (&nina, &team.nina),
        (&adam, &team.adam),
        (&olga, &team.olga),
    ] {
        assert_eq!(connect(&rt, id, token).await, 200);
    }
    let adam_again = app.login("adam", taskgate_e2e::PASSWORD).await;
    assert_eq!(connect(&rt, &gone, &adam_again).await, 200);
    for id in [&mia, &nina, &adam, &gone] {
        send(&rt, id, json!({"type": "subscribe", "topic": topic})).await;
    }
    send(&rt, &olga, json!({"type": "subscribe", "topic": "tasks"})).await;
    assert_eq!(
        posted(&mia).await,
        [json!({"type": "subscribed", "topic": topic})]
    );
    let refused = posted(&nina).await;
    assert_eq!(
        (refused[0]["type"].as_str(), refused[0]["status"].as_u64()),
        (Some("error"), Some(404))
    );
    // The subscription was not recorded.
    assert!(rt.connections.topics_of(&nina).await.unwrap().is_empty());

    let mut log = StreamReader::at_end(&tables(app).project_log).await;
    let mut tasks = StreamReader::at_end(&tables(app).task_events).await;
    let item = ok_json(
        app,
        Method::POST,
        &format!("/projects/{project}/items"),
        &team.olga,
        json!({"title": "Ship it"}),
    )
    .await;
    // The client behind `gone` vanished without a $disconnect.
    rt.management
        .delete_connection()
        .connection_id(&gone)
        .send()
        .await
        .unwrap();
    rt.fan_out(log.next_event().await).await;
    let got = posted(&mia).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["type"], "event");
    assert_eq!(got[1]["topic"], topic);
    assert_eq!(got[1]["seq"], 4);
    assert_eq!(got[1]["event"]["kind"], "item.created");
    assert_eq!(got[1]["event"]["actor"], "olga");
    assert_eq!(got[1]["event"]["item"]["id"], item["id"]);
    assert_eq!(posted(&adam).await[1], got[1]);
    assert_eq!(posted(&nina).await.len(), 1, "nina may not see the project");
    assert!(
        rt.connections.get(&gone).await.unwrap().is_none(),
        "a gone connection is forgotten"
    );

    // A member removed: an error, the subscription ends, nothing more.
    let response = app
        .delete(
            &format!("/projects/{project}/members/mia"),
            Some(&team.olga),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    rt.fan_out(log.next_event().await).await;
    let got = posted(&mia).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        (got[2]["type"].as_str(), got[2]["status"].as_u64()),
        (Some("error"), Some(404))
    );
    assert!(rt.connections.topics_of(&mia).await.unwrap().is_empty());
    assert_eq!(posted(&adam).await[2]["event"]["kind"], "member.removed");

    // adam logs out: his connection is closed and forgotten, not posted to.
    let response = app
        .request(Method::DELETE, "/auth", Some(&team.adam))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    ok_json(
        app,
        Method::PATCH,
        &format!("/projects/{project}"),
        &team.olga,
        json!({"name": "Shipped"}),
    )
    .await;
    rt.fan_out(log.next_event().await).await;
    assert_eq!(posted(&adam).await.len(), 3);
    assert!(rt.connections.get(&adam).await.unwrap().is_none());
    assert_eq!(posted(&mia).await.len(), 3);

    // Tasks: olga's `tasks` subscription gets her task's events, in order.
    let task = app
        .start_task(&team.olga, json!({"type": "delay", "seconds": 0}))
        .await;
    let id = task["id"].as_str().unwrap();
    app.finished_task(&team.olga, id, std::time::Duration::from_secs(10))
        .await;
    rt.fan_out(tasks.next_event().await).await;
    let got = posted(&olga).await;
    let changes: Vec<&str> = got[1..]
        .iter()
        .map(|m| m["event"]["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["created", "started", "succeeded"]);
    assert!(
        got[1..]
            .iter()
            .all(|m| m["topic"] == "tasks" && m["event"]["task"]["id"] == id)
    );
    assert_eq!(got[3]["seq"], 3);
    // Replay on subscribe: a finished task's log from the start.
    send(
        &rt,
        &olga,
        json!({"type": "subscribe", "topic": format!("task:{id}"), "after": 1}),
    )
    .await;
    let got = posted(&olga).await;
    let replayed: Vec<u64> = got[5..]
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(got[4]["type"], "subscribed");
    assert_eq!(replayed, [2, 3]);
}
