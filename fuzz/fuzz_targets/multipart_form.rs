//! The multipart form reader, driven the honest way: through the whole HTTP
//! application (`magdi::http::app`, with its real state, SQLite store and
//! offline model), with poem's in-process test client, signed in as a real
//! user. Any body, well formed or not: no 5xx answer, every answer is JSON,
//! nothing is left in the staging folder, and every workspace file is a
//! clean path inside its workspace.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use poem::EndpointExt;
use poem::endpoint::BoxEndpoint;
use poem::test::TestClient;
use serde_json::{Value, json};

const BOUNDARY: &str = "magdi-fuzz-boundary";

#[derive(Debug, Arbitrary)]
struct Input {
    chat: bool,
    body: Body,
    /// Drop the `; boundary=` parameter, or name another boundary.
    content_type: ContentType,
}

#[derive(Debug, Arbitrary)]
enum ContentType {
    Proper,
    NoBoundary,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Body {
    /// Bytes as they come.
    Raw(Vec<u8>),
    /// Well-formed parts, then perhaps damaged or cut short.
    Parts {
        parts: Vec<Part>,
        damage: Vec<(u16, u8)>,
        cut: Option<u16>,
    },
}

#[derive(Debug, Arbitrary)]
struct Part {
    name: FieldName,
    file_name: Option<String>,
    content_type: Option<String>,
    value: Value_,
    /// Extra raw header lines.
    headers: Vec<String>,
}

#[derive(Debug, Arbitrary)]
enum FieldName {
    Files,
    FilesBrackets,
    ConversationId,
    UserId,
    Category,
    Message,
    LlmModel,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Value_ {
    /// The conversation made for this input.
    TheConversation,
    /// The signed-in user's id.
    TheUser,
    /// A small zip holding this name and content.
    Zip(String, Vec<u8>),
    Bytes(Vec<u8>),
}

struct World {
    runtime: tokio::runtime::Runtime,
    client: TestClient<BoxEndpoint<'static>>,
    token: String,
    user_id: i64,
    data_dir: PathBuf,
    _keep: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let keep = tempfile::tempdir().expect("a temporary data directory");
        let data_dir = keep.path().to_path_buf();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let mut settings = magdi::config::Settings::for_data_dir(&data_dir);
        settings.daily_token_limit = 0;
        settings.max_upload_bytes = 256 * 1024;
        settings.max_request_bytes = 1024 * 1024;
        settings.max_workspace_bytes = 2 * 1024 * 1024;
        let state = runtime
            .block_on(magdi::build_state(settings))
            .expect("building the state");
        let client = TestClient::new(magdi::http::app(state).map_to_response().boxed());
        let (token, user_id) = runtime.block_on(async {
            let password = "a fuzzing password";
            let register = client
                .post("/register")
                .body_json(&json!({
                    "email": "fuzz@example.com",
                    "password": password,
                    "confirmPassword": password,
                }))
                .send()
                .await;
            register.assert_status(poem::http::StatusCode::CREATED);
            let login = client
                .post("/login")
                .body_json(&json!({"email": "fuzz@example.com", "password": password}))
                .send()
                .await;
            let login: Value = login.0.into_body().into_json().await.expect("login JSON");
            (
                login["token"].as_str().expect("a token").to_owned(),
                login["user"]["user_id"].as_i64().expect("a user id"),
            )
        });
        World {
            runtime,
            client,
            token,
            user_id,
            data_dir,
            _keep: keep,
        }
    })
}

fn small_zip(name: &str, content: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    if writer.start_file(name, options).is_ok() {
        let _ = writer.write_all(content);
    }
    writer
        .finish()
        .map(std::io::Cursor::into_inner)
        .unwrap_or_default()
}

