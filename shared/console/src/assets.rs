//! The console's files: embedded in the binary at build time
//! (`include_str!`, so nothing is read or built at run time) and given
//! fingerprinted names once, when the server starts.
//!
//! A file's name carries the first 16 hex digits of the SHA-256 of what is
//! served (`board.js` → `board.3f2a…c1.js`), so a browser may keep it for a
//! year: a changed file is a new name. A module's imports are rewritten to
//! the fingerprinted names of what they import, and so a module's
//! fingerprint covers its imports' fingerprints: change `dom.js` and every
//! module that imports it, directly or not, gets a new name too. That is why
//! [`SOURCES`] lists each file after every file it imports (a test checks).
//! The page itself (`index.html`) keeps its name and is revalidated on every
//! load; it names the entry points by their fingerprinted names.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// Every asset, each after all the files it imports.
const SOURCES: &[(&str, &str)] = &[
    ("style.css", include_str!("../assets/style.css")),
    ("dom.js", include_str!("../assets/dom.js")),
    ("api.js", include_str!("../assets/api.js")),
    ("live.js", include_str!("../assets/live.js")),
    ("tus.js", include_str!("../assets/tus.js")),
    ("views/login.js", include_str!("../assets/views/login.js")),
    ("views/items.js", include_str!("../assets/views/items.js")),
    (
        "views/projects.js",
        include_str!("../assets/views/projects.js"),
    ),
    ("views/tasks.js", include_str!("../assets/views/tasks.js")),
    ("views/board.js", include_str!("../assets/views/board.js")),
    ("views/files.js", include_str!("../assets/views/files.js")),
    ("views/admin.js", include_str!("../assets/views/admin.js")),
    ("app.js", include_str!("../assets/app.js")),
];

/// The page, with `{{file}}` where a fingerprinted name goes.
const PAGE: &str = include_str!("../assets/index.html");

/// Where the assets are served, and the prefix of their names in the page.
pub const ASSETS_PATH: &str = "/app/assets/";

/// One file as served.
#[derive(Debug)]
pub struct Asset {
    /// Its name before fingerprinting (`views/board.js`).
    pub source: &'static str,
    /// Its served name under [`ASSETS_PATH`] (`views/board.3f2a….js`).
    pub name: String,
    pub body: String,
    pub content_type: &'static str,
}

/// The page and every asset, fingerprinted.
#[derive(Debug)]
pub struct Assets {
    page: String,
    assets: Vec<Asset>,
    by_name: HashMap<String, usize>,
}

impl Assets {
    /// Fingerprints every file. Panics if a file imports one that is not
    /// listed before it, or the page names an unknown file: both are
    /// mistakes in this crate, caught by its tests.
    pub fn build() -> Self {
        let mut assets: Vec<Asset> = Vec::with_capacity(SOURCES.len());
        let mut served: HashMap<&'static str, String> = HashMap::new();
        for &(source, text) in SOURCES {
            let body = if source.ends_with(".js") {
                rewrite_imports(source, text, &served)
            } else {
                text.to_owned()
            };
            let name = fingerprinted(source, &body);
            served.insert(source, name.clone());
            assets.push(Asset {
                source,
                name,
                body,
                content_type: content_type(source),
            });
        }
        let page = fill_page(PAGE, &served);
        let by_name = assets
            .iter()
            .enumerate()
            .map(|(i, asset)| (asset.name.clone(), i))
            .collect();
        Self {
            page,
            assets,
            by_name,
        }
    }

    /// `index.html`, naming the fingerprinted files.
    pub fn page(&self) -> &str {
        &self.page
    }

    /// The asset served as `name` (a fingerprinted name), if any.
    pub fn get(&self, name: &str) -> Option<&Asset> {
        self.by_name.get(name).map(|&i| &self.assets[i])
    }

    /// Every asset, in [`SOURCES`] order.
    pub fn assets(&self) -> &[Asset] {
        &self.assets
    }
}

fn content_type(source: &str) -> &'static str {
    if source.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "text/javascript; charset=utf-8"
    }
}

