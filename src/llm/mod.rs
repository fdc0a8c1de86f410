//! Providers: where a turn's reply comes from. `openai` and `anthropic` talk to
//! model servers over HTTP; `builtin` answers offline.

pub mod anthropic;
pub mod builtin;
pub mod openai;
pub mod sse;
pub mod tokenizer;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{ProviderKind, Settings};

/// Whether a provider answered with Server-Sent Events (some answer a
/// streamed request with plain JSON).
fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The system message or the newest message of a prompt (the history between
/// them is a `History`).
#[derive(Debug, Clone)]
pub struct PromptMessage {
    pub role: Role,
    pub content: Text,
}

/// A prompt's text together with its form as a JSON string, made once: an
/// agent's system prompt goes into every turn's request, and escaping it anew
/// each time showed in a turn's profile.
#[derive(Debug, Clone)]
pub struct Text {
    text: Arc<str>,
    json: Arc<serde_json::value::RawValue>,
}

impl Text {
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        let text = text.into();
        let json = serde_json::value::to_raw_value(&*text)
            .expect("a string always serialises")
            .into();
        Self { text, json }
    }

    /// The text as a JSON string.
    pub fn json(&self) -> &str {
        self.json.get()
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Text {}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

/// A request body of JSON written by hand (see `Messages::write_json`).
pub(crate) fn with_json_body(
    builder: reqwest::RequestBuilder,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    builder
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
}

/// Writes `value` as JSON; a string, a number or a boolean cannot fail to.
pub(crate) fn write_json_value(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    serde_json::to_writer(out, value).expect("a string, a number or a boolean always serialises");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// What the offline model reads instead of a prompt: the category and the
/// workspace's text files.
#[derive(Debug, Clone, Default)]
pub struct OfflineContext {
    pub category: String,
    pub agent_name: String,
    pub workspace: Vec<magdi_testgen::SourceFile>,
}

/// One earlier message of a conversation as a prompt carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryMessage {
    pub from_assistant: bool,
    pub content: Arc<str>,
    pub content_tokens: u64,
}

/// Room a window's JSON keeps beyond what it holds after dropping messages.
const SPARE_JSON_BYTES: usize = 4096;

/// A conversation's recent messages, oldest first, with their prompt form as
/// JSON kept in one buffer. A turn copies its history into the request as one
/// run of bytes: read from one allocation per message, as before, it missed
/// the cache a time or two per message, and that copy was the largest part of
/// a turn left in `perf`.
#[derive(Debug, Clone, Default)]
pub struct Window {
    messages: VecDeque<HistoryMessage>,
    /// `,{"role":…,"content":…}` for each message in turn; the parts of
    /// messages dropped since the last compaction come first.
    json: Vec<u8>,
    /// Where each message's part of `json` starts.
    starts: VecDeque<usize>,
}

impl Window {
    pub fn push_back(&mut self, message: HistoryMessage) {
        self.starts.push_back(self.json.len());
        self.json.extend_from_slice(if message.from_assistant {
            b",{\"role\":\"assistant\",\"content\":"
        } else {
            b",{\"role\":\"user\",\"content\":"
        });
        write_json_value(&mut self.json, &*message.content);
        self.json.push(b'}');
        self.messages.push_back(message);
    }

    /// Drops the `count` oldest messages; answers the bytes of their text.
    pub fn drop_oldest(&mut self, count: usize) -> usize {
        let dropped = self.messages.drain(..count).map(|m| m.content.len()).sum();
        self.starts.drain(..count);
        // The buffer holds at most about twice what the messages need.
        let first = self.starts.front().copied().unwrap_or(self.json.len());
        if first > self.json.len() / 2 {
            self.json.drain(..first);
            self.starts.iter_mut().for_each(|start| *start -= first);
            // A long message dropped leaves its room behind: give it back, or
            // every conversation that once held one keeps it for good.
            if self.json.capacity() > 2 * self.json.len() + SPARE_JSON_BYTES {
                self.json.shrink_to(self.json.len() + SPARE_JSON_BYTES);
            }
        }
        dropped
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn iter(&self) -> std::collections::vec_deque::Iter<'_, HistoryMessage> {
        self.messages.iter()
    }

    /// The JSON of the messages from the `first`-th on, each after a comma.
    fn json_from(&self, first: usize) -> &[u8] {
        match self.starts.get(first) {
            Some(&start) => &self.json[start..],
            None => &[],
        }
    }
}

impl FromIterator<HistoryMessage> for Window {
    fn from_iter<I: IntoIterator<Item = HistoryMessage>>(messages: I) -> Self {
        let mut window = Self::default();
        messages.into_iter().for_each(|m| window.push_back(m));
        window
    }
}

/// A conversation's recent history as a prompt carries it: the window kept in
/// memory, shared rather than copied (one reference however long it is; a copy
/// touched every message's text), from its first user message on.
#[derive(Debug, Clone)]
pub struct History {
    window: Arc<Window>,
    skip: usize,
}

impl History {
    /// The window's messages from the first one a user sent: providers expect
    /// a conversation to start with the user.
    pub fn new(window: Arc<Window>) -> Self {
        let skip = window.iter().take_while(|m| m.from_assistant).count();
        Self { window, skip }
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &HistoryMessage> + Clone {
        self.window.iter().skip(self.skip)
    }

    /// These messages as JSON objects, each after a comma.
    fn json(&self) -> &[u8] {
        self.window.json_from(self.skip)
    }
}

/// A prompt's messages: the system message, the history, the new message.
#[derive(Debug, Clone)]
pub struct Messages {
    pub system: PromptMessage,
    pub history: History,
    pub latest: PromptMessage,
}

/// One message of a prompt, borrowed from where it is kept.
#[derive(Debug, Clone, Copy)]
pub struct MessageRef<'a> {
    pub role: Role,
    pub content: &'a str,
}

impl Messages {
    /// Writes the messages as a JSON array of `{"role", "content"}`, from the
    /// JSON each part keeps: the history is one copy. Without `system`, the
    /// system message is left out (Anthropic takes it apart).
    pub fn write_json(&self, out: &mut Vec<u8>, system: bool) {
        fn element(out: &mut Vec<u8>, message: &PromptMessage) {
            out.extend_from_slice(b"{\"role\":\"");
            out.extend_from_slice(message.role.as_str().as_bytes());
            out.extend_from_slice(b"\",\"content\":");
            out.extend_from_slice(message.content.json().as_bytes());
            out.push(b'}');
        }
        out.push(b'[');
        let history = self.history.json();
        if system {
            element(out, &self.system);
            out.extend_from_slice(history);
        } else if let Some(rest) = history.strip_prefix(b",") {
            out.extend_from_slice(rest);
        }
        if system || !history.is_empty() {
            out.push(b',');
        }
        element(out, &self.latest);
        out.push(b']');
    }

    /// About how many bytes `write_json` takes.
    pub fn json_len(&self) -> usize {
        self.system.content.json().len()
            + self.history.json().len()
            + self.latest.content.json().len()
            + 96
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = MessageRef<'_>> + Clone {
        fn own(m: &PromptMessage) -> MessageRef<'_> {
            MessageRef {
                role: m.role,
                content: &m.content,
            }
        }
        let history = self.history.iter().map(|m| MessageRef {
            role: if m.from_assistant {
                Role::Assistant
            } else {
                Role::User
            },
            content: &m.content,
        });
        std::iter::once(own(&self.system))
            .chain(history)
            .chain(std::iter::once(own(&self.latest)))
    }
}

/// A request for one reply.
#[derive(Debug, Clone)]
pub struct Request {
    pub model: String,
    pub messages: Messages,
    pub max_tokens: u32,
    pub offline: OfflineContext,
}

/// Token counts as the provider reported them, with the raw JSON kept as
/// the provider wrote it.
#[derive(Debug, Clone, Default)]
pub struct ReportedUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub raw: Option<String>,
}

