//! Conversations: start, upload, chat, end, list and read.

use std::time::Duration;

use poem::http::StatusCode;
use poem::web::Data;
use poem::web::sse::{Event, SSE};
use poem::{IntoResponse, Response};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::agents::{agent_model, unknown_category};
use super::auth::BearerAuth;
use super::error::ApiError;
use super::form::{ChatForm, Form, UploadForm};
use super::json_body::JsonBody;
use crate::conversation::{
    Ask, Refusal, TurnError, TurnInput, TurnOutcome, admit, complete_turn, prepare_turn,
};
use crate::llm::LlmError;
use crate::quota::Why;
use crate::state::AppState;
use crate::store::conversations::Conversation;
use crate::store::workspace_files::WorkspaceFile;
use crate::store::{self, StoreError};
use crate::workspace;

pub struct ConversationsApi;

#[derive(Debug, Object)]
pub struct StartRequest {
    /// Optional: the token says who you are. If given, it must be yours.
    pub user_id: Option<i64>,
    /// Optional: the category's default agent when left out.
    pub assistant_id: Option<String>,
    pub category: String,
    /// Optional: must agree with `assistant_id` when both are given.
    pub agent_name: Option<String>,
    /// Optional: the agent's default model when left out.
    pub llm_model: Option<String>,
}

#[derive(Debug, Object)]
pub struct StartResponse {
    pub conversation_id: String,
    pub category: String,
    pub assistant_id: String,
    pub agent_name: String,
    pub llm_model: String,
    /// `active`.
    pub status: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Object)]
pub struct FileInfo {
    /// Path relative to the workspace root.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl From<WorkspaceFile> for FileInfo {
    fn from(f: WorkspaceFile) -> Self {
        Self {
            path: f.path,
            size: f.size,
            sha256: f.sha256,
        }
    }
}

#[derive(Debug, Object)]
pub struct UploadResponse {
    pub conversation_id: String,
    /// What this request stored (a zip's entries, not the zip).
    pub files: Vec<FileInfo>,
    /// Files now in the workspace.
    pub workspace_files: u64,
    /// Bytes now in the workspace.
    pub workspace_bytes: u64,
}

#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ArtifactRef {
    pub zip_id: String,
    pub files_changed: Vec<String>,
    pub size: u64,
    pub download_url: String,
}

/// The answer to a turn; the final `done` event of a stream carries the same.
// `Serialize` too: the answer is written as JSON directly, not built as a
// `serde_json::Value` first.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ChatResponse {
    pub conversation_id: String,
    pub message_id: String,
    pub reply: String,
    /// The reply as sanitised HTML, for display.
    pub reply_html: String,
    pub llm_model: String,
    pub usage: Usage,
    /// The ZIP of the workspace when the reply changed files, else null.
    #[oai(nullable)]
    pub artifact: Option<ArtifactRef>,
}

#[derive(Debug, Object)]
pub struct EndRequest {
    /// Optional: must be your own id.
    pub user_id: Option<i64>,
    pub conversation_id: String,
}

#[derive(Debug, Object)]
pub struct EndResponse {
    pub conversation_id: String,
    /// `ended`.
    pub status: String,
    pub ended_at: String,
}

#[derive(Debug, Object)]
pub struct ConversationSummary {
    pub conversation_id: String,
    pub category: String,
    pub agent_name: String,
    pub llm_model: String,
    pub status: String,
    pub created_at: String,
    #[oai(nullable)]
    pub ended_at: Option<String>,
    /// The start of the first message.
    #[oai(nullable)]
    pub title: Option<String>,
}

#[derive(Debug, Object)]
pub struct ConversationList {
    pub conversations: Vec<ConversationSummary>,
    /// Pass as `before` for the next page; null on the last page.
    #[oai(nullable)]
    pub next_before: Option<String>,
}

