use serde_json::{Value, json};

use crate::support::{Behaviour, FakeProvider, TestApp, error_code, files_under, zip_of};

#[tokio::test]
async fn categories_list_the_built_in_agents() {
    let app = TestApp::spawn().await;
    let account = app.account("cat@example.com").await;
    let body: Value = app
        .get("/categories", Some(&account.token))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = body["categories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["agents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["agent_name"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        names,
        [
            "MagdiCreator",
            "MagdiPartner",
            "MagdiSage",
            "MagdiWriter",
            "MagdiAnalyzer"
        ]
    );
    assert!(body.to_string().find("system_prompt").is_none());
}

#[tokio::test]
async fn selecting_a_category_lists_its_agents_and_unknown_ones_are_refused() {
    let app = TestApp::spawn().await;
    let account = app.account("sel@example.com").await;
    let ok = app
        .post_json(
            "/select",
            Some(&account.token),
            &json!({"user_id": account.user_id, "category": "qa_info"}),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["agents"][0]["agent_name"], "MagdiSage");
    let unknown = app
        .post_json(
            "/select",
            Some(&account.token),
            &json!({"category": "cooking"}),
        )
        .await;
    assert_eq!(error_code(unknown, 400).await, "unknown_category");
    let someone_else = app
        .post_json(
            "/select",
            Some(&account.token),
            &json!({"user_id": account.user_id + 1, "category": "qa_info"}),
        )
        .await;
    assert_eq!(error_code(someone_else, 403).await, "forbidden");
}

#[tokio::test]
async fn starting_a_conversation_fills_in_the_defaults() {
    let app = TestApp::spawn().await;
    let account = app.account("start@example.com").await;
    let response = app
        .start_conversation(
            &account,
            json!({"user_id": account.user_id, "category": "test_generation"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["agent_name"], "MagdiCreator");
    assert_eq!(body["assistant_id"], "asst_magdicreator01");
    assert_eq!(body["llm_model"], "builtin");
    assert_eq!(body["status"], "active");
    assert!(uuid::Uuid::parse_str(body["conversation_id"].as_str().unwrap()).is_ok());

    let partner = app
        .start_conversation(
            &account,
            json!({"category": "test_generation", "agent_name": "MagdiPartner"}),
        )
        .await;
    assert_eq!(
        partner.json::<Value>().await.unwrap()["assistant_id"],
        "asst_magdipartner01"
    );
}

#[tokio::test]
async fn a_conversation_with_a_wrong_agent_or_model_is_refused() {
    let app = TestApp::spawn().await;
    let account = app.account("wrong@example.com").await;
    let cases = [
        (json!({"category": "nope"}), "unknown_category"),
        (
            json!({"category": "qa_info", "agent_name": "MagdiCreator"}),
            "unknown_agent",
        ),
        (
            json!({"category": "test_generation", "assistant_id": "asst_magdisage01"}),
            "unknown_agent",
        ),
        (
            json!({"category": "qa_info", "llm_model": "gpt-99"}),
            "unknown_model",
        ),
    ];
    for (body, code) in cases {
        let response = app.start_conversation(&account, body.clone()).await;
        assert_eq!(error_code(response, 400).await, code, "for {body}");
    }
    // Two fields that each name an agent of the category, but not the same
    // one: the error says that, not that the agent is unknown.
    let mixed = app
        .start_conversation(
            &account,
            json!({"category": "test_generation", "assistant_id": "asst_magdipartner01",
                   "agent_name": "MagdiCreator"}),
        )
        .await;
    assert_eq!(mixed.status(), 400);
    let body: Value = mixed.json().await.unwrap();
    assert_eq!(body["error"], "unknown_agent");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("two different agents"),
        "{body}"
    );
    assert_eq!(app.count_rows("conversations"), 0);
}

#[tokio::test]
async fn an_uploaded_zip_is_unpacked_into_the_workspace() {
    let app = TestApp::spawn().await;
    let account = app.account("up@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    let zip = zip_of(&[
        ("pkg/__init__.py", b""),
        ("pkg/core.py", b"def f():\n    return 1\n"),
        ("README.md", b"# hi\n"),
    ]);
    let response = app
        .upload(
            &account.token,
            &id,
            vec![("project.zip", zip), ("notes.txt", b"notes".to_vec())],
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let paths: Vec<&str> = body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["README.md", "notes.txt", "pkg/__init__.py", "pkg/core.py"]
    );
    assert_eq!(body["workspace_files"], 4);
    assert_eq!(body["workspace_bytes"], 5 + 5 + 22);
    let core = body["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "pkg/core.py")
        .unwrap();
    assert_eq!(core["sha256"], hex_sha256(b"def f():\n    return 1\n"));
    let on_disk = files_under(&app.data().join("workspaces").join(&id));
    assert_eq!(
        on_disk,
        ["README.md", "notes.txt", "pkg/__init__.py", "pkg/core.py"]
    );
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn an_upload_that_escapes_the_workspace_keeps_nothing() {
    let app = TestApp::spawn().await;
    let account = app.account("slip@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    let evil = zip_of(&[("good.py", b"x = 1\n"), ("../../escape.py", b"boom")]);
    let response = app
        .upload(
            &account.token,
            &id,
            vec![("ok.txt", b"fine".to_vec()), ("evil.zip", evil)],
        )
        .await;
    assert_eq!(error_code(response, 400).await, "invalid_upload");
    for name in ["/etc/passwd", "../x", "a/../../x", "C:\\win.ini", "CON"] {
        let response = app
            .upload(&account.token, &id, vec![(name, b"x".to_vec())])
            .await;
        assert_eq!(error_code(response, 400).await, "invalid_upload", "{name}");
    }
    assert!(files_under(&app.data().join("workspaces")).is_empty());
    assert!(files_under(&app.data().join("tmp")).is_empty());
    assert!(!app.data().parent().unwrap().join("escape.py").exists());
    assert_eq!(app.count_rows("workspace_files"), 0);
}

#[tokio::test]
async fn uploads_over_the_limits_are_refused_with_413() {
    let app = TestApp::spawn_with(|s| {
        s.max_upload_bytes = 1024 * 1024;
        s.max_request_bytes = 3 * 1024 * 1024;
        s.max_workspace_bytes = 2 * 1024 * 1024;
    })
    .await;
    let account = app.account("big@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    let one_mib_and_a_bit = vec![b'a'; 1024 * 1024 + 1];
    let response = app
        .upload(&account.token, &id, vec![("big.bin", one_mib_and_a_bit)])
        .await;
    assert_eq!(error_code(response, 413).await, "payload_too_large");

    let bomb = zip_of(&[("bomb.txt", &vec![b'0'; 1024 * 1024 + 10])]);
    let response = app
        .upload(&account.token, &id, vec![("bomb.zip", bomb)])
        .await;
    assert_eq!(error_code(response, 413).await, "payload_too_large");

    // What a zip unpacks to counts against the request: many small entries too.
    let entry = vec![b'0'; 1024 * 1024];
    let names: Vec<String> = (0..4).map(|i| format!("zeros{i}.bin")).collect();
    let entries: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), entry.as_slice()))
        .collect();
    let response = app
        .upload(&account.token, &id, vec![("many.zip", zip_of(&entries))])
        .await;
    assert_eq!(error_code(response, 413).await, "payload_too_large");

    let near = vec![b'b'; 900 * 1024];
    assert_eq!(
        app.upload(
            &account.token,
            &id,
            vec![("a.bin", near.clone()), ("b.bin", near.clone())]
        )
        .await
        .status(),
        200
    );
    let response = app.upload(&account.token, &id, vec![("c.bin", near)]).await;
    assert_eq!(error_code(response, 413).await, "payload_too_large");
    assert_eq!(
        files_under(&app.data().join("workspaces").join(&id)),
        ["a.bin", "b.bin"]
    );
}

#[tokio::test]
async fn chat_on_an_ended_conversation_is_rejected() {
    let app = TestApp::spawn().await;
    let account = app.account("end@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    let ended = app
        .post_json(
            "/end_conversation",
            Some(&account.token),
            &json!({"conversation_id": id}),
        )
        .await;
    assert_eq!(ended.status(), 200);
    let body: Value = ended.json().await.unwrap();
    assert_eq!(body["status"], "ended");
    let again = app
        .post_json(
            "/end_conversation",
            Some(&account.token),
            &json!({"conversation_id": id}),
        )
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<Value>().await.unwrap()["ended_at"],
        body["ended_at"]
    );

    let chat = app
        .chat(&account.token, app.chat_form(&id, "qa_info", "hello?"))
        .await;
    assert_eq!(error_code(chat, 400).await, "conversation_ended");
    let upload = app
        .upload(&account.token, &id, vec![("a.txt", b"a".to_vec())])
        .await;
    assert_eq!(error_code(upload, 400).await, "conversation_ended");
    let detail = app.conversation_detail(&account.token, &id).await;
    assert_eq!(detail["status"], "ended");
}

#[tokio::test]
async fn chat_needs_multipart_and_a_message() {
    let app = TestApp::spawn().await;
    let account = app.account("form@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    let json_body = app
        .post_json(
            "/chat",
            Some(&account.token),
            &json!({"conversation_id": id, "category": "qa_info", "message": "hi"}),
        )
        .await;
    assert_eq!(json_body.status(), 400);
    let body: Value = json_body.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("multipart/form-data")
    );

    let no_message = reqwest::multipart::Form::new()
        .text("conversation_id", id.clone())
        .text("category", "qa_info");
    assert_eq!(
        error_code(app.chat(&account.token, no_message).await, 400).await,
        "bad_request"
    );
    let no_category = reqwest::multipart::Form::new()
        .text("conversation_id", id.clone())
        .text("message", "hi");
    let response = app.chat(&account.token, no_category).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");
    assert!(body["message"].as_str().unwrap().contains("category"));
    let bad_limit = app
        .get("/conversations?limit=abc", Some(&account.token))
        .await;
    assert_eq!(bad_limit.status(), 400);
    let body: Value = bad_limit.json().await.unwrap();
    assert_eq!(
        body["message"],
        "The parameter limit must be a whole number."
    );
    let bad_uuid = app.chat_form("not-a-uuid", "qa_info", "hi");
    assert_eq!(
        error_code(app.chat(&account.token, bad_uuid).await, 400).await,
        "invalid_conversation_id"
    );
    let wrong_category = app.chat_form(&id, "test_generation", "hi");
    assert_eq!(
        error_code(app.chat(&account.token, wrong_category).await, 400).await,
        "category_mismatch"
    );
    let unknown = app.chat_form(&uuid::Uuid::new_v4().to_string(), "qa_info", "hi");
    assert_eq!(
        error_code(app.chat(&account.token, unknown).await, 404).await,
        "conversation_not_found"
    );
}

#[tokio::test]
async fn nobody_can_touch_another_users_conversation() {
    let app = TestApp::spawn().await;
    let owner = app.account("owner@example.com").await;
    let intruder = app.account("intruder@example.com").await;
    let id = app.conversation(&owner, "test_generation").await;
    app.upload(
        &owner.token,
        &id,
        vec![("secret.py", b"KEY = 1\n".to_vec())],
    )
    .await;

    let read = app
        .get(&format!("/conversations/{id}"), Some(&intruder.token))
        .await;
    assert_eq!(error_code(read, 404).await, "conversation_not_found");
    let upload = app
        .upload(&intruder.token, &id, vec![("x.py", b"x".to_vec())])
        .await;
    assert_eq!(error_code(upload, 404).await, "conversation_not_found");
    let chat = app
        .chat(
            &intruder.token,
            app.chat_form(&id, "test_generation", "give me the code"),
        )
        .await;
    assert_eq!(error_code(chat, 404).await, "conversation_not_found");
    let end = app
        .post_json(
            "/end_conversation",
            Some(&intruder.token),
            &json!({"conversation_id": id}),
        )
        .await;
    assert_eq!(error_code(end, 404).await, "conversation_not_found");
    let list: Value = app
        .get("/conversations", Some(&intruder.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["conversations"], json!([]));

    let detail = app.conversation_detail(&owner.token, &id).await;
    assert_eq!(detail["status"], "active");
    assert_eq!(detail["workspace"].as_array().unwrap().len(), 1);
    assert_eq!(app.count_rows("messages"), 0);
}

#[tokio::test]
async fn conversations_are_listed_newest_first_in_pages() {
    let app = TestApp::spawn().await;
    let account = app.account("list@example.com").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.conversation(&account, "qa_info").await);
    }
    let first: Value = app
        .get("/conversations?limit=2", Some(&account.token))
        .await
        .json()
        .await
        .unwrap();
    let page: Vec<&str> = first["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[4].as_str(), ids[3].as_str()]);
    let before = first["next_before"].as_str().unwrap();
    let url = format!("/conversations?limit=10&before={}", urlencode(before));
    let rest: Value = app
        .get(&url, Some(&account.token))
        .await
        .json()
        .await
        .unwrap();
    let page: Vec<&str> = rest["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    assert_eq!(rest["next_before"], Value::Null);
    let bad = app
        .get("/conversations?before=yesterday", Some(&account.token))
        .await;
    assert_eq!(error_code(bad, 400).await, "bad_request");
}

fn urlencode(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn an_unknown_or_malformed_conversation_id_is_404_or_400() {
    let app = TestApp::spawn().await;
    let account = app.account("ids@example.com").await;
    let missing = app
        .get(
            &format!("/conversations/{}", uuid::Uuid::new_v4()),
            Some(&account.token),
        )
        .await;
    assert_eq!(error_code(missing, 404).await, "conversation_not_found");
    let malformed = app.get("/conversations/12345", Some(&account.token)).await;
    assert_eq!(error_code(malformed, 400).await, "invalid_conversation_id");
    let end = app
        .post_json(
            "/end_conversation",
            Some(&account.token),
            &json!({"conversation_id": "nope"}),
        )
        .await;
    assert_eq!(error_code(end, 400).await, "invalid_conversation_id");
}

/// Sends a turn and answers the messages the provider received for it.
async fn turn_prompt(
    app: &TestApp,
    fake: &FakeProvider,
    token: &str,
    id: &str,
    message: &str,
) -> Vec<Value> {
    let response = app
        .chat(token, app.chat_form(id, "test_generation", message))
        .await;
    assert_eq!(response.status(), 200, "turn {message}");
    let request = fake.last_request();
    let messages = request["messages"].as_array().expect("messages").clone();
    assert_eq!(messages.last().unwrap()["content"], message);
    messages
}

/// Magdi keeps the conversations in use in memory; whatever happened to one
/// (failed turns, uploads, files written by replies, parallel turns), the
/// prompt it builds from memory is the one it builds from the database after a
/// restart.
#[tokio::test(flavor = "multi_thread")]
async fn the_prompt_from_memory_is_the_prompt_from_the_database() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| fake.configure(s)).await;
    let account = app.account("memory@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    let token = account.token.as_str();

    turn_prompt(&app, &fake, token, &id, "one").await;
    fake.set(Behaviour::Fail);
    let failed = app
        .chat(token, app.chat_form(&id, "test_generation", "two"))
        .await;
    assert_eq!(failed.status(), 502);
    fake.set(Behaviour::Normal);

    let upload = app
        .upload(token, &id, vec![("a.txt", b"alpha file\n".to_vec())])
        .await;
    assert_eq!(upload.status(), 200);
    let prompt = turn_prompt(&app, &fake, token, &id, "three").await;
    let system = prompt[0]["content"].as_str().unwrap();
    assert!(
        system.contains("alpha file"),
        "an upload reaches the next prompt"
    );
    let carried: Vec<&str> = prompt[1..prompt.len() - 1]
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        carried.len(),
        2,
        "turn one and its reply, not the failed turn"
    );
    assert_eq!(carried[0], "one");

    *fake.reply.lock() = "```text path=b.txt\nbeta file\n```\n".into();
    turn_prompt(&app, &fake, token, &id, "four").await;
    *fake.reply.lock() = "fine".into();
    let prompt = turn_prompt(&app, &fake, token, &id, "five").await;
    assert!(
        prompt[0]["content"].as_str().unwrap().contains("beta file"),
        "a file written by a reply reaches the next prompt"
    );

    let parallel = (0..4).map(|n| {
        let form = app.chat_form(&id, "test_generation", &format!("parallel {n}"));
        app.chat(token, form)
    });
    for response in futures_util::future::join_all(parallel).await {
        assert_eq!(response.status(), 200);
    }

    let warm = turn_prompt(&app, &fake, token, &id, "warm").await;
    let app = app.restart(|_| {}).await;
    let cold = turn_prompt(&app, &fake, token, &id, "cold").await;
    assert_eq!(cold.len(), warm.len() + 2);
    assert_eq!(cold[..warm.len()], warm[..], "same prompt before and after");
    assert_eq!(cold[warm.len()]["content"], "fine");
    assert_eq!(cold[warm.len()]["role"], "assistant");
}

/// An empty answer is a failed turn: stored, it would go back to the provider
/// in every later prompt (and some providers refuse an empty message).
#[tokio::test]
async fn an_empty_answer_is_a_failed_turn_and_stays_out_of_the_history() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| fake.configure(s)).await;
    let account = app.account("empty@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    *fake.reply.lock() = " \n ".into();
    let empty = app
        .chat(
            &account.token,
            app.chat_form(&id, "test_generation", "first"),
        )
        .await;
    assert_eq!(error_code(empty, 502).await, "upstream_error");
    *fake.reply.lock() = "an answer".into();
    let prompt = turn_prompt(&app, &fake, &account.token, &id, "second").await;
    assert_eq!(prompt.len(), 2, "system prompt and the new message only");
    let detail = app.conversation_detail(&account.token, &id).await;
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0]["content"], "first");
    assert!(messages[0]["error"].as_str().unwrap().contains("no text"));
    assert_eq!(app.usage(&account.token).await["tokens_used"], 18);
}

