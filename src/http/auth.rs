//! Bearer authentication: a valid token whose user still exists and is enabled.

use std::time::{Duration, Instant};

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use super::error::ApiError;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::users::{self, User};

/// The signed-in user.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_token")]
pub struct BearerAuth(pub SignedIn);

/// A user whose token was found good, and when.
pub struct SignedIn {
    pub user: User,
    checked_at: Instant,
}

/// A form that arrived this soon after its token was checked is not checked
/// again: a change to the account in between could as well have come just
/// after. Reading the account again costs a system call per turn.
const RECHECK_AFTER: Duration = Duration::from_millis(2);

async fn check_token(req: &Request, bearer: Bearer) -> poem::Result<SignedIn> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("state missing"))?;
    let Some(claims) = state.tokens.check(&bearer.token) else {
        return Err(ApiError::unauthorized().into());
    };
    let Ok(user_id) = claims.sub.parse::<i64>() else {
        return Err(ApiError::unauthorized().into());
    };
    let user = account(state, user_id)?;
    if !user.takes_token(claims.iat, claims.generation) {
        return Err(ApiError::unauthorized().into());
    }
    Ok(SignedIn {
        user,
        checked_at: Instant::now(),
    })
}

/// The account `id` as it is now (kept in memory, else read); a deleted one
/// is a 401.
fn account(state: &AppState, id: i64) -> Result<User, ApiError> {
    match state.accounts.get(id) {
        Ok(user) => Ok(user),
        Err(miss) => {
            let user = state
                .store
                .read_now(|conn| users::by_id(conn, id))
                .map_err(|err| match err {
                    StoreError::NotFound => ApiError::unauthorized(),
                    err => ApiError::from(err),
                })?;
            state.accounts.keep(miss, &user);
            Ok(user)
        }
    }
}

impl BearerAuth {
    /// The user as the account is now. A form's body may take minutes to
    /// arrive, and an account disabled, deleted or given a new password
    /// meanwhile is refused, as a new request would be; a new allowance
    /// applies. A form that arrived within `RECHECK_AFTER` of the token
    /// check is taken as checked.
    pub fn still_signed_in(&self, state: &AppState) -> Result<User, ApiError> {
        let then = &self.0.user;
        if self.0.checked_at.elapsed() < RECHECK_AFTER {
            return Ok(then.clone());
        }
        let now = account(state, then.id)?;
        if now.disabled
            || now.token_generation != then.token_generation
            || now.password_changed_at != then.password_changed_at
        {
            return Err(ApiError::unauthorized());
        }
        Ok(now)
    }

    /// Checks an optional `user_id` from a body or query against the token's.
    pub fn check_user_id(&self, user_id: Option<i64>) -> Result<&User, ApiError> {
        match user_id {
            Some(id) if id != self.0.user.id => Err(ApiError::forbidden_user()),
            _ => Ok(&self.0.user),
        }
    }
}
