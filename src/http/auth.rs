//! Bearer authentication: a valid token whose user still exists and is enabled.

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use super::error::ApiError;
use crate::state::AppState;
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
    let user = state
        .store
        .read_now(|conn| users::signed_in(conn, user_id, claims.iat, claims.generation))
        .map_err(ApiError::from)?;
    user.ok_or_else(|| ApiError::unauthorized().into())
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
