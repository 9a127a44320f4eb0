//! Why a project, item or user use case did not happen: one enum for the
//! three, each variant one answer. Transports map it in one place (the
//! HTTP layer: to a status and a problem type); the texts here are the
//! details clients read.

use taskgate_domain::permission::Denied;
use taskgate_domain::ports::{Cause, StoreError};
use taskgate_domain::project::ProjectId;
use taskgate_domain::project::commands::Refused;
use taskgate_domain::user::Username;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller may not do this, or may not even learn that the thing
    /// exists ([`Denied::NotFound`]).
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The project or item as it stands refuses the change.
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("there is no such project")]
    NoSuchProject,
    /// No such item in that project (or it was deleted).
    #[error("there is no such item")]
    NoSuchItem,
    #[error("there is no user named {:?}", .0.as_str())]
    NoSuchUser(Username),
    #[error("the username {:?} is already taken", .0.as_str())]
    UsernameTaken(Username),
    /// An owner is not deleted: a project always has one. They hand these
    /// over first.
    #[error("{user} owns projects {}", comma_separated(.projects))]
    OwnsProjects {
        user: Username,
        projects: Vec<ProjectId>,
    },
    /// The store refused or failed; [`StoreError::Conflict`] here is a
    /// race lost more often than the loop tries ([`crate::conflict`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or an unexpected failure: the cause is for the log only.
    #[error("internal error")]
    Internal(#[source] Cause),
}

impl Error {
    /// An internal error caused by `cause` (a message or an error).
    pub fn internal(cause: impl Into<Cause>) -> Self {
        Self::Internal(cause.into())
    }
}

/// `a, b, c`.
fn comma_separated(projects: &[ProjectId]) -> String {
    let ids: Vec<String> = projects.iter().map(ToString::to_string).collect();
    ids.join(", ")
}
