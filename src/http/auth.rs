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
    let state = state_of(req)?;
    let token = verify(state, &bearer)?;
    match signed_in_user(state, token).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(ApiError::unauthorized().into()),
        Err(err) => Err(err.into()),
    }
}

fn state_of(req: &Request) -> Result<&AppState, ApiError> {
    req.data::<AppState>()
        .ok_or_else(|| ApiError::internal("state missing"))
}

fn verify(state: &AppState, bearer: &Bearer) -> Result<SignedToken, ApiError> {
    let claims = state
        .tokens
        .check(&bearer.token)
        .ok_or_else(ApiError::unauthorized)?;
    let user_id = claims
        .sub
        .parse::<i64>()
        .map_err(|_| ApiError::unauthorized())?;
    Ok(SignedToken {
        user_id,
        issued_at: claims.iat,
    })
}

/// The user a token names, if they may still sign in (a read).
pub async fn signed_in_user(
    state: &AppState,
    token: SignedToken,
) -> Result<Option<User>, ApiError> {
    Ok(state
        .store
        .read(move |conn| users::signed_in(conn, token.user_id, token.issued_at))
        .await?)
}

/// A token this server signed and that has not expired; whether its user
/// may still sign in is left to the route, which checks it in the same read
/// as its own data (`users::signed_in`). Documented as the same bearer
/// scheme as `BearerAuth`.
#[derive(SecurityScheme)]
#[oai(
    rename = "BearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_signature"
)]
pub struct BearerToken(pub SignedToken);

/// What a valid token says.
#[derive(Debug, Clone, Copy)]
pub struct SignedToken {
    pub user_id: i64,
    pub issued_at: i64,
}

async fn check_signature(req: &Request, bearer: Bearer) -> poem::Result<SignedToken> {
    Ok(verify(state_of(req)?, &bearer)?)
}

impl BearerToken {
    /// Refuses a `user_id` other than the token's.
    pub fn check_user_id(&self, user_id: Option<i64>) -> Result<(), ApiError> {
        match user_id {
            Some(id) if id != self.0.user_id => Err(ApiError::forbidden_user()),
            _ => Ok(()),
        }
    }
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
