//! `/version`, `/healthz` and the metrics routes.

use poem::web::Data;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::error::ApiError;
use crate::state::AppState;

pub struct SystemApi;

#[derive(Debug, Object)]
pub struct VersionResponse {
    /// Always `magdi`.
    pub name: String,
    pub version: String,
    pub git_commit: String,
    pub build_time: String,
    /// The database schema version this binary runs.
    pub schema_version: i64,
}

#[derive(Debug, Object)]
pub struct HealthResponse {
    /// `ok`.
    pub status: String,
}

#[derive(Debug, Object)]
pub struct VisitorsResponse {
    pub visitors: u64,
}

#[derive(Debug, Object)]
pub struct TokensTodayResponse {
    pub tokens_today: u64,
}

#[derive(ApiResponse)]
pub enum MetricsResponse {
    /// Prometheus text exposition.
    #[oai(
        status = 200,
        content_type = "text/plain; version=0.0.4; charset=utf-8"
    )]
    Ok(PlainText<String>),
}

#[OpenApi(tag = "ApiTags::System")]
impl SystemApi {
    /// The version of this Magdi.
    #[oai(path = "/version", method = "get", operation_id = "version")]
    async fn version(&self, state: Data<&AppState>) -> Json<VersionResponse> {
        let info = crate::build_info();
        Json(VersionResponse {
            name: "magdi".into(),
            version: info.version.into(),
            git_commit: info.git_commit.into(),
            build_time: info.build_time.into(),
            schema_version: state.store.schema_version(),
        })
    }

    /// 200 when the database answers.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self, state: Data<&AppState>) -> Result<Json<HealthResponse>, ApiError> {
        state.store.ping().await.map_err(|err| {
            tracing::error!(error = %err, "health check: the database does not answer");
            ApiError::new(
                poem::http::StatusCode::SERVICE_UNAVAILABLE,
                "unhealthy",
                "The database does not answer.",
            )
        })?;
        Ok(Json(HealthResponse {
            status: "ok".into(),
        }))
    }

    /// Prometheus metrics.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&AppState>) -> MetricsResponse {
        MetricsResponse::Ok(PlainText(state.metrics.render()))
    }

    /// Count one visit.
    #[oai(
        path = "/metrics-update-visitors",
        method = "get",
        operation_id = "metrics_update_visitors"
    )]
    async fn update_visitors(
        &self,
        state: Data<&AppState>,
        request: &poem::Request,
    ) -> Json<VisitorsResponse> {
        let address = request.remote_addr().as_socket_addr().map(|a| a.ip());
        state.metrics.count_visit(address);
        Json(VisitorsResponse {
            visitors: state.metrics.visitors.get(),
        })
    }

    /// Recompute the token gauges from the database.
    #[oai(
        path = "/metrics-update-tokens",
        method = "get",
        operation_id = "metrics_update_tokens"
    )]
    async fn update_tokens(&self, state: Data<&AppState>) -> Json<TokensTodayResponse> {
        super::refresh_gauges(&state).await;
        Json(TokensTodayResponse {
            tokens_today: state.metrics.tokens_today.get().max(0) as u64,
        })
    }
}