/// A finished reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub text: String,
    /// `None` when the provider reported no usage; the caller counts then.
    pub usage: Option<ReportedUsage>,
}

/// Why a provider call failed. Never shown with secrets or raw bodies.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{0}")]
    Timeout(String),
    #[error("{message}")]
    Upstream {
        status: Option<u16>,
        message: String,
    },
}

impl LlmError {
    pub fn upstream(status: Option<u16>, message: impl Into<String>) -> Self {
        Self::Upstream {
            status,
            message: message.into(),
        }
    }

    /// The `outcome` label of the provider metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Upstream { .. } => "error",
        }
    }
}

/// Where deltas of a streamed reply go; `None` when nobody listens.
pub type DeltaSink = Option<mpsc::UnboundedSender<String>>;

/// The configured provider, plus the offline model which is always offered.
#[derive(Debug, Clone)]
pub struct Providers {
    pub kind: ProviderKind,
    remote: Option<Remote>,
    pub models: Vec<String>,
    pub default_model: String,
}

#[derive(Debug, Clone)]
enum Remote {
    OpenAi(openai::OpenAi),
    Anthropic(anthropic::Anthropic),
}

/// A provider's endpoint, parsed once: parsing the address again for every
/// request showed in a turn's profile. An address that does not parse is kept
/// as text, and each request with it fails as it would have.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    text: String,
    parsed: Option<reqwest::Url>,
}

