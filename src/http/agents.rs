//! `/categories`, `/models` and `/select`.

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::auth::BearerAuth;
use super::error::ApiError;
use super::json_body::JsonBody;
use crate::agents;
use crate::state::AppState;
use crate::store::users;

pub struct AgentsApi;

/// An agent, without its system prompt.
#[derive(Debug, Clone, Object)]
pub struct AgentInfo {
    /// Stable id, `asst_` followed by letters and digits.
    pub assistant_id: String,
    pub agent_name: String,
    pub description: String,
    /// The model this agent uses unless the conversation names another.
    pub default_model: String,
    /// Whether this is the category's default agent.
    pub default: bool,
}

#[derive(Debug, Object)]
pub struct CategoryInfo {
    pub category: String,
    pub title: String,
    pub description: String,
    pub agents: Vec<AgentInfo>,
}

#[derive(Debug, Object)]
pub struct CategoriesResponse {
    pub categories: Vec<CategoryInfo>,
}

#[derive(Debug, Object)]
pub struct ModelsResponse {
    /// Models a conversation or a turn may name.
    pub models: Vec<String>,
    /// The model used when nothing names one.
    pub default_model: String,
}

#[derive(Debug, Object)]
pub struct SelectRequest {
    /// Optional: the token says who you are. If given, it must be yours.
    pub user_id: Option<i64>,
    pub category: String,
}

#[derive(Debug, Object)]
pub struct SelectResponse {
    pub category: String,
    pub agents: Vec<AgentInfo>,
}

/// The model an agent runs on: the catalog's choice for it when the server
/// offers that model, else the server's default (the provider's first model).
pub fn agent_model(state: &AppState, agent: &agents::Agent) -> String {
    agent
        .default_model
        .as_deref()
        .filter(|m| state.providers.offers(m))
        .unwrap_or(&state.providers.default_model)
        .to_owned()
}

fn agent_infos(state: &AppState, category: &agents::Category) -> Vec<AgentInfo> {
    let default_id = &category.default_agent().assistant_id;
    category
        .agents
        .iter()
        .map(|a| AgentInfo {
            assistant_id: a.assistant_id.clone(),
            agent_name: a.agent_name.clone(),
            description: a.description.clone(),
            default_model: agent_model(state, a),
            default: &a.assistant_id == default_id,
        })
        .collect()
}

pub fn unknown_category(name: &str) -> ApiError {
    ApiError::bad_request(
        "unknown_category",
        format!(
            "There is no category {:?}; see GET /categories.",
            name.chars().take(80).collect::<String>()
        ),
    )
}

#[OpenApi(tag = "ApiTags::Agents")]
impl AgentsApi {
    /// The agent catalog: categories and their agents.
    #[oai(path = "/categories", method = "get", operation_id = "categories")]
    async fn categories(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        /// Optional: must be your own id.
        user_id: Query<Option<i64>>,
    ) -> Result<Json<CategoriesResponse>, ApiError> {
        auth.check_user_id(user_id.0)?;
        let categories = state
            .catalog
            .categories
            .iter()
            .map(|c| CategoryInfo {
                category: c.category.clone(),
                title: c.title.clone(),
                description: c.description.clone(),
                agents: agent_infos(&state, c),
            })
            .collect();
        Ok(Json(CategoriesResponse { categories }))
    }

    /// The models this server offers.
    #[oai(path = "/models", method = "get", operation_id = "models")]
    async fn models(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        /// Optional: must be your own id.
        user_id: Query<Option<i64>>,
    ) -> Result<Json<ModelsResponse>, ApiError> {
        auth.check_user_id(user_id.0)?;
        Ok(Json(ModelsResponse {
            models: state.providers.models.clone(),
            default_model: state.providers.default_model.clone(),
        }))
    }

    /// Select an agent category; the choice is remembered for the user.
    #[oai(path = "/select", method = "post", operation_id = "select")]
    async fn select(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        body: JsonBody<SelectRequest>,
    ) -> Result<Json<SelectResponse>, ApiError> {
        let user_id = auth.check_user_id(body.user_id)?.id;
        let category = state
            .catalog
            .category(&body.category)
            .ok_or_else(|| unknown_category(&body.category))?;
        let name = category.category.clone();
        state
            .store
            .write(move |conn| users::set_selected_category(conn, user_id, &name))
            .await?;
        state.accounts.forget(user_id);
        Ok(Json(SelectResponse {
            category: category.category.clone(),
            agents: agent_infos(&state, category),
        }))
    }
}
