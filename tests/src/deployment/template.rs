//! `infra/template.yaml` read as CloudFormation would deploy it: every
//! intrinsic the template uses (`!Ref`, `!GetAtt`, `!Sub`) resolved to the
//! names and ARNs of this emulated deployment, so that a function's
//! environment and its role's statements are exactly what AWS would give it.

use std::collections::BTreeMap;

use serde_norway::Value;

/// The account, region and partition every emulated ARN uses (moto's own).
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// What the template's resources are called in this deployment.
#[derive(Debug, Clone, Default)]
pub struct Physical {
    pub stack: String,
    /// Logical id → physical name (tables, bucket, functions, ...).
    pub names: BTreeMap<String, String>,
    /// Logical id → ARN, where it is not derived from the name.
    pub arns: BTreeMap<String, String>,
    /// `TableLogicalId.StreamArn` → the stream's ARN.
    pub streams: BTreeMap<String, String>,
}

/// One function of the template.
#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    /// Its physical name (Lambda's `AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    /// The program it runs (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    /// Its environment: the Globals' variables, then its own.
    pub environment: BTreeMap<String, String>,
    /// The statements of its role, resolved.
    pub statements: Vec<Statement>,
    /// Its log group's name.
    pub log_group: Option<String>,
    /// The streams its event source mappings read (their ARNs).
    pub streams: Vec<String>,
}

/// One `Allow` statement of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// The template, parsed.
pub struct Template {
    pub root: Value,
}

impl Template {
    pub fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
        let text = std::fs::read_to_string(path).expect("infra/template.yaml");
        Self {
            root: serde_norway::from_str(&text).expect("the template is YAML"),
        }
    }

    fn resources(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.root["Resources"]
            .as_mapping()
            .expect("Resources")
            .iter()
            .map(|(k, v)| (k.as_str().expect("a logical id"), v))
    }

    /// The logical ids of the resources of `kind`.
    pub fn ids_of_type(&self, kind: &str) -> Vec<String> {
        self.resources()
            .filter(|(_, r)| r["Type"].as_str() == Some(kind))
            .map(|(id, _)| id.to_owned())
            .collect()
    }

    pub fn resource(&self, id: &str) -> &Value {
        &self.root["Resources"][id]
    }

    /// Every function, resolved against `physical`.
    pub fn functions(&self, physical: &Physical) -> Vec<Function> {
        let resolver = Resolver {
            template: self,
            physical,
        };
        let globals = &self.root["Globals"]["Function"]["Environment"]["Variables"];
        self.ids_of_type("AWS::Serverless::Function")
            .into_iter()
            .map(|id| {
                let resource = self.resource(&id);
                let properties = &resource["Properties"];
                let mut environment = BTreeMap::new();
                for variables in [globals, &properties["Environment"]["Variables"]] {
                    if let Some(map) = variables.as_mapping() {
                        for (name, value) in map {
                            environment.insert(
                                name.as_str().expect("a variable name").to_owned(),
                                resolver.string(value),
                            );
                        }
                    }
                }
                let role = match &properties["Role"] {
                    Value::Tagged(t) if t.tag == "!GetAtt" => t
                        .value
                        .as_str()
                        .expect("Role: !GetAtt X.Arn")
                        .trim_end_matches(".Arn")
                        .to_owned(),
                    other => panic!("{id}: a role of its own expected, found {other:?}"),
                };
                let mut statements = Vec::new();
                for policy in self.resource(&role)["Properties"]["Policies"]
                    .as_sequence()
                    .expect("the role's policies")
                {
                    for statement in policy["PolicyDocument"]["Statement"]
                        .as_sequence()
                        .expect("statements")
                    {
                        assert_eq!(
                            statement["Effect"].as_str(),
                            Some("Allow"),
                            "{role}: only Allow statements are expected"
                        );
                        statements.push(Statement {
                            actions: resolver.strings(&statement["Action"]),
                            resources: resolver.strings(&statement["Resource"]),
                        });
                    }
                }
                let log_group = match &properties["LoggingConfig"]["LogGroup"] {
                    Value::Null => None,
                    group => Some(resolver.string(group)),
                };
                let mut streams = Vec::new();
                if let Some(events) = properties["Events"].as_mapping() {
                    for event in events.values() {
                        if event["Type"].as_str() == Some("DynamoDB") {
                            streams.push(resolver.string(&event["Properties"]["Stream"]));
                        }
                    }
                }
                Function {
                    logical_id: id.clone(),
                    name: resolver.name(&id),
                    binary: resource["Metadata"]["BuildProperties"]["Binary"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{id}: no Binary"))
                        .to_owned(),
                    environment,
                    statements,
                    log_group,
                    streams,
                }
            })
            .collect()
    }

    /// A value of the template (e.g. a substitution), resolved.
    pub fn resolve(&self, physical: &Physical, value: &Value) -> String {
        Resolver {
            template: self,
            physical,
        }
        .string(value)
    }
}

