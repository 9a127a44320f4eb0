//! Settings of `taskgate serve`, from the environment (see README,
//! "Configuration"), read by clap like the shared settings
//! ([`taskgate_app::settings`]). Every value is checked at start-up, and a
//! bad one stops the server with a message naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;
use taskgate_app::settings::{
    ConfigError, NotOneOf, Settings, SettingsArgs, from_lookup, seconds, whole,
};
use taskgate_aws::TableNames;
use taskgate_domain::clock::{Clock, SystemClock};
use taskgate_domain::user::Username;
use taskgate_js::WorkerCommand;

/// Where data lives.
// Built once per process: the table names' size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// SQLite file `taskgate.db` in the data directory (the default).
    Embedded,
    /// Nothing persists: for demos and throwaway runs.
    Memory,
    /// DynamoDB: DynamoDB Local at `endpoint`, or AWS itself when `None`.
    /// Missing tables are created at start-up.
    DynamoDb {
        endpoint: Option<String>,
        tables: TableNames,
    },
}

/// Where files' bytes (uploads, exports) live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilesConfig {
    /// Under the data directory (the default).
    DataDir,
    /// In an S3 bucket: on AWS, or at `endpoint` (an S3-compatible server
    /// such as moto's, addressed path-style) when given.
    S3 {
        bucket: String,
        endpoint: Option<String>,
    },
}

/// What `taskgate serve` runs with. Each field's variable, default and
/// bounds are those of the [`ServeArgs`] argument of the same name.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub tls: bool,
    pub data_dir: PathBuf,
    /// With `TASKGATE_DYNAMODB_ENDPOINT` and the `TASKGATE_*_TABLE` names.
    pub store: StoreConfig,
    /// With `TASKGATE_FILES_BUCKET` and `TASKGATE_S3_ENDPOINT`.
    pub files: FilesConfig,
    pub admin_username: Username,
    pub admin_password: Option<SecretString>,
    pub max_requests_in_flight: usize,
    pub max_requests_per_address: usize,
    pub body_timeout: Duration,
    /// Settings shared with the Lambda functions.
    pub api: Settings,
    /// How to start a JavaScript worker: this binary with `js-worker`.
    pub js_worker: WorkerCommand,
    /// Where "now" comes from: the system clock (tests pass a manual one).
    pub clock: Arc<dyn Clock>,
}

/// The variables of `serve` (beside the shared [`SettingsArgs`]), read by
/// clap: each one's name, default, bounds and meaning declared once.
#[derive(Args, Clone, Debug)]
struct ServeArgs {
    /// Listen address.
    #[arg(long, env = "TASKGATE_ADDR", value_parser = address, default_value = "127.0.0.1:8443")]
    addr: SocketAddr,
    /// Where `GET /metrics` (Prometheus) is served, apart from the API;
    /// unset serves none.
    #[arg(long, env = "TASKGATE_METRICS_ADDR", value_parser = address)]
    metrics_addr: Option<SocketAddr>,
    /// `off` serves plain HTTP (behind a proxy, or for tests).
    #[arg(long, env = "TASKGATE_TLS", value_parser = on_off, default_value = "on", action = clap::ArgAction::Set)]
    tls: bool,
    /// Database, JWT signing key, TLS certificate and key.
    #[arg(long, env = "TASKGATE_DATA_DIR", default_value = "./.taskgate")]
    data_dir: PathBuf,
    /// `embedded` (SQLite file in the data directory), `memory` (nothing
    /// kept), `dynamodb`.
    #[arg(long, env = "TASKGATE_STORE", value_parser = store_kind, default_value = "embedded")]
    store: StoreKind,
    /// With `dynamodb`: DynamoDB Local's URL; unset means AWS itself.
    #[arg(long, env = "TASKGATE_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
    /// Keep files (uploads and exports) in this S3 bucket rather than
    /// under the data directory; unset keeps them there. Browsers download
    /// from the bucket, so it needs the CORS rule the template gives its
    /// FilesBucket.
    #[arg(long, env = "TASKGATE_FILES_BUCKET")]
    files_bucket: Option<String>,
    /// With a files bucket: an S3-compatible server's URL (e.g. moto's),
    /// addressed path-style; unset means AWS itself.
    #[arg(long, env = "TASKGATE_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// The first admin, created when no admin exists.
    #[arg(long, env = "TASKGATE_ADMIN_USERNAME", value_parser = username, default_value = "admin")]
    admin_username: Username,
    /// That admin's password (must meet the policy); generated and printed
    /// once when unset.
    #[arg(long, env = "TASKGATE_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Local server only: requests handled at once; more get 503
    /// `server-busy` with `Retry-After: 1`, before their body is read (so
    /// bodies in memory never exceed this many times the body limit).
    #[arg(long, env = "TASKGATE_MAX_REQUESTS_IN_FLIGHT", value_parser = whole::<usize>(1, 65_536), default_value = "256")]
    max_requests_in_flight: usize,
    /// Local server only: of those, how many one client address (IP) may
    /// hold; its next gets 429 `too-many-requests` with `Retry-After: 1`, so
    /// slow or greedy clients cannot starve the others.
    #[arg(long, env = "TASKGATE_MAX_REQUESTS_PER_ADDRESS", value_parser = whole::<usize>(1, 65_536), default_value = "32")]
    max_requests_per_address: usize,
    /// Local server only: how long a request body may take to arrive, in
    /// seconds (408 `request-timeout` after; its in-flight slot is free
    /// again).
    #[arg(long, env = "TASKGATE_BODY_TIMEOUT_SECONDS", value_parser = seconds(1, 3600), default_value = "30")]
    body_timeout_seconds: Duration,
    #[command(flatten)]
    api: SettingsArgs,
}

