//! The command-line client: `taskgate login`, `tasks`, `files`,
//! `projects`, `members`, `items`, `users`, in the same binary as `serve`
//! (one program to install; the server's commands and the client's do not
//! overlap). It talks to the API over HTTPS like any client would; see the
//! README's "Use it" and `taskgate help <command>`.
//!
//! Exit codes: 0 success; 1 the task failed or was cancelled; 2 usage (a
//! bad command line); 3 authentication (not logged in, token refused); 4
//! not found or forbidden; 5 anything else the server refused or could not
//! do (a conflict, invalid input, a server or network failure); 130 a watch
//! stopped by Ctrl-C (the task keeps running).

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::json;
use taskgate_domain::file::FileId;
use taskgate_domain::project::{
    Description, DueDate, ItemStatus, ProjectId, ProjectName, ProjectRole, Title,
};
use taskgate_domain::task::TaskKind;
use taskgate_domain::user::{Email, InvalidValue, Level, Username};
use taskgate_views::body;

mod api;
mod config;
mod output;
mod transfer;
mod watch;

pub use api::DEFAULT_SERVER;
use api::{Answer, Api};
use taskgate_views::owned::{
    File, Hello, Item, ItemEvent, LoginResponse, Member, Project, Task, TaskEvent, User,
};
use taskgate_views::{List, Page as PageOf};

/// Why a client command did not succeed; each kind has its exit code.
#[derive(Debug)]
pub enum Failure {
    TaskFailed(String),
    Usage(String),
    Auth(String),
    Missing(String),
    Other(String),
    Interrupted(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Self::TaskFailed(_) => 1,
            Self::Usage(_) => 2,
            Self::Auth(_) => 3,
            Self::Missing(_) => 4,
            Self::Other(_) => 5,
            Self::Interrupted(_) => 130,
        }
    }

    fn message(&self) -> &str {
        match self {
            Self::TaskFailed(m)
            | Self::Usage(m)
            | Self::Auth(m)
            | Self::Missing(m)
            | Self::Other(m)
            | Self::Interrupted(m) => m,
        }
    }
}

