//! Roles checked against the calls their functions made, both ways: every
//! call must be allowed by a statement of its function's role (as IAM
//! evaluates an Allow: action and resource patterns with `*` and `?`), and
//! every (action, resource) a role grants must have been used by some call,
//! or be named in the test with the reason it is kept.

use std::collections::BTreeSet;

use super::proxy::Call;
use super::template::Function;

/// IAM's wildcard match: `*` any run of characters, `?` any one.
pub fn matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Linear-space dynamic programme over (pattern, text) prefixes.
    let mut row = vec![false; t.len() + 1];
    row[0] = true;
    for &c in &p {
        let mut next = vec![false; t.len() + 1];
        if c == '*' {
            let mut any = false;
            for j in 0..=t.len() {
                any |= row[j];
                next[j] = any;
            }
        } else {
            for j in 1..=t.len() {
                next[j] = row[j - 1] && (c == '?' || c == t[j - 1]);
            }
        }
        row = next;
    }
    row[t.len()]
}

fn action_matches(pattern: &str, action: &str) -> bool {
    matches(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

/// A grant: one action on one resource pattern of one function's role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub function: String,
    pub action: String,
    pub resource: String,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Calls no statement of the function's role allows: AccessDenied on AWS.
    pub denied: BTreeSet<Call>,
    /// Grants no recorded call used.
    pub unused: BTreeSet<Grant>,
}

pub fn check(functions: &[Function], calls: &[Call]) -> Report {
    let mut report = Report::default();
    let mut used = BTreeSet::new();
    for call in calls {
        let Some(function) = functions.iter().find(|f| f.logical_id == call.function) else {
            report.denied.insert(call.clone());
            continue;
        };
        let mut allowed = false;
        for statement in &function.statements {
            for action in &statement.actions {
                if !action_matches(action, &call.action) {
                    continue;
                }
                for resource in &statement.resources {
                    if matches(resource, &call.resource) {
                        allowed = true;
                        used.insert(Grant {
                            function: function.logical_id.clone(),
                            action: action.clone(),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
        if !allowed {
            report.denied.insert(call.clone());
        }
    }
    for function in functions {
        for statement in &function.statements {
            for action in &statement.actions {
                for resource in &statement.resources {
                    let grant = Grant {
                        function: function.logical_id.clone(),
                        action: action.clone(),
                        resource: resource.clone(),
                    };
                    if !used.contains(&grant) {
                        report.unused.insert(grant);
                    }
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn iam_wildcards_match_as_iam_does() {
        let cases = [
            ("arn:aws:s3:::b/files/*", "arn:aws:s3:::b/files/x/y", true),
            ("arn:aws:s3:::b/files/*", "arn:aws:s3:::b/uploads/x", false),
            (
                "arn:aws:dynamodb:r:a:table/t",
                "arn:aws:dynamodb:r:a:table/t/index/i",
                false,
            ),
            (
                "arn:aws:dynamodb:r:a:table/t/index/*",
                "arn:aws:dynamodb:r:a:table/t/index/i",
                true,
            ),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*", "", true),
            ("x*y*z", "xaaybbz", true),
            ("x*y*z", "xaaybb", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern} ~ {text}");
        }
    }
}
