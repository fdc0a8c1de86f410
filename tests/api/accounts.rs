use base64::Engine;
use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, error_code};

#[tokio::test]
async fn registering_returns_the_new_user() {
    let app = TestApp::spawn().await;
    let response = app.register("  Ada@Example.com ", PASSWORD, PASSWORD).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["email"], "Ada@Example.com");
    assert!(body["user_id"].as_i64().unwrap() > 0);
    assert!(magdi::time::parse(body["created_at"].as_str().unwrap()).is_some());
}

#[tokio::test]
async fn registration_refuses_bad_input_with_a_reason_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let long_password = "x".repeat(10_000);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"email": "not-an-address", "password": PASSWORD, "confirmPassword": PASSWORD}),
            "invalid_email",
        ),
        (
            json!({"email": "a b@example.com", "password": PASSWORD, "confirmPassword": PASSWORD}),
            "invalid_email",
        ),
        (
            json!({"email": "a@exa mple.com", "password": PASSWORD, "confirmPassword": PASSWORD}),
            "invalid_email",
        ),
        (
            json!({"email": "\u{202e}@\u{0}.com", "password": PASSWORD, "confirmPassword": PASSWORD}),
            "invalid_email",
        ),
        (
            json!({"email": "ad\u{202e}a@example.com", "password": PASSWORD, "confirmPassword": PASSWORD}),
            "invalid_email",
        ),
        (
            json!({"email": "a\u{200b}@example.com", "password": PASSWORD, "confirmPassword": PASSWORD}),
            "invalid_email",
        ),
        (
            json!({"email": "", "password": PASSWORD, "confirmPassword": PASSWORD}),
            "invalid_email",
        ),
        (
            json!({"email": "a@example.com", "password": "short", "confirmPassword": "short"}),
            "invalid_password",
        ),
        (
            json!({"email": "a@example.com", "password": long_password, "confirmPassword": long_password}),
            "invalid_password",
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD, "confirmPassword": "different!"}),
            "passwords_differ",
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD}),
            "bad_request",
        ),
        (
            json!({"email": PASSWORD, "password": 12, "confirmPassword": PASSWORD}),
            "bad_request",
        ),
        (
            json!({"email": "a@example.com", "password": [1], "confirmPassword": PASSWORD}),
            "bad_request",
        ),
        (json!([1, 2, 3]), "bad_request"),
    ];
    for (body, expected) in cases {
        let response = app.post_json("/register", None, &body).await;
        assert_eq!(error_code(response, 400).await, expected, "for {body}");
    }
    assert_eq!(app.count_rows("users"), 0);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_json_errors() {
    let app = TestApp::spawn().await;
    let malformed = app
        .client
        .post(app.url("/register"))
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");
    // One sentence in plain words, with the parser's reason but not its name.
    let message = body["message"].as_str().unwrap();
    assert_eq!(
        message,
        "The request body is not the JSON this route takes (it breaks off or is malformed at \
         line 1, column 9)."
    );
    // A body that is not an object names no Rust type.
    for body in ["null", "[1]", ""] {
        let response = app
            .client
            .post(app.url("/register"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            answer["message"],
            "The request body is not the JSON this route takes (it must be an object with the \
             fields this route documents at /docs).",
            "{body}"
        );
    }
    let not_json = app
        .client
        .post(app.url("/register"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(not_json, 400).await, "bad_request");
    let huge = app
        .client
        .post(app.url("/register"))
        .header("content-type", "application/json")
        .body(vec![b' '; 10 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(huge, 413).await, "payload_too_large");
    // Without a length up front (chunked), the limit holds all the same.
    let chunks =
        futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])));
    let chunked = app
        .client
        .post(app.url("/register"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(chunked, 413).await, "payload_too_large");
    assert_eq!(app.count_rows("users"), 0);
}

/// Posts `body` to `path` and returns the 400's message and field.
async fn refusal(app: &TestApp, path: &str, token: Option<&str>, body: &Value) -> (String, Value) {
    let response = app.post_json(path, token, body).await;
    assert_eq!(response.status(), 400, "{path} {body}");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "bad_request", "{path} {body}: {answer}");
    (
        answer["message"].as_str().unwrap().to_owned(),
        answer["field"].clone(),
    )
}