impl Endpoint {
    pub(crate) fn new(text: String) -> Self {
        let parsed = reqwest::Url::parse(&text).ok();
        Self { text, parsed }
    }

    pub(crate) fn post(&self, http: &reqwest::Client) -> reqwest::RequestBuilder {
        match &self.parsed {
            Some(url) => http.post(url.clone()),
            None => http.post(&self.text),
        }
    }
}

/// The name of the offline model.
pub const BUILTIN_MODEL: &str = "builtin";

impl Providers {
    /// Builds the provider from settings; asks an OpenAI-compatible server for
    /// its models when none were given.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.llm_connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("magdi/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base_url = settings.llm_base_url.clone().unwrap_or_default();
        let key = settings.llm_api_key.clone();
        let idle = settings.llm_idle_timeout;
        let remote = match settings.provider {
            ProviderKind::Builtin => None,
            ProviderKind::Openai => Some(Remote::OpenAi(openai::OpenAi::new(
                http, base_url, key, idle,
            ))),
            ProviderKind::Anthropic => {
                let base_url = if base_url.is_empty() {
                    anthropic::DEFAULT_BASE_URL.to_owned()
                } else {
                    base_url
                };
                Some(Remote::Anthropic(anthropic::Anthropic::new(
                    http, base_url, key, idle,
                )))
            }
        };

        let mut models = settings.models.clone();
        if models.is_empty() {
            models = match &remote {
                None => Vec::new(),
                Some(Remote::OpenAi(p)) => match p.list_models().await {
                    Ok(found) => found,
                    Err(err) => {
                        tracing::warn!(error = %err, "could not read the provider's models; only the offline model is offered until --models is given");
                        Vec::new()
                    }
                },
                Some(Remote::Anthropic(p)) => p.list_models().await.unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "could not read the provider's models");
                    Vec::new()
                }),
            };
        }
        if !models.iter().any(|m| m == BUILTIN_MODEL) {
            models.push(BUILTIN_MODEL.to_owned());
        }
        let default_model = match &settings.default_model {
            Some(model) => {
                if !models.contains(model) {
                    models.insert(0, model.clone());
                }
                model.clone()
            }
            None => models[0].clone(),
        };
        Ok(Self {
            kind: settings.provider,
            remote,
            models,
            default_model,
        })
    }

    pub fn offers(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }

    /// The provider's name for metrics and logs, for a given model.
    pub fn provider_name(&self, model: &str) -> &'static str {
        if model == BUILTIN_MODEL || self.remote.is_none() {
            "builtin"
        } else {
            self.kind.name()
        }
    }

    /// Asks for a reply. With `deltas`, text is sent there as it arrives.
    pub async fn complete(&self, request: Request, deltas: DeltaSink) -> Result<Reply, LlmError> {
        if request.model == BUILTIN_MODEL {
            return Ok(builtin::complete(request, deltas).await);
        }
        match &self.remote {
            None => Ok(builtin::complete(request, deltas).await),
            Some(Remote::OpenAi(p)) => p.complete(request, deltas).await,
            Some(Remote::Anthropic(p)) => p.complete(request, deltas).await,
        }
    }
}