/// A reply's files that would take the workspace over its limit are left
/// out, as files over the per-file limit are; the reply and the other files
/// stand.
#[tokio::test]
async fn reply_files_over_the_workspace_limit_are_skipped_and_the_reply_stands() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| {
        fake.configure(s);
        s.max_workspace_bytes = 1000;
    })
    .await;
    let account = app.account("full@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    let upload = app
        .upload(&account.token, &id, vec![("base.txt", vec![b'b'; 600])])
        .await;
    assert_eq!(upload.status(), 200);
    let big = "x".repeat(700);
    *fake.reply.lock() =
        format!("```text path=a.txt\n{big}\n```\n```text path=b.txt\nsmall\n```\n");
    let response = app
        .chat(
            &account.token,
            app.chat_form(&id, "test_generation", "files"),
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["artifact"]["files_changed"], json!(["b.txt"]));
    let detail = app.conversation_detail(&account.token, &id).await;
    assert_eq!(detail["messages"].as_array().unwrap().len(), 2);
    let paths: Vec<&str> = detail["workspace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["b.txt", "base.txt"]);
}

/// MagdiSage answers questions and writes no files, whatever its reply holds.
#[tokio::test]
async fn an_agent_that_only_answers_writes_no_files() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| fake.configure(s)).await;
    let account = app.account("sage@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    *fake.reply.lock() = "An example:\n```python path=tests/test_x.py\nassert True\n```\n".into();
    let response = app
        .chat(
            &account.token,
            app.chat_form(&id, "qa_info", "show me a test"),
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["artifact"].is_null());
    assert!(
        answer["reply"]
            .as_str()
            .unwrap()
            .contains("path=tests/test_x.py")
    );
    let detail = app.conversation_detail(&account.token, &id).await;
    assert_eq!(detail["workspace"], json!([]));
    assert_eq!(detail["artifacts"], json!([]));
}

