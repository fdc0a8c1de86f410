//! `/register`, `/login` and `/validate-user`.

use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::auth::BearerAuth;
use super::error::ApiError;
use super::json_body::JsonBody;
use crate::accounts::{check_password_rules, normalise_email};
use crate::config::Secret;
use crate::state::AppState;
use crate::store::{StoreError, users};

pub struct AccountsApi;

#[derive(Debug, Object)]
pub struct RegisterRequest {
    /// An email address; stored trimmed, compared without regard to case.
    pub email: String,
    /// At least 8 characters.
    pub password: String,
    /// The same password again.
    #[oai(rename = "confirmPassword")]
    pub confirm_password: String,
}

#[derive(Debug, Object)]
pub struct RegisteredUser {
    pub user_id: i64,
    pub email: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<RegisteredUser>),
}

#[derive(Debug, Object)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Object)]
pub struct UserRef {
    pub user_id: i64,
    pub email: String,
}

#[derive(Debug, Object)]
pub struct LoginResponse {
    /// A JWT to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// When the token expires (RFC 3339, UTC).
    pub expires_at: String,
    pub user: UserRef,
}

#[derive(Debug, Object)]
pub struct ValidateResponse {
    pub user_id: i64,
    pub email: String,
    /// When the token expires (RFC 3339, UTC).
    pub expires_at: String,
}

#[OpenApi(tag = "ApiTags::Accounts")]
impl AccountsApi {
    /// Create an account.
    #[oai(path = "/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        state: Data<&AppState>,
        body: JsonBody<RegisterRequest>,
    ) -> Result<RegisterResponse, ApiError> {
        let email = normalise_email(&body.email)
            .map_err(|e| ApiError::bad_request("invalid_email", e.message).with_field(e.field))?;
        check_password_rules(&body.password).map_err(|e| {
            ApiError::bad_request("invalid_password", e.message).with_field(e.field)
        })?;
        if body.password != body.confirm_password {
            return Err(ApiError::bad_request(
                "passwords_differ",
                "The two passwords are not the same.",
            )
            .with_field("confirmPassword"));
        }
        let taken = |email: &str| {
            ApiError::bad_request(
                "email_taken",
                format!("An account for {email} already exists; sign in instead."),
            )
            .with_field("email")
        };
        let lookup = email.clone();
        if state
            .store
            .read(move |conn| users::by_email(conn, &lookup))
            .await?
            .is_some()
        {
            return Err(taken(&email));
        }

        let hash = state.hasher.hash(Secret::new(body.0.password)).await?;
        let insert_email = email.clone();
        let user = match state
            .store
            .write(move |conn| users::insert(conn, &insert_email, &hash))
            .await
        {
            Ok(user) => user,
            Err(StoreError::Conflict) => return Err(taken(&email)),
            Err(err) => return Err(err.into()),
        };
        tracing::info!(user.id = user.id, "account created");
        Ok(RegisterResponse::Created(Json(RegisteredUser {
            user_id: user.id,
            email: user.email,
            created_at: user.created_at,
        })))
    }

    /// Sign in and get a token.
    ///
    /// An unknown email and a wrong password answer alike. After 10 failures
    /// for one email, or 50 from one address, within 15 minutes, logins answer
    /// 429 until 15 minutes have passed since the last failure.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&AppState>,
        request: &poem::Request,
        body: JsonBody<LoginRequest>,
    ) -> Result<Json<LoginResponse>, ApiError> {
        let address = request.remote_addr().as_socket_addr().map(|a| a.ip());
        let email = body.email.trim().to_owned();
        let attempt = match state.login_guard.begin(&email, address) {
            Ok(attempt) => attempt,
            Err(wait) => {
                let mut err = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    "Too many failed sign-ins; wait before trying again.",
                );
                err.retry_after = Some(wait.as_secs().max(1));
                return Err(err);
            }
        };

        let lookup = email.clone();
        let user = if email.is_empty() || body.password.len() > crate::accounts::MAX_PASSWORD_BYTES
        {
            None
        } else {
            match state
                .store
                .read(move |conn| users::by_email(conn, &lookup))
                .await
            {
                Ok(user) => user,
                Err(err) => {
                    attempt.succeeded();
                    return Err(err.into());
                }
            }
        };
        let hash = user
            .as_ref()
            .filter(|u| !u.disabled)
            .map(|u| u.password_hash.clone());
        let password = Secret::new(body.0.password);
        let valid = state.hasher.verify(password, hash).await;
        let user = match user {
            Some(user) if valid && !user.disabled => {
                attempt.succeeded();
                user
            }
            _ => {
                drop(attempt);
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_credentials",
                    "The email or the password is wrong.",
                ));
            }
        };

        let issued = state.tokens.issue(user.id, user.token_generation)?;
        let expires_in = (issued.expires_at - chrono::Utc::now())
            .num_seconds()
            .max(0) as u64;
        Ok(Json(LoginResponse {
            token: issued.token,
            token_type: "Bearer".into(),
            expires_in,
            expires_at: crate::time::rfc3339(issued.expires_at),
            user: UserRef {
                user_id: user.id,
                email: user.email,
            },
        }))
    }

    /// Check a token and say whose it is.
    #[oai(
        path = "/validate-user",
        method = "get",
        operation_id = "validate_user"
    )]
    async fn validate_user(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        request: &poem::Request,
        /// Optional: must be your own id.
        user_id: Query<Option<i64>>,
    ) -> Result<Json<ValidateResponse>, ApiError> {
        auth.check_user_id(user_id.0)?;
        let token = request
            .header("Authorization")
            .and_then(|h| h.get(7..))
            .unwrap_or_default()
            .trim();
        let expires = state
            .tokens
            .check(token)
            .map(|claims| claims.exp)
            .unwrap_or(0);
        let expires_at = chrono::DateTime::from_timestamp(expires, 0).unwrap_or_default();
        Ok(Json(ValidateResponse {
            user_id: auth.0.user.id,
            email: auth.0.user.email,
            expires_at: crate::time::rfc3339(expires_at),
        }))
    }
}
