//! One turn of a conversation: build the prompt, reserve tokens, call the
//! provider, then store the messages, apply the reply's files and pack the
//! workspace, settling the reservation with what the turn really cost.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::live::{Appended, Live, Lookup};
use crate::llm::{self, LlmError, PromptMessage, Role, tokenizer};
use crate::quota::{OverAllowance, utc_day};
use crate::state::AppState;
use crate::store::conversations::{Conversation, NewMessage};
use crate::store::users::User;
use crate::store::workspace_files::WorkspaceFile;
use crate::store::{self, StoreError, StoreResult};
use crate::workspace::{self, Limits, Staging};

/// A conversation's title: the start of its first message, on one line, at
/// most `TITLE_CHARS` characters and `…` when there was more. Reads no more of
/// the message than the title takes (a message may be a megabyte).
pub fn title_of(message: &str) -> String {
    let mut title = String::new();
    let spaced = message
        .split_whitespace()
        .enumerate()
        .flat_map(|(i, word)| (i > 0).then_some(' ').into_iter().chain(word.chars()));
    for (taken, c) in spaced.enumerate() {
        if taken == TITLE_CHARS {
            title.push('…');
            break;
        }
        title.push(c);
    }
    title
}

const TITLE_CHARS: usize = 80;

/// Caps how many turns one user may have waiting on the provider at once.
#[derive(Debug)]
pub struct TurnGate {
    max: usize,
    in_flight: Arc<Mutex<HashMap<i64, usize>>>,
}

/// Held while a turn runs; lets the next one in when dropped.
#[derive(Debug)]
pub struct TurnTicket {
    user_id: i64,
    in_flight: Arc<Mutex<HashMap<i64, usize>>>,
}

impl TurnGate {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            in_flight: Arc::default(),
        }
    }

    pub fn enter(&self, user_id: i64) -> Option<TurnTicket> {
        let mut in_flight = self.in_flight.lock();
        let count = in_flight.entry(user_id).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(TurnTicket {
            user_id,
            in_flight: Arc::clone(&self.in_flight),
        })
    }
}

impl Drop for TurnTicket {
    fn drop(&mut self) {
        let mut in_flight = self.in_flight.lock();
        if let Some(count) = in_flight.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.user_id);
            }
        }
    }
}

/// What a turn needs to know: who asks, and what.
pub struct TurnInput {
    pub user: User,
    pub ask: Ask,
    /// The user's turn slot when it was taken early (see `admit`).
    pub ticket: Option<TurnTicket>,
}

/// Reserves a turn's expected cost against the user's allowance for today.
async fn reserve(
    state: &AppState,
    user: &User,
    prompt_tokens: u64,
    new_tokens: u64,
) -> Result<
    (
        crate::quota::Reservation,
        String,
        chrono::DateTime<chrono::Utc>,
    ),
    TurnError,
> {
    let now = state.quota.clock.now();
    let day = utc_day(now);
    if !state.quota.knows(user.id, &day) {
        let (user_id, day_for_read) = (user.id, day.clone());
        let settled = state
            .store
            .read(move |conn| store::usage::tokens_on(conn, user_id, &day_for_read))
            .await?;
        state.quota.seed(user.id, &day, settled);
    }
    let limit = user
        .daily_token_limit
        .unwrap_or(state.settings.daily_token_limit);
    let reservation = state
        .quota
        .reserve(
            user.id,
            &day,
            limit,
            prompt_tokens,
            new_tokens,
            u64::from(state.settings.max_output_tokens),
        )
        .map_err(TurnError::OverAllowance)?;
    Ok((reservation, day, now))
}

/// The refusals a turn can know before its prompt exists: too many turns at
/// once, or an allowance that not even the reply alone would fit. Taken
/// before a `/chat`'s files are stored, so that a refused turn keeps nothing;
/// returns the turn slot for `TurnInput::ticket`.
pub async fn admit(state: &AppState, user: &User) -> Result<TurnTicket, TurnError> {
    let ticket = state
        .turns_in_flight
        .enter(user.id)
        .ok_or(TurnError::Busy)?;
    drop(reserve(state, user, 0, 0).await?);
    Ok(ticket)
}

