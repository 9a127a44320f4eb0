//! The web console (`/app/`) driven in real headless Chromium (Debian's
//! `chromium` through `chromium-driver`, installed by
//! infra/local/install-tools.sh), on each store: two people in two
//! browsers, the whole journey a person makes, with the checks a person
//! would notice (text shown as text, live changes, a lost If-Match race, a
//! bar that moves, an upload that survives a reload) and the policy the
//! browser enforces (no inline code, no `eval`, no token in a URL).
//!
//! Each page is saved as a screenshot under
//! `<target>/console-screenshots/<store>/` (a test artifact; the README's
//! pictures come from there).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{Value, json};
use taskgate_e2e::{ADMIN_PASSWORD, Backend, PASSWORD, TestApp, on_each_backend, status_and_json};

on_each_backend!(
    the_whole_journey_in_two_browsers,
    files_on_s3_time_zones_and_the_keyboard
);

/// WebDriver's Tab and Enter keys.
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

/// How long anything the console shows may take to appear (generous: CI
/// machines are slow; what a person waits for is reported, not asserted).
const PATIENCE: Duration = Duration::from_secs(20);

/// `chromedriver` on a port of its own, stopped when dropped.
struct Driver {
    url: String,
    _process: tokio::process::Child,
}

impl Driver {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary = ["chromedriver", "/usr/bin/chromedriver"]
            .into_iter()
            .find(|b| {
                std::process::Command::new(b)
                    .arg("--version")
                    .output()
                    .is_ok()
            })
            .expect(
                "chromedriver is installed (Debian's chromium-driver; infra/local/install-tools.sh)",
            );
        let process = tokio::process::Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("{url}/status")).await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            url,
            _process: process,
        }
    }
}

/// A Chromium-only WebDriver command (`/session/{id}/<path>`).
#[derive(Debug)]
struct Chromium {
    method: http::Method,
    path: &'static str,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for Chromium {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

/// One person's browser.
struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
    downloads: tempfile::TempDir,
    /// The browser's own profile: its processes are found by this path.
    profile: tempfile::TempDir,
    who: &'static str,
}

impl Drop for Browser {
    /// A test that fails leaves its session open; its browser would go on
    /// reconnecting to a port another test may have by then. Every process
    /// of this browser ends here, whatever happened.
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", "--"])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .status();
    }
}

impl Browser {
    async fn open(driver: &Driver, app: &TestApp, shots: &Path, who: &'static str) -> Self {
        let downloads = tempfile::tempdir().unwrap();
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--window-size=1280,900", "--lang=en-GB",
                    "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            },
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("a Chromium session");
        let browser = Self {
            client,
            base: app.url(""),
            shots: shots.to_owned(),
            downloads,
            profile,
            who,
        };
        browser
            .chromium(
                http::Method::POST,
                "goog/cdp/execute",
                Some(json!({"cmd": "Browser.setDownloadBehavior", "params": {
                    "behavior": "allow",
                    "downloadPath": browser.downloads.path(),
                }})),
            )
            .await;
        browser
    }

    async fn chromium(&self, method: http::Method, path: &'static str, body: Option<Value>) {
        self.client
            .issue_cmd(Chromium { method, path, body })
            .await
            .unwrap_or_else(|e| panic!("{}: chromium {path}: {e}", self.who));
    }