#[derive(Debug, Object)]
pub struct MessageInfo {
    pub message_id: String,
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
    /// The content as sanitised HTML, for display.
    pub content_html: String,
    #[oai(nullable)]
    pub llm_model: Option<String>,
    #[oai(nullable)]
    pub usage: Option<Usage>,
    pub created_at: String,
    /// Why the turn failed, on a user message whose turn failed.
    #[oai(nullable)]
    pub error: Option<String>,
}

#[derive(Debug, Object)]
pub struct ArtifactInfo {
    pub zip_id: String,
    pub size: u64,
    pub files_changed: Vec<String>,
    pub disposable: bool,
    pub created_at: String,
    pub download_url: String,
}

#[derive(Debug, Object)]
pub struct ConversationDetail {
    pub conversation_id: String,
    pub category: String,
    pub assistant_id: String,
    pub agent_name: String,
    pub llm_model: String,
    pub status: String,
    pub created_at: String,
    #[oai(nullable)]
    pub ended_at: Option<String>,
    pub messages: Vec<MessageInfo>,
    pub workspace: Vec<FileInfo>,
    pub artifacts: Vec<ArtifactInfo>,
}

pub fn download_url(zip_id: &str) -> String {
    format!("/api/download?zip_id={zip_id}")
}

/// A conversation id from a client: a UUID, kept in its canonical form.
fn parse_conversation_id(raw: Option<&str>) -> Result<String, ApiError> {
    let raw = raw
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("bad_request", "The field conversation_id is required.")
        })?;
    uuid::Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_conversation_id",
                "The conversation_id is not a UUID.",
            )
        })
}

async fn owned_conversation(
    state: &AppState,
    id: &str,
    user_id: i64,
) -> Result<Conversation, ApiError> {
    let id = id.to_owned();
    match state
        .store
        .read(move |conn| store::conversations::owned(conn, &id, user_id))
        .await
    {
        Ok(c) => Ok(c),
        Err(StoreError::NotFound) => Err(ApiError::conversation_not_found()),
        Err(err) => Err(err.into()),
    }
}

fn ended() -> ApiError {
    ApiError::bad_request(
        "conversation_ended",
        "The conversation has ended; start a new one.",
    )
}

/// Moves a form's staged files into the conversation's workspace.
async fn store_uploads(
    state: &AppState,
    conversation_id: &str,
    form: Form,
) -> Result<(Vec<WorkspaceFile>, u64, u64), ApiError> {
    let lock = state.workspace_locks.for_conversation(conversation_id);
    let _guard = lock.lock().await;
    let id = conversation_id.to_owned();
    let current = state
        .store
        .read(move |conn| store::workspace_files::list(conn, &id))
        .await?;
    let Form {
        staging,
        uploaded_bytes,
        ..
    } = form;
    if staging.is_empty() {
        let bytes = current.iter().map(|f| f.size).sum();
        return Ok((Vec::new(), current.len() as u64, bytes));
    }
    let dir = workspace::workspace_dir(&state.settings.data_dir, conversation_id);
    let current_for_commit = current.clone();
    let commit_dir = dir.clone();
    let placed = crate::blocking::run(move || staging.commit(&commit_dir, &current_for_commit))
        .await
        .map_err(ApiError::from);
    let placed = match placed {
        Ok(placed) => placed,
        Err(err) => return Err(unless_deleted(state, conversation_id, &dir, err).await),
    };

    let id = conversation_id.to_owned();
    let rows = placed.clone();
    let now = crate::time::now_rfc3339();
    let written = state
        .store
        .write(move |conn| {
            store::workspace_files::upsert(conn, &id, &rows, &now)?;
            store::conversations::touch(conn, &id, &now)
        })
        .await;
    if let Err(err) = written {
        return Err(unless_deleted(state, conversation_id, &dir, err.into()).await);
    }
    state.live.forget(conversation_id);
    state.metrics.upload_bytes.inc_by(uploaded_bytes);

    let mut all: std::collections::BTreeMap<String, u64> =
        current.into_iter().map(|f| (f.path, f.size)).collect();
    for file in &placed {
        all.insert(file.path.clone(), file.size);
    }
    Ok((placed, all.len() as u64, all.values().sum()))
}