/// `dir/stem.ext` → `dir/stem.<16 hex digits of SHA-256(body)>.ext`.
fn fingerprinted(source: &str, body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let hash = hex::encode(&digest[..8]);
    match source.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
        None => format!("{source}.{hash}"),
    }
}

/// The module specifier of an import or re-export line, if the line is one:
/// `import { h } from './dom.js';`, `export { x } from '../y.js';`,
/// `import './side-effect.js';`. The console's modules keep each import on
/// one line.
pub(crate) fn specifier(line: &str) -> Option<&str> {
    let line = line.trim_start();
    if !(line.starts_with("import ") || line.starts_with("export ")) {
        return None;
    }
    let rest = match line.find(" from ") {
        Some(at) => &line[at + " from ".len()..],
        None if line.starts_with("import ") => &line["import ".len()..],
        None => return None,
    };
    let rest = rest.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = &rest[1..];
    inner.find(quote).map(|end| &inner[..end])
}

/// The source name a relative specifier names from `importer`
/// (`views/board.js` + `../dom.js` → `dom.js`), or `None` if it is not
/// relative or climbs out of the assets.
pub(crate) fn resolve(importer: &str, specifier: &str) -> Option<String> {
    if !(specifier.starts_with("./") || specifier.starts_with("../")) {
        return None;
    }
    let mut parts: Vec<&str> = importer.split('/').collect();
    parts.pop(); // the importer's own file name
    for part in specifier.split('/') {
        match part {
            "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(parts.join("/"))
}

/// `text` with each import's specifier pointing at the fingerprinted name of
/// the file it imports (same directory, so only the last segment changes).
fn rewrite_imports(importer: &str, text: &str, served: &HashMap<&'static str, String>) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.split_inclusive('\n') {
        let Some(spec) = specifier(line) else {
            out.push_str(line);
            continue;
        };
        let target = resolve(importer, spec).unwrap_or_else(|| {
            panic!("{importer} imports {spec}: only relative specifiers (./, ../) are served")
        });
        let name = served.get(target.as_str()).unwrap_or_else(|| {
            panic!("{importer} imports {target}, which is not listed before it in SOURCES")
        });
        let file = name.rsplit('/').next().unwrap_or(name);
        let new_spec = match spec.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{file}"),
            None => file.to_owned(),
        };
        // The specifier is found after " from " (or "import "): replace that
        // occurrence only.
        let at = line.rfind(spec).expect("the specifier is in its line");
        out.push_str(&line[..at]);
        out.push_str(&new_spec);
        out.push_str(&line[at + spec.len()..]);
    }
    out
}