/// A turn as the client asked for it, before the conversation is looked up.
#[derive(Debug, Clone)]
pub struct Ask {
    pub conversation_id: String,
    pub message: String,
    /// The category the client named, if any: it must be the conversation's.
    pub category: Option<String>,
    /// The model the client asked for, if any; otherwise the conversation's.
    pub model: Option<String>,
}

impl Ask {
    /// Checks the ask against its conversation; answers the model to use: the
    /// one asked for, else the conversation's, else (when the server no
    /// longer offers that, after a restart with other settings) the server's
    /// default, which the answer then names.
    pub fn check<'a>(
        &'a self,
        conversation: &'a Conversation,
        providers: &'a llm::Providers,
    ) -> Result<&'a str, Refusal> {
        if let Some(asked) = &self.category
            && *asked != conversation.category
        {
            return Err(Refusal::CategoryMismatch {
                category: conversation.category.clone(),
                asked: asked.clone(),
            });
        }
        if !conversation.is_active() {
            return Err(Refusal::Ended);
        }
        match &self.model {
            Some(model) if providers.offers(model) => Ok(model),
            Some(_) => Err(Refusal::UnknownModel),
            None if providers.offers(&conversation.llm_model) => Ok(&conversation.llm_model),
            None => Ok(&providers.default_model),
        }
    }
}

/// Why a turn was refused before anything was spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such conversation of this user's (also when it, or its user, was
    /// deleted while the provider answered).
    NotFound,
    /// The client named another category than the conversation's.
    CategoryMismatch { category: String, asked: String },
    /// The conversation has ended.
    Ended,
    /// The server offers no such model.
    UnknownModel,
}

#[derive(Debug, Clone)]
pub struct TurnUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Debug, Clone)]
pub struct ArtifactInfo {
    pub zip_id: String,
    pub files_changed: Vec<String>,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct TurnOutcome {
    pub message_id: String,
    pub reply: String,
    pub llm_model: String,
    pub usage: TurnUsage,
    pub artifact: Option<ArtifactInfo>,
}

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("over the daily allowance")]
    OverAllowance(OverAllowance),
    #[error("too many turns at once")]
    Busy,
    #[error("refused: {0:?}")]
    Refused(Refusal),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A new conversation's or message's id: a UUID whose leading bits are the
/// time (version 7). Ids made close together sort together, so the index of
/// messages by conversation, which takes a row for every turn, takes them in
/// the few pages of the conversations in use, not all over a file that grows
/// with every conversation ever held.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Workspace files that fit the context budget are inlined; the rest listed.
fn describe_workspace(
    files: &[magdi_testgen::SourceFile],
    all: &[WorkspaceFile],
    budget: u64,
) -> (String, u64) {
    if all.is_empty() {
        return (String::new(), 0);
    }
    let mut text = String::from("The workspace holds these files.\n\n");
    let mut used = 0u64;
    let mut inlined = std::collections::HashSet::new();
    for file in files {
        // A token is rarely more than eight bytes, so a file this large cannot
        // fit what is left, and counting it would be wasted work.
        if file.content.len() as u64 / 8 > budget.saturating_sub(used) {
            continue;
        }
        let tokens = tokenizer::count(&file.content);
        if used + tokens > budget {
            continue;
        }
        used += tokens;
        inlined.insert(file.path.as_str());
        let fence = llm::builtin::fence_for(&file.content);
        let _ = writeln!(
            text,
            "{fence} path={}\n{}\n{fence}\n",
            file.path,
            file.content.trim_end_matches('\n')
        );
    }
    let listed: Vec<&WorkspaceFile> = all
        .iter()
        .filter(|f| !inlined.contains(f.path.as_str()))
        .collect();
    if !listed.is_empty() {
        text.push_str("Files not shown (over the context budget, binary, or generated):\n");
        for file in listed {
            let _ = writeln!(text, "- {} ({} bytes)", file.path, file.size);
        }
    }
    let tokens = tokenizer::count(&text);
    (text, tokens)
}