/// An upload that failed because its conversation was deleted meanwhile (its
/// user deleted from the command line) is a 404, and leaves no files behind;
/// any other failure is answered as it is.
async fn unless_deleted(
    state: &AppState,
    conversation_id: &str,
    dir: &std::path::Path,
    err: ApiError,
) -> ApiError {
    let id = conversation_id.to_owned();
    match state
        .store
        .read(move |conn| store::conversations::exists(conn, &id))
        .await
    {
        Ok(false) => {
            let dir = dir.to_owned();
            crate::blocking::run(move || drop(std::fs::remove_dir_all(dir))).await;
            ApiError::conversation_not_found()
        }
        _ => err,
    }
}

/// Replies up to this size are rendered as HTML on the request's own task.
const INLINE_RENDER_BYTES: usize = 2048;

async fn chat_response(conversation_id: String, outcome: TurnOutcome) -> ChatResponse {
    // A short reply renders in tens of microseconds, less than a trip to the
    // blocking pool costs; a long one (highlighted code) goes there.
    let reply_html = if outcome.reply.len() <= INLINE_RENDER_BYTES {
        crate::markdown::to_html(&outcome.reply)
    } else {
        let reply = outcome.reply.clone();
        crate::blocking::run(move || crate::markdown::to_html(&reply)).await
    };
    let usage = Usage {
        prompt_tokens: outcome.usage.prompt_tokens,
        completion_tokens: outcome.usage.completion_tokens,
        total_tokens: outcome.usage.prompt_tokens + outcome.usage.completion_tokens,
    };
    ChatResponse {
        conversation_id,
        message_id: outcome.message_id,
        reply_html,
        reply: outcome.reply,
        llm_model: outcome.llm_model,
        usage,
        artifact: outcome.artifact.map(|a| ArtifactRef {
            download_url: download_url(&a.zip_id),
            zip_id: a.zip_id,
            files_changed: a.files_changed,
            size: a.size,
        }),
    }
}

/// How long a turn refused because the user's other turns hold the rest of
/// the allowance is told to wait: a turn usually takes seconds.
const TURNS_IN_PROGRESS_RETRY_SECONDS: u64 = 5;

fn turn_error(state: &AppState, err: TurnError) -> ApiError {
    match err {
        TurnError::OverAllowance(over) => {
            state.metrics.rate_limited.inc();
            let reset_at = crate::time::rfc3339(over.reset_at);
            let until_reset = (over.reset_at - state.quota.clock.now())
                .num_seconds()
                .max(1) as u64;
            let left = over.limit.saturating_sub(over.used);
            let (message, wait) = match over.why {
                Why::UsedUp => (
                    format!(
                        "You have used your daily allowance of {} tokens. It renews at midnight UTC, in {}.",
                        over.limit,
                        plain_duration(until_reset)
                    ),
                    until_reset,
                ),
                Why::MessageTooLarge { message_tokens } => (
                    format!(
                        "Your message takes {message_tokens} tokens, more than the {left} left of your daily allowance of {} tokens. Send a shorter one, or wait for the allowance to renew at midnight UTC, in {}.",
                        over.limit,
                        plain_duration(until_reset)
                    ),
                    until_reset,
                ),
                Why::HeldByTurnsInProgress => (
                    format!(
                        "Your turns in progress have reserved the {left} tokens left of your daily allowance of {} tokens; try again when they finish.",
                        over.limit
                    ),
                    TURNS_IN_PROGRESS_RETRY_SECONDS,
                ),
            };
            let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
            err.body.limit = Some(over.limit);
            err.body.used = Some(over.used);
            err.body.reset_at = Some(reset_at);
            err.retry_after = Some(wait);
            err
        }
        TurnError::Busy => {
            let mut err = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_turns",
                "You already have several turns waiting for the model; wait for one to finish.",
            );
            err.retry_after = Some(1);
            err
        }
        TurnError::Llm(LlmError::Timeout(message)) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            format!("The model provider timed out: {message}."),
        ),
        TurnError::Llm(LlmError::Upstream { message, .. }) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            format!("The model provider failed: {message}."),
        ),
        TurnError::Refused(refusal) => refused(refusal),
        TurnError::Store(err) => err.into(),
        TurnError::Internal(err) => err.into(),
    }
}

fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::NotFound => ApiError::conversation_not_found(),
        Refusal::CategoryMismatch { category, asked } => ApiError::bad_request(
            "category_mismatch",
            format!("This conversation is in the category {category}, not {asked}."),
        ),
        Refusal::Ended => ended(),
        Refusal::UnknownModel => ApiError::bad_request(
            "unknown_model",
            "This server does not offer that model; see GET /models.",
        ),
    }
}

/// "3 hours 12 minutes", "1 minute": a wait in words.
fn plain_duration(seconds: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let total_minutes = seconds.div_ceil(60);
    let (hours, minutes) = (total_minutes / 60, total_minutes % 60);
    match (hours, minutes) {
        (0, m) => plural(m.max(1), "minute"),
        (h, 0) => plural(h, "hour"),
        (h, m) => format!("{} {}", plural(h, "hour"), plural(m, "minute")),
    }
}

/// `/chat` answers JSON, or Server-Sent Events when the client asks for them.
pub enum ChatAnswer {
    Json(ChatResponse),
    Stream(Response),
}

impl IntoResponse for ChatAnswer {
    fn into_response(self) -> Response {
        match self {
            Self::Json(body) => match serde_json::to_vec(&body) {
                Ok(json) => Response::builder()
                    .content_type("application/json; charset=utf-8")
                    .body(json),
                Err(err) => ApiError::internal(err.to_string()).into_response(),
            },
            Self::Stream(response) => response,
        }
    }
}

impl ApiResponse for ChatAnswer {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The reply. With `Accept: text/event-stream`: `delta` events carrying \
                              `{\"text\"}`, then one `done` event carrying this object (or an \
                              `error` event carrying the error shape).",
                status: Some(200),
                status_range: None,
                content: vec![
                    MetaMediaType {
                        content_type: "application/json",
                        schema: ChatResponse::schema_ref(),
                    },
                    MetaMediaType {
                        content_type: "text/event-stream",
                        schema: String::schema_ref(),
                    },
                ],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        ChatResponse::register(registry);
    }
}

fn delta_event(text: &str) -> Event {
    Event::message(serde_json::json!({ "text": text }).to_string()).event_type("delta")
}

fn done_event(answer: &ChatResponse) -> Event {
    Event::message(serde_json::to_string(answer).unwrap_or_default()).event_type("done")
}

fn error_event(err: &ApiError) -> Event {
    Event::message(serde_json::to_string(&err.body).unwrap_or_default()).event_type("error")
}

/// A stream whose turn already finished: its deltas, then the answer.
fn sse_response(deltas: Vec<String>, answer: ChatResponse) -> Response {
    let mut events: Vec<Event> = deltas.iter().map(|d| delta_event(d)).collect();
    events.push(done_event(&answer));
    with_stream_headers(SSE::new(futures_util::stream::iter(events)).into_response())
}

fn with_stream_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("cache-control", "no-cache".parse().expect("static header"));
    headers.insert("x-accel-buffering", "no".parse().expect("static header"));
    response
}

fn wants_stream(request: &poem::Request) -> bool {
    let accept = request.headers().get_all("accept");
    prefers_event_stream(accept.iter().filter_map(|value| value.to_str().ok()))
}

/// Whether Accept header values ask for Server-Sent Events: `text/event-stream`
/// named with a q-value above 0 and not below the one that applies to JSON.
/// Wildcards never opt in: a client that takes anything gets JSON.
fn prefers_event_stream<'a>(values: impl IntoIterator<Item = &'a str>) -> bool {
    let mut stream = 0;
    // The q-value of the most specific range that covers JSON, and how
    // specific that range is.
    let mut json = (0, 0);
    for range in values.into_iter().flat_map(|value| value.split(',')) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let is = |name: &str| media.eq_ignore_ascii_case(name);
        let q = parts
            .filter_map(|parameter| parameter.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1000), |(_, value)| quality(value.trim()));
        // A range with a malformed q-value counts as not sent.
        let Some(q) = q else { continue };
        let specificity = if is("text/event-stream") {
            stream = stream.max(q);
            continue;
        } else if is("application/json") {
            3
        } else if is("application/*") {
            2
        } else if is("*/*") {
            1
        } else {
            continue;
        };
        if specificity > json.0 {
            json = (specificity, q);
        } else if specificity == json.0 {
            json.1 = json.1.max(q);
        }
    }
    stream > 0 && stream >= json.1
}

