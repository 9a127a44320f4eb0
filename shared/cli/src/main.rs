//! `taskgate`: the local server, admin tools and the command-line client.
//! See `taskgate --help`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use taskgate::{ServeConfig, server};
use taskgate_domain::security::SecurityKind;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "taskgate",
    version,
    about = "Authenticated long-running tasks: local server, tools and client",
    after_help = "Client exit codes: 0 success; 1 the task failed or was cancelled; 2 usage; \
        3 authentication; 4 not found or forbidden; 5 refused or failed otherwise (conflict, \
        invalid input, server or network error); 130 a watch stopped by Ctrl-C."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connection: taskgate::client::Connection,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API as a local HTTPS server (configured by TASKGATE_* variables; see README).
    Serve,
    /// Create the first admin in the configured store if it has no admin (as
    /// `serve` does at start): for a deployment, point TASKGATE_STORE=dynamodb and
    /// the TASKGATE_*_TABLE names at the stack's tables. Prints a generated
    /// password once unless TASKGATE_ADMIN_PASSWORD is set.
    CreateAdmin,
    /// Create the DynamoDB tables if they are missing (TASKGATE_DYNAMODB_ENDPOINT
    /// for DynamoDB Local, else AWS; names from TASKGATE_*_TABLE), and claim
    /// the e-mail addresses of users written before addresses were unique.
    CreateTables,
    /// Check the task event log of the configured store, replay one task, or
    /// read the security log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Copy the embedded store (database, signing key, certificate, files)
    /// into a new directory PATH, consistently, while the server runs. To
    /// restore, stop the server and use PATH as TASKGATE_DATA_DIR (or copy
    /// its contents into the data directory).
    Backup {
        /// A directory that does not exist yet (or is empty).
        path: std::path::PathBuf,
    },
    /// Print the API's OpenAPI 3.1 document (as served at /openapi.json; kept
    /// in docs/openapi.json).
    Openapi,
    /// Run one script from stdin in the sandbox (started by the server itself).
    #[command(hide = true)]
    JsWorker {
        /// The task the script belongs to (shown in `ps`; not used otherwise).
        #[arg(long)]
        task: Option<String>,
    },
    #[command(flatten)]
    Client(taskgate::client::Command),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Replay every task's events and report each broken invariant (seq gaps,
    /// a first event that is not `created`, a second terminal event, events
    /// after the terminal one, a broken hash chain); check every project's
    /// and item's log the same way and that each stored row is its log's
    /// fold. Exits 1 if anything is wrong.
    Verify,
    /// Print a task's events and the state they fold to, now or --at a
    /// time; or a work item's history and state.
    Replay {
        /// The task's (or work item's) id.
        task_id: String,
        /// An RFC 3339 time, e.g. 2026-11-21T18:00:00Z: replay only the events up to it.
        #[arg(long)]
        at: Option<String>,
    },
    /// Print the security log (logins, lockouts, account and token changes),
    /// newest first, one JSON object per line.
    Security {
        /// Only events about this username (logins as typed, accounts changed).
        #[arg(long)]
        subject: Option<String>,
        /// Only events of this kind, e.g. login-failed (may be repeated).
        #[arg(long, value_parser = parse_kind)]
        kind: Vec<SecurityKind>,
        /// Stop after this many events (after filtering); default: all.
        #[arg(long)]
        limit: Option<usize>,
    },
}

fn parse_kind(raw: &str) -> Result<SecurityKind, String> {
    SecurityKind::parse(raw).ok_or_else(|| {
        let known: Vec<&str> = SecurityKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("known kinds: {}", known.join(", "))
    })
}

