//! `/usage` and `/config/rate-limit`.

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::auth::BearerAuth;
use super::error::ApiError;
use crate::quota::{reset_at, utc_day};
use crate::state::AppState;
use crate::store;

pub struct UsageApi;

#[derive(Debug, Object)]
pub struct ModelUsage {
    pub llm_model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub requests: u64,
}

#[derive(Debug, Object)]
pub struct DayUsage {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub tokens_used: u64,
}

#[derive(Debug, Object)]
pub struct UsageResponse {
    pub user_id: i64,
    /// Today, `YYYY-MM-DD`, UTC.
    pub day: String,
    pub tokens_used: u64,
    /// The daily allowance in tokens; 0 means unlimited.
    pub daily_limit: u64,
    /// Tokens left today (null when unlimited).
    #[oai(nullable)]
    pub remaining: Option<u64>,
    /// When the allowance resets (the next UTC midnight).
    pub reset_at: String,
    /// Turns today.
    pub requests: u64,
    pub by_model: Vec<ModelUsage>,
    pub last_30_days: Vec<DayUsage>,
}

#[derive(Debug, Object)]
pub struct RateLimitResponse {
    /// The default daily allowance in tokens; 0 means unlimited.
    pub daily_token_limit: u64,
    /// Always `utc_day`.
    pub window: String,
    pub reset_at: String,
}

#[OpenApi(tag = "ApiTags::Usage")]
impl UsageApi {
    /// Your token usage today and over the last 30 days.
    #[oai(path = "/usage", method = "get", operation_id = "usage")]
    async fn usage(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        /// Optional: must be your own id.
        user_id: Query<Option<i64>>,
    ) -> Result<Json<UsageResponse>, ApiError> {
        let user = auth.check_user_id(user_id.0)?.clone();
        let now = state.quota.clock.now();
        let day = utc_day(now);
        let since = utc_day(now - chrono::Duration::days(29));
        let (user_id, query_day) = (user.id, day.clone());
        let (models, days) = state
            .store
            .read(move |conn| store::usage::summary(conn, user_id, &query_day, &since))
            .await?;
        let tokens_used: u64 = models
            .iter()
            .map(|m| m.prompt_tokens + m.completion_tokens)
            .sum();
        let requests = models.iter().map(|m| m.requests).sum();
        let daily_limit = user
            .daily_token_limit
            .unwrap_or(state.settings.daily_token_limit);
        Ok(Json(UsageResponse {
            user_id: user.id,
            day,
            tokens_used,
            daily_limit,
            remaining: (daily_limit > 0).then(|| daily_limit.saturating_sub(tokens_used)),
            reset_at: crate::time::rfc3339(reset_at(now)),
            requests,
            by_model: models
                .into_iter()
                .map(|m| ModelUsage {
                    llm_model: m.llm_model,
                    prompt_tokens: m.prompt_tokens,
                    completion_tokens: m.completion_tokens,
                    requests: m.requests,
                })
                .collect(),
            last_30_days: days
                .into_iter()
                .map(|d| DayUsage {
                    day: d.day,
                    tokens_used: d.tokens_used,
                })
                .collect(),
        }))
    }

    /// The default daily allowance and when it resets.
    #[oai(
        path = "/config/rate-limit",
        method = "get",
        operation_id = "rate_limit"
    )]
    async fn rate_limit(&self, state: Data<&AppState>) -> Json<RateLimitResponse> {
        Json(RateLimitResponse {
            daily_token_limit: state.settings.daily_token_limit,
            window: "utc_day".into(),
            reset_at: crate::time::rfc3339(reset_at(state.quota.clock.now())),
        })
    }
}
