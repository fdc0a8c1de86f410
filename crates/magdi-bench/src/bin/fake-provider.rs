//! A fast OpenAI-compatible model server for benchmarks.
//!
//! It answers `POST /v1/chat/completions` (plain JSON, or Server-Sent Events
//! when `stream` is true, with a usage chunk when `stream_options.include_usage`
//! asks for one) and `GET /v1/models` with a fixed short reply, on 127.0.0.1
//! only. It is written on hyper directly and runs one thread by default, so
//! that it stays out of the way of the program being measured.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use futures_util::stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::de::IgnoredAny;

/// A fast fake OpenAI-compatible provider on 127.0.0.1.
#[derive(Debug, Parser)]
struct Args {
    /// Port to listen on (127.0.0.1 only; 0 picks a free one and prints it).
    #[arg(long, default_value_t = 9100)]
    port: u16,

    /// Length of the reply text in bytes.
    #[arg(long, default_value_t = 64)]
    reply_bytes: usize,

    /// Reply with this file's text instead; `{n}` in it becomes a number that
    /// grows with every request (so that each reply differs).
    #[arg(long)]
    reply_file: Option<std::path::PathBuf>,

    /// Give the --reply-file text only to requests for this model (also listed
    /// at /v1/models); the others get the short reply.
    #[arg(long)]
    reply_file_model: Option<String>,

    /// Pieces a streamed reply is cut into (one `delta` event each).
    #[arg(long, default_value_t = 8)]
    chunks: usize,

    /// Runtime threads: 1 runs tokio's current-thread runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,

    /// The model id listed at /v1/models.
    #[arg(long, default_value = "fake-model")]
    model: String,
}

/// What is fixed for the whole run, computed once.
struct Reply {
    model: String,
    text: String,
    file_text: Option<String>,
    file_model: Option<String>,
    numbered: bool,
    served: AtomicU64,
    chunks: usize,
    models_body: Bytes,
}

impl Reply {
    fn new(args: &Args) -> std::io::Result<Self> {
        let seed = "The fake provider answers this short and fixed reply. ";
        let text = seed.chars().cycle().take(args.reply_bytes.max(1)).collect();
        let file_text = match &args.reply_file {
            Some(path) => Some(std::fs::read_to_string(path)?),
            None => None,
        };
        let mut ids = vec![args.model.clone()];
        ids.extend(args.reply_file_model.clone());
        let data: Vec<_> = ids
            .iter()
            .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "bench"}))
            .collect();
        let models_body = serde_json::json!({"object": "list", "data": data}).to_string();
        Ok(Self {
            model: args.model.clone(),
            numbered: file_text.as_deref().is_some_and(|t| t.contains("{n}")),
            text,
            file_text,
            file_model: args.reply_file_model.clone(),
            served: AtomicU64::new(0),
            chunks: args.chunks.max(1),
            models_body: Bytes::from(models_body),
        })
    }

    /// The reply text for a request naming `model`.
    fn text(&self, model: &str) -> Cow<'_, str> {
        let Some(file_text) = &self.file_text else {
            return Cow::Borrowed(&self.text);
        };
        if self.file_model.as_deref().is_some_and(|m| m != model) {
            return Cow::Borrowed(&self.text);
        }
        if self.numbered {
            let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
            Cow::Owned(file_text.replace("{n}", &n.to_string()))
        } else {
            Cow::Borrowed(file_text)
        }
    }
}

/// Cuts `text` into about `chunks` pieces on character boundaries.
fn pieces(text: &str, chunks: usize) -> Vec<&str> {
    let size = text.len().div_ceil(chunks).max(1);
    let mut out = Vec::with_capacity(chunks);
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[start..end]);
        start = end;
    }
    out
}

fn completion_tokens(text: &str) -> usize {
    text.split_whitespace().count().max(1)
}

#[derive(Deserialize)]
struct ChatRequest {
    model: Option<String>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    messages: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error"}});
    full(status, "application/json", body.to_string())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn completion(reply: &Reply, model: &str, prompt_tokens: usize) -> Response<Body> {
    let text = reply.text(model);
    let completion_tokens = completion_tokens(&text);
    let body = serde_json::json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    });
    full(StatusCode::OK, "application/json", body.to_string())
}

fn event(value: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn streamed(
    reply: &Reply,
    model: &str,
    prompt_tokens: usize,
    include_usage: bool,
) -> Response<Body> {
    let text = reply.text(model);
    let completion_tokens = completion_tokens(&text);
    let pieces = pieces(&text, reply.chunks);
    let created = unix_now();
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        serde_json::json!({
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut events = Vec::with_capacity(pieces.len() + 4);
    events.push(event(&chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        None,
    )));
    for piece in pieces {
        events.push(event(&chunk(serde_json::json!({"content": piece}), None)));
    }
    events.push(event(&chunk(serde_json::json!({}), Some("stop"))));
    if include_usage {
        events.push(event(&serde_json::json!({
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        })));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let frames = stream::iter(
        events
            .into_iter()
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

async fn handle(
    reply: Arc<Reply>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path();
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let response = match (request.method(), path) {
        (&Method::GET, "/models") => full(
            StatusCode::OK,
            "application/json",
            reply.models_body.clone(),
        ),
        (&Method::POST, "/chat/completions") => {
            let body = match request.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => return Ok(error(StatusCode::BAD_REQUEST, "unreadable body")),
            };
            match serde_json::from_slice::<ChatRequest>(&body) {
                Ok(chat) if !chat.messages.is_empty() => {
                    // A rough count, enough for usage to vary with the prompt.
                    let prompt_tokens = (body.len() / 4).max(1);
                    let model = chat.model.as_deref().unwrap_or(&reply.model);
                    if chat.stream {
                        let include_usage = chat.stream_options.is_some_and(|o| o.include_usage);
                        streamed(&reply, model, prompt_tokens, include_usage)
                    } else {
                        completion(&reply, model, prompt_tokens)
                    }
                }
                Ok(_) => error(StatusCode::BAD_REQUEST, "messages must not be empty"),
                Err(_) => error(StatusCode::BAD_REQUEST, "the body is not a chat request"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    };
    Ok(response)
}

async fn serve(args: Args) -> std::io::Result<()> {
    let reply = Arc::new(Reply::new(&args)?);
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!(
        "fake-provider listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let reply = Arc::clone(&reply);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(Arc::clone(&reply), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(args))
}
