use serde_json::Value;

use crate::support::{Behaviour, FakeProvider, TestApp, error_code};

#[tokio::test]
async fn parallel_turns_cannot_overspend_the_allowance() {
    let fake = FakeProvider::start().await;
    // The fake reports 11 + 7 = 18 tokens a turn; room for five is 90.
    let app = TestApp::spawn_with(|s| {
        fake.configure(s);
        s.daily_token_limit = 90;
        s.max_output_tokens = 7;
        s.max_concurrent_turns_per_user = 64;
    })
    .await;
    let account = app.account("quota@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    let turns = (0..20).map(|i| {
        app.chat(
            &account.token,
            app.chat_form(&id, "qa_info", &format!("turn {i}")),
        )
    });
    let responses = futures_util::future::join_all(turns).await;
    let mut ok = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => ok += 1,
            429 => {
                let retry: i64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry > 0 && retry <= 86_400);
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"], "rate_limited");
                assert_eq!(body["limit"], 90);
                assert!(
                    body["reset_at"]
                        .as_str()
                        .unwrap()
                        .ends_with("T00:00:00.000000Z")
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!((1..=6).contains(&ok), "{ok} turns succeeded");
    let usage = app.usage(&account.token).await;
    assert_eq!(usage["tokens_used"], 18 * ok);
    assert_eq!(usage["requests"], ok);
    assert!(usage["tokens_used"].as_u64().unwrap() <= 90 + 7);
}

#[tokio::test]
async fn sequential_turns_stop_when_the_allowance_is_spent() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| {
        fake.configure(s);
        s.daily_token_limit = 90;
        s.max_output_tokens = 7;
    })
    .await;
    let account = app.account("seq@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    let mut ok = 0;
    for _ in 0..8 {
        if app
            .chat(&account.token, app.chat_form(&id, "qa_info", "hi"))
            .await
            .status()
            == 200
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
    let usage = app.usage(&account.token).await;
    assert_eq!(usage["tokens_used"], 90);
    assert_eq!(usage["remaining"], 0);
    assert_eq!(usage["daily_limit"], 90);
    assert_eq!(usage["by_model"][0]["llm_model"], "fake-small");
    assert_eq!(usage["by_model"][0]["prompt_tokens"], 55);
    assert_eq!(usage["by_model"][0]["completion_tokens"], 35);
}

#[tokio::test]
async fn the_allowance_resets_at_utc_midnight() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| {
        fake.configure(s);
        s.daily_token_limit = 18;
        s.max_output_tokens = 7;
    })
    .await;
    let account = app.account("midnight@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    assert_eq!(
        app.chat(&account.token, app.chat_form(&id, "qa_info", "one"))
            .await
            .status(),
        200
    );
    assert_eq!(
        error_code(
            app.chat(&account.token, app.chat_form(&id, "qa_info", "two"))
                .await,
            429
        )
        .await,
        "rate_limited"
    );

    let now = chrono::Utc::now();
    let to_midnight = (magdi::quota::reset_at(now) - now).num_seconds() + 1;
    app.state.quota.clock.set_offset(to_midnight);
    assert_eq!(
        app.chat(&account.token, app.chat_form(&id, "qa_info", "three"))
            .await
            .status(),
        200
    );
    let usage = app.usage(&account.token).await;
    assert_eq!(usage["tokens_used"], 18);
    assert_eq!(usage["last_30_days"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_stream_without_usage_is_counted_with_the_tokenizer() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| fake.configure(s)).await;
    let account = app.account("count@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    fake.set(Behaviour::NoUsage);
    let response = app
        .chat_stream(&account.token, app.chat_form(&id, "qa_info", "count me"))
        .await;
    let body = response.text().await.unwrap();
    let done = body.rsplit("event: done\ndata: ").next().unwrap().trim();
    let done: Value = serde_json::from_str(done).unwrap();
    let completion = magdi::llm::tokenizer::count("Hello from the fake model.");
    assert_eq!(done["usage"]["completion_tokens"], completion);
    assert!(
        done["usage"]["prompt_tokens"].as_u64().unwrap() > 100,
        "the system prompt counts"
    );
    assert_eq!(
        app.usage(&account.token).await["tokens_used"],
        done["usage"]["total_tokens"]
    );
}

#[tokio::test]
async fn usage_of_another_user_is_forbidden() {
    let app = TestApp::spawn().await;
    let account = app.account("mine@example.com").await;
    let response = app
        .get(
            &format!("/usage?user_id={}", account.user_id + 1),
            Some(&account.token),
        )
        .await;
    assert_eq!(error_code(response, 403).await, "forbidden");
    let own = app
        .get(
            &format!("/usage?user_id={}", account.user_id),
            Some(&account.token),
        )
        .await;
    assert_eq!(own.status(), 200);
    let body: Value = own.json().await.unwrap();
    assert_eq!(body["tokens_used"], 0);
    assert_eq!(body["daily_limit"], 100_000);
}

#[tokio::test]
async fn the_rate_limit_config_is_public() {
    let app = TestApp::spawn_with(|s| s.daily_token_limit = 1234).await;
    let body: Value = app
        .get("/config/rate-limit", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["daily_token_limit"], 1234);
    assert_eq!(body["window"], "utc_day");
}

#[tokio::test]
async fn a_streamed_turn_over_the_allowance_is_a_plain_429() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| {
        fake.configure(s);
        s.daily_token_limit = 18;
    })
    .await;
    let account = app.account("stream429@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    assert_eq!(
        app.chat(&account.token, app.chat_form(&id, "qa_info", "one"))
            .await
            .status(),
        200
    );
    let response = app
        .chat_stream(&account.token, app.chat_form(&id, "qa_info", "two"))
        .await;
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = {
        assert_eq!(response.status(), 429);
        response.json().await.unwrap()
    };
    assert_eq!(body["error"], "rate_limited");
    assert!(
        body["message"].as_str().unwrap().contains("midnight UTC"),
        "{body}"
    );
}

