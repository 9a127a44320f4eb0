//! The infrastructure agrees with the code: the SAM template declares exactly
//! the routes of the router, each on the function deployed for it (the HTTP
//! functions are generated from the routes, see
//! [`the_http_functions_are_generated_from_the_routes`]), and the tables the
//! DynamoDB adapter expects.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value;
use taskgate_api::routes::{functions, routes};
use taskgate_aws::tables::{TableNames, table_specs};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn template() -> Value {
    let text = std::fs::read_to_string(repo().join("infra/template.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(name, r)| (name.as_str().unwrap(), r))
        .collect()
}

/// The program every HTTP function runs (`functions/http-api`).
const HTTP_BINARY: &str = "http-api";

/// `users-get` → `UsersGet`, `DELETE /projects/{id}/items/{item_id}` →
/// `DeleteProjectsIdItemsItemId`: a name or path as a CloudFormation logical
/// id, which may hold only ASCII letters and digits (the SAM translator
/// refuses anything else). Every other character separates words.
fn logical_id(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect()
}

#[test]
fn logical_ids_hold_only_letters_and_digits_whatever_the_path() {
    let cases = [
        ("users-get", "UsersGet"),
        (
            "delete-/projects/{id}/items/{item_id}",
            "DeleteProjectsIdItemsItemId",
        ),
        ("get-/files/{id}/content", "GetFilesIdContent"),
        ("get-/v2/report.2026_q1/{a-b}", "GetV2Report2026Q1AB"),
        ("get-/2fa/x__y--z..w", "Get2faXYZW"),
        ("post-/ünïcode/é", "PostNCode"),
    ];
    for (name, expected) in cases {
        let id = logical_id(name);
        assert_eq!(id, expected, "{name}");
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{name}: {id}"
        );
    }
    // Every event and function id the template gets is one.
    for route in routes() {
        let id = logical_id(&format!("{}-{}", route.method, route.path));
        assert!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{id}"
        );
    }
}

/// The template's text between the generated-block markers, and where it is.
const BEGIN: &str = "  # BEGIN GENERATED HTTP FUNCTIONS\n";
const END: &str = "  # END GENERATED HTTP FUNCTIONS\n";

/// The function and log group of every HTTP function, from the routes.
fn generated_http_functions() -> String {
    let routes = routes();
    let mut text = String::new();
    for function in functions() {
        let id = logical_id(&function);
        text.push_str(&format!(
            "  {id}Function:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: {HTTP_BINARY}
    Properties:
      CodeUri: ../functions/{HTTP_BINARY}
      LoggingConfig:
        LogFormat: JSON
        LogGroup: !Ref {id}Logs
      Role: !GetAtt {id}Role.Arn
      Events:
"
        ));
        for route in routes.iter().filter(|r| r.function == function) {
            let method = route.method.as_str();
            let event = logical_id(&format!(
                "{}-{}",
                method.to_ascii_lowercase(),
                if route.path == "/" {
                    "root"
                } else {
                    &route.path
                }
            ));
            text.push_str(&format!(
                "        {event}:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: {method}
            Path: {path}
",
                path = route.path
            ));
        }
        text.push_str(&format!(
            "
  {id}Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      RetentionInDays: !Ref LogRetentionDays

"
        ));
    }
    text
}

