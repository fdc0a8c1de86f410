use std::time::Duration;

use serde_json::Value;

use crate::support::{Behaviour, FakeProvider, TestApp, error_code};

async fn app_with(fake: &FakeProvider) -> TestApp {
    TestApp::spawn_with(|s| {
        fake.configure(s);
        s.llm_idle_timeout = Duration::from_secs(1);
    })
    .await
}

#[tokio::test]
async fn the_provider_receives_the_system_prompt_history_and_workspace() {
    let fake = FakeProvider::start().await;
    let app = app_with(&fake).await;
    let account = app.account("prompt@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    app.upload(
        &account.token,
        &id,
        vec![("calc.py", b"def add(a, b):\n    return a + b\n".to_vec())],
    )
    .await;

    let first = app
        .chat(
            &account.token,
            app.chat_form(&id, "test_generation", "First question"),
        )
        .await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["reply"], "Hello from the fake model.");
    assert_eq!(first["llm_model"], "fake-small");
    assert_eq!(first["usage"]["prompt_tokens"], 11);
    assert_eq!(first["usage"]["completion_tokens"], 7);
    assert_eq!(first["usage"]["total_tokens"], 18);
    assert_eq!(first["artifact"], Value::Null);

    let second = app
        .chat(
            &account.token,
            app.chat_form(&id, "test_generation", "Second question"),
        )
        .await;
    assert_eq!(second.status(), 200);
    let request = fake.last_request();
    assert_eq!(request["model"], "fake-small");
    let messages = request["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    let system = messages[0]["content"].as_str().unwrap();
    assert!(system.contains("You are MagdiCreator"), "{system}");
    assert!(
        system.contains("path=calc.py") && system.contains("return a + b"),
        "{system}"
    );
    assert_eq!(messages[1]["content"], "First question");
    assert_eq!(messages[2]["content"], "Hello from the fake model.");
    assert_eq!(messages[3]["content"], "Second question");
}

#[tokio::test]
async fn a_turn_may_name_another_offered_model() {
    let fake = FakeProvider::start().await;
    let app = app_with(&fake).await;
    let account = app.account("model@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    let form = app
        .chat_form(&id, "qa_info", "hi")
        .text("llm_model", "fake-large");
    let answer: Value = app.chat(&account.token, form).await.json().await.unwrap();
    assert_eq!(answer["llm_model"], "fake-large");
    assert_eq!(fake.last_request()["model"], "fake-large");
    let form = app
        .chat_form(&id, "qa_info", "hi")
        .text("llm_model", "not-offered");
    assert_eq!(
        error_code(app.chat(&account.token, form).await, 400).await,
        "unknown_model"
    );
}

/// Reads an SSE body into (event, data) pairs.
pub fn sse_events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = String::from("message");
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_owned();
                } else if let Some(text) = line.strip_prefix("data: ") {
                    data.push(text);
                }
            }
            (event, data.join("\n"))
        })
        .collect()
}