/// Reads the next chunk of a response body, giving up after `idle` of silence.
pub(crate) async fn next_chunk(
    response: &mut reqwest::Response,
    idle: Duration,
) -> Result<Option<bytes::Bytes>, LlmError> {
    match tokio::time::timeout(idle, response.chunk()).await {
        Err(_) => Err(LlmError::Timeout(format!(
            "the model server sent nothing for {} seconds",
            idle.as_secs()
        ))),
        Ok(Err(err)) => Err(LlmError::upstream(
            None,
            format!("the model server's answer broke off: {}", plain(&err)),
        )),
        Ok(Ok(chunk)) => Ok(chunk),
    }
}

/// Sends a request, mapping connection failures and timeouts to `LlmError`.
pub(crate) async fn send(
    builder: reqwest::RequestBuilder,
    idle: Duration,
) -> Result<reqwest::Response, LlmError> {
    let response = match tokio::time::timeout(idle, builder.send()).await {
        Err(_) => {
            return Err(LlmError::Timeout(format!(
                "the model server did not answer within {} seconds",
                idle.as_secs()
            )));
        }
        Ok(Err(err)) if err.is_connect() && err.is_timeout() => {
            return Err(LlmError::Timeout(
                "connecting to the model server timed out".into(),
            ));
        }
        Ok(Err(err)) if err.is_timeout() => {
            return Err(LlmError::Timeout("the model server timed out".into()));
        }
        Ok(Err(err)) => {
            return Err(LlmError::upstream(
                None,
                format!("could not reach the model server: {}", plain(&err)),
            ));
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if !status.is_success() {
        // Read a little of the body for the log, never for the client.
        let mut response = response;
        let detail = next_chunk(&mut response, idle)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let detail = String::from_utf8_lossy(&detail[..detail.len().min(300)]).into_owned();
        tracing::warn!(status = status.as_u16(), detail = %detail, "the model server refused the request");
        return Err(LlmError::upstream(
            Some(status.as_u16()),
            format!("the model server answered with status {}", status.as_u16()),
        ));
    }
    Ok(response)
}

/// A reqwest error without the URL, which may carry a key in its query.
fn plain(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    if let Some(url) = err.url() {
        message = message.replace(url.as_str(), "the model server");
    }
    if err.is_connect() {
        return "connection refused or unreachable".into();
    }
    message
}

/// Splits a finished reply into deltas for the offline model's stream.
pub(crate) fn send_in_pieces(text: &str, deltas: &DeltaSink) {
    let Some(sink) = deltas else { return };
    let mut piece = String::new();
    for word in text.split_inclusive(' ') {
        piece.push_str(word);
        if piece.len() >= 48 {
            let _ = sink.send(std::mem::take(&mut piece));
        }
    }
    if !piece.is_empty() {
        let _ = sink.send(piece);
    }
}

#[cfg(test)]
mod text_tests {
    use std::sync::Arc;

    use super::{History, HistoryMessage, Messages, PromptMessage, Role, Text, Window};

    #[test]
    fn a_texts_json_is_the_json_string_of_its_text() {
        let raw = "quotes \" backslash \\ newline \n tab \t control \u{1} emoji 🙂";
        let text = Text::new(raw);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(text.json()).unwrap(),
            serde_json::json!(raw)
        );
        assert_eq!(&*text, raw);
    }

    /// What the messages are as JSON, made by serde_json from `iter`: the
    /// check on `write_json`, which writes them by hand.
    fn as_json(messages: &Messages) -> serde_json::Value {
        messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role.as_str(), "content": m.content}))
            .collect()
    }

    fn said(from_assistant: bool, text: &str) -> HistoryMessage {
        HistoryMessage {
            from_assistant,
            content: text.into(),
            content_tokens: 1,
        }
    }

    fn messages(window: Window) -> Messages {
        Messages {
            system: PromptMessage {
                role: Role::System,
                content: "be brief".into(),
            },
            history: History::new(Arc::new(window)),
            latest: PromptMessage {
                role: Role::User,
                content: "second question".into(),
            },
        }
    }

    fn written(messages: &Messages, system: bool) -> serde_json::Value {
        let mut out = Vec::new();
        messages.write_json(&mut out, system);
        serde_json::from_slice(&out).expect("write_json writes JSON")
    }

    #[test]
    fn messages_serialise_as_one_array_with_the_history_from_its_first_user_message() {
        let window = [
            said(true, "an answer whose question fell out of the window"),
            said(false, "first \"question\""),
            said(true, "first answer"),
        ];
        let messages = messages(window.into_iter().collect());
        let expected = serde_json::json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first \"question\""},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ]);
        assert_eq!(as_json(&messages), expected);
        assert_eq!(written(&messages, true), expected);
        assert_eq!(
            written(&messages, false),
            serde_json::Value::Array(expected.as_array().unwrap()[1..].to_vec())
        );
        let last_user = messages.iter().rev().find(|m| m.role == Role::User);
        assert_eq!(last_user.map(|m| m.content), Some("second question"));
    }

    #[test]
    fn messages_written_by_hand_are_what_serde_writes_for_every_history() {
        let raw = "quotes \" backslash \\ newline \n tab \t control \u{1} emoji 🙂 </script>";
        let histories: [&[(bool, &str)]; 4] = [
            &[],
            &[(true, "only an answer")],
            &[(false, raw), (true, raw)],
            &[(true, "a"), (false, "b"), (true, "c"), (false, "d")],
        ];
        for history in histories {
            let messages = messages(history.iter().map(|&(a, t)| said(a, t)).collect());
            let serialised = as_json(&messages);
            assert_eq!(written(&messages, true), serialised, "{history:?}");
            let without_system = serialised.as_array().unwrap()[1..].to_vec();
            assert_eq!(
                written(&messages, false),
                serde_json::Value::Array(without_system),
                "{history:?}"
            );
            let mut out = Vec::new();
            messages.write_json(&mut out, true);
            assert!(out.len() <= messages.json_len(), "{history:?}");
        }
    }

    #[test]
    fn a_window_keeps_its_json_in_step_as_old_messages_are_dropped() {
        let mut window: Window = (0..10)
            .map(|i| said(i % 2 == 1, &format!("m{i}")))
            .collect();
        let texts = |window: &Window| -> Vec<String> {
            let json = window.json_from(0);
            let array = format!(
                "[{}]",
                String::from_utf8_lossy(json.get(1..).unwrap_or(b""))
            );
            let parsed: Vec<serde_json::Value> = serde_json::from_str(&array).unwrap();
            let from_json: Vec<String> = parsed
                .iter()
                .map(|m| m["content"].as_str().unwrap().to_owned())
                .collect();
            let kept: Vec<String> = window.iter().map(|m| m.content.to_string()).collect();
            assert_eq!(from_json, kept);
            kept
        };
        assert_eq!(window.drop_oldest(3), 6, "the bytes of m0, m1 and m2");
        assert_eq!(texts(&window)[0], "m3");
        // Past half the buffer the dropped part is let go of.
        window.drop_oldest(4);
        assert_eq!(window.starts.front(), Some(&0));
        assert_eq!(window.json.len(), window.json_from(0).len());
        window.push_back(said(false, "m10"));
        assert_eq!(texts(&window), ["m7", "m8", "m9", "m10"]);
        window.drop_oldest(4);
        assert!(window.is_empty() && window.json_from(0).is_empty());
        window.push_back(said(false, "again"));
        assert_eq!(texts(&window), ["again"]);
    }

    #[test]
    fn a_long_message_dropped_gives_its_room_back() {
        let mut window = Window::default();
        window.push_back(said(false, &"x".repeat(1 << 20)));
        window.push_back(said(true, "a short reply"));
        window.drop_oldest(1);
        assert_eq!(window.len(), 1);
        assert!(
            window.json.capacity() <= window.json.len() + super::SPARE_JSON_BYTES,
            "{} bytes kept for {}",
            window.json.capacity(),
            window.json.len()
        );
        window.push_back(said(false, "next"));
        assert_eq!(window.json_from(0).len(), window.json.len());
    }
}
