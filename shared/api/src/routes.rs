//! The routes as a deployment sees them: method, path, and the Lambda
//! function that serves each. Derived from the router's document, where each
//! canonical operation's id is its function's name; a compatibility route
//! is served by its canonical route's function. Nothing here is kept by
//! hand: the SAM template and the API Gateway fixtures are checked against
//! this list (tests/e2e/infra.rs, tests/e2e/lambda.rs).

use http::Method;

use crate::app::{ALIASES, api};
use crate::openapi::{METHODS, operation};

/// One method and path template (`{name}` marks a parameter, as in API
/// Gateway) and the function deployed for it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: Method,
    pub path: String,
    pub function: String,
}

/// Every route of the API, canonical ones first, in path order, then the
/// compatibility routes, then the console's.
pub fn routes() -> Vec<Route> {
    let (_, doc) = api().split_for_parts();
    let mut routes = Vec::new();
    for (path, _) in &doc.paths.paths {
        for method in METHODS {
            if let Some(op) = operation(&doc, &method, path) {
                let function = op
                    .operation_id
                    .clone()
                    .unwrap_or_else(|| panic!("{method} {path} has no operation id"));
                routes.push(Route {
                    method,
                    path: path.clone(),
                    function,
                });
            }
        }
    }
    for alias in &ALIASES {
        let canonical = routes
            .iter()
            .find(|r| r.method == alias.canonical_method && r.path == alias.canonical_path)
            .unwrap_or_else(|| {
                panic!(
                    "the alias {} {} has no canonical route",
                    alias.method, alias.path
                )
            })
            .function
            .clone();
        routes.push(Route {
            method: alias.method.clone(),
            path: alias.path.to_owned(),
            function: canonical,
        });
    }
    // The web console: one function serves its page and files.
    for (method, path) in taskgate_console::ROUTES {
        routes.push(Route {
            method,
            path: path.to_owned(),
            function: "console".to_owned(),
        });
    }
    routes
}

/// The names of the HTTP functions, each once, in order.
pub fn functions() -> Vec<String> {
    let mut names: Vec<String> = routes().into_iter().map(|r| r.function).collect();
    names.sort();
    names.dedup();
    names
}