struct Resolver<'a> {
    template: &'a Template,
    physical: &'a Physical,
}

impl Resolver<'_> {
    fn strings(&self, value: &Value) -> Vec<String> {
        match value {
            Value::Sequence(items) => items.iter().map(|v| self.string(v)).collect(),
            other => vec![self.string(other)],
        }
    }

    fn string(&self, value: &Value) -> String {
        match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Tagged(t) if t.tag == "!Ref" => {
                self.reference(t.value.as_str().expect("!Ref X"))
            }
            Value::Tagged(t) if t.tag == "!GetAtt" => {
                let (id, attribute) = t
                    .value
                    .as_str()
                    .expect("!GetAtt X.Attr")
                    .split_once('.')
                    .expect("!GetAtt X.Attr");
                self.attribute(id, attribute)
            }
            Value::Tagged(t) if t.tag == "!Sub" => match &t.value {
                Value::String(text) => self.substitute(text, &BTreeMap::new()),
                Value::Sequence(parts) => {
                    let text = parts[0].as_str().expect("!Sub [text, vars]");
                    let vars = parts[1]
                        .as_mapping()
                        .expect("!Sub [text, vars]")
                        .iter()
                        .map(|(k, v)| (k.as_str().unwrap().to_owned(), self.string(v)))
                        .collect();
                    self.substitute(text, &vars)
                }
                other => panic!("!Sub {other:?}"),
            },
            other => panic!("the emulation does not resolve {other:?}"),
        }
    }

    fn substitute(&self, text: &str, vars: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("a closed ${...}") + start;
            let name = &rest[start + 2..end];
            out.push_str(&match vars.get(name) {
                Some(value) => value.clone(),
                None => match name.split_once('.') {
                    Some((id, attribute)) if !name.starts_with("AWS::") => {
                        self.attribute(id, attribute)
                    }
                    _ => self.reference(name),
                },
            });
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn reference(&self, name: &str) -> String {
        match name {
            "AWS::Region" => return REGION.to_owned(),
            "AWS::AccountId" => return ACCOUNT.to_owned(),
            "AWS::Partition" => return "aws".to_owned(),
            "AWS::URLSuffix" => return "amazonaws.com".to_owned(),
            "AWS::StackName" => return self.physical.stack.clone(),
            _ => {}
        }
        if let Some(parameter) = self.template.root["Parameters"].get(name) {
            return self.string(&parameter["Default"]);
        }
        let kind = self.template.resource(name)["Type"]
            .as_str()
            .unwrap_or_else(|| panic!("!Ref {name}: no such parameter or resource"));
        match kind {
            // A secret's and a state machine's Ref is their ARN.
            "AWS::SecretsManager::Secret" | "AWS::Serverless::StateMachine" => self.arn(name, kind),
            _ => self.name(name),
        }
    }

    fn name(&self, id: &str) -> String {
        if let Some(name) = self.physical.names.get(id) {
            return name.clone();
        }
        // A function named by the template is called so.
        let named = &self.template.resource(id)["Properties"]["FunctionName"];
        if !named.is_null() {
            return self.string(named);
        }
        format!("{}-{id}", self.physical.stack)
    }

    fn arn(&self, id: &str, kind: &str) -> String {
        if let Some(arn) = self.physical.arns.get(id) {
            return arn.clone();
        }
        let name = self.name(id);
        match kind {
            "AWS::DynamoDB::Table" => format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"),
            "AWS::S3::Bucket" => format!("arn:aws:s3:::{name}"),
            "AWS::Logs::LogGroup" => format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"),
            "AWS::Serverless::Function" => {
                format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
            }
            "AWS::Serverless::StateMachine" => {
                format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}")
            }
            other => panic!("no ARN for {id} ({other}) in the emulation"),
        }
    }

    fn attribute(&self, id: &str, attribute: &str) -> String {
        let kind = self.template.resource(id)["Type"]
            .as_str()
            .unwrap_or_else(|| panic!("!GetAtt {id}.{attribute}: no such resource"));
        match attribute {
            "Arn" => self.arn(id, kind),
            "StreamArn" => self
                .physical
                .streams
                .get(id)
                .cloned()
                .unwrap_or_else(|| panic!("{id} has no stream in the emulation")),
            "Name" => self.name(id),
            other => panic!("!GetAtt {id}.{other} is not emulated"),
        }
    }
}