/// A conversation ended while the provider answers keeps the reply, but its
/// workspace no longer changes.
#[tokio::test(flavor = "multi_thread")]
async fn a_conversation_ended_during_a_turn_takes_no_files_from_it() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| fake.configure(s)).await;
    let account = app.account("ending@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    fake.set(Behaviour::Slow);
    *fake.reply.lock() = "```python path=late.py\nprint('late')\n```\n".into();
    let turn = app.chat(
        &account.token,
        app.chat_form(&id, "test_generation", "write late.py"),
    );
    let end = async {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        app.post_json(
            "/end_conversation",
            Some(&account.token),
            &json!({"conversation_id": id}),
        )
        .await
    };
    let (turn, end) = tokio::join!(turn, end);
    assert_eq!(end.status(), 200);
    assert_eq!(turn.status(), 200);
    let answer: Value = turn.json().await.unwrap();
    assert!(answer["artifact"].is_null());
    let detail = app.conversation_detail(&account.token, &id).await;
    assert_eq!(detail["status"], "ended");
    assert_eq!(detail["messages"].as_array().unwrap().len(), 2);
    assert_eq!(detail["workspace"], json!([]));
    assert_eq!(detail["artifacts"], json!([]));
}

/// A conversation whose model the server no longer offers (restarted with
/// other settings) is answered by the server's default model, and the answer
/// and the usage name the model that answered.
#[tokio::test]
async fn a_model_no_longer_offered_gives_way_to_the_default_and_says_so() {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| fake.configure(s)).await;
    let account = app.account("moved@example.com").await;
    let id = app.conversation(&account, "qa_info").await;
    let app = app
        .restart(|s| {
            s.provider = magdi::config::ProviderKind::Builtin;
            s.llm_base_url = None;
            s.models = Vec::new();
            s.default_model = None;
        })
        .await;
    let response = app
        .chat(
            &account.token,
            app.chat_form(&id, "qa_info", "What is a flaky test?"),
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["llm_model"], "builtin");
    let usage = app.usage(&account.token).await;
    assert_eq!(usage["by_model"][0]["llm_model"], "builtin");
}

