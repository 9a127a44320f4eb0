//! `taskgate`: the local server ([`taskgate_server`]), the admin tools
//! ([`taskgate_tools`]) and the command-line client ([`taskgate_client`])
//! in one program: this file only parses the command line and hands each
//! command to its crate. See `taskgate --help`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use taskgate_server::{ServeConfig, server};
use taskgate_tools::AuditCommand;
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
    connection: taskgate_client::Connection,
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
    Client(taskgate_client::Command),
}

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
        Command::CreateTables => runtime.block_on(taskgate_tools::create_tables()),
        Command::CreateAdmin => runtime.block_on(taskgate_tools::create_admin()),
        Command::Audit { command } => {
            return runtime.block_on(taskgate_tools::audit_command(command));
        }
        Command::Backup { path } => taskgate_tools::backup(&path),
        Command::Client(command) => {
            return runtime.block_on(taskgate_client::run(cli.connection, command));
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