#[derive(Clone, Copy, Debug)]
enum StoreKind {
    Embedded,
    Memory,
    DynamoDb,
}

fn address(raw: &str) -> Result<SocketAddr, String> {
    raw.parse()
        .map_err(|_| format!("must be an address like 127.0.0.1:8443, not {raw:?}"))
}

fn on_off(raw: &str) -> Result<bool, NotOneOf> {
    match raw {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(NotOneOf {
            expected: "\"on\" or \"off\"",
            raw: raw.to_owned(),
        }),
    }
}

fn store_kind(raw: &str) -> Result<StoreKind, NotOneOf> {
    match raw {
        "embedded" => Ok(StoreKind::Embedded),
        "memory" => Ok(StoreKind::Memory),
        "dynamodb" => Ok(StoreKind::DynamoDb),
        _ => Err(NotOneOf {
            expected: "\"embedded\", \"memory\" or \"dynamodb\"",
            raw: raw.to_owned(),
        }),
    }
}

fn username(raw: &str) -> Result<Username, String> {
    Username::parse(raw).map_err(|e| e.to_string())
}

impl ServeConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let args: ServeArgs = from_lookup(&lookup)?;
        let store = match args.store {
            StoreKind::Embedded => StoreConfig::Embedded,
            StoreKind::Memory => StoreConfig::Memory,
            StoreKind::DynamoDb => StoreConfig::DynamoDb {
                endpoint: args.dynamodb_endpoint.filter(|e| !e.is_empty()),
                tables: TableNames::from_lookup(&lookup),
            },
        };
        let endpoint = args.s3_endpoint.filter(|e| !e.is_empty());
        let files = match args.files_bucket.filter(|b| !b.is_empty()) {
            None if endpoint.is_some() => {
                // An endpoint alone would be ignored: files would go to
                // the data directory while the operator meant a bucket.
                return Err(ConfigError::new(
                    "TASKGATE_S3_ENDPOINT",
                    "is for a files bucket; set TASKGATE_FILES_BUCKET too, or unset it",
                ));
            }
            None => FilesConfig::DataDir,
            Some(bucket) => FilesConfig::S3 { bucket, endpoint },
        };
        let js_worker = WorkerCommand::current_exe(&["js-worker"]).map_err(|e| {
            ConfigError::new(
                "the taskgate binary",
                format!("cannot find its own path to start script workers: {e}"),
            )
        })?;
        Ok(Self {
            addr: args.addr,
            metrics_addr: args.metrics_addr,
            tls: args.tls,
            data_dir: args.data_dir,
            store,
            files,
            admin_username: args.admin_username,
            admin_password: args.admin_password.map(SecretString::from),
            max_requests_in_flight: args.max_requests_in_flight,
            max_requests_per_address: args.max_requests_per_address,
            body_timeout: args.body_timeout_seconds,
            api: Settings::from_args(args.api)?,
            js_worker,
            clock: Arc::new(SystemClock),
        })
    }
}

#[cfg(test)]
mod tests {
    //! The README's configuration table and docs/limits.md, checked against
    //! the declarations: a setting added, renamed or given a new default
    //! without its documentation fails here.

    use std::collections::BTreeMap;

    use taskgate_app::settings::declared;

    use super::*;

    /// Variables read outside clap, and why.
    const READ_ELSEWHERE: [(&str, &str); 3] = [
        // The log filter, read by tracing_subscriber's EnvFilter before
        // anything else (the client's default is `warn`).
        ("TASKGATE_LOG", "info"),
        // Read by the console crate when its routes are built, which on a
        // Lambda cold start happens beside (not after) reading settings.
        ("TASKGATE_CONSOLE_WEBSOCKET_URL", ""),
        ("TASKGATE_CONSOLE_DOWNLOAD_ORIGIN", ""),
    ];

    /// Every variable the server reads, with its default as declared
    /// (`None`: none, or computed and described in the help) and its help.
    fn variables() -> BTreeMap<String, (Option<String>, String)> {
        let mut all: BTreeMap<_, _> = declared::<ServeArgs>()
            .into_iter()
            .map(|d| (d.variable, (d.default, d.help)))
            .collect();
        for (variable, name) in TableNames::with_prefix("taskgate").variables() {
            all.insert(variable.to_owned(), (Some(name.to_owned()), String::new()));
        }
        for (variable, default) in READ_ELSEWHERE {
            let default = (!default.is_empty()).then(|| default.to_owned());
            all.insert(variable.to_owned(), (default, String::new()));
        }
        all
    }

