//! The platform's one error type. It names what went wrong in the platform's own terms, with
//! the stable code clients match on; the gateway alone decides which HTTP status each kind is.

use tongban_policy::grant::GrantError;
use tongban_policy::org::OrgError;
use tongban_policy::workflow::WorkflowError;

use crate::auth::PasswordBusy;
use crate::store::StoreError;

/// What kind of refusal or failure an error is; the edge maps each to one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller's role or department does not allow it.
    Forbidden,
    /// The thing named does not exist (or the caller may not know that it does).
    NotFound,
    /// The thing's state does not allow it now: changed by someone else, already exists,
    /// not possible in this workflow state.
    Conflict,
    /// A well-formed request whose content breaks a rule.
    Invalid,
    /// The platform cannot take the work now; try again shortly.
    Busy,
    /// The platform's own failure; the caller learns nothing more.
    Internal,
}

/// A platform refusal or failure with a stable code. The code is the contract; titles and
/// details are for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct PlatformError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
}

pub type Result<T, E = PlatformError> = std::result::Result<T, E>;

impl PlatformError {
    pub fn new(kind: ErrorKind, code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        PlatformError { kind, code, title, detail: detail.into() }
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        PlatformError::new(ErrorKind::Forbidden, "forbidden", "Forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        PlatformError::new(ErrorKind::NotFound, "not_found", "Not found", detail)
    }

    /// Changed by someone else since the caller read it.
    pub fn conflict(detail: impl Into<String>) -> Self {
        PlatformError::new(ErrorKind::Conflict, "version_conflict", "Changed by someone else", detail)
    }

    /// Content that breaks the rule named by `code`.
    pub fn unprocessable(code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        PlatformError::new(ErrorKind::Invalid, code, title, detail)
    }

    /// Content that breaks a rule without a code of its own.
    pub fn invalid(detail: impl Into<String>) -> Self {
        PlatformError::unprocessable("invalid_request", "Invalid request", detail)
    }

    /// Items a resource does not share, asked for in a demand or a grant change. One code has
    /// one kind, wherever the items were found ungrantable.
    pub fn ungrantable(items: &[&str]) -> Self {
        PlatformError::unprocessable(
            "ungrantable_items",
            "Items cannot be granted",
            format!("items {items:?} are unknown or not shared (不予共享) by the resource"),
        )
    }

    /// The platform's own failure. The cause goes to the diagnostic log; the caller gets an
    /// opaque detail.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        PlatformError::new(
            ErrorKind::Internal,
            "internal",
            "Internal error",
            "the gateway could not complete the request; it has been logged",
        )
    }
}

impl From<StoreError> for PlatformError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => PlatformError::not_found(format!("{what} does not exist")),
            StoreError::Conflict(_) => PlatformError::conflict(e.to_string()),
            StoreError::Duplicate(_) => {
                PlatformError::new(ErrorKind::Conflict, "already_exists", "Already exists", e.to_string())
            }
            other => PlatformError::internal(&other),
        }
    }
}

impl From<WorkflowError> for PlatformError {
    fn from(e: WorkflowError) -> Self {
        let detail = e.to_string();
        let (kind, code, title) = match e {
            WorkflowError::IllegalTransition { .. } => {
                (ErrorKind::Conflict, "illegal_transition", "Not possible in this state")
            }
            WorkflowError::WrongRole { .. } => (ErrorKind::Forbidden, "wrong_role", "Wrong role"),
            WorkflowError::MissingReason(_) => (ErrorKind::Invalid, "missing_reason", "Reason missing"),
            WorkflowError::MissingBasis => (ErrorKind::Invalid, "missing_basis", "Basis missing"),
            WorkflowError::Widening(_) => (ErrorKind::Invalid, "widening", "Wider than requested"),
        };
        PlatformError::new(kind, code, title, detail)
    }
}

impl From<GrantError> for PlatformError {
    fn from(e: GrantError) -> Self {
        let detail = e.to_string();
        let (kind, code, title) = match e {
            GrantError::Ungrantable(_) => {
                (ErrorKind::Invalid, "ungrantable_items", "Items cannot be granted")
            }
            GrantError::Widening(_) => (ErrorKind::Invalid, "widening", "Wider than granted"),
            GrantError::IllegalChange { .. } => {
                (ErrorKind::Conflict, "illegal_transition", "Not possible in this state")
            }
            GrantError::EmptyValidity { .. } => (ErrorKind::Invalid, "invalid_request", "Invalid request"),
        };
        PlatformError::new(kind, code, title, detail)
    }
}

impl From<OrgError> for PlatformError {
    fn from(e: OrgError) -> Self {
        PlatformError::invalid(e.to_string())
    }
}

impl From<PasswordBusy> for PlatformError {
    fn from(_: PasswordBusy) -> Self {
        PlatformError::new(
            ErrorKind::Busy,
            "sign_in_busy",
            "Sign-in busy",
            "every password check is in use; try again shortly",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ungrantable_items_is_one_kind_wherever_it_is_found() {
        let from_demand = PlatformError::ungrantable(&["marital_status"]);
        let from_grant = PlatformError::from(GrantError::Ungrantable(vec!["marital_status".into()]));
        assert_eq!((from_demand.kind, from_demand.code), (from_grant.kind, from_grant.code));
    }
}
