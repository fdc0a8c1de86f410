//! Anthropic's Messages API.

use std::time::Duration;

use serde_json::Value;

use super::openai::read_body;
use super::sse::Parser;
use super::{DeltaSink, Endpoint, LlmError, Reply, ReportedUsage, Request, next_chunk, send};
use crate::config::Secret;

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";

#[derive(Debug, Clone)]
pub struct Anthropic {
    http: reqwest::Client,
    base_url: String,
    messages: Endpoint,
    key: Option<Secret>,
    idle: Duration,
}

impl Anthropic {
    pub fn new(
        http: reqwest::Client,
        base_url: String,
        key: Option<Secret>,
        idle: Duration,
    ) -> Self {
        let base_url = base_url
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_owned();
        Self {
            http,
            messages: Endpoint::new(format!("{base_url}/v1/messages")),
            base_url,
            key,
            idle,
        }
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let builder = builder.header("anthropic-version", API_VERSION);
        match &self.key {
            Some(key) => builder.header("x-api-key", key.expose()),
            None => builder,
        }
    }

    pub async fn list_models(&self) -> Result<Vec<String>, LlmError> {
        let builder = self.request(self.http.get(format!("{}/v1/models", self.base_url)));
        let mut response = send(builder, self.idle).await?;
        let body = read_body(&mut response, self.idle).await?;
        let value: Value = serde_json::from_slice(&body)
            .map_err(|_| LlmError::upstream(None, "the model server's model list was not JSON"))?;
        Ok(value["data"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn complete(&self, request: Request, deltas: DeltaSink) -> Result<Reply, LlmError> {
        let stream = deltas.is_some();
        let builder = self.request(super::with_json_body(
            self.messages.post(&self.http),
            messages_body(&request, stream),
        ));
        let mut response = send(builder, self.idle).await?;
        if super::is_event_stream(&response) {
            read_stream(&mut response, self.idle, &deltas).await
        } else {
            let body = read_body(&mut response, self.idle).await?;
            let reply = parse_message(&body)?;
            super::send_in_pieces(&reply.text, &deltas);
            Ok(reply)
        }
    }
}

/// The Messages API request: `model`, `max_tokens`, the system prompt apart,
/// then the turns, and `stream`.
fn messages_body(request: &Request, stream: bool) -> Vec<u8> {
    let messages = &request.messages;
    let mut body = Vec::with_capacity(messages.json_len() + request.model.len() + 128);
    body.extend_from_slice(b"{\"model\":");
    super::write_json_value(&mut body, &request.model);
    body.extend_from_slice(b",\"max_tokens\":");
    super::write_json_value(&mut body, &request.max_tokens);
    body.extend_from_slice(b",\"system\":");
    body.extend_from_slice(messages.system.content.json().as_bytes());
    body.extend_from_slice(b",\"messages\":");
    messages.write_json(&mut body, false);
    body.extend_from_slice(b",\"stream\":");
    super::write_json_value(&mut body, &stream);
    body.push(b'}');
    body
}

fn usage_of(usage: &Value) -> Option<ReportedUsage> {
    let input = usage["input_tokens"].as_u64()?;
    let output = usage["output_tokens"].as_u64().unwrap_or(0);
    Some(ReportedUsage {
        prompt_tokens: input,
        completion_tokens: output,
        raw: Some(usage.to_string()),
    })
}

pub fn parse_message(body: &[u8]) -> Result<Reply, LlmError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| LlmError::upstream(None, "the model server's answer was not valid JSON"))?;
    let blocks = value["content"]
        .as_array()
        .ok_or_else(|| LlmError::upstream(None, "the model server's answer had no content"))?;
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    Ok(Reply {
        text,
        usage: usage_of(&value["usage"]),
    })
}

async fn read_stream(
    response: &mut reqwest::Response,
    idle: Duration,
    deltas: &DeltaSink,
) -> Result<Reply, LlmError> {
    let mut parser = Parser::new();
    let mut text = String::new();
    let mut input_tokens = None;
    let mut output_tokens = 0;
    let mut raw = serde_json::Map::new();
    let mut stopped = false;
    while !stopped {
        let Some(chunk) = next_chunk(response, idle).await? else {
            break;
        };
        let events = parser
            .push(&chunk)
            .map_err(|err| LlmError::upstream(None, err.to_string()))?;
        for event in events {
            let value: Value = serde_json::from_str(&event.data).map_err(|_| {
                LlmError::upstream(None, "the model server sent an unreadable stream event")
            })?;
            match value["type"].as_str().unwrap_or(event.event.as_str()) {
                "message_start" => {
                    let usage = &value["message"]["usage"];
                    input_tokens = usage["input_tokens"].as_u64();
                    if let Some(map) = usage.as_object() {
                        raw.extend(map.clone());
                    }
                }
                "content_block_delta" => {
                    if let Some(delta) = value["delta"]["text"].as_str() {
                        text.push_str(delta);
                        if let Some(sink) = deltas {
                            let _ = sink.send(delta.to_owned());
                        }
                    }
                }
                "message_delta" => {
                    if let Some(out) = value["usage"]["output_tokens"].as_u64() {
                        output_tokens = out;
                        raw.insert("output_tokens".into(), out.into());
                    }
                }
                "message_stop" => stopped = true,
                "error" => {
                    tracing::warn!(detail = %value["error"]["message"], "the model server reported an error mid-stream");
                    return Err(LlmError::upstream(
                        None,
                        "the model server reported an error while answering",
                    ));
                }
                _ => {}
            }
        }
    }
    if !stopped {
        return Err(LlmError::upstream(
            None,
            "the model server's stream ended before the reply was complete",
        ));
    }
    let usage = input_tokens.map(|input| ReportedUsage {
        prompt_tokens: input,
        completion_tokens: output_tokens,
        raw: Some(Value::Object(raw).to_string()),
    });
    Ok(Reply { text, usage })
}