fn body_bytes(body: Body, conversation_id: &str, user_id: i64) -> Vec<u8> {
    let (parts, damage, cut) = match body {
        Body::Raw(bytes) => return bytes,
        Body::Parts { parts, damage, cut } => (parts, damage, cut),
    };
    let mut out = Vec::new();
    for part in parts.into_iter().take(16) {
        let name = match &part.name {
            FieldName::Files => "files",
            FieldName::FilesBrackets => "files[]",
            FieldName::ConversationId => "conversation_id",
            FieldName::UserId => "user_id",
            FieldName::Category => "category",
            FieldName::Message => "message",
            FieldName::LlmModel => "llm_model",
            FieldName::Other(name) => name.as_str(),
        };
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(file_name) = &part.file_name {
            disposition.push_str(&format!("; filename=\"{file_name}\""));
        }
        out.extend_from_slice(disposition.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(content_type) = &part.content_type {
            out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        for header in part.headers.iter().take(4) {
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        match part.value {
            Value_::TheConversation => out.extend_from_slice(conversation_id.as_bytes()),
            Value_::TheUser => out.extend_from_slice(user_id.to_string().as_bytes()),
            Value_::Zip(name, content) => out.extend_from_slice(&small_zip(&name, &content)),
            Value_::Bytes(bytes) => out.extend_from_slice(&bytes),
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    if !out.is_empty() {
        for (at, value) in damage.into_iter().take(8) {
            let at = usize::from(at) % out.len();
            out[at] = value;
        }
    }
    if let Some(cut) = cut {
        out.truncate(usize::from(cut));
    }
    out
}

/// Every file under `dir`: none may be a link.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("reading a folder").path();
        let meta = std::fs::symlink_metadata(&path).expect("reading metadata");
        assert!(
            !meta.file_type().is_symlink(),
            "a link in a workspace: {path:?}"
        );
        if meta.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fuzz_target!(|input: Input| {
    let world = world();
    world.runtime.block_on(async {
        let started = world
            .client
            .post("/start_conversation")
            .header("authorization", format!("Bearer {}", world.token))
            .body_json(&json!({"category": "test_generation"}))
            .send()
            .await;
        started.assert_status_is_ok();
        let started: Value = started.0.into_body().into_json().await.expect("JSON");
        let conversation_id = started["conversation_id"].as_str().unwrap().to_owned();

        let body = body_bytes(input.body, &conversation_id, world.user_id);
        let content_type = match input.content_type {
            ContentType::Proper => format!("multipart/form-data; boundary={BOUNDARY}"),
            ContentType::NoBoundary => "multipart/form-data".to_owned(),
            ContentType::Other(other) => other,
        };
        let route = if input.chat {
            "/chat"
        } else {
            "/conversation/upload"
        };
        let mut request = world
            .client
            .post(route)
            .header("authorization", format!("Bearer {}", world.token));
        // A value that is not a valid header cannot be sent at all.
        if poem::http::HeaderValue::from_str(&content_type).is_ok() {
            request = request.content_type(content_type);
        }
        let response = request.body(body).send().await;

        let status = response.0.status();
        let answer = response.0.into_body().into_bytes().await.expect("a body");
        assert!(
            !status.is_server_error(),
            "{route} answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        let answer: Value = serde_json::from_slice(&answer)
            .unwrap_or_else(|_| panic!("{route} answered {status} without JSON: {answer:?}"));
        if !status.is_success() {
            assert!(
                answer["error"].is_string() && answer["message"].is_string(),
                "{route} answered {status} without the error shape: {answer}"
            );
        }

        let staging = world.data_dir.join("tmp");
        let left: Vec<_> = std::fs::read_dir(&staging)
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "{route} left staged files behind: {left:?}"
        );

        let workspace = magdi::workspace::workspace_dir(&world.data_dir, &conversation_id);
        let mut files = Vec::new();
        files_under(&workspace, &mut files);
        for file in &files {
            let relative = file.strip_prefix(&workspace).expect("inside the workspace");
            let relative = relative.to_str().expect("a UTF-8 name");
            assert_eq!(
                magdi::workspace::safe_relative_path(relative)
                    .ok()
                    .as_deref(),
                Some(relative),
                "an unclean name in the workspace"
            );
        }
        // Keep the disk small over a long run.
        let _ = std::fs::remove_dir_all(&workspace);
    });
});
