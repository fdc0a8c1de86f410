//! Any OpenAI-compatible Chat Completions server: OpenAI, Ollama's /v1, vLLM,
//! llama.cpp's server, LM Studio, LiteLLM, OpenRouter and others.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::sse::Parser;
use super::{DeltaSink, Endpoint, LlmError, Reply, ReportedUsage, Request, next_chunk, send};
use crate::config::Secret;

#[derive(Debug, Clone)]
pub struct OpenAi {
    http: reqwest::Client,
    base_url: String,
    completions: Endpoint,
    key: Option<Secret>,
    idle: Duration,
}

impl OpenAi {
    pub fn new(
        http: reqwest::Client,
        base_url: String,
        key: Option<Secret>,
        idle: Duration,
    ) -> Self {
        Self {
            http,
            completions: Endpoint::new(format!("{base_url}/chat/completions")),
            base_url,
            key,
            idle,
        }
    }

    fn authorised(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(key) => builder.bearer_auth(key.expose()),
            None => builder,
        }
    }

    /// The model ids the server lists at `GET /models`.
    pub async fn list_models(&self) -> Result<Vec<String>, LlmError> {
        let request = self.authorised(self.http.get(format!("{}/models", self.base_url)));
        let mut response = send(request, self.idle).await?;
        let body = read_body(&mut response, self.idle).await?;
        let value: Value = serde_json::from_slice(&body)
            .map_err(|_| LlmError::upstream(None, "the model server's model list was not JSON"))?;
        let mut models: Vec<String> = value["data"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        // In the server's order: its first model is the default one.
        let mut seen = std::collections::HashSet::new();
        models.retain(|model| seen.insert(model.clone()));
        Ok(models)
    }

    pub async fn complete(&self, request: Request, deltas: DeltaSink) -> Result<Reply, LlmError> {
        let stream = deltas.is_some();
        let builder = self.authorised(super::with_json_body(
            self.completions.post(&self.http),
            chat_body(&request, stream),
        ));
        let mut response = send(builder, self.idle).await?;

        // Some servers answer a streamed request with plain JSON; read whatever came.
        if super::is_event_stream(&response) {
            read_stream(&mut response, self.idle, &deltas).await
        } else {
            let body = read_body(&mut response, self.idle).await?;
            let reply = parse_completion(&body)?;
            super::send_in_pieces(&reply.text, &deltas);
            Ok(reply)
        }
    }
}

/// The Chat Completions request: `model`, `messages`, `stream`, `max_tokens`,
/// and `stream_options` asking for usage when streamed.
fn chat_body(request: &Request, stream: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(request.messages.json_len() + request.model.len() + 128);
    body.extend_from_slice(b"{\"model\":");
    super::write_json_value(&mut body, &request.model);
    body.extend_from_slice(b",\"messages\":");
    request.messages.write_json(&mut body, true);
    body.extend_from_slice(b",\"stream\":");
    super::write_json_value(&mut body, &stream);
    body.extend_from_slice(b",\"max_tokens\":");
    super::write_json_value(&mut body, &request.max_tokens);
    if stream {
        body.extend_from_slice(b",\"stream_options\":{\"include_usage\":true}");
    }
    body.push(b'}');
    body
}

/// Reads a whole (non-streamed) body, with the idle timeout between chunks.
pub(crate) async fn read_body(
    response: &mut reqwest::Response,
    idle: Duration,
) -> Result<Vec<u8>, LlmError> {
    const MAX_BODY: usize = 32 * 1024 * 1024;
    let expected = response
        .content_length()
        .unwrap_or(0)
        .min(MAX_BODY as u64 + 1);
    let mut body = Vec::with_capacity(expected as usize);
    while let Some(chunk) = next_chunk(response, idle).await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(LlmError::upstream(
                None,
                "the model server's answer was too large",
            ));
        }
    }
    Ok(body)
}

/// A Chat Completions answer or stream chunk: only the parts Magdi reads,
/// borrowed from the body where no escape forces a copy.
#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    /// Kept as the provider wrote it; only its two counts are read.
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<Value>,
}

/// The counts in a `usage` object; anything but a whole number counts as
/// missing.
#[derive(Deserialize)]
struct UsageCounts {
    #[serde(default)]
    prompt_tokens: Option<Value>,
    #[serde(default)]
    completion_tokens: Option<Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    message: Option<Content<'a>>,
    #[serde(default, borrow)]
    delta: Option<Content<'a>>,
    #[serde(default)]
    finish_reason: Option<Value>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

impl<'a> Completion<'a> {
    fn first_choice(&self) -> Option<&Choice<'a>> {
        self.choices.as_deref().and_then(<[Choice]>::first)
    }
}