    /// A Chrome DevTools Protocol command on this browser's page.
    async fn cdp(&self, cmd: &str, params: Value) {
        self.chromium(
            http::Method::POST,
            "goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
        .await;
    }

    /// Cuts this browser off the network (every request fails at once,
    /// those under way too), or (`false`) lets it back on unthrottled.
    async fn offline(&self, offline: bool) {
        if offline {
            self.chromium(
                http::Method::POST,
                "chromium/network_conditions",
                Some(json!({"network_conditions": {
                    "offline": true, "latency": 0,
                    "download_throughput": 0, "upload_throughput": 0,
                }})),
            )
            .await;
        } else {
            self.throttle(None).await;
        }
    }

    /// Presses `key` (a WebDriver key code, or text) on whatever has focus,
    /// as a keyboard would.
    async fn key(&self, key: &str) {
        self.client
            .active_element()
            .await
            .unwrap()
            .send_keys(key)
            .await
            .unwrap_or_else(|e| panic!("{}: key {key:?}: {e}", self.who));
    }

    /// Presses Tab until the control labelled `label` has the focus (at most
    /// 400 times: every control of a page is reachable well within that),
    /// and checks that a sighted keyboard user can see where they are.
    async fn tab_to(&self, label: &str) {
        for _ in 0..400 {
            self.key(TAB).await;
            let here = self
                .js(
                    "const e = document.activeElement;
                     return [e.getAttribute('aria-label') || e.textContent, getComputedStyle(e).outlineStyle];",
                    vec![],
                )
                .await;
            if here[0] == label {
                assert_ne!(here[1], "none", "{label}: the focus is not shown");
                return;
            }
        }
        panic!("{}: Tab never reached {label:?}", self.who);
    }

    /// Uploads from this browser at most `bytes_per_second` (`None`: no limit).
    async fn throttle(&self, bytes_per_second: Option<u64>) {
        match bytes_per_second {
            Some(rate) => {
                self.chromium(
                    http::Method::POST,
                    "chromium/network_conditions",
                    Some(json!({"network_conditions": {
                        "offline": false, "latency": 0,
                        "download_throughput": 100_000_000, "upload_throughput": rate,
                    }})),
                )
                .await
            }
            None => {
                self.chromium(http::Method::DELETE, "chromium/network_conditions", None)
                    .await
            }
        }
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("{}: {script}: {e}", self.who))
    }

    /// Waits until `script` (a function body) returns something truthy, and
    /// returns it.
    async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.js(script, vec![]).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let _ = self.shot(&format!("failed-{}", self.who)).await;
                let text = self.js("return document.body.innerText", vec![]).await;
                panic!(
                    "{}: waited {PATIENCE:?} for {what}; the page shows:\n{text}",
                    self.who
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the element is shown and enabled.
    async fn until_shown(&self, css: &str) {
        self.until(
            &format!("{css} to be shown"),
            &format!(
                "const e = document.querySelector({css:?}); return !!e && e.offsetParent !== null && !e.disabled;"
            ),
        )
        .await;
    }

    /// Waits for the element, then clicks it.
    async fn click(&self, css: &str) {
        self.until_shown(css).await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap_or_else(|e| panic!("{}: click {css}: {e}", self.who));
    }

    /// Picks the option whose value is `value` in the select list, as a
    /// person choosing from it would (the page sees a `change` event).
    async fn choose(&self, css: &str, value: &str) {
        self.until_shown(css).await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("{}: choose {value} in {css}: {e}", self.who));
    }