/// The provider's counts, unless they are far beyond what the text could
/// cost (another tokenizer counts differently, but not ten times more): then
/// a broken or hostile provider would charge the user a day's allowance for
/// one word, and Magdi's own count is used instead.
fn plausible_usage(
    reported: &llm::ReportedUsage,
    prompt_estimate: u64,
    reply_tokens: u64,
) -> TurnUsage {
    let ceiling = |estimate: u64| estimate.saturating_mul(10).saturating_add(1000);
    let prompt = if reported.prompt_tokens > ceiling(prompt_estimate) {
        tracing::warn!(
            reported = reported.prompt_tokens,
            estimate = prompt_estimate,
            "implausible prompt usage from the provider; counted instead"
        );
        prompt_estimate
    } else {
        reported.prompt_tokens
    };
    let completion = if reported.completion_tokens > ceiling(reply_tokens) {
        tracing::warn!(
            reported = reported.completion_tokens,
            estimate = reply_tokens,
            "implausible completion usage from the provider; counted instead"
        );
        reply_tokens
    } else {
        reported.completion_tokens
    };
    TurnUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
    }
}

/// A turn that passed its checks and holds its reservation: everything up to
/// the provider call, so that a refusal can still be a plain HTTP error.
pub struct PreparedTurn {
    _ticket: TurnTicket,
    reservation: crate::quota::Reservation,
    request: llm::Request,
    user_id: i64,
    conversation_id: String,
    message: String,
    message_tokens: u64,
    prompt_tokens: u64,
    day: String,
    now: chrono::DateTime<chrono::Utc>,
    /// Whether the agent's replies may write files into the workspace.
    writes_files: bool,
}

/// A conversation checked against what the client asked, with what its
/// prompt is built from.
struct Found {
    conversation: Conversation,
    model: String,
    /// The agent's system prompt and its tokens (see `Agent::prompt`).
    agent_prompt: (llm::Text, u64),
    writes_files: bool,
    history: llm::History,
    manifest: Arc<Vec<WorkspaceFile>>,
}

/// The prompt built from what was found.
struct Context {
    conversation: Conversation,
    model: String,
    messages: llm::Messages,
    prompt_tokens: u64,
    message_tokens: u64,
    workspace_texts: Vec<magdi_testgen::SourceFile>,
}

/// Reads what a turn needs of a conversation of `user_id`'s, in one read
/// transaction; `None` when there is no such conversation of theirs.
fn read_live(
    conn: &rusqlite::Connection,
    id: &str,
    user_id: i64,
    budget: u64,
) -> StoreResult<Option<Live>> {
    let conversation = match store::conversations::owned(conn, id, user_id) {
        Ok(conversation) => conversation,
        Err(StoreError::NotFound) => return Ok(None),
        Err(err) => return Err(err),
    };
    Ok(Some(Live {
        window: Arc::new(
            store::conversations::recent_window(conn, id, budget)?
                .into_iter()
                .collect(),
        ),
        manifest: Arc::new(store::workspace_files::list(conn, id)?),
        last_seq: store::conversations::last_seq(conn, id)?,
        conversation,
    }))
}

/// The conversation as this process knows it, or as the database has it
/// (kept for the next turn).
fn live_conversation(state: &AppState, id: &str, user_id: i64) -> StoreResult<Option<Arc<Live>>> {
    match state.live.lookup(id) {
        Lookup::Ready(live) => Ok(Some(live)),
        Lookup::Read(fill) => {
            let budget = state.live.budget();
            let read = state
                .store
                .read_now(|conn| read_live(conn, id, user_id, budget))?;
            Ok(read.map(|live| fill.keep(live)))
        }
    }
}

/// Checks the conversation against the user and what they asked; answers
/// what the prompt is built from.
fn find_conversation(
    state: &AppState,
    live: &Live,
    user_id: i64,
    ask: &Ask,
) -> StoreResult<Result<Found, Refusal>> {
    let conversation = &live.conversation;
    if conversation.user_id != user_id {
        return Ok(Err(Refusal::NotFound));
    }
    let model = match ask.check(conversation, &state.providers) {
        Ok(model) => model.to_owned(),
        Err(refusal) => return Ok(Err(refusal)),
    };
    let Some(agent) = state
        .catalog
        .category(&conversation.category)
        .and_then(|c| c.find_agent(Some(&conversation.assistant_id), None))
    else {
        return Err(StoreError::Other(
            "the conversation's agent is no longer in the catalog".into(),
        ));
    };

    Ok(Ok(Found {
        agent_prompt: agent.prompt().clone(),
        writes_files: agent.writes_files,
        conversation: conversation.clone(),
        model,
        history: llm::History::new(Arc::clone(&live.window)),
        manifest: Arc::clone(&live.manifest),
    }))
}