fn usage_of(usage: Option<&RawValue>) -> Option<ReportedUsage> {
    let usage = usage.filter(|u| u.get().starts_with('{'))?;
    let counts: UsageCounts = serde_json::from_str(usage.get()).ok()?;
    let prompt = counts.prompt_tokens.as_ref().and_then(Value::as_u64);
    let completion = counts.completion_tokens.as_ref().and_then(Value::as_u64);
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    Some(ReportedUsage {
        prompt_tokens: prompt.unwrap_or(0),
        completion_tokens: completion.unwrap_or(0),
        raw: Some(usage.get().to_owned()),
    })
}

/// Parses a non-streamed Chat Completions answer.
pub fn parse_completion(body: &[u8]) -> Result<Reply, LlmError> {
    let completion: Completion = serde_json::from_slice(body)
        .map_err(|_| LlmError::upstream(None, "the model server's answer was not valid JSON"))?;
    let text = completion
        .first_choice()
        .and_then(|c| c.message.as_ref())
        .and_then(|m| m.content.as_deref())
        .ok_or_else(|| {
            LlmError::upstream(None, "the model server's answer had no message content")
        })?;
    Ok(Reply {
        text: text.to_owned(),
        usage: usage_of(completion.usage),
    })
}

async fn read_stream(
    response: &mut reqwest::Response,
    idle: Duration,
    deltas: &DeltaSink,
) -> Result<Reply, LlmError> {
    let mut parser = Parser::new();
    let mut text = String::new();
    let mut usage = None;
    let mut finished = false;
    let mut done = false;
    while !done {
        let Some(chunk) = next_chunk(response, idle).await? else {
            break;
        };
        let events = parser
            .push(&chunk)
            .map_err(|err| LlmError::upstream(None, err.to_string()))?;
        for event in events {
            if event.data.trim() == "[DONE]" {
                done = true;
                break;
            }
            let chunk: Completion = serde_json::from_str(&event.data).map_err(|_| {
                LlmError::upstream(None, "the model server sent an unreadable stream event")
            })?;
            if let Some(message) = &chunk.error {
                let message = message["message"].as_str().unwrap_or("unknown error");
                tracing::warn!(detail = %message, "the model server reported an error mid-stream");
                return Err(LlmError::upstream(
                    None,
                    "the model server reported an error while answering",
                ));
            }
            if let Some(found) = usage_of(chunk.usage) {
                usage = Some(found);
            }
            let Some(choice) = chunk.first_choice() else {
                continue;
            };
            if let Some(delta) = choice.delta.as_ref().and_then(|d| d.content.as_deref())
                && !delta.is_empty()
            {
                text.push_str(delta);
                if let Some(sink) = deltas {
                    let _ = sink.send(delta.to_owned());
                }
            }
            if choice.finish_reason.as_ref().is_some_and(Value::is_string) {
                finished = true;
            }
        }
    }
    if !done && !finished {
        return Err(LlmError::upstream(
            None,
            "the model server's stream ended before the reply was complete",
        ));
    }
    Ok(Reply { text, usage })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_with_usage_is_read() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        let reply = parse_completion(body).unwrap();
        assert_eq!(reply.text, "hi");
        let usage = reply.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (5, 2));
        assert_eq!(
            usage.raw.as_deref(),
            Some(r#"{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}"#),
            "the usage is kept as the provider wrote it"
        );
    }

    #[test]
    fn usage_counts_that_are_not_whole_numbers_count_as_missing() {
        let with_usage = |usage: &str| {
            let body =
                format!(r#"{{"choices":[{{"message":{{"content":"hi"}}}}],"usage":{usage}}}"#);
            parse_completion(body.as_bytes())
                .unwrap()
                .usage
                .map(|u| (u.prompt_tokens, u.completion_tokens))
        };
        assert_eq!(
            with_usage(r#"{"prompt_tokens":"5","completion_tokens":2}"#),
            Some((0, 2))
        );
        assert_eq!(
            with_usage(r#"{"prompt_tokens":1.5,"completion_tokens":null}"#),
            None
        );
        assert_eq!(with_usage(r#"{"total_tokens":7}"#), None);
        assert_eq!(with_usage("[5, 2]"), None);
        assert_eq!(with_usage("null"), None);
    }

    #[test]
    fn a_completion_without_content_is_an_upstream_error() {
        let err = parse_completion(br#"{"choices":[]}"#).unwrap_err();
        assert!(matches!(err, LlmError::Upstream { .. }));
    }
}
