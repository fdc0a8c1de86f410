//! The isolation matrix: every route that takes a conversation, a `user_id`
//! or a `zip_id`, tried with a second user's token, with the first user's ids
//! and with guessed ones. Nothing may answer other than 403 or 404, and
//! nothing may change on disk or in the database.

use serde_json::{Value, json};

use crate::support::{Account, FakeProvider, TestApp, files_under};

fn snapshot(app: &TestApp) -> (Vec<i64>, Vec<String>) {
    let counts = [
        "users",
        "conversations",
        "messages",
        "artifacts",
        "workspace_files",
        "usage_daily",
    ]
    .iter()
    .map(|t| app.count_rows(t))
    .collect();
    let mut files = files_under(&app.data().join("workspaces"));
    files.extend(files_under(&app.data().join("artifacts")));
    (counts, files)
}

async fn status_of(response: reqwest::Response) -> u16 {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(body["error"].is_string(), "a JSON error: {body}");
    status
}

#[tokio::test]
async fn another_user_can_reach_nothing_of_mine() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| fake.configure(s)).await;
    let owner = app.account("owner@example.com").await;
    let intruder: Account = app.account("intruder@example.com").await;
    let id = app.conversation(&owner, "test_generation").await;
    app.upload(
        &owner.token,
        &id,
        vec![("secret.py", b"KEY = 1\n".to_vec())],
    )
    .await;
    *fake.reply.lock() =
        "```python path=tests/test_secret.py\ndef test_key():\n    assert True\n```\n".into();
    let answer: Value = app
        .chat(&owner.token, app.chat_form(&id, "test_generation", "tests"))
        .await
        .json()
        .await
        .unwrap();
    let zip_id = answer["artifact"]["zip_id"].as_str().unwrap().to_owned();
    let guessed = uuid::Uuid::new_v4().to_string();
    let guessed_zip = "ab".repeat(20);
    let before = snapshot(&app);

    let t = &intruder.token;
    let mut results: Vec<(String, u16, u16)> = Vec::new();
    for conversation in [id.as_str(), guessed.as_str()] {
        let r = app
            .get(&format!("/conversations/{conversation}"), Some(t))
            .await;
        results.push((
            format!("GET /conversations/{conversation}"),
            status_of(r).await,
            404,
        ));
        let r = app
            .upload(t, conversation, vec![("x.py", b"x".to_vec())])
            .await;
        results.push((format!("upload to {conversation}"), status_of(r).await, 404));
        let r = app
            .chat(t, app.chat_form(conversation, "test_generation", "hi"))
            .await;
        results.push((format!("chat in {conversation}"), status_of(r).await, 404));
        let r = app
            .post_json(
                "/end_conversation",
                Some(t),
                &json!({"conversation_id": conversation}),
            )
            .await;
        results.push((format!("end {conversation}"), status_of(r).await, 404));
    }
    for zip in [zip_id.as_str(), guessed_zip.as_str()] {
        let r = app.download(t, zip, true).await;
        results.push((format!("download {zip}"), status_of(r).await, 404));
    }
    let other = owner.user_id;
    let r = app
        .post_json(
            "/select",
            Some(t),
            &json!({"user_id": other, "category": "qa_info"}),
        )
        .await;
    results.push(("select as the owner".into(), status_of(r).await, 403));
    let r = app
        .post_json(
            "/start_conversation",
            Some(t),
            &json!({"user_id": other, "category": "qa_info"}),
        )
        .await;
    results.push(("start as the owner".into(), status_of(r).await, 403));
    let r = app.get(&format!("/usage?user_id={other}"), Some(t)).await;
    results.push(("usage of the owner".into(), status_of(r).await, 403));
    let own = app.conversation(&intruder, "qa_info").await;
    let r = app
        .chat(
            t,
            app.chat_form(&own, "qa_info", "hi")
                .text("user_id", other.to_string()),
        )
        .await;
    results.push(("chat as the owner".into(), status_of(r).await, 403));
    let form = reqwest::multipart::Form::new()
        .text("conversation_id", own.clone())
        .text("user_id", other.to_string());
    let r = app
        .client
        .post(app.url("/conversation/upload"))
        .bearer_auth(t)
        .multipart(form)
        .send()
        .await
        .unwrap();
    results.push(("upload as the owner".into(), status_of(r).await, 403));
    let r = app
        .post_json(
            "/end_conversation",
            Some(t),
            &json!({"user_id": other, "conversation_id": own}),
        )
        .await;
    results.push(("end as the owner".into(), status_of(r).await, 403));
    for path in [
        format!("/conversations?user_id={other}"),
        format!("/conversations/{own}?user_id={other}"),
        format!("/validate-user?user_id={other}"),
        format!("/categories?user_id={other}"),
        format!("/models?user_id={other}"),
        format!("/api/download?zip_id={zip_id}&user_id={other}"),
    ] {
        let r = app.get(&path, Some(t)).await;
        results.push((format!("GET {path}"), status_of(r).await, 403));
    }

    for (what, got, expected) in &results {
        assert_eq!(got, expected, "{what}");
    }
    // The intruder's own conversation is the only change.
    let (mut counts, files) = snapshot(&app);
    counts[1] -= 1;
    assert_eq!((counts, files), before);
    assert_eq!(
        app.download(&owner.token, &zip_id, false).await.status(),
        200
    );
}