/// The page with every `{{file}}` replaced by that file's served name.
fn fill_page(page: &str, served: &HashMap<&'static str, String>) -> String {
    let mut out = String::with_capacity(page.len() + 128);
    let mut rest = page;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .expect("every {{ in index.html is closed by }}");
        let source = &after[..end];
        let name = served
            .get(source)
            .unwrap_or_else(|| panic!("index.html names {source}, which is not an asset"));
        out.push_str(name);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_import_names_an_asset_listed_before_the_importer() {
        for (i, &(importer, text)) in SOURCES.iter().enumerate() {
            for spec in text.lines().filter_map(specifier) {
                let target = resolve(importer, spec)
                    .unwrap_or_else(|| panic!("{importer}: {spec} is not relative"));
                let listed = SOURCES[..i].iter().any(|(source, _)| *source == target);
                assert!(listed, "{importer} imports {target}, not listed before it");
            }
        }
        // And the built modules import exactly the fingerprinted files.
        let assets = Assets::build();
        for asset in assets.assets() {
            for spec in asset.body.lines().filter_map(specifier) {
                let target = resolve(&asset.name, spec).unwrap();
                assert!(
                    assets.get(&target).is_some(),
                    "{} imports {target}, which is not served",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn specifiers_are_relative_to_the_importer() {
        assert_eq!(specifier("import { h } from './dom.js';"), Some("./dom.js"));
        assert_eq!(
            specifier("  export { x } from \"../api.js\";"),
            Some("../api.js")
        );
        assert_eq!(specifier("import './side.js';"), Some("./side.js"));
        assert_eq!(specifier("export function go() {"), None);
        assert_eq!(specifier("const important = 1; // import x"), None);
        assert_eq!(
            resolve("views/board.js", "../dom.js").as_deref(),
            Some("dom.js")
        );
        assert_eq!(
            resolve("views/board.js", "./items.js").as_deref(),
            Some("views/items.js")
        );
        assert_eq!(
            resolve("app.js", "./views/login.js").as_deref(),
            Some("views/login.js")
        );
        assert_eq!(resolve("app.js", "../../etc/passwd"), None);
        assert_eq!(resolve("app.js", "/app/assets/dom.js"), None);
        assert_eq!(resolve("app.js", "https://cdn.example/x.js"), None);
        // A changed import changes the importer's name too.
        let assets = Assets::build();
        let dom = assets
            .assets()
            .iter()
            .find(|a| a.source == "dom.js")
            .unwrap();
        let board = assets
            .assets()
            .iter()
            .find(|a| a.source == "views/board.js")
            .unwrap();
        let dom_file = dom.name.as_str();
        assert!(
            board.body.contains(&format!("'../{dom_file}'")),
            "{}",
            &board.body[..400]
        );
        let mut served = HashMap::new();
        for asset in assets.assets() {
            served.insert(asset.source, asset.name.clone());
        }
        served.insert("dom.js", "dom.0000000000000000.js".into());
        let text = SOURCES
            .iter()
            .find(|(s, _)| *s == "views/board.js")
            .unwrap()
            .1;
        let changed = rewrite_imports("views/board.js", text, &served);
        assert_ne!(fingerprinted("views/board.js", &changed), board.name);
    }

    #[test]
    fn no_asset_uses_inner_html_or_eval() {
        // Text from the API reaches the page as text nodes (dom.js); no code
        // is made from strings (the CSP forbids it too).
        let banned = [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout('",
            "setTimeout(\"",
            "javascript:",
        ];
        for (source, text) in SOURCES {
            for word in banned {
                assert!(!text.contains(word), "{source} uses {word}");
            }
        }
    }

    #[test]
    fn the_page_names_fingerprinted_assets_and_has_no_inline_code() {
        let assets = Assets::build();
        let page = assets.page();
        assert!(!page.contains("{{"), "{page}");
        let mut named = 0;
        for attr in ["href=\"", "src=\""] {
            for (at, _) in page.match_indices(attr) {
                let value = &page[at + attr.len()..];
                let value = &value[..value.find('"').unwrap()];
                if let Some(name) = value.strip_prefix(ASSETS_PATH) {
                    assert!(assets.get(name).is_some(), "{value} is not served");
                    assert!(
                        name.split('.')
                            .any(|part| part.len() == 16
                                && part.chars().all(|c| c.is_ascii_hexdigit())),
                        "{value} is not fingerprinted"
                    );
                    named += 1;
                } else {
                    assert!(
                        value.starts_with('#') || value.starts_with("data:"),
                        "{value}: the page refers to nothing outside its assets"
                    );
                }
            }
        }
        assert_eq!(named, 2, "the stylesheet and the entry module");
        // No inline script, style or handler: the CSP allows none.
        for (at, _) in page.match_indices("<script") {
            let tag = &page[at..at + page[at..].find('>').unwrap()];
            assert!(tag.contains(" src="), "inline script: {tag}");
        }
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains(" style="), "style attribute");
        for (at, _) in page.match_indices(" on") {
            let attr: String = page[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(
                !page[at + 1 + attr.len()..].starts_with('='),
                "event handler attribute {attr}"
            );
        }
    }

    #[test]
    fn the_first_load_is_well_under_150_kb() {
        // Everything the console loads at first: the page and every asset
        // (the views load with the entry module), uncompressed.
        let assets = Assets::build();
        let total: usize =
            assets.page().len() + assets.assets().iter().map(|a| a.body.len()).sum::<usize>();
        assert!(total < 100 * 1024, "{total} bytes");
    }
}
