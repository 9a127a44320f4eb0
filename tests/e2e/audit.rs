//! The audit over DynamoDB: the same verification `taskgate audit verify`
//! runs, on a log kept in DynamoDB Local and edited behind Taskgate's back.
//! (The command itself is tested end to end in shared/cli/tests/audit.rs.)

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use taskgate_domain::task::{TaskId, Violation};
use taskgate_e2e::{Backend, TestApp};
use taskgate_server::StoreConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_catches_edits_to_the_dynamodb_log() {
    let app = TestApp::spawn(Backend::DynamoDb).await;
    let admin = app.admin_token().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let task = app
            .start_task(&admin, json!({"type": "delay", "seconds": 0}))
            .await;
        let id = task["id"].as_str().unwrap().to_owned();
        app.finished_task(&admin, &id, std::time::Duration::from_secs(30))
            .await;
        ids.push(id);
    }
    // A zero-second delay may finish before `started` is recorded (the
    // recorder then skips it), so count the events the API reports.
    let mut events = 0;
    for id in &ids {
        events += app.task_events(&admin, id).await.len();
    }
    let store = app.store().await;
    let report = taskgate_tools::audit::verify_log(store.as_ref())
        .await
        .unwrap();
    assert!(report.is_sound(), "{:?}", report.violations);
    assert_eq!((report.tasks, report.events), (2, events));

    let StoreConfig::DynamoDb { endpoint, tables } = &app.config.store else {
        unreachable!()
    };
    let sdk = taskgate_aws::load_sdk_config(endpoint.as_deref()).await;
    let client = taskgate_aws::dynamodb_client(&sdk, endpoint.as_deref());
    let key = |task: &str, seq: u64| {
        HashMap::from([
            ("task_id".to_owned(), AttributeValue::S(task.to_owned())),
            ("seq".to_owned(), AttributeValue::N(seq.to_string())),
        ])
    };
    // Change the first task's result in place.
    let item = client
        .get_item()
        .table_name(&tables.task_events)
        .set_key(Some(key(&ids[0], 3)))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let mut event: Value = serde_json::from_str(item["event"].as_s().unwrap()).unwrap();
    event["data"]["result"] = json!(1);
    client
        .update_item()
        .table_name(&tables.task_events)
        .set_key(Some(key(&ids[0], 3)))
        .update_expression("SET #e = :e")
        .expression_attribute_names("#e", "event")
        .expression_attribute_values(":e", AttributeValue::S(event.to_string()))
        .send()
        .await
        .unwrap();
    // Remove the second task's second event (a gap before its outcome).
    client
        .delete_item()
        .table_name(&tables.task_events)
        .set_key(Some(key(&ids[1], 2)))
        .send()
        .await
        .unwrap();

    let report = taskgate_tools::audit::verify_log(store.as_ref())
        .await
        .unwrap();
    let first = TaskId::parse(&ids[0]).unwrap();
    let second = TaskId::parse(&ids[1]).unwrap();
    assert!(
        report
            .violations
            .contains(&(first, Violation::HashMismatch { seq: 3 })),
        "{:?}",
        report.violations
    );
    assert!(
        report.violations.contains(&(
            second,
            Violation::SeqGap {
                expected: 2,
                found: 3
            }
        )),
        "{:?}",
        report.violations
    );
}