/// Exit status when the audit could not run (as opposed to finding problems).
const AUDIT_FAILED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::JsWorker { .. } = cli.command {
        // No logging, no runtime: the worker limits itself and runs one script.
        return taskgate_js::worker::main();
    }
    if let Command::Openapi = cli.command {
        print!("{}", taskgate_api::openapi::document_json());
        return ExitCode::SUCCESS;
    }
    // The client says what it does itself; the server logs at info.
    let default_level = if matches!(cli.command, Command::Client(_)) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("TASKGATE_LOG")
                .unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("taskgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve => runtime.block_on(serve()),
        Command::CreateTables => runtime.block_on(create_tables()),
        Command::CreateAdmin => runtime.block_on(create_admin()),
        Command::Audit { command } => return runtime.block_on(audit(command)),
        Command::Backup { path } => backup(&path),
        Command::Client(command) => {
            return runtime.block_on(taskgate::client::run(cli.connection, command));
        }
        Command::JsWorker { .. } | Command::Openapi => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("taskgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = ServeConfig::from_env()?;
    let data_dir = config.data_dir.clone();
    let tls = config.tls;
    let server = server::start(config).await?;

    if let Some(admin) = &server.first_admin {
        match &admin.generated_password {
            Some(password) => eprintln!(
                "\nCreated the first admin account.\n  username: {}\n  password: {}\n\
                 This password is shown only once. Change it with PATCH /users/{}.\n",
                admin.username,
                password.expose_secret(),
                admin.username
            ),
            None => eprintln!(
                "\nCreated the first admin account {} with the password from TASKGATE_ADMIN_PASSWORD.\n",
                admin.username
            ),
        }
    }
    eprintln!("Taskgate is listening on {}", server.url());
    if tls {
        eprintln!(
            "  self-signed certificate: {}  (e.g. curl --cacert {} {}/)",
            data_dir.join(server::TLS_CERT_FILE).display(),
            data_dir.join(server::TLS_CERT_FILE).display(),
            server.url().replace("127.0.0.1", "localhost"),
        );
    }

    let stopper = server.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        // stderr may be gone (a closed terminal or pipe): never panic here.
        let _ = writeln!(std::io::stderr(), "taskgate: shutting down");
        stopper.stop();
    });
    server.wait().await
}