/// Whether building a prompt may read files or count a long text, and so
/// belongs on the blocking pool rather than on the request's thread.
fn prompt_is_heavy(found: &Found, message: &str) -> bool {
    !found.manifest.is_empty() || message.len() > 4 * 1024
}

/// Builds the prompt: the agent's system prompt and the workspace, the
/// history, then the new message.
fn build_prompt(state: &AppState, found: Found, message: String) -> Context {
    let settings = &state.settings;
    let Found {
        conversation,
        model,
        agent_prompt: (agent_text, agent_tokens),
        history,
        manifest,
        ..
    } = found;
    let context_budget = u64::from(settings.context_tokens);
    let texts = if manifest.is_empty() {
        Vec::new()
    } else {
        // The offline model reads the whole workspace; a remote one gets only
        // what fits the context budget, so read no more than that.
        let offline =
            model == llm::BUILTIN_MODEL || state.providers.provider_name(&model) == "builtin";
        let max_total = if offline {
            64 * 1024 * 1024
        } else {
            context_budget * 8
        };
        let dir = workspace::workspace_dir(&settings.data_dir, &conversation.id);
        workspace::read_text_files(&dir, &manifest, 1024 * 1024, max_total)
    };
    let (workspace_text, workspace_tokens) = describe_workspace(&texts, &manifest, context_budget);
    let system_tokens = agent_tokens + workspace_tokens;
    let system = if workspace_text.is_empty() {
        agent_text
    } else {
        let mut system = agent_text.to_string();
        system.push_str("\n\n");
        system.push_str(&workspace_text);
        system.into()
    };
    let message_tokens = tokenizer::count(&message);
    let mut prompt_tokens = system_tokens + message_tokens + tokenizer::PER_MESSAGE_OVERHEAD * 2;
    for m in history.iter() {
        prompt_tokens += m.content_tokens + tokenizer::PER_MESSAGE_OVERHEAD;
    }
    let messages = llm::Messages {
        system: PromptMessage {
            role: Role::System,
            content: system,
        },
        history,
        latest: PromptMessage {
            role: Role::User,
            content: message.into(),
        },
    };
    Context {
        conversation,
        model,
        messages,
        prompt_tokens,
        message_tokens,
        workspace_texts: texts,
    }
}

/// Checks the conversation and the per-user turn cap, builds the prompt and
/// reserves its tokens. The conversation's lookups run on the request's
/// thread; a prompt that reads workspace files is built on the blocking pool.
pub async fn prepare_turn(state: &AppState, input: TurnInput) -> Result<PreparedTurn, TurnError> {
    let TurnInput {
        user,
        ask,
        ticket: early_ticket,
    } = input;
    let settings = &state.settings;
    let message = ask.message.clone();
    let live = live_conversation(state, &ask.conversation_id, user.id)?
        .ok_or(TurnError::Refused(Refusal::NotFound))?;
    let found = find_conversation(state, &live, user.id, &ask)?.map_err(TurnError::Refused)?;
    drop(live);
    let writes_files = found.writes_files;
    let Context {
        conversation,
        model,
        messages,
        prompt_tokens,
        message_tokens,
        workspace_texts,
    } = if prompt_is_heavy(&found, &ask.message) {
        let shared = Arc::clone(state);
        crate::blocking::run(move || build_prompt(&shared, found, ask.message)).await
    } else {
        build_prompt(state, found, ask.message)
    };
    let ticket = match early_ticket {
        Some(ticket) => ticket,
        None => state
            .turns_in_flight
            .enter(user.id)
            .ok_or(TurnError::Busy)?,
    };

    // Reserve before calling anyone, so parallel turns cannot overspend.
    let (reservation, day, now) = reserve(state, &user, prompt_tokens, message_tokens).await?;

    let request = llm::Request {
        model: model.clone(),
        messages,
        max_tokens: settings.max_output_tokens,
        offline: llm::OfflineContext {
            category: conversation.category.clone(),
            agent_name: conversation.agent_name.clone(),
            workspace: workspace_texts,
        },
    };
    Ok(PreparedTurn {
        _ticket: ticket,
        reservation,
        request,
        user_id: user.id,
        conversation_id: conversation.id,
        message,
        message_tokens,
        prompt_tokens,
        day,
        now,
        writes_files,
    })
}