/// A turn refused for the allowance or for too many turns at once keeps none
/// of the files its form carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_turn_keeps_none_of_its_files() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| {
        fake.configure(s);
        s.daily_token_limit = 18;
        s.max_output_tokens = 7;
        s.max_concurrent_turns_per_user = 1;
    })
    .await;
    let with_file = |id: &str, name: &str| {
        app.chat_form(id, "qa_info", "look at this").part(
            "files[]",
            reqwest::multipart::Part::bytes(b"print(1)\n".to_vec()).file_name(name.to_owned()),
        )
    };

    // Too many turns: the first one waits on a slow provider. A turn before
    // it loads the tokenizer, so that the first is waiting by the time the
    // second arrives.
    let busy = app.account("busy@example.com").await;
    app.change_accounts(|conn| magdi::store::users::set_limit(conn, "busy@example.com", 1000))
        .await;
    let id = app.conversation(&busy, "qa_info").await;
    assert_eq!(
        app.chat(&busy.token, app.chat_form(&id, "qa_info", "warm up"))
            .await
            .status(),
        200
    );
    fake.set(Behaviour::Slow);
    let (first, second) = tokio::join!(
        app.chat(&busy.token, app.chat_form(&id, "qa_info", "slow one")),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            app.chat(&busy.token, with_file(&id, "busy.py")).await
        },
    );
    assert_eq!(first.status(), 200, "{:?}", first.text().await);
    assert_eq!(error_code(second, 429).await, "too_many_turns");
    fake.set(Behaviour::Normal);

    // Over the allowance: 18 tokens, the first turn spends them all.
    let spent = app.account("spent@example.com").await;
    let id = app.conversation(&spent, "qa_info").await;
    assert_eq!(
        app.chat(&spent.token, app.chat_form(&id, "qa_info", "one"))
            .await
            .status(),
        200
    );
    let refused = app.chat(&spent.token, with_file(&id, "spent.py")).await;
    assert_eq!(error_code(refused, 429).await, "rate_limited");

    assert_eq!(app.count_rows("workspace_files"), 0);
    let stored = crate::support::files_under(&app.data().join("workspaces"));
    assert!(stored.is_empty(), "{stored:?}");
}

/// A turn refused because the user's other turns in progress hold the rest of
/// the allowance says so and asks for a short wait, not for midnight: nothing
/// is used yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_refused_for_turns_in_progress_says_so() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| {
        fake.configure(s);
        s.daily_token_limit = 1000;
    })
    .await;
    let account = app.account("parallel@example.com").await;
    let (a, b) = (
        app.conversation(&account, "qa_info").await,
        app.conversation(&account, "qa_info").await,
    );
    fake.set(Behaviour::Slow);
    let (first, second) = tokio::join!(
        app.chat(&account.token, app.chat_form(&a, "qa_info", "slow one")),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            app.chat(&account.token, app.chat_form(&b, "qa_info", "meanwhile"))
                .await
        },
    );
    assert_eq!(first.status(), 200, "{:?}", first.text().await);
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["retry-after"], "5");
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["used"], 0, "{body}");
    assert_eq!(body["limit"], 1000, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("turns in progress"), "{message}");
    assert!(!message.contains("midnight"), "{message}");

    // Once the first is done, the second goes through.
    fake.set(Behaviour::Normal);
    assert_eq!(
        app.chat(&account.token, app.chat_form(&b, "qa_info", "again"))
            .await
            .status(),
        200
    );
}

/// A message larger than what is left of the allowance is refused before the
/// provider is called, rather than charged far past the allowance.
#[tokio::test]
async fn a_message_larger_than_the_allowance_left_is_refused() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| {
        fake.configure(s);
        s.daily_token_limit = 1000;
    })
    .await;
    let account = app.account("huge@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    let huge = "word ".repeat(5000);
    let refused = app
        .chat(&account.token, app.chat_form(&id, "qa_info", &huge))
        .await;
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("shorter"), "{message}");
    assert!(message.contains("1000 left"), "{message}");
    assert!(
        fake.received.lock().is_empty(),
        "the provider was not called"
    );
    let detail = app.conversation_detail(&account.token, &id).await;
    assert_eq!(detail["messages"], serde_json::json!([]));
    assert_eq!(app.usage(&account.token).await["tokens_used"], 0);
    let fine = app
        .chat(&account.token, app.chat_form(&id, "qa_info", "a short one"))
        .await;
    assert_eq!(fine.status(), 200);
}
