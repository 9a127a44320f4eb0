//! The security log, as the use cases write to it: after the change an
//! event records has happened.

use taskgate_domain::ports::SecurityStore;
use taskgate_domain::security::SecurityEvent;

/// Appends `event`, tagged with the request's id. The change it records
/// has happened already, so a store failure here does not undo or fail
/// it: the event goes to the error log whole (events hold no secrets), to
/// be recovered from there.
pub async fn record(log: &dyn SecurityStore, request_id: &str, event: SecurityEvent) {
    let event = event.with_request_id(request_id);
    if let Err(e) = log.append_security_event(&event).await {
        let event = serde_json::to_string(&event).unwrap_or_default();
        tracing::error!(error = %e, event, "could not append to the security log");
    }
}
