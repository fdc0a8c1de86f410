//! The test helper: a real Magdi on 127.0.0.1:0 with its own data directory,
//! a method per endpoint, and a fake model provider that is a real HTTP
//! server on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use magdi::config::{ProviderKind, Settings};
use magdi::state::AppState;
use parking_lot::Mutex;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Account {
    pub user_id: i64,
    pub email: String,
    pub token: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts Magdi with settings adjusted by `adjust`.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> Self {
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let mut settings = Settings::for_data_dir(data_dir.path());
        settings.sweep_interval = Duration::from_secs(3600);
        adjust(&mut settings);
        Self::start(data_dir, settings).await
    }

    async fn start(data_dir: tempfile::TempDir, settings: Settings) -> Self {
        if std::env::var("TEST_LOG").is_ok() {
            magdi::telemetry::init();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a port");
        let address = listener.local_addr().unwrap();
        let state = magdi::build_state(settings)
            .await
            .expect("building the state");
        let (shutdown, signal) = oneshot::channel::<()>();
        let server = tokio::spawn(magdi::serve(state.clone(), listener, async move {
            let _ = signal.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let app = Self {
            address,
            client,
            data_dir,
            state,
            shutdown: Some(shutdown),
            server: Some(server),
        };
        // Wait until it answers.
        for _ in 0..100 {
            if app.client.get(app.url("/healthz")).send().await.is_ok() {
                return app;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("magdi did not start");
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(mut self, adjust: impl FnOnce(&mut Settings)) -> Self {
        self.stop().await;
        let mut settings = self.state.settings.clone();
        adjust(&mut settings);
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        Self::start(data_dir, settings).await
    }

    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub fn data(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    pub async fn register(&self, email: &str, password: &str, confirm: &str) -> reqwest::Response {
        self.post_json(
            "/register",
            None,
            &json!({"email": email, "password": password, "confirmPassword": confirm}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/login",
            None,
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers and signs in a fresh user.
    pub async fn account(&self, email: &str) -> Account {
        let registered = self.register(email, PASSWORD, PASSWORD).await;
        assert_eq!(registered.status(), 201, "registering {email}");
        let login: Value = self.login(email, PASSWORD).await.json().await.unwrap();
        Account {
            user_id: login["user"]["user_id"].as_i64().unwrap(),
            email: email.to_owned(),
            token: login["token"].as_str().unwrap().to_owned(),
        }
    }

    /// Changes accounts straight in the store and tells the server, as the
    /// `magdi user` commands do.
    pub async fn change_accounts<T: Send + 'static>(
        &self,
        change: impl FnOnce(&rusqlite::Connection) -> magdi::store::StoreResult<T> + Send + 'static,
    ) -> T {
        let changed = self.state.store.write(change).await.unwrap();
        magdi::account_cache::mark_changed(self.data_dir.path()).unwrap();
        changed
    }

    /// Deletes a user straight in the store, as `magdi user delete` does.
    pub async fn delete_user(&self, email: &str) {
        let email = email.to_owned();
        self.change_accounts(move |conn| magdi::store::users::delete(conn, &email))
            .await;
    }

    pub async fn start_conversation(&self, account: &Account, body: Value) -> reqwest::Response {
        self.post_json("/start_conversation", Some(&account.token), &body)
            .await
    }

    /// Starts a conversation in `category` and returns its id.
    pub async fn conversation(&self, account: &Account, category: &str) -> String {
        let response = self
            .start_conversation(account, json!({"category": category}))
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["conversation_id"].as_str().unwrap().to_owned()
    }

    pub async fn upload(
        &self,
        token: &str,
        conversation_id: &str,
        files: Vec<(&str, Vec<u8>)>,
    ) -> reqwest::Response {
        let mut form = Form::new().text("conversation_id", conversation_id.to_owned());
        for (name, bytes) in files {
            form = form.part("files[]", Part::bytes(bytes).file_name(name.to_owned()));
        }
        self.client
            .post(self.url("/conversation/upload"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// A multipart form to `route` whose body is sent piece by piece, as
    /// `pieces` yields them; `boundary` is the one the pieces use.
    pub fn streamed_form<S>(
        &self,
        route: &str,
        token: &str,
        boundary: &str,
        pieces: S,
    ) -> reqwest::RequestBuilder
    where
        S: futures_util::TryStream + Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        bytes::Bytes: From<S::Ok>,
    {
        self.client
            .post(self.url(route))
            .bearer_auth(token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(reqwest::Body::wrap_stream(pieces))
    }

    pub fn chat_form(&self, conversation_id: &str, category: &str, message: &str) -> Form {
        Form::new()
            .text("conversation_id", conversation_id.to_owned())
            .text("category", category.to_owned())
            .text("message", message.to_owned())
    }

    pub async fn chat(&self, token: &str, form: Form) -> reqwest::Response {
        self.client
            .post(self.url("/chat"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn chat_stream(&self, token: &str, form: Form) -> reqwest::Response {
        self.client
            .post(self.url("/chat"))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn conversation_detail(&self, token: &str, id: &str) -> Value {
        let response = self.get(&format!("/conversations/{id}"), Some(token)).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn usage(&self, token: &str) -> Value {
        self.get("/usage", Some(token)).await.json().await.unwrap()
    }

    pub async fn download(&self, token: &str, zip_id: &str, disposable: bool) -> reqwest::Response {
        let path = if disposable {
            format!("/api/download?zip_id={zip_id}&disposable=1")
        } else {
            format!("/api/download?zip_id={zip_id}")
        };
        self.get(&path, Some(token)).await
    }

    /// Counts rows of a table straight from the SQLite file.
    pub fn count_rows(&self, table: &str) -> i64 {
        let conn = rusqlite::Connection::open(self.data().join("magdi.db")).unwrap();
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// POSTs `body` as JSON to a server started apart from `TestApp` (a
/// `magdi serve` process), with `token` if given, and reads its JSON answer.
pub async fn post_for_json(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> Value {
    let mut request = http.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

/// Logs in to the server at `base` (a separate `magdi serve` process);
/// answers the token.
pub async fn log_in(http: &reqwest::Client, base: &str, email: &str, password: &str) -> String {
    let login = post_for_json(
        http,
        &format!("{base}/login"),
        None,
        &serde_json::json!({"email": email, "password": password}),
    )
    .await;
    login["token"].as_str().expect("a token").to_owned()
}

/// Asserts the JSON error shape and returns the `error` code.
pub async fn error_code(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    let body: Value = response.json().await.expect("a JSON error body");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
    body["error"].as_str().expect("error code").to_owned()
}

/// How the fake provider answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers with `reply` and reports usage.
    Normal,
    /// Answers without usage.
    NoUsage,
    /// Answers 500.
    Fail,
    /// Waits before answering.
    Stall,
    /// Answers normally after half a second.
    Slow,
    /// Sends something that is not JSON.
    Garbage,
    /// Streams part of a reply and stops without finishing.
    CutShort,
}

/// The fake provider: a real HTTP server on loopback that speaks OpenAI's
/// Chat Completions and Anthropic's Messages API, and records what it received.
#[derive(Clone)]
pub struct FakeProvider {
    pub address: SocketAddr,
    pub received: Arc<Mutex<Vec<Value>>>,
    /// The `anthropic-version` and `x-api-key` headers of the last Messages call.
    pub anthropic_headers: Arc<Mutex<Option<(String, String)>>>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    pub reply: Arc<Mutex<String>>,
    pub usage: Arc<Mutex<(u64, u64)>>,
}

impl FakeProvider {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let fake = Self {
            address,
            received: Arc::default(),
            anthropic_headers: Arc::default(),
            behaviour: Arc::new(Mutex::new(Behaviour::Normal)),
            reply: Arc::new(Mutex::new("Hello from the fake model.".to_owned())),
            usage: Arc::new(Mutex::new((11, 7))),
        };
        let handler = fake.clone();
        tokio::spawn(async move {
            use poem::{EndpointExt, Route, get, post};
            let app = Route::new()
                .at(
                    "/v1/models",
                    get(poem::endpoint::make_sync(|_| {
                        poem::web::Json(
                            json!({"data": [{"id": "fake-small"}, {"id": "fake-large"}]}),
                        )
                    })),
                )
                .at("/v1/chat/completions", post(fake_completions))
                .at("/v1/messages", post(fake_messages))
                .data(handler);
            let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        fake
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock() = behaviour;
    }

    pub fn last_request(&self) -> Value {
        self.received
            .lock()
            .last()
            .cloned()
            .expect("the provider received a request")
    }

    /// Settings that point Magdi at this provider as Anthropic's API.
    pub fn configure_anthropic(&self, settings: &mut Settings) {
        settings.provider = ProviderKind::Anthropic;
        settings.llm_base_url = Some(format!("http://{}", self.address));
        settings.llm_api_key = Some(magdi::config::Secret::new("fake-anthropic-key"));
        settings.models = vec!["claude-fake".into()];
        settings.default_model = Some("claude-fake".into());
    }

    /// Settings that point Magdi at this provider.
    pub fn configure(&self, settings: &mut Settings) {
        settings.provider = ProviderKind::Openai;
        settings.llm_base_url = Some(self.base_url());
        settings.models = vec!["fake-small".into(), "fake-large".into()];
        settings.default_model = Some("fake-small".into());
    }
}

#[poem::handler]
async fn fake_completions(
    body: poem::web::Json<Value>,
    fake: poem::web::Data<&FakeProvider>,
) -> poem::Response {
    use poem::IntoResponse;
    fake.received.lock().push(body.0.clone());
    let behaviour = *fake.behaviour.lock();
    let reply = fake.reply.lock().clone();
    let (prompt, completion) = *fake.usage.lock();
    let stream = body.0["stream"].as_bool().unwrap_or(false);
    match behaviour {
        Behaviour::Fail => {
            return poem::Response::builder()
                .status(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
                .body("boom");
        }
        Behaviour::Stall => {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Behaviour::Slow => tokio::time::sleep(Duration::from_millis(500)).await,
        Behaviour::Garbage => {
            return poem::Response::builder()
                .content_type("application/json")
                .body("{not json at all");
        }
        _ => {}
    }
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    if !stream {
        let mut answer = json!({
            "id": "cmpl-1", "object": "chat.completion", "model": body.0["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        });
        if behaviour != Behaviour::NoUsage {
            answer["usage"] = usage;
        }
        return poem::web::Json(answer).into_response();
    }
    let mut events = String::new();
    let words: Vec<String> = reply.split_inclusive(' ').map(str::to_owned).collect();
    let cut = behaviour == Behaviour::CutShort;
    for (i, word) in words.iter().enumerate() {
        if cut && i >= words.len() / 2 {
            break;
        }
        let chunk =
            json!({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": null}]});
        events.push_str(&format!("data: {chunk}\n\n"));
    }
    if !cut {
        events.push_str(&format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        ));
        if behaviour != Behaviour::NoUsage {
            events.push_str(&format!(
                "data: {}\n\n",
                json!({"choices": [], "usage": usage})
            ));
        }
        events.push_str("data: [DONE]\n\n");
    }
    poem::Response::builder()
        .content_type("text/event-stream")
        .body(events)
}

/// Anthropic's Messages API, as the fake answers it: the same reply, usage and
/// behaviours as `fake_completions`, in Anthropic's shapes.
#[poem::handler]
async fn fake_messages(
    request: &poem::Request,
    body: poem::web::Json<Value>,
    fake: poem::web::Data<&FakeProvider>,
) -> poem::Response {
    use poem::IntoResponse;
    let header = |name: &str| request.header(name).unwrap_or_default().to_owned();
    *fake.anthropic_headers.lock() = Some((header("anthropic-version"), header("x-api-key")));
    fake.received.lock().push(body.0.clone());
    let behaviour = *fake.behaviour.lock();
    let reply = fake.reply.lock().clone();
    let (input, output) = *fake.usage.lock();
    match behaviour {
        Behaviour::Fail => {
            return poem::Response::builder()
                .status(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
                .body(r#"{"type":"error","error":{"type":"api_error","message":"boom"}}"#);
        }
        Behaviour::Stall => tokio::time::sleep(Duration::from_secs(30)).await,
        Behaviour::Slow => tokio::time::sleep(Duration::from_millis(500)).await,
        Behaviour::Garbage => {
            return poem::Response::builder()
                .content_type("application/json")
                .body("{not json at all");
        }
        _ => {}
    }
    if !body.0["stream"].as_bool().unwrap_or(false) {
        return poem::web::Json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": body.0["model"],
            "content": [{"type": "text", "text": reply}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": input, "output_tokens": output},
        }))
        .into_response();
    }
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "role": "assistant",
               "content": [], "usage": {"input_tokens": input, "output_tokens": 1}}}),
    );
    events.push_str(&event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "text", "text": ""}}),
    ));
    let words: Vec<&str> = reply.split_inclusive(' ').collect();
    let cut = behaviour == Behaviour::CutShort;
    for (i, word) in words.iter().enumerate() {
        if cut && i >= words.len() / 2 {
            break;
        }
        events.push_str(&event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": word}}),
        ));
    }
    if !cut {
        events.push_str(&event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push_str(&event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                   "usage": {"output_tokens": output}}),
        ));
        events.push_str(&event("message_stop", json!({"type": "message_stop"})));
    }
    poem::Response::builder()
        .content_type("text/event-stream")
        .body(events)
}

/// A zip in memory from (name, bytes) pairs.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut buffer = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buffer);
        let options = zip::write::SimpleFileOptions::default();
        for (name, bytes) in files {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }
    buffer.into_inner()
}

/// Every file in a directory tree, relative paths, sorted.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(
                    path.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
