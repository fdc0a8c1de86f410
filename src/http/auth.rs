//! Bearer authentication: a valid token whose user still exists and is enabled.

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
pub struct BearerAuth(pub User);

async fn check_token(req: &Request, bearer: Bearer) -> poem::Result<User> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("state missing"))?;
    let Some(claims) = state.tokens.check(&bearer.token) else {
        return Err(ApiError::unauthorized().into());
    };
    let Ok(user_id) = claims.sub.parse::<i64>() else {
        return Err(ApiError::unauthorized().into());
    };
    let user = match state.accounts.get(user_id) {
        Ok(user) => user,
        Err(miss) => {
            let user = state
                .store
                .read_now(|conn| users::by_id(conn, user_id))
                .map_err(|err| match err {
                    StoreError::NotFound => ApiError::unauthorized(),
                    err => ApiError::from(err),
                })?;
            state.accounts.keep(miss, &user);
            user
        }
    };
    if !user.takes_token(claims.iat, claims.generation) {
        return Err(ApiError::unauthorized().into());
    }
    Ok(user)
}

impl BearerAuth {
    /// Checks an optional `user_id` from a body or query against the token's.
    pub fn check_user_id(&self, user_id: Option<i64>) -> Result<&User, ApiError> {
        match user_id {
            Some(id) if id != self.0.id => Err(ApiError::forbidden_user()),
            _ => Ok(&self.0),
        }
    }
}