/// A q-value in thousandths, written as RFC 9110 has it ("0", "0.5", "1.000");
/// `None` for anything else.
fn quality(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = fraction
        .bytes()
        .fold(0u16, |n, digit| n * 10 + u16::from(digit - b'0'));
    let thousandths = digits * 10u16.pow(3 - fraction.len() as u32);
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[OpenApi(tag = "ApiTags::Conversations")]
impl ConversationsApi {
    /// Start a conversation with an agent.
    #[oai(
        path = "/start_conversation",
        method = "post",
        operation_id = "start_conversation"
    )]
    async fn start(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        body: JsonBody<StartRequest>,
    ) -> Result<Json<StartResponse>, ApiError> {
        let user = auth.check_user_id(body.user_id)?;
        let category = state
            .catalog
            .category(&body.category)
            .ok_or_else(|| unknown_category(&body.category))?;
        let agent = category
            .find_agent(body.assistant_id.as_deref(), body.agent_name.as_deref())
            .ok_or_else(|| {
                let (id, name) = (body.assistant_id.as_deref(), body.agent_name.as_deref());
                let each_alone = id.is_some_and(|id| category.find_agent(Some(id), None).is_some())
                    && name.is_some_and(|name| category.find_agent(None, Some(name)).is_some());
                let message = if each_alone {
                    format!(
                        "The assistant_id and the agent_name name two different agents of the category {}; give one of them, or both of the same agent (see GET /categories).",
                        category.category
                    )
                } else {
                    format!(
                        "That agent is not in the category {}; see GET /categories.",
                        category.category
                    )
                };
                ApiError::bad_request("unknown_agent", message)
            })?;
        let model = match body
            .llm_model
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            Some(model) if state.providers.offers(model) => model.to_owned(),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "unknown_model",
                    "This server does not offer that model; see GET /models.",
                ));
            }
            None => agent_model(&state, agent),
        };
        let now = crate::time::now_rfc3339();
        let conversation = Conversation {
            id: crate::conversation::new_id(),
            user_id: user.id,
            category: category.category.clone(),
            assistant_id: agent.assistant_id.clone(),
            agent_name: agent.agent_name.clone(),
            llm_model: model,
            status: "active".into(),
            title: None,
            created_at: now,
            ended_at: None,
        };
        let row = conversation.clone();
        state
            .store
            .write(move |conn| store::conversations::insert(conn, &row))
            .await?;
        state.live.created(conversation.clone());
        state.metrics.active_conversations.inc();
        tracing::info!(user.id = user.id, conversation.id = %conversation.id, agent = %conversation.agent_name, "conversation started");
        Ok(Json(StartResponse {
            conversation_id: conversation.id,
            category: conversation.category,
            assistant_id: conversation.assistant_id,
            agent_name: conversation.agent_name,
            llm_model: conversation.llm_model,
            status: conversation.status,
            created_at: conversation.created_at,
        }))
    }

    /// Upload files (or a zip, unpacked) into a conversation's workspace.
    #[oai(
        path = "/conversation/upload",
        method = "post",
        operation_id = "upload"
    )]
    async fn upload(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        form: UploadForm,
    ) -> Result<Json<UploadResponse>, ApiError> {
        let form = form.0;
        auth.check_user_id(form.integer("user_id")?)?;
        let user_id = auth.still_signed_in(&state)?.id;
        let conversation_id = parse_conversation_id(form.text("conversation_id"))?;
        let conversation = owned_conversation(&state, &conversation_id, user_id).await?;
        if !conversation.is_active() {
            return Err(ended());
        }
        let (placed, count, bytes) = store_uploads(&state, &conversation_id, form).await?;
        Ok(Json(UploadResponse {
            conversation_id,
            files: placed.into_iter().map(FileInfo::from).collect(),
            workspace_files: count,
            workspace_bytes: bytes,
        }))
    }

    /// Send a message to the conversation's agent (multipart/form-data, always).
    ///
    /// Files in `files[]` are stored first, as `/conversation/upload` does.
    /// File blocks in the reply (a fenced block whose info string has
    /// `path=...`) are written to the workspace, and the workspace becomes a
    /// downloadable ZIP.
    #[oai(path = "/chat", method = "post", operation_id = "chat")]
    async fn chat(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        request: &poem::Request,
        form: ChatForm,
    ) -> Result<ChatAnswer, ApiError> {
        let form = form.0;
        auth.check_user_id(form.integer("user_id")?)?;
        let user = auth.still_signed_in(&state)?;
        let message = form.text("message").unwrap_or_default().to_owned();
        if message.trim().is_empty() {
            return Err(ApiError::bad_request(
                "bad_request",
                "The field message is required and must not be empty.",
            ));
        }
        let conversation_id = parse_conversation_id(form.text("conversation_id"))?;
        let named = |field: &str| {
            form.text(field)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let Some(category) = named("category") else {
            return Err(ApiError::bad_request(
                "bad_request",
                "The field category is required: the conversation's category, such as test_generation.",
            ));
        };
        let ask = Ask {
            conversation_id: conversation_id.clone(),
            message,
            category: Some(category),
            model: named("llm_model"),
        };
        let mut ticket = None;
        if !form.staging.is_empty() {
            // The conversation and what can be known of the allowance are
            // checked before the workspace takes the files, so that a refused
            // turn keeps none; the turn checks again, with the files in place.
            let conversation = owned_conversation(&state, &conversation_id, user.id).await?;
            if let Err(refusal) = ask.check(&conversation, &state.providers) {
                return Err(refused(refusal));
            }
            ticket = Some(
                admit(&state, &user)
                    .await
                    .map_err(|err| turn_error(&state, err))?,
            );
            store_uploads(&state, &conversation_id, form).await?;
        }

        let input = TurnInput { user, ask, ticket };
        // Refusals (the allowance, too many turns) come before any stream
        // starts, so that they are plain HTTP errors in both modes.
        let turn = prepare_turn(&state, input)
            .await
            .map_err(|err| turn_error(&state, err))?;
        if !wants_stream(request) {
            let outcome = complete_turn(&state, turn, None)
                .await
                .map_err(|err| turn_error(&state, err))?;
            return Ok(ChatAnswer::Json(
                chat_response(conversation_id, outcome).await,
            ));
        }

        // Streamed: the turn runs in its own task, so that it completes and is
        // stored even if the client goes away.
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let state = state.0.clone();
        let mut turn = tokio::spawn(async move {
            match complete_turn(&state, turn, Some(sender)).await {
                Ok(outcome) => Ok(chat_response(conversation_id, outcome).await),
                Err(err) => Err(turn_error(&state, err)),
            }
        });
        // Hold the headers until the provider has said something: a failure
        // before the first word is then a plain 502 or 504, as in JSON mode.
        let first = tokio::select! {
            // Text already sent wins over a finished turn: it is streamed.
            biased;
            delta = receiver.recv() => match delta {
                Some(text) => Ok(text),
                // The provider is done without a word; the turn is finishing.
                None => Err((&mut turn).await),
            },
            finished = &mut turn => Err(finished),
        };
        let first = match first {
            Ok(text) => text,
            Err(finished) => {
                let answer =
                    finished.map_err(|_| ApiError::internal("the turn's task failed"))??;
                let mut deltas = Vec::new();
                while let Ok(text) = receiver.try_recv() {
                    deltas.push(text);
                }
                return Ok(ChatAnswer::Stream(sse_response(deltas, answer)));
            }
        };
        let events = async_stream::stream! {
            yield delta_event(&first);
            while let Some(text) = receiver.recv().await {
                yield delta_event(&text);
            }
            yield match turn.await {
                Ok(Ok(answer)) => done_event(&answer),
                Ok(Err(err)) => error_event(&err),
                Err(_) => error_event(&ApiError::internal("the turn's task failed")),
            };
        };
        Ok(ChatAnswer::Stream(with_stream_headers(
            SSE::new(events)
                .keep_alive(Duration::from_secs(15))
                .into_response(),
        )))
    }
    /// End a conversation. Ending twice is fine.
    #[oai(
        path = "/end_conversation",
        method = "post",
        operation_id = "end_conversation"
    )]
    async fn end(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        body: JsonBody<EndRequest>,
    ) -> Result<Json<EndResponse>, ApiError> {
        let user_id = auth.check_user_id(body.user_id)?.id;
        let conversation_id = parse_conversation_id(Some(&body.conversation_id))?;
        let id = conversation_id.clone();
        let now = crate::time::now_rfc3339();
        let was_active = owned_conversation(&state, &conversation_id, user_id)
            .await?
            .is_active();
        let conversation = match state
            .store
            .write(move |conn| store::conversations::end(conn, &id, user_id, &now))
            .await
        {
            Ok(c) => c,
            Err(StoreError::NotFound) => return Err(ApiError::conversation_not_found()),
            Err(err) => return Err(err.into()),
        };
        state.live.forget(&conversation_id);
        if was_active {
            state.metrics.active_conversations.dec();
        }
        Ok(Json(EndResponse {
            conversation_id,
            status: conversation.status,
            ended_at: conversation.ended_at.unwrap_or_default(),
        }))
    }

    /// Your conversations, newest first.
    #[oai(
        path = "/conversations",
        method = "get",
        operation_id = "list_conversations"
    )]
    async fn list(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        /// How many to return, 1 to 100 (default 20).
        limit: Query<Option<i64>>,
        /// Only conversations created before this time (RFC 3339); use `next_before`.
        before: Query<Option<String>>,
        /// Optional: must be your own id.
        user_id: Query<Option<i64>>,
    ) -> Result<Json<ConversationList>, ApiError> {
        auth.check_user_id(user_id.0)?;
        let limit = limit.0.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::bad_request(
                "bad_request",
                "limit must be between 1 and 100.",
            ));
        }
        let before = match before.0.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
            None => None,
            Some(text) => Some(crate::time::rfc3339(crate::time::parse(text).ok_or_else(
                || {
                    ApiError::bad_request(
                        "bad_request",
                        "before must be an RFC 3339 time, such as 2026-01-31T12:00:00Z.",
                    )
                },
            )?)),
        };
        let user_id = auth.0.user.id;
        let page = limit as u32;
        // One more than asked tells whether another page follows.
        let mut rows = state
            .store
            .read(move |conn| {
                store::conversations::list(conn, user_id, before.as_deref(), page + 1)
            })
            .await?;
        let more = rows.len() > page as usize;
        rows.truncate(page as usize);
        let next_before = if more {
            rows.last().map(|c| c.created_at.clone())
        } else {
            None
        };
        Ok(Json(ConversationList {
            conversations: rows
                .into_iter()
                .map(|c| ConversationSummary {
                    conversation_id: c.id,
                    category: c.category,
                    agent_name: c.agent_name,
                    llm_model: c.llm_model,
                    status: c.status,
                    created_at: c.created_at,
                    ended_at: c.ended_at,
                    title: c.title,
                })
                .collect(),
            next_before,
        }))
    }

    /// One conversation with its messages, workspace and artifacts.
    #[oai(
        path = "/conversations/:conversation_id",
        method = "get",
        operation_id = "get_conversation"
    )]
    async fn get(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        conversation_id: Path<String>,
        /// Optional: must be your own id.
        user_id: Query<Option<i64>>,
    ) -> Result<Json<ConversationDetail>, ApiError> {
        auth.check_user_id(user_id.0)?;
        let id = parse_conversation_id(Some(&conversation_id.0))?;
        let conversation = owned_conversation(&state, &id, auth.0.user.id).await?;
        let (messages, files, artifacts) = state
            .store
            .read(move |conn| {
                Ok((
                    store::conversations::messages(conn, &id)?,
                    store::workspace_files::list(conn, &id)?,
                    store::artifacts::of_conversation(conn, &id)?,
                ))
            })
            .await?;
        let messages = crate::blocking::run(move || {
            messages
                .into_iter()
                .map(|m| MessageInfo {
                    content_html: crate::markdown::to_html(&m.content),
                    usage: match (m.prompt_tokens, m.completion_tokens) {
                        (Some(p), Some(c)) => Some(Usage {
                            prompt_tokens: p,
                            completion_tokens: c,
                            total_tokens: p + c,
                        }),
                        _ => None,
                    },
                    message_id: m.id,
                    role: m.role,
                    content: m.content,
                    llm_model: m.llm_model,
                    created_at: m.created_at,
                    error: m.error,
                })
                .collect::<Vec<_>>()
        })
        .await;
        Ok(Json(ConversationDetail {
            conversation_id: conversation.id,
            category: conversation.category,
            assistant_id: conversation.assistant_id,
            agent_name: conversation.agent_name,
            llm_model: conversation.llm_model,
            status: conversation.status,
            created_at: conversation.created_at,
            ended_at: conversation.ended_at,
            messages,
            workspace: files.into_iter().map(FileInfo::from).collect(),
            artifacts: artifacts
                .into_iter()
                .map(|a| ArtifactInfo {
                    download_url: download_url(&a.zip_id),
                    zip_id: a.zip_id,
                    size: a.size,
                    files_changed: a.files_changed,
                    disposable: a.disposable,
                    created_at: a.created_at,
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{prefers_event_stream, quality};

    fn streams(accept: &str) -> bool {
        prefers_event_stream([accept])
    }

    #[test]
    fn q_values_are_read_as_rfc_9110_writes_them() {
        let cases = [
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.001", Some(1)),
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("0.0001", None),
            ("2", None),
            ("-0", None),
            ("0.5x", None),
            ("1e0", None),
            ("", None),
            ("nan", None),
        ];
        for (text, expected) in cases {
            assert_eq!(quality(text), expected, "{text:?}");
        }
    }

    #[test]
    fn event_stream_named_and_not_refused_streams() {
        for accept in [
            "text/event-stream",
            "TEXT/Event-Stream",
            "text/event-stream;q=0.1",
            "text/event-stream; q=1.0",
            "text/event-stream;charset=utf-8",
            "application/json, text/event-stream",
            "text/event-stream, */*;q=0.1",
            "application/json;q=0.5, text/event-stream",
            "text/event-stream;q=0.5, */*;q=0.5",
            "text/event-stream;q=0.8, application/json;q=0.2, */*",
        ] {
            assert!(streams(accept), "{accept}");
        }
    }

    #[test]
    fn event_stream_refused_unnamed_or_less_wanted_than_json_answers_json() {
        for accept in [
            "",
            "*/*",
            "text/*",
            "application/json",
            "text/event-stream;q=0",
            "text/event-stream;Q=0.000",
            "text/event-stream ; q=0 , application/json",
            "text/event-stream;q=0, */*",
            "text/event-stream;q=0.5, application/json",
            "text/event-stream;q=0.5, */*",
            "text/event-stream;q=0.5, application/*;q=0.9",
            "text/event-stream;q=abc",
            "text/event-stream;q=2",
            "text/plain-event-stream",
        ] {
            assert!(!streams(accept), "{accept}");
        }
    }

    #[test]
    fn every_accept_header_counts() {
        assert!(prefers_event_stream([
            "application/json;q=0.5",
            "text/event-stream"
        ]));
        assert!(!prefers_event_stream([
            "text/event-stream;q=0.5",
            "application/json"
        ]));
    }
}