    /// Clears the field and types `text` into it.
    async fn type_into(&self, css: &str, text: &str) {
        self.until(
            &format!("{css} to be shown"),
            &format!("return !!document.querySelector({css:?});"),
        )
        .await;
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Chooses `path` in the page's file picker, as a person would.
    async fn choose_file(&self, path: &Path) {
        self.client
            .find(Locator::Css("input[type=file]"))
            .await
            .unwrap()
            .send_keys(path.to_str().unwrap())
            .await
            .unwrap_or_else(|e| panic!("{}: choose {}: {e}", self.who, path.display()));
    }

    /// Chooses `path` for upload and waits until its first MiB has arrived.
    async fn upload_first_mib(&self, path: &Path) {
        self.choose_file(path).await;
        self.until(
            "a first MiB to arrive",
            "const b = document.querySelector('#uploads progress'); return b && b.value >= 1048576;",
        )
        .await;
    }

    /// The button whose aria-label is `label`, clicked.
    async fn press(&self, label: &str) {
        self.click(&format!("button[aria-label={label:?}]")).await;
    }

    async fn shot(&self, name: &str) -> std::io::Result<()> {
        self.js("window.scrollTo(0, 0);", vec![]).await;
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(&self.shots)?;
        std::fs::write(self.shots.join(format!("{name}.png")), png)
    }

    /// Every form control on the page has a label (its own, a wrapping one,
    /// or `aria-label`).
    async fn every_field_is_labelled(&self, page: &str) {
        let unlabelled = self
            .js(
                "return [...document.querySelectorAll('input, select, textarea')]
                   .filter((e) => e.type !== 'hidden' && !(e.labels && e.labels.length)
                     && !e.getAttribute('aria-label'))
                   .map((e) => e.outerHTML.slice(0, 120));",
                vec![],
            )
            .await;
        assert_eq!(unlabelled, json!([]), "{page}: fields without a label");
    }

    async fn login(&self, login: &str, password: &str) {
        self.goto("/app/").await;
        self.type_into("#login-form input[name=login]", login).await;
        self.type_into("#login-form input[name=password]", password)
            .await;
        self.click("#login-form button[type=submit]").await;
        self.until_logged_in().await;
    }

    /// Waits for the navigation a logged-in person sees and the live socket.
    async fn until_logged_in(&self) {
        self.until(
            "the navigation after logging in",
            "return !document.getElementById('nav').hidden && document.getElementById('whoami').textContent;",
        )
        .await;
        self.until(
            "the live socket",
            "return document.getElementById('live').textContent.includes('live');",
        )
        .await;
    }

    /// Navigates within the console and waits for the page's heading.
    async fn page(&self, hash: &str, heading: &str) {
        self.js("location.hash = arguments[0];", vec![json!(hash)])
            .await;
        self.until(
            &format!("the {heading} page"),
            &format!("const h = document.querySelector('main h1'); return !!h && h.textContent === {heading:?};"),
        )
        .await;
    }

    /// A file this browser downloaded whose name ends with `suffix`.
    async fn downloaded(&self, suffix: &str) -> Vec<u8> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            for entry in std::fs::read_dir(self.downloads.path()).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.ends_with(suffix) {
                    return std::fs::read(&path).unwrap();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: no download ending {suffix}",
                self.who
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn screenshots(backend: Backend) -> PathBuf {
    let store = match backend {
        Backend::Embedded => "embedded",
        Backend::DynamoDb => "dynamodb",
    };
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots")
        .join(store)
}

/// A card on the board, by title, in a column (`pending`, `in_progress`,
/// `completed`), as a script.
fn card_in(column: &str, title: &str) -> String {
    format!(
        "return [...document.querySelectorAll('ul[data-column={column}] li.item-card .title')]
           .some((t) => t.textContent === {title:?});"
    )
}

async fn the_whole_journey_in_two_browsers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let shots = screenshots(backend);
    // This run's pictures only.
    let _ = std::fs::remove_dir_all(&shots);
    let driver = Driver::start().await;
    let a = Browser::open(&driver, &app, &shots, "admin").await;
    let b = Browser::open(&driver, &app, &shots, "bob").await;

    // --- The page itself: its policy, its weight ---------------------------
    let page = app.get("/app/", None).await;
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    a.goto("/app/").await;
    a.until(
        "the login form",
        "return !!document.querySelector('#login-form');",
    )
    .await;
    let bytes = a
        .js(
            "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
               .reduce((n, e) => n + (e.transferSize || e.encodedBodySize || 0), 0);",
            vec![],
        )
        .await;
    let bytes = bytes.as_f64().unwrap();
    assert!(
        bytes > 0.0 && bytes <= 150.0 * 1024.0,
        "first load: {bytes} bytes"
    );
    a.every_field_is_labelled("login").await;
    // A keyboard user sees where they are: the field focused on load has
    // the focus ring.
    let outline = a
        .js(
            "const e = document.activeElement; return [e.name, getComputedStyle(e).outlineStyle];",
            vec![],
        )
        .await;
    assert_eq!(outline, json!(["login", "solid"]), "focus is visible");
    a.shot("login").await.unwrap();
    // The browser enforces the policy: no inline script, no inline handler,
    // no code from strings (WebDriver's own scripts are exempt from the CSP,
    // so each attempt is made for the page to run later, as an attack's
    // would be, and the violations the page reports are counted).
    a.js(
        "window.__violations = [];
         document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.effectiveDirective));
         const s = document.createElement('script'); s.textContent = 'window.__inline = 1';
         document.body.append(s);
         const img = document.createElement('img'); img.setAttribute('onerror', 'window.__handler = 1');
         img.src = 'data:,'; document.body.append(img);
         setTimeout('window.__evaluated = 1', 0);",
        vec![],
    )
    .await;
    let enforced = a
        .until(
            "the three violations",
            "return window.__violations.length >= 3 && {
               inline: window.__inline === 1, handler: window.__handler === 1,
               evaluated: window.__evaluated === 1, violations: window.__violations.sort() };",
        )
        .await;
    assert_eq!(
        enforced,
        json!({"inline": false, "handler": false, "evaluated": false,
               "violations": ["script-src", "script-src-attr", "script-src-elem"]})
    );
    a.js(
        "document.querySelectorAll('body > img').forEach((i) => i.remove());",
        vec![],
    )
    .await;

    // A wrong password is said in words, next to the form.
    a.type_into("#login-form input[name=login]", "admin").await;
    a.type_into(
        "#login-form input[name=password]",
        "not the password at all",
    )
    .await;
    a.click("#login-form button[type=submit]").await;
    a.until(
        "the login error",
        "return document.querySelector('#login-form .form-error').textContent;",
    )
    .await;

    // --- Log in; the token stays out of URLs and persistent storage --------
    a.login("admin", ADMIN_PASSWORD).await;
    let stored = a
        .js(
            "return { url: location.href, local: JSON.stringify(localStorage), session: sessionStorage.getItem('taskgate.session') };",
            vec![],
        )
        .await;
    let session: Value = serde_json::from_str(stored["session"].as_str().unwrap()).unwrap();
    let admin_token = session["token"].as_str().unwrap().to_owned();
    assert!(!stored["url"].as_str().unwrap().contains(&admin_token));
    assert!(!stored["local"].as_str().unwrap().contains(&admin_token));
    assert_eq!(
        a.js(
            "return document.getElementById('whoami').textContent;",
            vec![]
        )
        .await,
        "admin (admin)"
    );

    // --- Admin: a user -----------------------------------------------------
    a.page("#/users", "Users").await;
    a.type_into("#new-user input[name=username]", "bob").await;
    a.type_into("#new-user input[name=password]", "short").await;
    a.click("#new-user button[type=submit]").await;
    // The API's complaint shows next to the password field.
    a.until(
        "the password's error beside it",
        "const i = document.querySelector('#new-user input[name=password]');
         return i.getAttribute('aria-invalid') === 'true' && document.getElementById(i.id + '-error').textContent;",
    )
    .await;
    a.type_into("#new-user input[name=password]", PASSWORD)
        .await;
    a.type_into("#new-user input[name=email]", "bob@example.com")
        .await;
    a.click("#new-user button[type=submit]").await;
    a.until(
        "bob in the users' table",
        "return !!document.querySelector('#user-table tr[data-user=bob]');",
    )
    .await;
    a.every_field_is_labelled("users").await;
    a.shot("users").await.unwrap();

    // --- A project, a member, items ----------------------------------------
    a.page("#/projects", "Projects").await;
    a.type_into("#new-project input[name=name]", "Launch").await;
    a.type_into("#new-project textarea[name=description]", "Ship it")
        .await;
    a.click("#new-project button[type=submit]").await;
    a.until("the board", "return !!document.querySelector('#board');")
        .await;
    let hash = a.js("return location.hash;", vec![]).await;
    let project_hash = hash.as_str().unwrap().to_owned();
    assert!(project_hash.starts_with("#/projects/"), "{project_hash}");
    a.type_into("#add-member input[name=username]", "bob").await;
    a.click("#add-member button[type=submit]").await;
    a.until(
        "bob among the members",
        "return !!document.querySelector('#member-list li[data-member=bob]');",
    )
    .await;
    const XSS: &str = "<img src=x onerror=alert(1)>";
    for title in ["Write the plan", XSS] {
        a.type_into("#new-item input[name=title]", title).await;
        a.click("#new-item button[type=submit]").await;
        a.until(&format!("the card {title}"), &card_in("pending", title))
            .await;
    }
    // Text is text: the title shows as its characters; nothing became markup.
    assert_eq!(
        a.js(
            "return document.querySelectorAll('main img').length;",
            vec![]
        )
        .await,
        0
    );
    a.every_field_is_labelled("board").await;

    // --- Bob, in another browser, by e-mail; changes arrive live -----------
    b.login("bob@example.com", PASSWORD).await;
    b.page(&project_hash, "Launch").await;
    b.until("the items", &card_in("pending", "Write the plan"))
        .await;
    b.until("the item titled as markup", &card_in("pending", XSS))
        .await;
    let moved = Instant::now();
    a.press("Move “Write the plan” to In progress").await;
    b.until(
        "the moved card, live",
        &card_in("in_progress", "Write the plan"),
    )
    .await;
    eprintln!(
        "console ({backend:?}): a move reached the other browser in {:?}",
        moved.elapsed()
    );
    b.type_into("#new-item input[name=title]", "Bob's item")
        .await;
    b.click("#new-item button[type=submit]").await;
    a.until("bob's item, live", &card_in("pending", "Bob's item"))
        .await;

    // --- An If-Match race lost, shown, and retried -------------------------
    b.press("Edit “Write the plan”").await;
    b.until(
        "the edit dialog",
        "return document.getElementById('item-dialog').open;",
    )
    .await;
    a.press("Move “Write the plan” to Completed").await;
    a.until(
        "the completed card",
        &card_in("completed", "Write the plan"),
    )
    .await;
    b.type_into("#item-dialog input[name=title]", "Write the plan, v2")
        .await;
    b.click("#item-dialog button[type=submit]").await;
    b.until(
        "the conflict, with the newer version",
        "const c = document.getElementById('conflict');
         return !c.hidden && c.querySelector('[data-newer=status]').textContent === 'Completed';",
    )
    .await;
    b.shot("conflict").await.unwrap();
    b.click("#conflict button").await;
    b.until(
        "the dialog closed after saving again",
        "return !document.getElementById('item-dialog').open;",
    )
    .await;
    a.until(
        "bob's edit, live",
        &card_in("in_progress", "Write the plan, v2"),
    )
    .await;
    // The item's history shows every change.
    a.press("History of “Write the plan, v2”").await;
    a.until(
        "the history",
        "return document.querySelectorAll('#item-dialog ol.history li').length >= 4;",
    )
    .await;
    a.click("#item-dialog > button").await;
    a.shot("board").await.unwrap();
    b.shot("board-bob").await.unwrap();

    // On a 360-pixel screen nothing needs sideways scrolling.
    a.client.set_window_size(360, 800).await.unwrap();
    a.until(
        "the narrow layout",
        "return window.innerWidth <= 360 && document.documentElement.scrollWidth <= window.innerWidth;",
    )
    .await;
    a.shot("board-360px").await.unwrap();
    a.client.set_window_size(1280, 900).await.unwrap();

    // --- A project export, watched and downloaded --------------------------
    a.click("#exports button.secondary").await; // Export CSV
    a.until(
        "the export to succeed",
        "return !!document.querySelector('#exports article.task[data-status=succeeded]');",
    )
    .await;
    a.click("#exports article.task .outcome button").await;
    let csv = String::from_utf8(a.downloaded(".csv").await).unwrap();
    assert!(
        csv.contains("Write the plan, v2") && csv.contains(XSS),
        "{csv}"
    );

    // --- Tasks: a delay's bar moves, then it is cancelled; a script --------
    a.page("#/tasks", "Tasks").await;
    a.type_into("#start-delay input[name=seconds]", "30").await;
    a.click("#start-delay button[type=submit]").await;
    let first = a
        .until(
            "the delay's bar to move",
            "const b = document.querySelector('#task-list article.task[data-status=running] progress');
             return b && b.value > 0 ? b.value : 0;",
        )
        .await
        .as_f64()
        .unwrap();
    a.until(
        "the bar to move on",
        &format!(
            "const b = document.querySelector('#task-list article.task[data-status=running] progress');
             return b && b.value > {first};"
        ),
    )
    .await;
    a.shot("tasks-progress").await.unwrap();
    a.click("#task-list article.task[data-status=running] button.danger")
        .await;
    a.until(
        "the cancelled delay",
        "return !!document.querySelector('#task-list article.task[data-status=cancelled]');",
    )
    .await;
    a.click("#start-script button[type=submit]").await;
    let result = a
        .until(
            "the script's result",
            "const t = [...document.querySelectorAll('#task-list article.task[data-status=succeeded]')]
               .find((t) => t.querySelector('code.result'));
             return t && [t.querySelector('code.result').textContent, t.querySelector('pre.logs').textContent];",
        )
        .await;
    assert_eq!(result, json!(["42", "hello"]));
    a.every_field_is_labelled("tasks").await;
    a.shot("tasks").await.unwrap();

    // --- Files: an upload cut by a reload resumes; another is aborted ------
    let work = tempfile::tempdir().unwrap();
    let (big_path, big) = file_of(work.path(), "report.bin", 6, 2_654_435_761);
    a.page("#/files", "Files").await;
    a.throttle(Some(1024 * 1024)).await;
    a.upload_first_mib(&big_path).await;
    // The page goes away mid-upload; the same file chosen again resumes.
    a.client.refresh().await.unwrap();
    a.until(
        "the files page after the reload",
        "const h = document.querySelector('main h1'); return !!h && h.textContent === 'Files';",
    )
    .await;
    a.choose_file(&big_path).await;
    a.until(
        "the upload to resume",
        "const t = document.querySelector('#uploads .upload-text'); return t && t.textContent.includes('resumed at');",
    )
    .await;
    a.throttle(None).await;
    a.until(
        "the upload to finish",
        "return !!document.querySelector('#uploads .upload[data-state=done]');",
    )
    .await;
    let files = app.get("/files", Some(&admin_token)).await;
    let files: Value = files.json().await.unwrap();
    let report = files["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "report.bin")
        .unwrap_or_else(|| panic!("{files}"))
        .clone();
    let id = report["id"].as_str().unwrap();
    let content = app
        .get(&format!("/files/{id}/content"), Some(&admin_token))
        .await
        .bytes()
        .await
        .unwrap();
    assert!(content[..] == big[..], "the resumed upload is whole");

    let other_path = work.path().join("abandoned.bin");
    std::fs::write(&other_path, &big[..4 * 1024 * 1024]).unwrap();
    a.throttle(Some(512 * 1024)).await;
    a.choose_file(&other_path).await;
    a.until(
        "the second upload to start",
        "const b = document.querySelector('#uploads .upload[data-upload=\"abandoned.bin\"] progress'); return b && b.value > 0;",
    )
    .await;
    a.click("#uploads .upload[data-upload=\"abandoned.bin\"] button.danger")
        .await;
    a.until(
        "the abort",
        "return [...document.querySelectorAll('#uploads .upload')].some((c) => c.dataset.state === 'aborted');",
    )
    .await;
    a.throttle(None).await;
    let files: Value = app
        .get("/files", Some(&admin_token))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        files["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["name"] != "abandoned.bin"),
        "nothing of the aborted upload remains: {files}"
    );
    a.every_field_is_labelled("files").await;
    a.shot("files").await.unwrap();

    // A download, then a zip export of the file, downloaded.
    a.press("Download report.bin").await;
    assert!(a.downloaded("report.bin").await == big);
    a.click(&format!("input[name=pick][value=\"{id}\"]")).await;
    a.click("#export-zip").await;
    a.until(
        "the zip export to succeed",
        "return !!document.querySelector('#file-exports article.task[data-status=succeeded]');",
    )
    .await;
    a.click("#file-exports article.task .outcome button").await;
    let zip = a.downloaded(".zip").await;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut inside = Vec::new();
    std::io::Read::read_to_end(&mut archive.by_name("report.bin").unwrap(), &mut inside).unwrap();
    assert!(inside == big, "the zip holds the file");
    a.shot("export").await.unwrap();

    // --- The other pages ---------------------------------------------------
    a.page("#/audit", "Security and audit log").await;
    a.until(
        "the security log",
        "return document.querySelectorAll('#audit-table tbody tr').length >= 3;",
    )
    .await;
    a.shot("audit").await.unwrap();
    b.page("#/items", "My items").await;
    b.every_field_is_labelled("items").await;
    b.shot("items").await.unwrap();

    // --- Revocation ends bob's session at once; logout ends the admin's ----
    let changed = app
        .send_json(
            Method::PATCH,
            "/users/bob",
            Some(&admin_token),
            &json!({"password": "a brand new passphrase of his own"}),
        )
        .await;
    assert!(changed.status().is_success(), "{:?}", changed.text().await);
    b.until(
        "bob's console to end his session",
        "return !!document.querySelector('#login-form') && !!document.getElementById('session-message')
           && sessionStorage.getItem('taskgate.session') === null;",
    )
    .await;
    a.click("#logout").await;
    a.until(
        "the login page after logging out",
        "return !!document.querySelector('#login-form') && sessionStorage.getItem('taskgate.session') === null;",
    )
    .await;
    let after = app.get("/", Some(&admin_token)).await;
    assert_eq!(after.status(), 401, "logging out revoked the token");

    a.client.clone().close().await.unwrap();
    b.client.clone().close().await.unwrap();
    eprintln!(
        "console journey on {backend:?}; screenshots in {}",
        shots.display()
    );
}