#[tokio::test]
async fn a_missing_field_or_a_field_of_the_wrong_type_is_named_in_the_error() {
    let app = TestApp::spawn().await;
    let account = app.account("fields@example.com").await;
    let token = Some(account.token.as_str());
    let conversation = app.conversation(&account, "qa_info").await;
    let cases: Vec<(&str, Option<&str>, Value, &str, &str)> = vec![
        (
            "/register",
            None,
            json!({"email": "a@example.com", "password": PASSWORD}),
            "The field `confirmPassword` is missing.",
            "confirmPassword",
        ),
        (
            "/register",
            None,
            json!({"password": PASSWORD, "confirmPassword": PASSWORD}),
            "The field `email` is missing.",
            "email",
        ),
        (
            "/register",
            None,
            json!({"email": "a@example.com", "password": [1], "confirmPassword": PASSWORD}),
            "The field `password` must be a string.",
            "password",
        ),
        (
            "/login",
            None,
            json!({"email": {"address": "a@example.com"}, "password": PASSWORD}),
            "The field `email` must be a string.",
            "email",
        ),
        (
            "/login",
            None,
            json!({"email": "a@example.com"}),
            "The field `password` is missing.",
            "password",
        ),
        (
            "/select",
            token,
            json!({}),
            "The field `category` is missing.",
            "category",
        ),
        (
            "/start_conversation",
            token,
            json!({"category": "qa_info", "user_id": "me"}),
            "The field `user_id` must be a whole number.",
            "user_id",
        ),
        (
            "/start_conversation",
            token,
            json!({"category": "qa_info", "llm_model": ["builtin"]}),
            "The field `llm_model` must be a string.",
            "llm_model",
        ),
        (
            "/end_conversation",
            token,
            json!({"user_id": account.user_id}),
            "The field `conversation_id` is missing.",
            "conversation_id",
        ),
        (
            "/end_conversation",
            token,
            json!({"conversation_id": conversation, "user_id": 1.5}),
            "The field `user_id` must be a whole number.",
            "user_id",
        ),
    ];
    for (path, token, body, message, field) in cases {
        let (got, got_field) = refusal(&app, path, token, &body).await;
        assert_eq!(got, message, "{path} {body}");
        assert_eq!(got_field, field, "{path} {body}");
    }
    // Nothing of the refused requests was kept.
    assert_eq!(app.count_rows("users"), 1);
    assert_eq!(app.count_rows("conversations"), 1);
    let detail = app.conversation_detail(&account.token, &conversation).await;
    assert_eq!(detail["status"], "active");
}

#[tokio::test]
async fn a_number_or_true_where_a_string_is_documented_is_refused() {
    let app = TestApp::spawn().await;
    let numeric =
        json!({"email": "num@example.com", "password": 12345678, "confirmPassword": 12345678});
    let (message, field) = refusal(&app, "/register", None, &numeric).await;
    assert_eq!(message, "The field `password` must be a string.");
    assert_eq!(field, "password");
    assert_eq!(app.count_rows("users"), 0);

    // An account whose password is the text "12345678" does not sign in with
    // the number 12345678.
    assert_eq!(
        app.register("num@example.com", "12345678", "12345678")
            .await
            .status(),
        201
    );
    let login = json!({"email": "num@example.com", "password": 12345678});
    let (message, _) = refusal(&app, "/login", None, &login).await;
    assert_eq!(message, "The field `password` must be a string.");

    let account = app.account("strings@example.com").await;
    let token = Some(account.token.as_str());
    app.conversation(&account, "qa_info").await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/register",
            json!({"email": 7, "password": PASSWORD, "confirmPassword": PASSWORD}),
            "email",
        ),
        (
            "/register",
            json!({"email": "t@example.com", "password": PASSWORD, "confirmPassword": true}),
            "confirmPassword",
        ),
        (
            "/login",
            json!({"email": true, "password": PASSWORD}),
            "email",
        ),
        ("/select", json!({"category": 1}), "category"),
        ("/start_conversation", json!({"category": 1}), "category"),
        (
            "/start_conversation",
            json!({"category": "qa_info", "assistant_id": 7}),
            "assistant_id",
        ),
        (
            "/start_conversation",
            json!({"category": "qa_info", "agent_name": false}),
            "agent_name",
        ),
        (
            "/start_conversation",
            json!({"category": "qa_info", "llm_model": 4}),
            "llm_model",
        ),
        (
            "/end_conversation",
            json!({"conversation_id": 12345}),
            "conversation_id",
        ),
    ];
    for (path, body, field) in cases {
        let token = if path == "/register" || path == "/login" {
            None
        } else {
            token
        };
        let (message, got_field) = refusal(&app, path, token, &body).await;
        assert_eq!(
            message,
            format!("The field `{field}` must be a string."),
            "{path} {body}"
        );
        assert_eq!(got_field, field, "{path} {body}");
    }
    assert_eq!(app.count_rows("users"), 2);
    assert_eq!(app.count_rows("conversations"), 1);
}