    fn read(relative: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The text between backticks in `cell`, each `` `…` `` once.
    fn quoted(cell: &str) -> Vec<&str> {
        cell.split('`').skip(1).step_by(2).collect()
    }

    /// The README's "Configure it" rows: variable → its default cell.
    fn readme_rows() -> BTreeMap<String, String> {
        let readme = read("../../README.md");
        let section = readme
            .split("\n## Configure it")
            .nth(1)
            .expect("README has a \"Configure it\" section");
        let section = section.split("\n## ").next().unwrap_or(section);
        let mut rows = BTreeMap::new();
        for line in section.lines().filter(|l| l.starts_with("| `TASKGATE_")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            assert!(cells.len() >= 3, "a row with too few cells: {line}");
            let names = quoted(cells[0]);
            let defaults: Vec<&str> = cells[1].split(" / ").collect();
            for (i, name) in names.iter().enumerate() {
                // `A` / `B` | `a` / `b`: each variable its own default.
                let default = if names.len() == defaults.len() {
                    defaults[i]
                } else {
                    cells[1]
                };
                let previous = rows.insert((*name).to_owned(), default.trim().to_owned());
                assert!(previous.is_none(), "{name} has two rows in the README");
            }
        }
        rows
    }

    #[test]
    fn the_readme_documents_every_variable_with_its_default() {
        let declared = variables();
        let rows = readme_rows();
        let undocumented: Vec<&String> =
            declared.keys().filter(|v| !rows.contains_key(*v)).collect();
        assert!(
            undocumented.is_empty(),
            "not in the README's table: {undocumented:?}"
        );
        let unknown: Vec<&String> = rows.keys().filter(|v| !declared.contains_key(*v)).collect();
        assert!(
            unknown.is_empty(),
            "in the README but read by nothing: {unknown:?}"
        );
        for (variable, (default, help)) in &declared {
            let cell = &rows[variable];
            let shown = quoted(cell)
                .first()
                .copied()
                .filter(|_| cell.starts_with('`'));
            match (default, shown) {
                (Some(default), _) => assert!(
                    cell.starts_with(&format!("`{default}`")),
                    "{variable}: the README says {cell}, the declared default is `{default}`"
                ),
                // A default that shrinks to fit another setting, or is
                // computed: the help says what it is.
                (None, Some(shown)) => assert!(
                    help.contains(&format!("Default {shown}")),
                    "{variable}: the README says {cell}, its help: {help:?}"
                ),
                (None, None) => {}
            }
        }
    }

    #[test]
    fn the_limits_document_names_only_declared_variables() {
        let declared = variables();
        let limits = read("../../docs/limits.md");
        let mut named = 0;
        for word in limits.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '*')) {
            let Some(rest) = word.strip_prefix("TASKGATE_") else {
                continue;
            };
            named += 1;
            // `TASKGATE_LOGIN_*` and `_PER_ADMIN`-style shorthands name a family.
            let family = rest.strip_suffix('*').or_else(|| rest.strip_suffix('_'));
            let known = match family {
                Some(prefix) => declared
                    .keys()
                    .any(|v| v.starts_with(&format!("TASKGATE_{prefix}"))),
                None => declared.contains_key(word),
            };
            assert!(known, "docs/limits.md names {word}, which nothing declares");
        }
        assert!(named > 20, "docs/limits.md names only {named} variables");
    }

    #[test]
    fn every_declaration_parses_its_own_default() {
        ServeArgs::augment_args(clap::Command::new("taskgate")).debug_assert();
        let config = ServeConfig::from_lookup(|_| None).expect("the defaults are valid");
        assert_eq!(config.addr, SocketAddr::from(([127, 0, 0, 1], 8443)));
        assert_eq!(config.max_requests_in_flight, 256);
        assert_eq!(config.api, Settings::default());
        assert!(config.tls);
        let lookup = |name: &str| (name == "TASKGATE_TLS").then(|| "off".to_owned());
        assert!(!ServeConfig::from_lookup(lookup).unwrap().tls);
    }

    #[test]
    fn files_go_to_a_bucket_only_when_one_is_named() {
        let with = |pairs: &'static [(&'static str, &'static str)]| {
            ServeConfig::from_lookup(move |name| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        assert_eq!(with(&[]).unwrap().files, FilesConfig::DataDir);
        assert_eq!(
            with(&[
                ("TASKGATE_FILES_BUCKET", "files"),
                ("TASKGATE_S3_ENDPOINT", "http://127.0.0.1:5000")
            ])
            .unwrap()
            .files,
            FilesConfig::S3 {
                bucket: "files".into(),
                endpoint: Some("http://127.0.0.1:5000".into())
            }
        );
        let e = with(&[("TASKGATE_S3_ENDPOINT", "http://127.0.0.1:5000")]).unwrap_err();
        assert_eq!(e.name, "TASKGATE_S3_ENDPOINT");
    }
}
