//! `taskgate`: the local server and admin tools. See `taskgate --help`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use taskgate::{ServeConfig, server};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "taskgate",
    version,
    about = "Authenticated long-running tasks: local server and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API as a local HTTPS server (configured by TASKGATE_* variables; see README).
    Serve,
    /// Run one script from stdin in the sandbox (started by the server itself).
    #[command(hide = true)]
    JsWorker {
        /// The task the script belongs to (shown in `ps`; not used otherwise).
        #[arg(long)]
        task: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::JsWorker { .. } = cli.command {
        // No logging, no runtime: the worker limits itself and runs one script.
        return taskgate_js::worker::main();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("TASKGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
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
    let result = runtime.block_on(match cli.command {
        Command::Serve => serve(),
        Command::JsWorker { .. } => unreachable!("handled above"),
    });
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

    let handle = server.handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("taskgate: shutting down");
        handle.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
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
