//! The first admin: created at start-up when the store has no admin at all.

use anyhow::{Context, bail};
use rand::RngExt as _;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use taskgate_api::AppState;
use taskgate_domain::password::Password;
use taskgate_domain::ports::StoreError;
use taskgate_domain::user::{Level, User, Username};

/// The admin created at this start, if one was.
pub struct FirstAdmin {
    pub username: Username,
    /// The generated password, to show once. `None` when it came from
    /// `TASKGATE_ADMIN_PASSWORD`.
    pub generated_password: Option<SecretString>,
}

/// 24 characters from 62: about 143 bits.
fn generate_password(username: &Username) -> Password {
    loop {
        let raw: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        // The policy could (very rarely) refuse a random string that happens
        // to contain the username; draw again.
        if let Ok(password) = Password::parse(&raw, Some(username)) {
            return password;
        }
    }
}

pub async fn ensure_first_admin(
    state: &AppState,
    username: &Username,
    configured_password: Option<&SecretString>,
) -> anyhow::Result<Option<FirstAdmin>> {
    if state.store.count_admins().await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match configured_password {
        Some(raw) => (
            Password::parse(raw.expose_secret(), Some(username))
                .map_err(|e| anyhow::anyhow!("TASKGATE_ADMIN_PASSWORD {e}"))?,
            false,
        ),
        None => (generate_password(username), true),
    };
    let shown = generated.then(|| SecretString::from(password.expose().to_owned()));
    let hash = state
        .hash_password(password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let admin = User::new(username.clone(), hash, Level::Admin, None, None);
    match state.store.insert_user(&admin).await {
        Ok(()) => {
            tracing::info!(username = %username, "created the first admin");
            Ok(Some(FirstAdmin {
                username: username.clone(),
                generated_password: shown,
            }))
        }
        Err(StoreError::AlreadyExists) => {
            // Another server instance bootstrapped at the same moment, or the
            // name belongs to a plain user.
            if state.store.count_admins().await? > 0 {
                return Ok(None);
            }
            bail!(
                "there is no admin account, and the username {username} belongs to a plain user; \
                 set TASKGATE_ADMIN_USERNAME to another name"
            )
        }
        Err(e) => Err(e).context("cannot create the first admin"),
    }
}