#[tokio::test]
async fn an_email_is_taken_whatever_its_case() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.register("sam@example.com", PASSWORD, PASSWORD)
            .await
            .status(),
        201
    );
    let again = app.register(" SAM@example.COM", PASSWORD, PASSWORD).await;
    assert_eq!(error_code(again, 400).await, "email_taken");
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_have_one_winner() {
    let app = TestApp::spawn().await;
    let attempts = (0..8).map(|_| app.register("race@example.com", PASSWORD, PASSWORD));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(app.count_rows("users"), 1);
}

#[tokio::test]
async fn login_gives_a_token_that_validates() {
    let app = TestApp::spawn().await;
    let account = app.account("lin@example.com").await;
    let login: Value = app
        .login("LIN@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(login["token_type"], "Bearer");
    assert!(login["expires_in"].as_u64().unwrap() > 23 * 3600);
    assert_eq!(login["user"]["email"], "lin@example.com");
    let validated = app.get("/validate-user", Some(&account.token)).await;
    assert_eq!(validated.status(), 200);
    let body: Value = validated.json().await.unwrap();
    assert_eq!(body["user_id"], account.user_id);
    assert_eq!(body["email"], "lin@example.com");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_answer_alike() {
    let app = TestApp::spawn().await;
    app.account("known@example.com").await;
    let wrong = app.login("known@example.com", "wrong password").await;
    let unknown = app.login("nobody@example.com", PASSWORD).await;
    let wrong_body: Value = wrong.json().await.unwrap();
    let unknown_body: Value = unknown.json().await.unwrap();
    assert_eq!(wrong_body, unknown_body);
    assert_eq!(wrong_body["error"], "invalid_credentials");
}

#[tokio::test]
async fn ten_failed_logins_lock_the_email_even_for_the_right_password() {
    let app = TestApp::spawn().await;
    app.account("locked@example.com").await;
    for _ in 0..10 {
        assert_eq!(
            app.login("locked@example.com", "wrong password")
                .await
                .status(),
            401
        );
    }
    let locked = app.login("locked@example.com", PASSWORD).await;
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry_after > 14 * 60 && retry_after <= 15 * 60,
        "{retry_after}"
    );
    assert_eq!(error_code(locked, 429).await, "too_many_attempts");
    // Another email from the same address still signs in.
    let other = app.account("other@example.com").await;
    assert!(!other.token.is_empty());
}

fn forge(header: &Value, claims: &Value, signature: &str) -> String {
    let encode = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{}", encode(header), encode(claims), signature)
}

#[tokio::test]
async fn tampered_foreign_and_expired_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let account = app.account("tok@example.com").await;
    let parts: Vec<&str> = account.token.split('.').collect();
    let now = chrono::Utc::now().timestamp();

    let other_user = forge(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &json!({"sub": "999", "iat": now, "exp": now + 3600}),
        parts[2],
    );
    let alg_none = forge(
        &json!({"alg": "none", "typ": "JWT"}),
        &json!({"sub": account.user_id.to_string(), "iat": now, "exp": now + 3600}),
        "",
    );
    let foreign = magdi::accounts::Tokens::new(
        &magdi::config::Secret::new("another secret entirely, long enough"),
        std::time::Duration::from_secs(3600),
    )
    .issue(account.user_id, 0)
    .unwrap()
    .token;
    let secret = std::fs::read_to_string(app.data().join("jwt-secret")).unwrap();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": account.user_id.to_string(), "iat": now - 7200, "exp": now - 10}),
        &jsonwebtoken::EncodingKey::from_secret(secret.trim().as_bytes()),
    )
    .unwrap();
    let from_the_future = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": account.user_id.to_string(), "iat": now + 86_400, "exp": now + 2 * 86_400}),
        &jsonwebtoken::EncodingKey::from_secret(secret.trim().as_bytes()),
    )
    .unwrap();
    for token in [
        other_user,
        alg_none,
        foreign,
        expired,
        from_the_future,
        "garbage".to_owned(),
        String::new(),
    ] {
        let response = app.get("/validate-user", Some(&token)).await;
        assert_eq!(
            error_code(response, 401).await,
            "unauthorized",
            "token {token:?}"
        );
    }
    let missing = app.get("/validate-user", None).await;
    assert_eq!(error_code(missing, 401).await, "unauthorized");
}