fn backup(into: &std::path::Path) -> anyhow::Result<()> {
    let config = ServeConfig::from_env()?;
    if config.store != taskgate::StoreConfig::Embedded {
        anyhow::bail!(
            "backup copies the embedded store; on DynamoDB use its point-in-time recovery \
             (enabled on every table of the stack)"
        );
    }
    let report = taskgate::data_dir::backup(&config.data_dir, into)?;
    eprintln!(
        "backed up {} into {}: {} database pages, {} files{}",
        config.data_dir.display(),
        into.display(),
        report.pages,
        report.files,
        if report.missing.is_empty() {
            String::new()
        } else {
            format!(
                " ({} deleted while copying: {})",
                report.missing.len(),
                report.missing.join(", ")
            )
        }
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

async fn audit(command: AuditCommand) -> ExitCode {
    match run_audit(command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("taskgate audit: {e:#}");
            ExitCode::from(AUDIT_FAILED)
        }
    }
}

async fn run_audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    let config = ServeConfig::from_env()?;
    let store = taskgate::store::open(&config, taskgate::store::Purpose::Audit).await?;
    match command {
        AuditCommand::Verify => {
            let report = taskgate::audit::verify_log(store.as_ref()).await?;
            for (task, violation) in &report.violations {
                println!("task {task}: {violation}");
            }
            let projects = taskgate::audit::verify_projects(store.as_ref()).await?;
            for (what, problem) in &projects.problems {
                println!("{what}: {problem}");
            }
            if projects.problems.is_empty() {
                println!(
                    "checked {} projects, {} items, {} entries: every log is sound and every row is its log's fold",
                    projects.projects, projects.items, projects.entries
                );
            } else {
                println!(
                    "checked {} projects, {} items, {} entries: {} problems",
                    projects.projects,
                    projects.items,
                    projects.entries,
                    projects.problems.len()
                );
            }
            let broken: std::collections::BTreeSet<_> =
                report.violations.iter().map(|(t, _)| t).collect();
            if report.is_sound() {
                println!(
                    "checked {} tasks, {} events: the log is sound",
                    report.tasks, report.events
                );
                Ok(if projects.problems.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            } else {
                println!(
                    "checked {} tasks, {} events: {} problems in {} tasks",
                    report.tasks,
                    report.events,
                    report.violations.len(),
                    broken.len()
                );
                Ok(ExitCode::FAILURE)
            }
        }
        AuditCommand::Replay { task_id, at } => {
            let id = taskgate_domain::task::TaskId::parse(&task_id)
                .map_err(|_| anyhow::anyhow!("{task_id:?} is not a task id"))?;
            // Not a task: perhaps a work item (ids look alike).
            if store.task_events(&id).await?.is_empty()
                && let Ok(item) = taskgate_domain::project::ItemId::parse(&task_id)
                && let Some(replay) = taskgate::audit::replay_item(store.as_ref(), &item).await?
            {
                println!("{}", serde_json::to_string_pretty(&replay)?);
                let sound = replay["violations"].as_array().is_some_and(Vec::is_empty);
                return Ok(if sound {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            let at = at
                .map(|raw| {
                    taskgate_domain::timestamp::parse(&raw)
                        .map_err(|e| anyhow::anyhow!("--at {raw:?} is not an RFC 3339 time: {e}"))
                })
                .transpose()?;
            let Some(loaded) = taskgate::audit::replay_task(store.as_ref(), &id, at).await? else {
                anyhow::bail!("there is no task {id}");
            };
            println!("{}", serde_json::to_string_pretty(&loaded.view())?);
            Ok(if loaded.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Security {
            subject,
            kind,
            limit,
        } => {
            let filter = taskgate::audit::SecurityFilter {
                subject: subject.map(|s| s.to_lowercase()),
                kinds: kind,
            };
            let mut out = std::io::stdout().lock();
            let printed =
                taskgate::audit::security_events(store.as_ref(), &filter, limit, |event| {
                    use std::io::Write as _;
                    let line = serde_json::to_string(event).expect("an event always serialises");
                    writeln!(out, "{line}")
                })
                .await?;
            eprintln!("{printed} events");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn create_tables() -> anyhow::Result<()> {
    let endpoint = std::env::var("TASKGATE_DYNAMODB_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let tables = taskgate_aws::TableNames::from_env();
    let sdk = taskgate_aws::load_sdk_config(endpoint.as_deref()).await;
    let client = taskgate_aws::dynamodb_client(&sdk, endpoint.as_deref());
    taskgate_aws::ensure_tables(&client, &tables).await?;
    for table in tables.all() {
        println!("table {table} is ready");
    }
    // Users written before e-mail addresses were claimed get their claims.
    let claimed = taskgate_aws::DynamoStore::new(client, tables)
        .backfill_email_claims()
        .await?;
    if claimed > 0 {
        println!("claimed the e-mail addresses of {claimed} existing users");
    }
    Ok(())
}

async fn create_admin() -> anyhow::Result<()> {
    let config = ServeConfig::from_env()?;
    let store = taskgate::store::open(&config, taskgate::store::Purpose::Audit).await?;
    // The state is only used to hash the password; its signing key is never used.
    let mut key = [0u8; 64];
    rand::fill(&mut key);
    let state = taskgate_api::AppState::new(
        store,
        &secrecy::SecretSlice::from(key.to_vec()),
        config.api.clone(),
    )?;
    match taskgate::bootstrap::ensure_first_admin(
        &state,
        &config.admin_username,
        config.admin_password.as_ref(),
    )
    .await?
    {
        None => println!("an admin already exists; nothing was created"),
        Some(admin) => match &admin.generated_password {
            Some(password) => println!(
                "created the admin {}\n  password: {}\nThis password is shown only once.",
                admin.username,
                password.expose_secret()
            ),
            None => println!(
                "created the admin {} with the password from TASKGATE_ADMIN_PASSWORD",
                admin.username
            ),
        },
    }
    Ok(())
}