/// Where the client connects and how it prints: flags of every client
/// command.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// The server's URL [env: TASKGATE_URL; default: the local server, https://localhost:8443].
    #[arg(long, global = true)]
    server: Option<String>,
    /// A PEM certificate to trust besides the system's (the local server's
    /// own is found in its data directory, .taskgate/ or $TASKGATE_DATA_DIR).
    #[arg(long, global = true, value_name = "PATH")]
    cacert: Option<PathBuf>,
    /// Print the API's JSON answers instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Log in and keep the token (in ~/.config/taskgate, readable by you alone).
    Login {
        /// Your username (asked for when not given).
        #[arg(long, short)]
        username: Option<String>,
        /// Read the password from the first line of stdin instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Log out: the token stops working at once, and is forgotten here.
    Logout,
    /// Who the saved token belongs to.
    Whoami,
    /// Long-running tasks: delays, scripts, exports.
    Tasks {
        #[command(subcommand)]
        command: TasksCommand,
    },
    /// Files: resumable uploads, downloads.
    Files {
        #[command(subcommand)]
        command: FilesCommand,
    },
    /// Projects (teams' work items live in them).
    Projects {
        #[command(subcommand)]
        command: ProjectsCommand,
    },
    /// A project's members and their roles.
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Work items: a project's to-dos, filtered and sorted.
    Items {
        #[command(subcommand)]
        command: ItemsCommand,
    },
    /// Accounts (admins; everyone may read their own).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Args, Debug)]
pub struct Page {
    /// At most this many (1 to 100).
    #[arg(long)]
    limit: Option<u32>,
    /// Continue after a previous page (its `next`).
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// Start a task (and follow it with --watch).
    Start {
        #[command(subcommand)]
        task: NewTask,
        /// Follow the task to its end, showing its progress.
        #[arg(long, short, global = true)]
        watch: bool,
    },
    /// Your tasks, newest first.
    List {
        /// Only tasks with this status.
        #[arg(long)]
        status: Option<String>,
        /// Admins: a plain user's tasks.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        page: Page,
    },
    /// One task.
    Get { id: String },
    /// Cancel a task (it stops at once).
    Cancel { id: String },
    /// A task's history, event by event.
    Events { id: String },
    /// Follow a task to its end, showing its progress; exits 1 if it fails.
    Watch { id: String },
}

#[derive(Subcommand, Debug)]
pub enum NewTask {
    /// Wait SECONDS, then succeed.
    Delay { seconds: f64 },
    /// Run JavaScript (admins): from FILE, or `-` for stdin, or --code.
    Js {
        /// A file with the script, or `-` to read it from stdin.
        file: Option<PathBuf>,
        /// The script itself.
        #[arg(long, conflicts_with = "file")]
        code: Option<String>,
    },
    /// Export a project's items (--project, csv or ndjson) or some of your
    /// files (--file, zip) into a new file of yours.
    Export {
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        project: Option<String>,
        /// A file to put in the zip (repeat for more).
        #[arg(long = "file")]
        file: Vec<String>,
        /// csv or ndjson for a project (default csv); zip for files.
        #[arg(long)]
        format: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum FilesCommand {
    /// Upload a file (tus); run it again after a cut to resume, or with
    /// --abort to give it up.
    Upload {
        path: PathBuf,
        /// The name it gets (default: the file's).
        #[arg(long)]
        name: Option<String>,
        /// Its media type, e.g. text/csv.
        #[arg(long = "type")]
        content_type: Option<String>,
        /// Bytes per request (4 MiB fits a Lambda; larger is faster locally).
        #[arg(long, default_value_t = 4 << 20)]
        chunk_size: u64,
        /// Send at most this many bytes per second.
        #[arg(long, value_name = "BYTES_PER_SECOND")]
        limit_rate: Option<u64>,
        /// Abort this file's unfinished upload instead (nothing of it remains).
        #[arg(long)]
        abort: bool,
    },
    /// Download a file (resumes an interrupted download of it).
    Download {
        id: String,
        /// Where to write it (a file, or a directory; default: its name, here).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Your files and unfinished uploads, newest first.
    List {
        /// Admins: a plain user's files.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        page: Page,
    },
    /// One file's record.
    Get { id: String },
    /// Delete a file, or abort an unfinished upload.
    Rm { id: String },
}

#[derive(Subcommand, Debug)]
pub enum ProjectsCommand {
    /// Your projects (admins: --all for every project).
    List {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        page: Page,
    },
    /// Create a project (you become its owner and admin).
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    Get {
        id: String,
    },
    /// Rename, describe, or hand over a project.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// A project admin to make the owner.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Delete a project (its owner only).
    Delete {
        id: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Role {
    Member,
    Admin,
}

#[derive(Subcommand, Debug)]
pub enum MembersCommand {
    List {
        project: String,
    },
    /// Add a member, or change their role.
    Add {
        project: String,
        username: String,
        #[arg(long, value_enum, default_value = "member")]
        role: Role,
    },
    /// Remove a member (their items become unassigned).
    Remove {
        project: String,
        username: String,
    },
}

#[derive(Args, Debug)]
pub struct ItemFields {
    #[arg(long)]
    description: Option<String>,
    /// pending, in_progress or completed.
    #[arg(long)]
    status: Option<String>,
    /// YYYY-MM-DD.
    #[arg(long)]
    due: Option<String>,
    /// A member's username.
    #[arg(long)]
    assignee: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ItemsCommand {
    /// A project's items (or, without PROJECT, yours across projects).
    List {
        project: Option<String>,
        /// Statuses, comma-separated: pending,in_progress,completed.
        #[arg(long)]
        status: Option<String>,
        /// overdue, today or future.
        #[arg(long)]
        due: Option<String>,
        /// An IANA time zone for --due (default UTC).
        #[arg(long)]
        tz: Option<String>,
        /// A username, `me` or `none`.
        #[arg(long)]
        assignee: Option<String>,
        /// due_date, status or created_at; `-` first for descending.
        #[arg(long, allow_hyphen_values = true)]
        sort: Option<String>,
        #[command(flatten)]
        page: Page,
    },
    Create {
        project: String,
        title: String,
        #[command(flatten)]
        fields: ItemFields,
    },
    Get {
        project: String,
        item: String,
    },
    Update {
        project: String,
        item: String,
        #[arg(long)]
        title: Option<String>,
        #[command(flatten)]
        fields: ItemFields,
        /// Clear the due date, description or assignee (repeatable).
        #[arg(long, value_name = "FIELD")]
        clear: Vec<String>,
    },
    Delete {
        project: String,
        item: String,
    },
    /// An item's history.
    Events {
        project: String,
        item: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    List {
        #[command(flatten)]
        page: Page,
    },
    Get {
        username: String,
    },
    /// Create an account (its password asked for, or read with --password-stdin).
    Create {
        username: String,
        #[arg(long, default_value = "user")]
        level: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    Delete {
        username: String,
    },
}

/// Runs a client command; its exit code.
pub async fn run(connection: Connection, command: Command) -> ExitCode {
    match dispatch(&connection, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("taskgate: {}", failure.message());
            ExitCode::from(failure.code())
        }
    }
}

fn api(connection: &Connection) -> Result<Api, Failure> {
    let server = connection
        .server
        .clone()
        .or_else(|| std::env::var("TASKGATE_URL").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    Api::new(
        &server,
        connection.cacert.as_deref(),
        config::Store::open()?,
    )
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!(
            "?{}",
            serde_urlencoded::to_string(pairs).expect("strings encode")
        )
    }
}

fn page(page: &Page) -> [(&'static str, Option<String>); 2] {
    [
        ("limit", page.limit.map(|l| l.to_string())),
        ("cursor", page.cursor.clone()),
    ]
}

/// A password: the first line of stdin, or asked for without echo.
fn read_password(from_stdin: bool, prompt: &str) -> Result<String, Failure> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::Usage(format!("cannot read the password from stdin: {e}")))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(
            "there is no terminal to ask for the password: pass --password-stdin".into(),
        ));
    }
    rpassword::prompt_password(prompt)
        .map_err(|e| Failure::Usage(format!("cannot read the password: {e}")))
}

/// Logs in as `username` (asked for when not given) and keeps the token.
async fn login(
    api: &mut Api,
    username: Option<String>,
    password_stdin: bool,
    json: bool,
) -> Result<(), Failure> {
    let username = match username {
        Some(name) => name,
        None if std::io::stdin().is_terminal() => {
            eprint!("Username: ");
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            line.trim().to_owned()
        }
        None => return Err(Failure::Usage("give --username".into())),
    };
    let password = read_password(password_stdin, "Password: ")?;
    let answer: LoginResponse = api
        .json(api.http.post(api.url("/auth")).json(&body::Login {
            username: Some(username.clone()),
            email: None,
            password: body::Secret::new(password),
            device_token: None,
        }))
        .await?
        .value;
    let credentials = config::Credentials {
        username: username.clone(),
        token: answer.token.to_string(),
        expires_at: Some(answer.expires_at.clone()),
    };
    api.store.save_credentials(&api.base, credentials.clone())?;
    api.credentials = Some(credentials);
    if json {
        let shown = LoginResponse {
            token: "(saved)".into(),
            ..answer
        };
        println!("{}", serde_json::to_string(&shown).expect("views print"));
    } else {
        eprintln!(
            "logged in to {} as {username} (until {}); the token is in {}",
            api.base,
            answer.expires_at,
            api.store.path().join("credentials.json").display()
        );
    }
    Ok(())
}

async fn dispatch(connection: &Connection, command: Command) -> Result<(), Failure> {
    let json = connection.json;
    let mut api = api(connection)?;
    // At a terminal, a command that needs a token logs in first.
    let needs_token = !matches!(command, Command::Login { .. } | Command::Logout);
    if needs_token
        && api.credentials.is_none()
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
    {
        eprintln!("Not logged in to {}; log in first.", api.base);
        login(&mut api, None, false, false).await?;
    }
    let api = api;
    match command {
        Command::Login {
            username,
            password_stdin,
        } => {
            let mut api = api;
            login(&mut api, username, password_stdin, json).await
        }
        Command::Logout => {
            if api.credentials.is_some() {
                // The token stops working; forget it here whatever the answer.
                let revoked = api.send(api.request(Method::DELETE, "/auth")?).await;
                api.store.forget_credentials(&api.base)?;
                match revoked {
                    Ok(_) | Err(Failure::Auth(_)) => println!("logged out of {}", api.base),
                    Err(e) => return Err(e),
                }
            } else {
                println!("not logged in to {}", api.base);
            }
            Ok(())
        }
        Command::Whoami => {
            let hello: Hello = api.json(api.request(Method::GET, "/")?).await?.value;
            let Some(user) = hello.user else {
                return Err(Failure::Auth(format!(
                    "the saved token for {} is no longer good: run `taskgate login`",
                    api.base
                )));
            };
            if json {
                println!("{}", serde_json::to_string(&user).expect("views print"));
            } else {
                println!("{} ({}) on {}", user.username, user.level, api.base);
            }
            Ok(())
        }
        Command::Tasks { command } => tasks(&api, json, command).await,
        Command::Files { command } => files(&api, json, command).await,
        Command::Projects { command } => projects(&api, json, command).await,
        Command::Members { command } => members(&api, json, command).await,
        Command::Items { command } => items(&api, json, command).await,
        Command::Users { command } => users(&api, json, command).await,
    }
}

async fn tasks(api: &Api, json: bool, command: TasksCommand) -> Result<(), Failure> {
    match command {
        TasksCommand::Start { task, watch } => {
            let body = match task {
                NewTask::Delay { seconds } => body::StartTask {
                    seconds: Some(seconds),
                    ..body::StartTask::of(TaskKind::Delay)
                },
                NewTask::Js { file, code } => {
                    let code = match (code, file) {
                        (Some(code), _) => code,
                        (None, Some(path)) if path.as_os_str() == "-" => {
                            let mut code = String::new();
                            std::io::Read::read_to_string(&mut std::io::stdin(), &mut code)
                                .map_err(|e| Failure::Usage(format!("cannot read stdin: {e}")))?;
                            code
                        }
                        (None, Some(path)) => std::fs::read_to_string(&path).map_err(|e| {
                            Failure::Usage(format!("cannot read {}: {e}", path.display()))
                        })?,
                        (None, None) => {
                            return Err(Failure::Usage(
                                "give the script: a FILE, `-` for stdin, or --code".into(),
                            ));
                        }
                    };
                    body::StartTask {
                        code: Some(code),
                        ..body::StartTask::of(TaskKind::Js)
                    }
                }
                NewTask::Export {
                    project,
                    file,
                    format,
                } => match project {
                    Some(project) => body::StartTask {
                        project: Some(field("project", ProjectId::parse(&project))?),
                        format: Some(format.unwrap_or_else(|| "csv".into())),
                        ..body::StartTask::of(TaskKind::Export)
                    },
                    None => body::StartTask {
                        files: Some(
                            file.iter()
                                .map(|id| {
                                    field(
                                        "files",
                                        FileId::parse(id).map_err(|_| {
                                            InvalidValue(format!("{id:?} is not a file id"))
                                        }),
                                    )
                                })
                                .collect::<Result<_, _>>()?,
                        ),
                        format: Some(format.unwrap_or_else(|| "zip".into())),
                        ..body::StartTask::of(TaskKind::Export)
                    },
                },
            };
            let task: Answer<Task> = api
                .json(api.request(Method::POST, "/tasks")?.json(&body))
                .await?;
            let id = &task.value.id;
            if watch {
                let done = watch::watch(api, id).await?;
                return watch::report(json, &done);
            }
            if json {
                println!("{}", task.json);
            } else {
                println!(
                    "started {} task {id} ({}); follow it with: taskgate tasks watch {id}",
                    task.value.kind.as_str(),
                    task.value.status.as_str()
                );
            }
            Ok(())
        }
        TasksCommand::List {
            status,
            owner,
            page: p,
        } => {
            let [limit, cursor] = page(&p);
            let path = format!(
                "/tasks{}",
                query(&[("status", status), ("owner", owner), limit, cursor])
            );
            let answer: Answer<PageOf<Task>> = api.json(api.request(Method::GET, &path)?).await?;
            output::page(json, &answer, output::TASKS);
            Ok(())
        }
        TasksCommand::Get { id } => {
            let task: Answer<Task> = api
                .json(api.request(Method::GET, &format!("/tasks/{id}"))?)
                .await?;
            output::object(json, &task);
            Ok(())
        }
        TasksCommand::Cancel { id } => {
            let task: Answer<Task> = api
                .json(api.request(Method::POST, &format!("/tasks/{id}/cancel"))?)
                .await?;
            if json {
                println!("{}", task.json);
            } else {
                println!("task {id} is {}", task.value.status.as_str());
            }
            Ok(())
        }
        TasksCommand::Events { id } => {
            let events: Answer<List<TaskEvent>> = api
                .json(api.request(Method::GET, &format!("/tasks/{id}/events"))?)
                .await?;
            output::list(json, &events, output::TASK_EVENTS);
            Ok(())
        }
        TasksCommand::Watch { id } => {
            let done = watch::watch(api, &id).await?;
            watch::report(json, &done)
        }
    }
}

async fn files(api: &Api, json: bool, command: FilesCommand) -> Result<(), Failure> {
    match command {
        FilesCommand::Upload {
            path,
            name,
            content_type,
            chunk_size,
            limit_rate,
            abort,
        } => {
            if abort {
                let location = transfer::abort(api, &path).await?;
                println!("aborted the upload {location}: nothing of it remains");
                return Ok(());
            }
            let file = transfer::upload(
                api,
                transfer::Upload {
                    path: &path,
                    name,
                    content_type,
                    chunk: chunk_size,
                    limit_rate,
                },
            )
            .await?;
            if json {
                println!("{}", file.json);
            } else {
                println!(
                    "uploaded {} as {} ({}, sha256 {})",
                    path.display(),
                    file.value.id,
                    output::bytes(file.value.size),
                    file.value.sha256.as_deref().unwrap_or("?")
                );
            }
            Ok(())
        }
        FilesCommand::Download { id, output: out } => {
            let written = transfer::download(api, &id, out).await?;
            if json {
                println!("{}", json!({"file": id, "path": written}));
            } else {
                println!("downloaded {id} to {}", written.display());
            }
            Ok(())
        }
        FilesCommand::List { owner, page: p } => {
            let [limit, cursor] = page(&p);
            let path = format!("/files{}", query(&[("owner", owner), limit, cursor]));
            let answer: Answer<PageOf<File>> = api.json(api.request(Method::GET, &path)?).await?;
            output::page(json, &answer, output::FILES);
            Ok(())
        }
        FilesCommand::Get { id } => {
            let file: Answer<File> = api
                .json(api.request(Method::GET, &format!("/files/{id}"))?)
                .await?;
            output::object(json, &file);
            Ok(())
        }
        FilesCommand::Rm { id } => {
            api.send(
                api.request(Method::DELETE, &format!("/files/{id}"))?
                    .header("tus-resumable", "1.0.0"),
            )
            .await?;
            if !json {
                println!("deleted {id}");
            }
            Ok(())
        }
    }
}

async fn projects(api: &Api, json: bool, command: ProjectsCommand) -> Result<(), Failure> {
    match command {
        ProjectsCommand::List { all, page: p } => {
            let [limit, cursor] = page(&p);
            let path = format!(
                "/projects{}",
                query(&[("all", all.then(|| "true".into())), limit, cursor])
            );
            let answer: Answer<PageOf<Project>> =
                api.json(api.request(Method::GET, &path)?).await?;
            output::page(json, &answer, output::PROJECTS);
        }
        ProjectsCommand::Create { name, description } => {
            let body = body::NewProject {
                name: field("name", ProjectName::parse(&name))?,
                description: optional("description", description, Description::parse)?,
            };
            let project: Answer<Project> = api
                .json(api.request(Method::POST, "/projects")?.json(&body))
                .await?;
            output::object(json, &project);
        }
        ProjectsCommand::Get { id } => {
            let project: Answer<Project> = api
                .json(api.request(Method::GET, &format!("/projects/{id}"))?)
                .await?;
            output::object(json, &project);
        }
        ProjectsCommand::Update {
            id,
            name,
            description,
            owner,
        } => {
            let body = body::ProjectEdit {
                name: optional("name", name, ProjectName::parse)?,
                description: optional("description", description, Description::parse)?.map(Some),
                owner: optional("owner", owner, Username::parse)?,
            };
            let project: Answer<Project> = api
                .json(
                    api.request(Method::PATCH, &format!("/projects/{id}"))?
                        .json(&body),
                )
                .await?;
            output::object(json, &project);
        }
        ProjectsCommand::Delete { id } => {
            api.send(api.request(Method::DELETE, &format!("/projects/{id}"))?)
                .await?;
            if !json {
                println!("deleted project {id}");
            }
        }
    }
    Ok(())
}

async fn members(api: &Api, json: bool, command: MembersCommand) -> Result<(), Failure> {
    match command {
        MembersCommand::List { project } => {
            let answer: Answer<List<Member>> = api
                .json(api.request(Method::GET, &format!("/projects/{project}/members"))?)
                .await?;
            output::list(json, &answer, output::MEMBERS);
        }
        MembersCommand::Add {
            project,
            username,
            role,
        } => {
            let role = match role {
                Role::Member => ProjectRole::Member,
                Role::Admin => ProjectRole::Admin,
            };
            let member: Answer<Member> = api
                .json(
                    api.request(
                        Method::PUT,
                        &format!("/projects/{project}/members/{username}"),
                    )?
                    .json(&body::MemberRole { role }),
                )
                .await?;
            output::object(json, &member);
        }
        MembersCommand::Remove { project, username } => {
            api.send(api.request(
                Method::DELETE,
                &format!("/projects/{project}/members/{username}"),
            )?)
            .await?;
            if !json {
                println!("removed {username} from {project}");
            }
        }
    }
    Ok(())
}

/// A field of a body, checked here as the server would: refused, it is
/// the one line (and exit code) of the server's 422.
fn field<T>(name: &str, parsed: Result<T, InvalidValue>) -> Result<T, Failure> {
    parsed.map_err(|e| {
        Failure::Other(format!(
            "Invalid fields: invalid value for: {name} ({name} {e})"
        ))
    })
}

/// An optional field of a body, checked as [`field`].
fn optional<T>(
    name: &str,
    raw: Option<String>,
    parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
) -> Result<Option<T>, Failure> {
    raw.map(|raw| field(name, parse(&raw))).transpose()
}

/// The fields of an item body, checked as the server checks them.
fn item_body(title: Option<String>, fields: ItemFields) -> Result<body::ItemEdit, Failure> {
    Ok(body::ItemEdit {
        title: optional("title", title, Title::parse)?,
        description: optional("description", fields.description, Description::parse)?.map(Some),
        status: optional("status", fields.status, ItemStatus::parse)?,
        due_date: optional("due_date", fields.due, DueDate::parse)?.map(Some),
        assignee: optional("assignee", fields.assignee, Username::parse)?.map(Some),
    })
}

async fn items(api: &Api, json: bool, command: ItemsCommand) -> Result<(), Failure> {
    match command {
        ItemsCommand::List {
            project,
            status,
            due,
            tz,
            assignee,
            sort,
            page: p,
        } => {
            let [limit, cursor] = page(&p);
            let base = match project {
                Some(project) => format!("/projects/{project}/items"),
                None => "/items".to_owned(),
            };
            let path = format!(
                "{base}{}",
                query(&[
                    ("status", status),
                    ("due", due),
                    ("tz", tz),
                    ("assignee", assignee),
                    ("sort", sort),
                    limit,
                    cursor,
                ])
            );
            let answer: Answer<PageOf<Item>> = api.json(api.request(Method::GET, &path)?).await?;
            output::page(json, &answer, output::ITEMS);
        }
        ItemsCommand::Create {
            project,
            title,
            fields,
        } => {
            let title = field("title", Title::parse(&title))?;
            let fields = item_body(None, fields)?;
            let item: Answer<Item> = api
                .json(
                    api.request(Method::POST, &format!("/projects/{project}/items"))?
                        .json(&body::NewItem {
                            title,
                            description: fields.description.flatten(),
                            status: fields.status,
                            due_date: fields.due_date.flatten(),
                            assignee: fields.assignee.flatten(),
                        }),
                )
                .await?;
            output::object(json, &item);
        }
        ItemsCommand::Get { project, item } => {
            let item: Answer<Item> = api
                .json(api.request(Method::GET, &format!("/projects/{project}/items/{item}"))?)
                .await?;
            output::object(json, &item);
        }
        ItemsCommand::Update {
            project,
            item,
            title,
            fields,
            clear,
        } => {
            let mut body = item_body(title, fields)?;
            for field in clear {
                match field.as_str() {
                    "due" | "due_date" => body.due_date = Some(None),
                    "description" => body.description = Some(None),
                    "assignee" => body.assignee = Some(None),
                    other => {
                        return Err(Failure::Usage(format!(
                            "--clear {other}: only due, description and assignee can be cleared"
                        )));
                    }
                }
            }
            let item: Answer<Item> = api
                .json(
                    api.request(Method::PATCH, &format!("/projects/{project}/items/{item}"))?
                        .json(&body),
                )
                .await?;
            output::object(json, &item);
        }
        ItemsCommand::Delete { project, item } => {
            api.send(api.request(Method::DELETE, &format!("/projects/{project}/items/{item}"))?)
                .await?;
            if !json {
                println!("deleted item {item}");
            }
        }
        ItemsCommand::Events { project, item } => {
            let events: Answer<List<ItemEvent>> = api
                .json(api.request(
                    Method::GET,
                    &format!("/projects/{project}/items/{item}/events"),
                )?)
                .await?;
            output::list(json, &events, output::ITEM_EVENTS);
        }
    }
    Ok(())
}

async fn users(api: &Api, json: bool, command: UsersCommand) -> Result<(), Failure> {
    match command {
        UsersCommand::List { page: p } => {
            let [limit, cursor] = page(&p);
            let answer: Answer<PageOf<User>> = api
                .json(api.request(Method::GET, &format!("/users{}", query(&[limit, cursor])))?)
                .await?;
            output::page(json, &answer, output::USERS);
        }
        UsersCommand::Get { username } => {
            let user: Answer<User> = api
                .json(api.request(Method::GET, &format!("/users/{username}"))?)
                .await?;
            output::object(json, &user);
        }
        UsersCommand::Create {
            username,
            level,
            email,
            password_stdin,
        } => {
            let password = read_password(password_stdin, &format!("Password for {username}: "))?;
            let body = body::NewUser {
                username: field("username", Username::parse(&username))?,
                password: field("password", body::NewPassword::parse(&password))?,
                level: Some(field("level", Level::parse(&level))?),
                email: optional("email", email, Email::parse)?,
                profile: None,
            };
            let user: Answer<User> = api
                .json(api.request(Method::POST, "/users")?.json(&body))
                .await?;
            output::object(json, &user);
        }
        UsersCommand::Delete { username } => {
            api.send(api.request(Method::DELETE, &format!("/users/{username}"))?)
                .await?;
            if !json {
                println!("deleted {username}");
            }
        }
    }
    Ok(())
}