#[tokio::test]
async fn a_restart_keeps_users_and_their_tokens() {
    let app = TestApp::spawn().await;
    let account = app.account("stay@example.com").await;
    let app = app.restart(|_| {}).await;
    assert_eq!(
        app.get("/validate-user", Some(&account.token))
            .await
            .status(),
        200
    );
    assert_eq!(app.login("stay@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn a_rotated_secret_signs_everybody_out() {
    let app = TestApp::spawn().await;
    let account = app.account("rot@example.com").await;
    let app = app
        .restart(|s| {
            s.jwt_secret = Some(magdi::config::Secret::new(
                "a brand new secret of forty characters!!",
            ))
        })
        .await;
    assert_eq!(
        app.get("/validate-user", Some(&account.token))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn the_secret_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    let mode = std::fs::metadata(app.data().join("jwt-secret"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_deleted_users_token_stops_working() {
    let app = TestApp::spawn().await;
    let account = app.account("gone@example.com").await;
    app.delete_user(&account.email).await;
    assert_eq!(
        app.get("/validate-user", Some(&account.token))
            .await
            .status(),
        401
    );
}

/// `/chat` checks its user in the turn's own read; it must refuse a signed-out
/// user exactly as the other routes do, before anything else is said or kept.
#[tokio::test]
async fn chat_refuses_disabled_and_deleted_users_first() {
    let app = TestApp::spawn().await;
    let disabled = app.account("disabled@example.com").await;
    let deleted = app.account("deleted@example.com").await;
    let disabled_conversation = app.conversation(&disabled, "qa_info").await;
    let deleted_conversation = app.conversation(&deleted, "qa_info").await;
    let (disabled_email, deleted_email) = (disabled.email.clone(), deleted.email.clone());
    app.change_accounts(move |conn| {
        magdi::store::users::disable(conn, &disabled_email)?;
        magdi::store::users::delete(conn, &deleted_email).map(drop)
    })
    .await;

    for (account, conversation) in [
        (&disabled, &disabled_conversation),
        (&deleted, &deleted_conversation),
    ] {
        let forms = [
            app.chat_form(conversation, "qa_info", "What is a flaky test?"),
            // Refusals that need no database still come after the user check.
            app.chat_form(conversation, "qa_info", "   "),
            app.chat_form("not-a-conversation", "qa_info", "Hello"),
            app.chat_form(conversation, "qa_info", "Hello")
                .text("user_id", (account.user_id + 1).to_string()),
            app.chat_form(conversation, "test_planning", "Hello"),
            app.chat_form(conversation, "qa_info", "Hello").part(
                "files[]",
                reqwest::multipart::Part::bytes(b"print(1)\n".to_vec()).file_name("a.py"),
            ),
        ];
        for form in forms {
            let response = app.chat(&account.token, form).await;
            assert_eq!(
                error_code(response, 401).await,
                "unauthorized",
                "{}",
                account.email
            );
        }
        let response = app
            .chat_stream(
                &account.token,
                app.chat_form(conversation, "qa_info", "Hello"),
            )
            .await;
        assert_eq!(error_code(response, 401).await, "unauthorized");
    }
    assert_eq!(app.count_rows("messages"), 0);
    assert_eq!(app.count_rows("workspace_files"), 0);
}

/// A form whose body is still arriving when its user is disabled (or given a
/// new password) is refused once it has arrived: the account is looked at
/// again before the turn or the upload, not only when the headers came.
#[tokio::test]
async fn a_form_still_arriving_when_its_user_is_disabled_is_refused() {
    let app = TestApp::spawn().await;
    for (route, change) in [
        ("/chat", "disable"),
        ("/conversation/upload", "set-password"),
    ] {
        let email = format!("{}-{change}@example.com", &route[1..5]);
        let account = app.account(&email).await;
        let conversation = app.conversation(&account, "qa_info").await;
        let boundary = "slowformboundary";
        let field = |name: &str, value: &str| {
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
        };
        let head = field("conversation_id", &conversation) + &field("category", "qa_info");
        let tail = field("message", "What is a flaky test?")
            + &format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files[]\"; filename=\"a.py\"\r\n\r\nprint(1)\n\r\n--{boundary}--\r\n"
            );
        let (parts, body) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(2);
        let pieces = futures_util::stream::unfold(body, |mut body| async move {
            body.recv().await.map(|part| (part, body))
        });
        let request = app
            .streamed_form(route, &account.token, boundary, pieces)
            .send();
        let sending = tokio::spawn(request);
        parts.send(Ok(head)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;

        let who = email.clone();
        app.change_accounts(move |conn| match change {
            "disable" => magdi::store::users::disable(conn, &who),
            _ => magdi::store::users::set_password(conn, &who, "another hash"),
        })
        .await;
        parts.send(Ok(tail)).await.unwrap();
        drop(parts);
        let response = sending.await.unwrap().unwrap();
        assert_eq!(error_code(response, 401).await, "unauthorized", "{route}");
    }
    assert_eq!(app.count_rows("messages"), 0);
    assert_eq!(app.count_rows("workspace_files"), 0);
}

/// Deleting the newest account must not hand its id, and so its still valid
/// tokens, to the next account.
#[tokio::test]
async fn a_deleted_users_id_is_never_given_again() {
    let app = TestApp::spawn().await;
    let gone = app.account("first@example.com").await;
    app.delete_user(&gone.email).await;
    let next = app.account("second@example.com").await;
    assert!(
        next.user_id > gone.user_id,
        "{} after {}",
        next.user_id,
        gone.user_id
    );
    assert_eq!(
        app.get("/validate-user", Some(&gone.token)).await.status(),
        401
    );
    assert_eq!(
        app.get("/conversations", Some(&gone.token)).await.status(),
        401
    );
    let mine: Value = app
        .get("/validate-user", Some(&next.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["email"], "second@example.com");
}

/// Uploads racing the deletion of their user end in 200, 401 or 404, never in
/// a server error.
#[tokio::test(flavor = "multi_thread")]
async fn uploads_racing_a_user_deletion_never_fail_with_a_server_error() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let app = TestApp::spawn().await;
    let account = app.account("racing@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    let stored = AtomicUsize::new(0);
    let uploader = |n: usize| {
        let (app, token, id, stored) = (&app, account.token.clone(), id.clone(), &stored);
        async move {
            let mut statuses = Vec::new();
            for round in 0..60 {
                let name = format!("f{n}-{round}.txt");
                let response = app
                    .upload(&token, &id, vec![(name.as_str(), vec![b'x'; 2048])])
                    .await;
                let status = response.status().as_u16();
                if status == 200 {
                    stored.fetch_add(1, Ordering::SeqCst);
                }
                statuses.push(status);
            }
            statuses
        }
    };
    let deleter = async {
        while stored.load(Ordering::SeqCst) < 10 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        app.delete_user("racing@example.com").await;
    };
    let (a, b, c, ()) = tokio::join!(uploader(0), uploader(1), uploader(2), deleter);
    let all: Vec<u16> = a.iter().chain(&b).chain(&c).copied().collect();
    for status in &all {
        assert!([200, 401, 404].contains(status), "{status}");
    }
    assert!(all.iter().filter(|s| **s == 200).count() >= 10);
    assert_eq!(*a.last().unwrap(), 401, "the token died with its user");
}