#[tokio::test]
async fn a_streamed_turn_sends_deltas_then_the_whole_answer() {
    let fake = FakeProvider::start().await;
    let app = app_with(&fake).await;
    let account = app.account("sse@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    let response = app
        .chat_stream(
            &account.token,
            app.chat_form(&id, "qa_info", "stream please"),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(streamed_text(&events), "Hello from the fake model.");
    let (last_event, last_data) = events.last().unwrap();
    assert_eq!(last_event, "done");
    assert_eq!(events.iter().filter(|(e, _)| e == "done").count(), 1);
    let done: Value = serde_json::from_str(last_data).unwrap();
    assert_eq!(done["reply"], "Hello from the fake model.");
    assert_eq!(done["usage"]["total_tokens"], 18);
    assert_eq!(fake.last_request()["stream"], true);
    assert_eq!(fake.last_request()["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn an_accept_header_that_refuses_event_streams_gets_json() {
    let fake = FakeProvider::start().await;
    let app = app_with(&fake).await;
    let account = app.account("accept@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    let cases = [
        ("text/event-stream;q=0", false),
        ("text/event-stream; q=0.0, application/json", false),
        ("text/event-stream;q=0.5, application/json", false),
        ("text/event-stream;q=0.5", true),
        ("application/json;q=0.9, text/event-stream", true),
    ];
    for (accept, streamed) in cases {
        let response = app
            .client
            .post(app.url("/chat"))
            .bearer_auth(&account.token)
            .header("accept", accept)
            .multipart(app.chat_form(&id, "qa_info", accept))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{accept}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.text().await.unwrap();
        let answer: Value = if streamed {
            assert!(content_type.starts_with("text/event-stream"), "{accept}");
            let events = sse_events(&body);
            assert_eq!(
                streamed_text(&events),
                "Hello from the fake model.",
                "{accept}"
            );
            let (event, data) = events.last().unwrap();
            assert_eq!(event, "done", "{accept}");
            serde_json::from_str(data).unwrap()
        } else {
            assert!(content_type.starts_with("application/json"), "{accept}");
            serde_json::from_str(&body).unwrap()
        };
        assert_eq!(answer["reply"], "Hello from the fake model.", "{accept}");
        assert_eq!(answer["usage"]["total_tokens"], 18, "{accept}");
        assert_eq!(fake.last_request()["stream"], streamed, "{accept}");
    }
}

/// A failing, garbled and stalled provider answer 502, 502 and 504; each
/// turn's message is the behaviour's name.
async fn failures_are_502_and_504(app: &TestApp, fake: &FakeProvider, token: &str, id: &str) {
    for (behaviour, status, code) in [
        (Behaviour::Fail, 502, "upstream_error"),
        (Behaviour::Garbage, 502, "upstream_error"),
        (Behaviour::Stall, 504, "upstream_timeout"),
    ] {
        fake.set(behaviour);
        let response = app
            .chat(
                token,
                app.chat_form(id, "qa_info", &format!("{behaviour:?}")),
            )
            .await;
        assert_eq!(error_code(response, status).await, code, "{behaviour:?}");
    }
}

/// A stream the provider cuts short ends with an `error` event.
async fn a_cut_stream_ends_in_an_error_event(
    app: &TestApp,
    fake: &FakeProvider,
    token: &str,
    id: &str,
) {
    fake.set(Behaviour::CutShort);
    let response = app
        .chat_stream(token, app.chat_form(id, "qa_info", "go"))
        .await;
    let events = sse_events(&response.text().await.unwrap());
    let (event, data) = events.last().unwrap();
    assert_eq!(event, "error");
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap()["error"],
        "upstream_error"
    );
}

#[tokio::test]
async fn provider_failures_become_502_and_504_and_keep_the_message() {
    let fake = FakeProvider::start().await;
    let app = app_with(&fake).await;
    let account = app.account("fail@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    failures_are_502_and_504(&app, &fake, &account.token, &id).await;
    fake.set(Behaviour::Fail);
    let body: Value = app
        .chat(&account.token, app.chat_form(&id, "qa_info", "status?"))
        .await
        .json()
        .await
        .unwrap();
    assert!(body["message"].as_str().unwrap().contains("500"), "{body}");

    let detail = app.conversation_detail(&account.token, &id).await;
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert!(
        messages
            .iter()
            .all(|m| m["role"] == "user" && m["error"].is_string())
    );
    assert_eq!(messages[0]["content"], "Fail");
    let usage = app.usage(&account.token).await;
    assert_eq!(usage["tokens_used"], 0);
}

#[tokio::test]
async fn a_streamed_turn_that_fails_before_any_text_is_a_plain_502() {
    let fake = FakeProvider::start().await;
    let app = app_with(&fake).await;
    let account = app.account("sse502@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    fake.set(Behaviour::Fail);
    let response = app
        .chat_stream(&account.token, app.chat_form(&id, "qa_info", "go"))
        .await;
    assert_eq!(error_code(response, 502).await, "upstream_error");
    fake.set(Behaviour::Stall);
    let response = app
        .chat_stream(&account.token, app.chat_form(&id, "qa_info", "go"))
        .await;
    assert_eq!(error_code(response, 504).await, "upstream_timeout");
}

#[tokio::test]
async fn a_stream_cut_short_is_an_error_event_and_costs_nothing() {
    let fake = FakeProvider::start().await;
    let app = app_with(&fake).await;
    let account = app.account("cut@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    a_cut_stream_ends_in_an_error_event(&app, &fake, &account.token, &id).await;
    assert_eq!(app.usage(&account.token).await["tokens_used"], 0);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_502() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let app = TestApp::spawn_with(|s| {
        s.provider = magdi::config::ProviderKind::Openai;
        s.llm_base_url = Some(format!("http://127.0.0.1:{port}/v1"));
        s.models = vec!["m".into()];
    })
    .await;
    let account = app.account("down@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    let form = app
        .chat_form(&id, "qa_info", "anyone?")
        .text("llm_model", "m");
    assert_eq!(
        error_code(app.chat(&account.token, form).await, 502).await,
        "upstream_error"
    );
}

#[tokio::test]
async fn models_are_read_from_the_provider_when_not_given() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| {
        s.provider = magdi::config::ProviderKind::Openai;
        s.llm_base_url = Some(fake.base_url());
    })
    .await;
    let account = app.account("models@example.com").await;
    let body: Value = app
        .get("/models", Some(&account.token))
        .await
        .json()
        .await
        .unwrap();
    // In the provider's order ("fake-small" first, not sorted): its first
    // model is the default, as README says.
    assert_eq!(
        body["models"],
        serde_json::json!(["fake-small", "fake-large", "builtin"])
    );
    assert_eq!(body["default_model"], "fake-small");
    // Agents use the provider's model, not the offline one, unless asked.
    let started: Value = app
        .start_conversation(&account, serde_json::json!({"category": "qa_info"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(started["llm_model"], "fake-small");
}

#[tokio::test]
async fn reply_file_blocks_are_written_and_packed() {
    let fake = FakeProvider::start().await;
    let app = app_with(&fake).await;
    let account = app.account("files@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    *fake.reply.lock() = "Here you go.\n\n```python path=tests/test_calc.py\nfrom calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n```\n\n```python path=../../evil.py\nboom\n```\n".into();
    let answer: Value = app
        .chat(
            &account.token,
            app.chat_form(&id, "test_generation", "write a test"),
        )
        .await
        .json()
        .await
        .unwrap();
    let artifact = &answer["artifact"];
    assert_eq!(
        artifact["files_changed"],
        serde_json::json!(["tests/test_calc.py"])
    );
    assert!(artifact["size"].as_u64().unwrap() > 0);
    let zip_id = artifact["zip_id"].as_str().unwrap();
    assert_eq!(
        artifact["download_url"],
        format!("/api/download?zip_id={zip_id}")
    );
    let written = std::fs::read_to_string(
        app.data()
            .join("workspaces")
            .join(&id)
            .join("tests/test_calc.py"),
    )
    .unwrap();
    assert_eq!(
        written,
        "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    );
    assert!(
        !app.data().join("evil.py").exists()
            && !app.data().parent().unwrap().join("evil.py").exists()
    );
    let detail = app.conversation_detail(&account.token, &id).await;
    assert_eq!(detail["artifacts"][0]["zip_id"], zip_id);
    assert_eq!(detail["workspace"][0]["path"], "tests/test_calc.py");

    // A reply file where a folder is, or inside a file, is skipped; the turn stands.
    *fake.reply.lock() = "```text path=tests\nnot a folder\n```\n```text path=tests/test_calc.py/inner.txt\nx\n```\n```python path=tests/test_calc.py\nfrom calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n```\n".into();
    let skipped = app
        .chat(
            &account.token,
            app.chat_form(&id, "test_generation", "odd files"),
        )
        .await;
    assert_eq!(skipped.status(), 200);
    assert_eq!(
        skipped.json::<Value>().await.unwrap()["artifact"],
        Value::Null
    );

    // The same reply again changes nothing, so it makes no new artifact.
    let again: Value = app
        .chat(
            &account.token,
            app.chat_form(&id, "test_generation", "again"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["artifact"], Value::Null);
}

async fn anthropic_app(fake: &FakeProvider) -> TestApp {
    TestApp::spawn_with(|s| {
        fake.configure_anthropic(s);
        s.llm_idle_timeout = Duration::from_secs(1);
    })
    .await
}

/// The text of a streamed answer's `delta` events, joined.
fn streamed_text(events: &[(String, String)]) -> String {
    events
        .iter()
        .filter(|(e, _)| e == "delta")
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn anthropic_gets_the_system_prompt_apart_the_history_and_its_headers() {
    let fake = FakeProvider::start().await;
    let app = anthropic_app(&fake).await;
    let account = app.account("claude@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    for question in ["First question", "Second question"] {
        let answer = app
            .chat(&account.token, app.chat_form(&id, "qa_info", question))
            .await;
        assert_eq!(answer.status(), 200);
        let answer: Value = answer.json().await.unwrap();
        assert_eq!(answer["reply"], "Hello from the fake model.");
        assert_eq!(answer["llm_model"], "claude-fake");
        assert_eq!(answer["usage"]["prompt_tokens"], 11);
        assert_eq!(answer["usage"]["completion_tokens"], 7);
    }

    let request = fake.last_request();
    assert_eq!(request["model"], "claude-fake");
    assert_eq!(request["stream"], false);
    assert!(request["max_tokens"].as_u64().unwrap() > 0);
    // The system prompt travels apart; the turns alternate, oldest first.
    let system = request["system"].as_str().unwrap();
    assert!(system.starts_with("You are MagdiSage"), "{system}");
    let turns: Vec<(&str, &str)> = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        turns,
        [
            ("user", "First question"),
            ("assistant", "Hello from the fake model."),
            ("user", "Second question"),
        ]
    );
    assert_eq!(
        fake.anthropic_headers.lock().clone(),
        Some(("2023-06-01".to_owned(), "fake-anthropic-key".to_owned()))
    );
    assert_eq!(app.usage(&account.token).await["tokens_used"], 36);
}

#[tokio::test]
async fn anthropic_streams_deltas_and_its_failures_cost_nothing() {
    let fake = FakeProvider::start().await;
    let app = anthropic_app(&fake).await;
    let account = app.account("claude-sse@example.com").await;
    let id = app.conversation(&account, "qa_info").await;

    let response = app
        .chat_stream(&account.token, app.chat_form(&id, "qa_info", "stream"))
        .await;
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(streamed_text(&events), "Hello from the fake model.");
    let (last_event, last_data) = events.last().unwrap();
    assert_eq!(last_event, "done");
    let done: Value = serde_json::from_str(last_data).unwrap();
    assert_eq!(done["usage"]["prompt_tokens"], 11);
    assert_eq!(done["usage"]["completion_tokens"], 7);
    assert_eq!(fake.last_request()["stream"], true);
    assert_eq!(app.usage(&account.token).await["tokens_used"], 18);

    a_cut_stream_ends_in_an_error_event(&app, &fake, &account.token, &id).await;
    failures_are_502_and_504(&app, &fake, &account.token, &id).await;
    assert_eq!(app.usage(&account.token).await["tokens_used"], 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_deleted_while_the_provider_answers_gets_a_404_and_nothing_is_kept() {
    let fake = FakeProvider::start().await;
    let app = app_with(&fake).await;
    let account = app.account("leaving@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    // A reply with a file: nothing of it may be written for a deleted user.
    *fake.reply.lock() = "```python path=gen/test_a.py\nprint(1)\n```\n".into();
    fake.set(Behaviour::Slow);
    let (plain, streamed, ()) = tokio::join!(
        app.chat(&account.token, app.chat_form(&id, "qa_info", "plain")),
        app.chat_stream(&account.token, app.chat_form(&id, "qa_info", "streamed")),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            app.delete_user(&account.email).await;
        },
    );
    assert_eq!(error_code(plain, 404).await, "conversation_not_found");
    // The stream had started (the provider's first word came before the
    // deletion was noticed) or had not: either way it ends in that error.
    let code = if streamed.status() == 200 {
        let events = sse_events(&streamed.text().await.unwrap());
        let (event, data) = events.last().unwrap().clone();
        assert_eq!(event, "error");
        serde_json::from_str::<Value>(&data).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned()
    } else {
        error_code(streamed, 404).await
    };
    assert_eq!(code, "conversation_not_found");
    assert_eq!(app.count_rows("messages"), 0);
    assert_eq!(app.count_rows("usage_daily"), 0);
    let left = crate::support::files_under(app.data());
    assert!(
        left.iter()
            .all(|f| !f.starts_with("workspaces/") && !f.starts_with("artifacts/")),
        "{left:?}"
    );
}

/// `/metrics` counts the provider's calls by model and outcome, their
/// durations, and the tokens each model spent.
#[tokio::test]
async fn calls_to_the_provider_and_their_tokens_are_counted_by_model() {
    let fake = FakeProvider::start().await;
    let app = app_with(&fake).await;
    let account = app.account("counted@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    let turn = |model: &'static str| {
        let form = app
            .chat_form(&id, "qa_info", "How do I test this?")
            .text("llm_model", model);
        app.chat(&account.token, form)
    };
    assert_eq!(turn("fake-small").await.status(), 200);
    assert_eq!(turn("fake-small").await.status(), 200);
    assert_eq!(turn("fake-large").await.status(), 200);
    fake.set(Behaviour::Fail);
    assert_eq!(turn("fake-small").await.status(), 502);

    let text = app.get("/metrics", None).await.text().await.unwrap();
    for line in [
        "magdi_llm_requests_total{provider=\"openai\",model=\"fake-small\",outcome=\"ok\"} 2",
        "magdi_llm_requests_total{provider=\"openai\",model=\"fake-small\",outcome=\"error\"} 1",
        "magdi_llm_requests_total{provider=\"openai\",model=\"fake-large\",outcome=\"ok\"} 1",
        "magdi_llm_request_duration_seconds_count{provider=\"openai\",model=\"fake-small\"} 3",
        "magdi_llm_request_duration_seconds_count{provider=\"openai\",model=\"fake-large\"} 1",
        // The fake provider reports 11 prompt and 7 completion tokens a call.
        "magdi_llm_tokens_total{model=\"fake-small\",kind=\"prompt\"} 22",
        "magdi_llm_tokens_total{model=\"fake-small\",kind=\"completion\"} 14",
        "magdi_llm_tokens_total{model=\"fake-large\",kind=\"prompt\"} 11",
        "magdi_llm_tokens_total{model=\"fake-large\",kind=\"completion\"} 7",
        "magdi_tokens_today 54",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}