/// Calls the provider and settles the turn: messages, usage, files, artifact.
pub async fn complete_turn(
    state: &AppState,
    turn: PreparedTurn,
    deltas: llm::DeltaSink,
) -> Result<TurnOutcome, TurnError> {
    let PreparedTurn {
        _ticket,
        reservation,
        request,
        user_id,
        conversation_id,
        message,
        message_tokens,
        prompt_tokens,
        day,
        now,
        writes_files,
    } = turn;
    let settings = &state.settings;
    let model = request.model.clone();
    let provider = state.providers.provider_name(&model);
    let started = Instant::now();
    // An empty answer is no reply: kept, it would go back to the provider in
    // every later prompt, and some providers refuse an empty message outright.
    let outcome = state
        .providers
        .complete(request, deltas)
        .await
        .and_then(|reply| {
            if reply.text.trim().is_empty() {
                Err(LlmError::upstream(None, "the model answered with no text"))
            } else {
                Ok(reply)
            }
        });
    let outcome_label = match &outcome {
        Ok(_) => "ok",
        Err(err) => err.outcome(),
    };
    state.metrics.count_llm_call(
        provider,
        &model,
        outcome_label,
        started.elapsed().as_secs_f64(),
    );

    let created_at = crate::time::rfc3339(now);
    let user_message_id = new_id();
    let reply = match outcome {
        Ok(reply) => reply,
        Err(err) => {
            // Keep the user's message, with why the turn failed; charge nothing.
            drop(reservation);
            let failed = NewMessage {
                id: user_message_id,
                role: "user",
                content: message,
                content_tokens: message_tokens,
                llm_model: Some(model),
                prompt_tokens: None,
                completion_tokens: None,
                usage_raw: None,
                error: Some(err.to_string()),
                created_at,
            };
            let id = conversation_id.clone();
            match state
                .store
                .write(move |conn| store::conversations::append_messages(conn, &id, &[failed]))
                .await
            {
                Ok(seq) => state.live.appended(
                    &conversation_id,
                    seq,
                    &[Appended {
                        from_assistant: false,
                        content: "",
                        content_tokens: 0,
                        succeeded: false,
                    }],
                ),
                Err(store_err) => tracing::error!(error = %store_err, "recording a failed turn"),
            }
            return Err(TurnError::Llm(err));
        }
    };

    // Count what the provider did not report.
    let reply_text = reply.text;
    let reported = reply.usage;
    // A reported count is taken as it is when it is plausible for the text's
    // length (a token is at least one byte); only otherwise is the reply
    // counted, on the blocking pool (a reply can be long).
    let reported_completion = reported.as_ref().map(|u| u.completion_tokens).filter(|&n| {
        n <= (reply_text.len() as u64)
            .saturating_mul(10)
            .saturating_add(1000)
    });
    let (reply_tokens, usage) = match (reported.as_ref(), reported_completion) {
        (Some(u), Some(completion)) => {
            let usage = plausible_usage(u, prompt_tokens, completion);
            (usage.completion_tokens, usage)
        }
        _ => {
            let text = reply_text.clone();
            let reported = reported.clone();
            crate::blocking::run(move || {
                let reply_tokens = tokenizer::count(&text);
                let usage = match &reported {
                    Some(u) => plausible_usage(u, prompt_tokens, reply_tokens),
                    None => TurnUsage {
                        prompt_tokens,
                        completion_tokens: reply_tokens,
                    },
                };
                (reply_tokens, usage)
            })
            .await
        }
    };

    // Apply the reply's files and pack the workspace, before any row names them.
    let blocks = if writes_files {
        workspace::file_blocks(&reply_text)
    } else {
        Vec::new()
    };
    let artifact = if blocks.is_empty() {
        None
    } else {
        // A user deleted while the provider answered took the workspace with
        // them: write nothing for them, and tell a failure from that apart.
        let Some(now_is) = current(state, &conversation_id, user_id).await? else {
            return Err(TurnError::Refused(Refusal::NotFound));
        };
        if now_is.is_active() {
            match apply_reply_files(state, &conversation_id, blocks).await {
                Ok(artifact) => artifact,
                Err(_) if current(state, &conversation_id, user_id).await?.is_none() => {
                    return Err(TurnError::Refused(Refusal::NotFound));
                }
                Err(err) => return Err(err),
            }
        } else {
            // Ended while the provider answered: the reply stands, but an
            // ended conversation's workspace no longer changes.
            tracing::info!(conversation.id = %conversation_id, "the conversation ended during the turn; the reply's files were not written");
            None
        }
    };

    let assistant_message_id = new_id();
    let rows = vec![
        NewMessage {
            id: user_message_id,
            role: "user",
            content: message,
            content_tokens: message_tokens,
            llm_model: Some(model.clone()),
            prompt_tokens: None,
            completion_tokens: None,
            usage_raw: None,
            error: None,
            created_at: created_at.clone(),
        },
        NewMessage {
            id: assistant_message_id.clone(),
            role: "assistant",
            content: reply_text.clone(),
            content_tokens: reply_tokens,
            llm_model: Some(model.clone()),
            prompt_tokens: Some(usage.prompt_tokens),
            completion_tokens: Some(usage.completion_tokens),
            usage_raw: reported.and_then(|u| u.raw),
            error: None,
            created_at: crate::time::now_rfc3339(),
        },
    ];
    let (prompt, completion) = (usage.prompt_tokens, usage.completion_tokens);
    let model_for_row = model.clone();
    let artifact_row = artifact.as_ref().map(|(info, placed)| {
        (
            store::artifacts::Artifact {
                zip_id: info.zip_id.clone(),
                conversation_id: conversation_id.clone(),
                seq: 0,
                size: info.size,
                files_changed: info.files_changed.clone(),
                disposable: false,
                created_at: created_at.clone(),
            },
            placed.clone(),
        )
    });
    let id = conversation_id.clone();
    let write = state
        .store
        .write(move |conn| {
            // The user (and with them the conversation) may have been deleted
            // while the provider answered: then there is nothing to keep.
            let first_seq = store::conversations::append_owned_messages(conn, &id, user_id, &rows)?;
            store::usage::add(conn, user_id, &day, &model_for_row, prompt, completion)?;
            if let Some((mut artifact, placed)) = artifact_row {
                store::workspace_files::upsert(conn, &id, &placed, &artifact.created_at)?;
                store::artifacts::insert(conn, &mut artifact)?;
            }
            Ok((first_seq, rows))
        })
        .await;
    match &write {
        // The reply changed the workspace: the next turn reads the files again.
        Ok(_) if artifact.is_some() => state.live.forget(&conversation_id),
        Ok((first_seq, rows)) => {
            let appended = rows.iter().map(|m| Appended {
                from_assistant: m.role == "assistant",
                content: &m.content,
                content_tokens: m.content_tokens,
                succeeded: true,
            });
            state
                .live
                .appended(&conversation_id, *first_seq, &appended.collect::<Vec<_>>());
        }
        Err(_) => {}
    }
    if let Err(err) = write {
        if let Some((info, _)) = &artifact {
            let _ = std::fs::remove_file(crate::artifacts::artifact_path(
                &settings.data_dir,
                &info.zip_id,
            ));
        }
        return Err(match err {
            StoreError::NotFound => TurnError::Refused(Refusal::NotFound),
            err => err.into(),
        });
    }
    reservation.settle(prompt + completion);

    state
        .metrics
        .count_tokens(provider, &model, prompt, completion);
    if let Some((info, _)) = &artifact {
        state.metrics.artifacts.inc();
        state.metrics.artifact_bytes.inc_by(info.size);
    }
    Ok(TurnOutcome {
        message_id: assistant_message_id,
        reply: reply_text,
        llm_model: model,
        usage,
        artifact: artifact.map(|(info, _)| info),
    })
}