/// A form that arrives in many small pieces, boundaries and all cut at odd
/// places, is read whole: a text field split across pieces, and a file larger
/// than one write to disk, arrive byte for byte.
#[tokio::test]
async fn a_form_arriving_in_small_pieces_is_read_whole() {
    let app = TestApp::spawn().await;
    let account = app.account("pieces@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    let boundary = "piecesboundary";
    let big: Vec<u8> = (0..700_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"conversation_id\"\r\n\r\n{id}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"files[]\"; filename=\"small.txt\"\r\n\r\nsmall file\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"files[]\"; filename=\"big.txt\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&big);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    // Pieces of 1 to 13 bytes for the first kilobyte, then of 4 KiB.
    let mut pieces = Vec::new();
    let mut at = 0;
    let mut size = 1;
    while at < body.len() {
        let len = if at < 1024 { size % 13 + 1 } else { 4096 };
        let end = (at + len).min(body.len());
        pieces.push(Ok::<_, std::io::Error>(body[at..end].to_vec()));
        at = end;
        size += 1;
    }
    let pieces = futures_util::stream::iter(pieces);
    let response = app
        .streamed_form("/conversation/upload", &account.token, boundary, pieces)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["workspace_files"], 2);
    assert_eq!(answer["workspace_bytes"], 10 + 700_000);
    let workspace = app.data().join("workspaces").join(&id);
    assert_eq!(std::fs::read(workspace.join("big.txt")).unwrap(), big);
    assert_eq!(
        std::fs::read_to_string(workspace.join("small.txt")).unwrap(),
        "small file"
    );
}