/// Adding a route needs no hand-written function block: the HTTP functions
/// of the template are generated from the routes. Run with
/// `TASKGATE_UPDATE_TEMPLATE=1` to write them after changing the routes.
#[test]
fn the_http_functions_are_generated_from_the_routes() {
    let path = repo().join("infra/template.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(BEGIN).expect("the template has the BEGIN marker") + BEGIN.len();
    let end = text.find(END).expect("the template has the END marker");
    let generated = generated_http_functions();
    if std::env::var_os("TASKGATE_UPDATE_TEMPLATE").is_some() {
        let updated = format!("{}{generated}{}", &text[..start], &text[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        text[start..end] == generated,
        "infra/template.yaml's HTTP functions are not those of the routes; regenerate them with\n  \
         TASKGATE_UPDATE_TEMPLATE=1 cargo test -p taskgate-e2e --test e2e infra::\n\
         (and give a new function its role by hand)"
    );
}

/// (method, path, function) for every HttpApi event in the template.
fn template_routes(template: &Value) -> BTreeSet<(String, String, String)> {
    let mut routes = BTreeSet::new();
    for (name, function) in resources_of_type(template, "AWS::Serverless::Function") {
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no Metadata.BuildProperties.Binary"));
        assert_eq!(
            function["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{name}"
        );
        assert_eq!(
            function["Properties"]["CodeUri"].as_str(),
            Some(format!("../functions/{binary}").as_str()),
            "{name} builds from the wrong crate"
        );
        let Some(events) = function["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let properties = &event["Properties"];
            assert_eq!(
                binary, HTTP_BINARY,
                "{name} serves HTTP with another program"
            );
            routes.insert((
                properties["Method"].as_str().unwrap().to_uppercase(),
                properties["Path"].as_str().unwrap().to_owned(),
                name.to_owned(),
            ));
        }
    }
    routes
}

#[test]
fn the_template_declares_exactly_the_routes_of_the_router() {
    let declared = template_routes(&template());
    let expected: BTreeSet<(String, String, String)> = routes()
        .into_iter()
        .map(|r| {
            let function = format!("{}Function", logical_id(&r.function));
            (r.method.to_string(), r.path, function)
        })
        .collect();
    let missing: Vec<_> = expected.difference(&declared).collect();
    let extra: Vec<_> = declared.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing from the template: {missing:?}\nnot routes of the router: {extra:?}"
    );
}

#[test]
fn the_function_crates_are_the_http_program_the_steps_and_realtime() {
    let crates: BTreeSet<String> = std::fs::read_dir(repo().join("functions"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut expected: BTreeSet<String> = taskgate_lambda::steps::STEP_FUNCTIONS
        .iter()
        .map(|s| s.to_string())
        .collect();
    expected.insert(HTTP_BINARY.to_owned());
    expected.insert("realtime".to_owned());
    expected.insert("task-reconciler".to_owned());
    expected.insert("upload-reaper".to_owned());
    assert_eq!(crates, expected);
    for name in &crates {
        let manifest =
            std::fs::read_to_string(repo().join("functions").join(name).join("Cargo.toml"))
                .unwrap();
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "functions/{name}/Cargo.toml names another package"
        );
    }
    let main = std::fs::read_to_string(
        repo()
            .join("functions")
            .join(HTTP_BINARY)
            .join("src/main.rs"),
    )
    .unwrap();
    assert!(
        main.contains("taskgate_lambda_http::run_http()"),
        "functions/{HTTP_BINARY}/src/main.rs does not serve the application"
    );
    let main = std::fs::read_to_string(repo().join("functions/realtime/src/main.rs")).unwrap();
    assert!(main.contains("taskgate_lambda_http::run_realtime()"));
    let main =
        std::fs::read_to_string(repo().join("functions/task-reconciler/src/main.rs")).unwrap();
    assert!(main.contains("taskgate_lambda::run_reconciler()"));
    let main = std::fs::read_to_string(repo().join("functions/upload-reaper/src/main.rs")).unwrap();
    assert!(main.contains("taskgate_lambda::run_upload_reaper()"));
}

/// The packages `package` links (its normal dependencies, transitively, on
/// this machine's target), by name, from `cargo tree`.
fn linked_packages(package: &str) -> BTreeSet<String> {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn no_function_but_the_http_ones_links_the_http_application() {
    let mut others: Vec<&str> = taskgate_lambda::steps::STEP_FUNCTIONS.to_vec();
    others.extend(["task-reconciler", "upload-reaper"]);
    for function in others {
        let linked = linked_packages(function);
        assert!(linked.contains("taskgate-app"), "{function}: {linked:?}");
        for http in [
            "taskgate-api",
            "taskgate-lambda-http",
            "taskgate-console",
            "axum",
            "lambda_http",
        ] {
            assert!(!linked.contains(http), "{function} links {http}");
        }
    }
    for function in [HTTP_BINARY, "realtime"] {
        assert!(linked_packages(function).contains("taskgate-api"));
    }
}

#[test]
fn the_state_machine_invokes_the_step_functions_and_every_placeholder_is_filled() {
    let template = template();
    let machine = &template["Resources"]["TaskStateMachine"];
    assert_eq!(
        machine["Type"].as_str(),
        Some("AWS::Serverless::StateMachine")
    );
    assert_eq!(machine["Properties"]["Type"].as_str(), Some("STANDARD"));
    let path = machine["Properties"]["DefinitionUri"].as_str().unwrap();
    let definition = std::fs::read_to_string(repo().join("infra").join(path)).unwrap();
    let substitutions = machine["Properties"]["DefinitionSubstitutions"]
        .as_mapping()
        .unwrap();
    let mut placeholders = BTreeSet::new();
    for part in definition.split("${").skip(1) {
        placeholders.insert(part.split('}').next().unwrap().to_owned());
    }
    let provided: BTreeSet<String> = substitutions
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        placeholders, provided,
        "ASL placeholders and template substitutions differ"
    );
    // Each step function is declared, builds from its crate, has no HTTP
    // route, and is what the state machine invokes.
    let functions = resources_of_type(&template, "AWS::Serverless::Function");
    for step in taskgate_lambda::steps::STEP_FUNCTIONS {
        let (name, function) = functions
            .iter()
            .find(|(_, f)| f["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(step))
            .unwrap_or_else(|| panic!("the template does not declare {step}"));
        assert!(
            function["Properties"]["Events"].is_null(),
            "{name} has HTTP events"
        );
        assert!(
            substitutions
                .values()
                .any(|v| format!("{v:?}").contains(name)),
            "the state machine does not invoke {name}"
        );
    }
    let _: serde_json::Value = serde_json::from_str(&definition).expect("the ASL is JSON");
}

#[test]
fn the_template_tables_match_the_adapter() {
    let template = template();
    let names = TableNames::with_prefix("unused");
    for spec in table_specs(&names) {
        let table = &template["Resources"][spec.logical_name];
        assert_eq!(
            table["Type"].as_str(),
            Some("AWS::DynamoDB::Table"),
            "{}",
            spec.logical_name
        );
        let properties = &table["Properties"];
        let ctx = spec.logical_name;
        assert_eq!(
            properties["BillingMode"].as_str(),
            Some("PAY_PER_REQUEST"),
            "{ctx}: on-demand"
        );
        // Every table of lasting data can be restored; connections last
        // two hours at most, and are not worth a backup.
        let ephemeral = ctx == "ConnectionsTable";
        assert_eq!(
            properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
            (!ephemeral).then_some(true),
            "{ctx}: point-in-time recovery"
        );
        let key = |schema: &Value, kind: &str| {
            schema
                .as_sequence()
                .unwrap()
                .iter()
                .find(|k| k["KeyType"].as_str() == Some(kind))
                .map(|k| k["AttributeName"].as_str().unwrap().to_owned())
        };
        assert_eq!(
            key(&properties["KeySchema"], "HASH").as_deref(),
            Some(spec.hash_key.name),
            "{ctx}"
        );
        assert_eq!(
            key(&properties["KeySchema"], "RANGE").as_deref(),
            spec.range_key.as_ref().map(|k| k.name),
            "{ctx}"
        );
        let definitions: BTreeSet<(String, String)> = properties["AttributeDefinitions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["AttributeName"].as_str().unwrap().to_owned(),
                    d["AttributeType"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let mut expected_definitions = BTreeSet::new();
        let mut keys = vec![&spec.hash_key];
        keys.extend(spec.range_key.as_ref());
        for index in &spec.indexes {
            keys.push(&index.hash_key);
            keys.extend(index.range_key.as_ref());
        }
        for k in keys {
            expected_definitions.insert((k.name.to_owned(), k.kind.as_str().to_owned()));
        }
        assert_eq!(
            definitions, expected_definitions,
            "{ctx}: attribute definitions"
        );
        let indexes = properties["GlobalSecondaryIndexes"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        assert_eq!(indexes.len(), spec.indexes.len(), "{ctx}: indexes");
        for index in &spec.indexes {
            let declared = indexes
                .iter()
                .find(|i| i["IndexName"].as_str() == Some(index.name))
                .unwrap_or_else(|| panic!("{ctx}: index {} is missing", index.name));
            assert_eq!(
                key(&declared["KeySchema"], "HASH").as_deref(),
                Some(index.hash_key.name)
            );
            assert_eq!(
                key(&declared["KeySchema"], "RANGE").as_deref(),
                index.range_key.as_ref().map(|k| k.name)
            );
            assert_eq!(
                declared["Projection"]["ProjectionType"].as_str(),
                Some(index.projection.as_str())
            );
        }
        match properties["StreamSpecification"]["StreamViewType"].as_str() {
            Some("NEW_IMAGE") => assert!(spec.stream, "{ctx}: a stream the code does not expect"),
            Some(other) => panic!("{ctx}: stream view {other}; the fan-out reads NEW_IMAGE"),
            None => assert!(
                !spec.stream,
                "{ctx}: the fan-out needs a stream (NEW_IMAGE)"
            ),
        }
        match spec.ttl_attribute {
            Some(attribute) => {
                assert_eq!(
                    properties["TimeToLiveSpecification"]["AttributeName"].as_str(),
                    Some(attribute),
                    "{ctx}"
                );
                assert_eq!(
                    properties["TimeToLiveSpecification"]["Enabled"].as_bool(),
                    Some(true),
                    "{ctx}"
                );
            }
            None => assert!(
                properties["TimeToLiveSpecification"].is_null(),
                "{ctx}: unexpected TTL"
            ),
        }
    }
}

/// The strings inside a resource value: a plain string, a `!Sub` template,
/// or the items of a list of those (`!Ref` / `!GetAtt` name resources).
fn resource_patterns(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => vec![text.clone()],
        Value::Sequence(items) => items.iter().flat_map(resource_patterns).collect(),
        Value::Tagged(tagged) if tagged.tag == "!Sub" => resource_patterns(&tagged.value),
        _ => vec![],
    }
}

#[test]
fn every_function_has_its_own_role_and_no_policy_uses_wildcards() {
    let template = template();
    let functions = resources_of_type(&template, "AWS::Serverless::Function");
    let roles = resources_of_type(&template, "AWS::IAM::Role");
    let mut used = BTreeSet::new();
    for (name, function) in &functions {
        let properties = &function["Properties"];
        assert!(
            properties["Policies"].is_null(),
            "{name} uses SAM policies (and with them SAM's managed log policy on *)"
        );
        let role = match &properties["Role"] {
            Value::Tagged(tagged) if tagged.tag == "!GetAtt" => tagged
                .value
                .as_str()
                .unwrap()
                .trim_end_matches(".Arn")
                .to_owned(),
            other => panic!("{name} has no role of its own: {other:?}"),
        };
        assert!(
            roles.iter().any(|(r, _)| *r == role),
            "{name}'s role {role} is not in the template"
        );
        assert!(
            used.insert(role.clone()),
            "{role} is shared by several functions"
        );
    }
    assert_eq!(used.len(), roles.len(), "roles no function uses");
    for (name, role) in &roles {
        for policy in role["Properties"]["Policies"].as_sequence().unwrap() {
            for statement in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
                let actions: Vec<String> = resource_patterns(&statement["Action"]);
                for action in &actions {
                    assert!(!action.contains('*'), "{name}: wildcard action {action}");
                }
                for resource in resource_patterns(&statement["Resource"]) {
                    // Execution ARNs end in the task id, unknown in advance.
                    let executions = resource.contains(":execution:")
                        && resource.ends_with(":*")
                        && actions == ["states:StopExecution"];
                    // So are WebSocket connection ids.
                    let connections = resource.ends_with("/@connections/*")
                        && resource.matches('*').count() == 1
                        && actions == ["execute-api:ManageConnections"];
                    // And file ids, in the keys of the files bucket.
                    let objects = ["${FilesBucket.Arn}/files/*", "${FilesBucket.Arn}/uploads/*"]
                        .contains(&resource.as_str())
                        && actions.iter().all(|a| {
                            [
                                "s3:GetObject",
                                "s3:PutObject",
                                "s3:DeleteObject",
                                "s3:AbortMultipartUpload",
                            ]
                            .contains(&a.as_str())
                        });
                    assert!(
                        !resource.contains('*') || executions || connections || objects,
                        "{name}: wildcard resource {resource} for {actions:?}"
                    );
                }
            }
        }
    }
}

/// The stream mappings fail safe: a poison record cannot stall a shard
/// (bounded retries, the batch bisected, records dropped past an age), only
/// inserts reach the fan-out, and its timeout fits a full batch.
#[test]
fn the_stream_mappings_retry_a_bounded_number_of_times_and_read_only_inserts() {
    let template = template();
    let fan_out = &template["Resources"]["RealtimeFanOutFunction"]["Properties"];
    let timeout = fan_out["Timeout"]
        .as_u64()
        .expect("the fan-out sets its timeout");
    assert!(timeout >= 30, "a full batch needs time: {timeout} s");
    let events = fan_out["Events"].as_mapping().unwrap();
    assert_eq!(events.len(), 2);
    for (name, event) in events {
        let p = &event["Properties"];
        assert_eq!(event["Type"].as_str(), Some("DynamoDB"), "{name:?}");
        let retries = p["MaximumRetryAttempts"].as_u64().expect("bounded retries");
        assert!(retries <= 3, "{name:?}: {retries} retries");
        assert_eq!(
            p["BisectBatchOnFunctionError"].as_bool(),
            Some(true),
            "{name:?}"
        );
        let age = p["MaximumRecordAgeInSeconds"]
            .as_u64()
            .expect("a maximum age");
        assert!((60..=3600).contains(&age), "{name:?}: {age}");
        let filters = p["FilterCriteria"]["Filters"].as_sequence().unwrap();
        let pattern: serde_json::Value =
            serde_json::from_str(filters[0]["Pattern"].as_str().unwrap()).unwrap();
        assert_eq!(
            pattern,
            serde_json::json!({"eventName": ["INSERT"]}),
            "{name:?}"
        );
    }
}

/// With CORS enabled, a browser on the allowed origin can use the whole
/// API: tus (HEAD, its request headers, its answers), Idempotency-Key,
/// If-Match and ETag, paging and ranged downloads.
#[test]
fn cors_allows_and_exposes_what_tus_and_the_api_need() {
    let template = template();
    let cors = &template["Resources"]["Api"]["Properties"]["CorsConfiguration"];
    let Value::Tagged(tagged) = cors else {
        panic!("CORS is conditional on CorsAllowOrigins: {cors:?}")
    };
    let enabled = &tagged.value.as_sequence().unwrap()[1];
    let list = |key: &str| -> BTreeSet<String> {
        enabled[key]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_ascii_lowercase())
            .collect()
    };
    let methods = list("AllowMethods");
    for method in ["get", "head", "post", "patch", "put", "delete", "options"] {
        assert!(methods.contains(method), "{method} is not allowed");
    }
    let allowed = list("AllowHeaders");
    for header in [
        "authorization",
        "content-type",
        "idempotency-key",
        "if-match",
        "tus-resumable",
        "upload-length",
        "upload-offset",
        "upload-metadata",
        "upload-checksum",
        "range",
    ] {
        assert!(allowed.contains(header), "{header} is not allowed");
    }
    let exposed = list("ExposeHeaders");
    for header in [
        "location",
        "etag",
        "tus-resumable",
        "tus-version",
        "tus-extension",
        "tus-max-size",
        "upload-offset",
        "upload-length",
        "upload-expires",
        "content-range",
        "retry-after",
        "x-request-id",
    ] {
        assert!(exposed.contains(header), "{header} is not exposed");
    }
}

/// The console's policy lets a download through to where it really leads:
/// the template's `TASKGATE_CONSOLE_DOWNLOAD_ORIGIN` is the origin of the
/// presigned URLs the SDK makes for the deployed bucket in its region (so
/// the CSP and the redirect cannot drift apart unnoticed).
#[tokio::test]
async fn the_consoles_download_origin_is_where_presigned_urls_lead() {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    use taskgate_e2e::deployment::template::{Physical, REGION, Template};

    let template = Template::load();
    let bucket = "taskgate-filesbucket-1a2b3c4d5e6f";
    let physical = Physical {
        stack: "taskgate".to_owned(),
        names: [("FilesBucket".to_owned(), bucket.to_owned())].into(),
        ..Physical::default()
    };
    let variable = &template.root["Globals"]["Function"]["Environment"]["Variables"]["TASKGATE_CONSOLE_DOWNLOAD_ORIGIN"];
    let declared = template.resolve(&physical, variable);
    // The client a function in that region builds (no endpoint override).
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .build(),
    );
    let blobs = taskgate_aws::blobs::S3Blobs::new(s3, bucket);
    assert_eq!(declared, blobs.download_origin().await.unwrap());
    // And the console accepts it as an origin.
    taskgate_console::Console::new(&taskgate_console::Elsewhere {
        websocket: None,
        downloads: Some(declared),
    })
    .unwrap();
}
