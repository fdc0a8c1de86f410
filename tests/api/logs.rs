//! Nothing secret reaches the log: passwords, tokens, the provider's API key
//! and uploaded file contents, at every log level. A log written to a file is
//! plain text.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{FakeProvider, log_in, post_for_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_at_any_level() {
    let fake = FakeProvider::start().await;
    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("server.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api_key = "sk-test-7f3a9c1e5b8d2f4a6c0e9b7d5f3a1c8e";
    let password = "pa55-word-that-must-stay-hidden";
    let file_marker = "FILE-CONTENT-MARKER-93e1b0";
    let mut child = Command::new(env!("CARGO_BIN_EXE_magdi"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data.path().join("data"))
        .args([
            "--llm-base-url",
            &fake.base_url(),
            "--models",
            "fake-small",
            "--llm-api-key",
            api_key,
        ])
        .env("MAGDI_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let email = "logs@example.com";
    let body =
        serde_json::json!({"email": email, "password": password, "confirmPassword": password});
    assert_eq!(
        http.post(format!("{base}/register"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let wrong = serde_json::json!({"email": email, "password": format!("{password}-wrong")});
    assert_eq!(
        http.post(format!("{base}/login"))
            .json(&wrong)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let token = log_in(&http, &base, email, password).await;
    let started = post_for_json(
        &http,
        &format!("{base}/start_conversation"),
        Some(&token),
        &serde_json::json!({"category": "qa_info"}),
    )
    .await;
    let id = started["conversation_id"].as_str().unwrap().to_owned();
    let form = reqwest::multipart::Form::new()
        .text("conversation_id", id.clone())
        .text("category", "qa_info")
        .text("message", "read the notes")
        .part(
            "files[]",
            reqwest::multipart::Part::bytes(file_marker.as_bytes().to_vec()).file_name("notes.txt"),
        );
    let chat = http
        .post(format!("{base}/chat"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 200);
    assert!(
        fake.last_request()["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains(file_marker)
    );

    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.lines().count() > 10, "the trace log has lines:\n{log}");
    assert!(
        !log.contains('\u{1b}') && log.contains(" INFO "),
        "a log that is not a terminal holds plain text, without colour codes:\n{log}"
    );
    for (what, secret) in [
        ("password", password),
        ("token", token.as_str()),
        ("API key", api_key),
        ("file content", file_marker),
    ] {
        assert!(!log.contains(secret), "the {what} reached the log");
    }
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !log.contains(signature),
        "the token's signature reached the log"
    );
}

#[test]
fn a_server_that_cannot_start_says_why_in_its_json_log() {
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("accounts.changed")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_magdi"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("MAGDI_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no JSON error line in:\n{stderr}"));
    let error = reason["fields"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("accounts marker"), "{reason}");
}