/// The conversation as it is now, if it still exists and is the user's.
async fn current(
    state: &AppState,
    conversation_id: &str,
    user_id: i64,
) -> StoreResult<Option<Conversation>> {
    let id = conversation_id.to_owned();
    match state
        .store
        .read(move |conn| store::conversations::owned(conn, &id, user_id))
        .await
    {
        Ok(conversation) => Ok(Some(conversation)),
        Err(StoreError::NotFound) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Writes the reply's file blocks into the workspace and packs it. Blocks with
/// a refused path are skipped (the reply still stands); returns nothing when
/// no file changed.
async fn apply_reply_files(
    state: &AppState,
    conversation_id: &str,
    blocks: Vec<workspace::FileBlock>,
) -> Result<Option<(ArtifactInfo, Vec<WorkspaceFile>)>, TurnError> {
    let settings = &state.settings;
    let lock = state.workspace_locks.for_conversation(conversation_id);
    let _guard = lock.lock().await;
    let data_dir = settings.data_dir.clone();
    let limits = Limits {
        max_file_bytes: settings.max_upload_bytes,
        max_request_bytes: settings.max_workspace_bytes,
        max_workspace_bytes: settings.max_workspace_bytes,
    };
    let id = conversation_id.to_owned();
    // The manifest may have changed since the prompt was built (an upload).
    let current = {
        let id = id.clone();
        state
            .store
            .read(move |conn| store::workspace_files::list(conn, &id))
            .await?
    };
    let zip_id = crate::artifacts::new_zip_id();
    let outcome = crate::blocking::run(move || -> anyhow::Result<Option<(ArtifactInfo, Vec<WorkspaceFile>)>> {
        let mut staging = Staging::new(&data_dir, limits);
        let known: HashMap<&str, &str> = current.iter().map(|f| (f.path.as_str(), f.sha256.as_str())).collect();
        let sizes: HashMap<&str, u64> = current.iter().map(|f| (f.path.as_str(), f.size)).collect();
        // Files that would take the workspace over its limit are left out, as
        // files over the per-file limit are: the reply stands either way.
        let mut total: u64 = sizes.values().sum();
        let mut accepted: Vec<String> = Vec::new();
        for block in &blocks {
            let Ok(path) = workspace::safe_relative_path(&block.path) else {
                tracing::warn!(path = %block.path, "a reply proposed a file outside the workspace; skipped");
                continue;
            };
            let sha = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(block.content.as_bytes()))
            };
            if known.get(path.as_str()) == Some(&sha.as_str()) {
                continue;
            }
            let taken = known.keys().copied().chain(accepted.iter().map(String::as_str));
            if workspace::collides(&path, taken) {
                tracing::warn!(path = %path, "a reply proposed a file where a folder is, or inside a file; skipped");
                continue;
            }
            let after = total - sizes.get(path.as_str()).copied().unwrap_or(0) + block.content.len() as u64;
            if after > limits.max_workspace_bytes {
                tracing::warn!(path = %path, "a file proposed by a reply would take the workspace over its limit; skipped");
                continue;
            }
            match staging.add_bytes(&path, block.content.as_bytes()) {
                Ok(()) => {
                    total = after;
                    accepted.push(path);
                }
                Err(err) => tracing::warn!(path = %path, error = %err, "a file proposed by a reply was not written"),
            }
        }
        if staging.is_empty() {
            return Ok(None);
        }
        let workspace_dir = workspace::workspace_dir(&data_dir, &id);
        let placed = staging.commit(&workspace_dir, &current)?;
        let files_changed: Vec<String> = placed.iter().map(|f| f.path.clone()).collect();
        let mut all: HashMap<String, WorkspaceFile> = current.into_iter().map(|f| (f.path.clone(), f)).collect();
        for file in &placed {
            all.insert(file.path.clone(), file.clone());
        }
        let all: Vec<WorkspaceFile> = all.into_values().collect();
        let size = crate::artifacts::build_zip(&data_dir, &id, &all, &zip_id)?;
        Ok(Some((ArtifactInfo { zip_id, files_changed, size }, placed)))
    })
    .await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::{new_id, title_of};

    #[test]
    fn ids_made_one_after_another_sort_in_that_order_and_are_uuids() {
        let ids: Vec<String> = (0..2_000).map(|_| new_id()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 7);
            assert_eq!(&parsed.hyphenated().to_string(), id);
        }
    }

    #[test]
    fn a_title_is_the_message_on_one_line_cut_at_80_characters() {
        assert_eq!(
            title_of("  Write a test\n\tfor   add(a, b)  "),
            "Write a test for add(a, b)"
        );
        assert_eq!(title_of(" \n "), "");
        let exactly = "é".repeat(80);
        assert_eq!(title_of(&exactly), exactly);
        assert_eq!(title_of(&format!("{exactly}ü")), format!("{exactly}…"));
        // The space between two words counts, and is where this one is cut.
        let word = "a".repeat(80);
        assert_eq!(title_of(&format!("{word} b")), format!("{word}…"));
        assert_eq!(title_of(&format!("{word}   ")), word);
        let long = "word ".repeat(200_000);
        assert_eq!(title_of(&long).chars().count(), 81);
        assert!(title_of(&long).starts_with("word word "));
    }
}