/// Today's date (`YYYY-MM-DD`) in the IANA zone `zone`, as the browser
/// works it out (not through the console's code).
async fn today_in(browser: &Browser, zone: &str) -> String {
    browser
        .js(
            "return new Intl.DateTimeFormat('en-CA', { timeZone: arguments[0] }).format(new Date());",
            vec![json!(zone)],
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// A moto S3 bucket with the CORS rules the template gives its FilesBucket.
async fn bucket_as_deployed() -> (String, String) {
    use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
    let moto = std::env::var("TASKGATE_TEST_SFN_ENDPOINT")
        .expect("tests/run.sh starts moto and sets TASKGATE_TEST_SFN_ENDPOINT");
    let sdk = taskgate_aws::load_sdk_config(Some(&moto)).await;
    let s3 = taskgate_aws::s3_client(&sdk, Some(&moto));
    let bucket = format!(
        "tg-console-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let template = taskgate_e2e::deployment::template::Template::load();
    let rules = &template.resource("FilesBucket")["Properties"]["CorsConfiguration"]["CorsRules"];
    let strings = |rule: &serde_norway::Value, key: &str| -> Vec<String> {
        rule[key]
            .as_sequence()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let mut cors = CorsConfiguration::builder();
    for rule in rules.as_sequence().expect("the FilesBucket has CORS rules") {
        cors = cors.cors_rules(
            CorsRule::builder()
                .set_allowed_methods(Some(strings(rule, "AllowedMethods")))
                .set_allowed_origins(Some(strings(rule, "AllowedOrigins")))
                .set_expose_headers(Some(strings(rule, "ExposedHeaders")))
                .set_max_age_seconds(rule["MaxAge"].as_i64().map(|n| i32::try_from(n).unwrap()))
                .build()
                .unwrap(),
        );
    }
    s3.put_bucket_cors()
        .bucket(&bucket)
        .cors_configuration(cors.build().unwrap())
        .send()
        .await
        .unwrap();
    (moto, bucket)
}

/// What the first journey does not reach: the files in S3 as on AWS (a
/// download follows the API's 307 to a presigned URL on another origin,
/// which the page's policy and the template's bucket CORS rule must both
/// let through), an upload over a connection that drops, deleting a file,
/// an NDJSON export, the due filters in the browser's own time zone, and a
/// person who uses only the keyboard.
async fn files_on_s3_time_zones_and_the_keyboard(backend: Backend) {
    let (moto, bucket) = bucket_as_deployed().await;
    let app = TestApp::spawn_with(backend, |config| {
        config.files = taskgate_server::FilesConfig::S3 {
            bucket: bucket.clone(),
            endpoint: Some(moto.clone()),
        };
    })
    .await;
    let shots = screenshots(backend).join("s3");
    let _ = std::fs::remove_dir_all(&shots);
    let page = app.get("/app/", None).await;
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("connect-src 'self' {moto};")),
        "{csp}"
    );
    let driver = Driver::start().await;
    let a = Browser::open(&driver, &app, &shots, "admin").await;

    // --- Logged in with the keyboard alone ----------------------------------
    a.goto("/app/").await;
    a.until(
        "the login field focused",
        "return document.activeElement && document.activeElement.name === 'login';",
    )
    .await;
    a.key("admin").await;
    a.key(TAB).await;
    a.key(ADMIN_PASSWORD).await;
    a.key(ENTER).await;
    a.until_logged_in().await;
    let token = app.login("admin", ADMIN_PASSWORD).await;

    // --- Due dates in the browser's time zone --------------------------------
    // Kiritimati (UTC+14) and Pago Pago (UTC-11) are 25 hours apart: their
    // dates always differ, so "today" in one is never today in the other,
    // and a console that asked for another zone's today would show the
    // wrong item in one of the two.
    const EAST: &str = "Pacific/Kiritimati";
    const WEST: &str = "Pacific/Pago_Pago";
    let (_, project) = status_and_json(
        app.send_json(
            Method::POST,
            "/projects",
            Some(&token),
            &json!({"name": "Dates"}),
        )
        .await,
    )
    .await;
    let project = project["id"].as_str().unwrap().to_owned();
    let east_today = today_in(&a, EAST).await;
    let west_today = today_in(&a, WEST).await;
    assert!(west_today < east_today, "{west_today} {east_today}");
    for (title, due) in [("Due east", &east_today), ("Due west", &west_today)] {
        let created = app
            .send_json(
                Method::POST,
                &format!("/projects/{project}/items"),
                Some(&token),
                &json!({"title": title, "due_date": due, "assignee": "admin"}),
            )
            .await;
        assert_eq!(created.status(), 201);
    }
    for (zone, due, shown) in [
        (EAST, "today", ["Due east"]),
        (EAST, "overdue", ["Due west"]),
        (WEST, "today", ["Due west"]),
        (WEST, "future", ["Due east"]),
    ] {
        a.cdp("Emulation.setTimezoneOverride", json!({"timezoneId": zone}))
            .await;
        a.page("#/projects", "Projects").await;
        a.page("#/items", "My items").await;
        a.choose("#filters select[name=due]", due).await;
        let titles = a
            .until(
                &format!("the items due {due} in {zone}"),
                &format!(
                    "const rows = [...document.querySelectorAll('#items-table tbody tr[data-item]')];
                     const caption = document.querySelector('#items-table caption').textContent;
                     return caption.includes({zone:?}) && document.querySelector('#filters select[name=due]').value === {due:?}
                       && rows.length === 1 && rows.map((r) => r.querySelector('td').textContent);"
                ),
            )
            .await;
        assert_eq!(titles, json!(shown), "due {due} in {zone}");
    }
    a.shot("items-due-today").await.unwrap();

    // --- A move by keyboard, an NDJSON export from S3 ------------------------
    a.page(&format!("#/projects/{project}"), "Dates").await;
    a.until("the board", &card_in("pending", "Due east")).await;
    a.tab_to("Move “Due east” to In progress").await;
    a.key(ENTER).await;
    a.until("the moved card", &card_in("in_progress", "Due east"))
        .await;
    a.tab_to("Export NDJSON").await;
    a.key(ENTER).await;
    a.until(
        "the export to succeed",
        "return !!document.querySelector('#exports article.task[data-status=succeeded]');",
    )
    .await;
    a.click("#exports article.task .outcome button").await;
    let ndjson = String::from_utf8(a.downloaded(".ndjson").await).unwrap();
    let mut exported: Vec<(String, String)> = ndjson
        .lines()
        .map(|line| {
            let item: Value = serde_json::from_str(line).unwrap();
            (
                item["title"].as_str().unwrap().to_owned(),
                item["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    exported.sort();
    assert_eq!(
        exported,
        [
            ("Due east".to_owned(), "in_progress".to_owned()),
            ("Due west".to_owned(), "pending".to_owned())
        ]
    );

    // --- An upload whose connection drops, downloaded from S3, deleted -------
    let work = tempfile::tempdir().unwrap();
    let (path, bytes) = file_of(work.path(), "field notes.bin", 3, 2_246_822_519);
    a.page("#/files", "Files").await;
    a.throttle(Some(512 * 1024)).await;
    a.upload_first_mib(&path).await;
    a.offline(true).await;
    a.until(
        "the console to say the connection was lost",
        "const c = document.querySelector('#uploads .upload');
         return c.dataset.state === 'retrying' && c.querySelector('.upload-text').textContent.includes('Connection lost');",
    )
    .await;
    a.shot("upload-connection-lost").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.offline(false).await;
    a.until(
        "the upload to carry on and finish",
        "return !!document.querySelector('#uploads .upload[data-state=done]');",
    )
    .await;
    let files: Value = app.get("/files", Some(&token)).await.json().await.unwrap();
    let id = files["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "field notes.bin")
        .unwrap_or_else(|| panic!("{files}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The console's download goes where AWS would send it: a presigned URL
    // on the bucket's origin.
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url(&format!("/files/{id}/content")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 307);
    let location = redirect.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{moto}/{bucket}/")),
        "{location}"
    );
    // Had the browser carried the token along the redirect, S3 (and moto
    // here, infra/local/moto-server.py) would refuse the request.
    let doubled = reqwest::Client::new()
        .get(location)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        doubled.status(),
        400,
        "a token beside a signature is refused"
    );
    a.press("Download field notes.bin").await;
    assert!(
        a.downloaded("field notes.bin").await == bytes,
        "the download from S3 is the file, whole"
    );
    a.shot("files-s3").await.unwrap();
    a.press("Delete field notes.bin").await;
    a.until(
        "the file gone from the list",
        "return !document.querySelector('#file-table tr[data-name=\"field notes.bin\"]');",
    )
    .await;
    let gone = app.get(&format!("/files/{id}"), Some(&token)).await;
    assert_eq!(gone.status(), 404, "the file is deleted");

    a.client.clone().close().await.unwrap();
}

/// A file of `mib` MiB of varied bytes (`seed` picks which) written as
/// `name` in `dir`: its path and its contents.
fn file_of(dir: &Path, name: &str, mib: u32, seed: u32) -> (std::path::PathBuf, Vec<u8>) {
    let bytes: Vec<u8> = (0..mib * 1024 * 1024)
        .map(|i| (i.wrapping_mul(seed) >> 13) as u8)
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}
