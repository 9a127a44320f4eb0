//! # Taskgate's admin tools
//!
//! What `taskgate create-tables`, `create-admin`, `audit` and `backup` do,
//! on the store `taskgate serve` is configured with (the same
//! `TASKGATE_*` variables). The binary parses the command line and calls
//! these; each prints its report.
//!
//! - [`audit`]: verify every log, replay a task or item, read the security
//!   log.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Subcommand;
use secrecy::ExposeSecret;
use taskgate_domain::security::SecurityKind;
use taskgate_server::ServeConfig;

pub mod audit;

#[derive(Subcommand)]
pub enum AuditCommand {
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
pub const AUDIT_FAILED: u8 = 2;

/// `taskgate backup PATH`: copies the embedded store into `into`.
pub fn backup(into: &std::path::Path) -> anyhow::Result<()> {
    let config = ServeConfig::from_env()?;
    if config.store != taskgate_server::StoreConfig::Embedded {
        anyhow::bail!(
            "backup copies the embedded store; on DynamoDB use its point-in-time recovery \
             (enabled on every table of the stack)"
        );
    }
    let report = taskgate_server::data_dir::backup(&config.data_dir, into)?;
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

/// `taskgate audit …`: the exit code says whether the logs are sound.
pub async fn audit_command(command: AuditCommand) -> ExitCode {
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
    let store =
        taskgate_server::store::open(&config, taskgate_server::store::Purpose::Audit).await?;
    match command {
        AuditCommand::Verify => {
            let report = crate::audit::verify_log(store.as_ref()).await?;
            for (task, violation) in &report.violations {
                println!("task {task}: {violation}");
            }
            let projects = crate::audit::verify_projects(store.as_ref()).await?;
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
                && let Some(replay) = crate::audit::replay_item(store.as_ref(), &item).await?
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
            let Some(loaded) = crate::audit::replay_task(store.as_ref(), &id, at).await? else {
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
            let filter = crate::audit::SecurityFilter {
                subject: subject.map(|s| s.to_lowercase()),
                kinds: kind,
            };
            let mut out = std::io::stdout().lock();
            let printed = crate::audit::security_events(store.as_ref(), &filter, limit, |event| {
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

/// `taskgate create-tables`: creates the missing DynamoDB tables.
pub async fn create_tables() -> anyhow::Result<()> {
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

/// `taskgate create-admin`: the first admin, when there is none.
pub async fn create_admin() -> anyhow::Result<()> {
    let config = ServeConfig::from_env()?;
    let store =
        taskgate_server::store::open(&config, taskgate_server::store::Purpose::Audit).await?;
    // The state is only used to hash the password; its signing key is never used.
    let mut key = [0u8; 64];
    rand::fill(&mut key);
    let state = taskgate_api::AppState::new(
        store,
        &secrecy::SecretSlice::from(key.to_vec()),
        config.api.clone(),
    )?;
    match taskgate_server::bootstrap::ensure_first_admin(
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
