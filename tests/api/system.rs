use serde_json::Value;

use crate::support::{TestApp, error_code};

#[tokio::test]
async fn version_names_magdi_and_its_schema() {
    let app = TestApp::spawn().await;
    let body: Value = app.get("/version", None).await.json().await.unwrap();
    assert_eq!(body["name"], "magdi");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        body["schema_version"],
        magdi::store::latest_schema_version()
    );
    assert!(body["git_commit"].is_string() && body["build_time"].is_string());
}

#[tokio::test]
async fn health_docs_and_spec_answer_without_a_token() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    let docs = app.get("/docs", None).await;
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.contains("swagger"), "the docs page is Swagger UI");
    for attribute in ["src=\"http", "href=\"http", "url(http"] {
        assert!(
            !html.contains(attribute),
            "the docs load nothing from other hosts ({attribute})"
        );
    }
    let spec: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert_eq!(spec["info"]["title"], "Magdi");
}

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect(
                "openapi/openapi.json exists; write it with `magdi openapi > openapi/openapi.json`",
            );
    let generated = magdi::http::openapi_document(false);
    let committed: Value = serde_json::from_str(&committed).unwrap();
    let generated: Value = serde_json::from_str(&generated).unwrap();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json_errors() {
    let app = TestApp::spawn().await;
    assert_eq!(
        error_code(app.get("/no/such/thing", None).await, 404).await,
        "not_found"
    );
    let wrong_method = app.client.delete(app.url("/version")).send().await.unwrap();
    assert_eq!(wrong_method.headers()["allow"], "GET, HEAD");
    assert_eq!(error_code(wrong_method, 405).await, "method_not_allowed");
    let get_chat = app.get("/chat", None).await;
    assert_eq!(get_chat.headers()["allow"], "POST");
    assert_eq!(error_code(get_chat, 405).await, "method_not_allowed");
    let put_conversation = app
        .client
        .put(app.url("/conversations/0190f1c2-0000-7000-8000-000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(put_conversation.headers()["allow"], "GET, HEAD");
    assert_eq!(
        error_code(put_conversation, 405).await,
        "method_not_allowed"
    );
    // The pages beside the API take GET (and HEAD) only, too.
    for (method, path) in [
        (reqwest::Method::POST, "/"),
        (reqwest::Method::DELETE, "/index.html"),
        (reqwest::Method::DELETE, "/openapi.json"),
        (reqwest::Method::PUT, "/docs"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], "GET, HEAD", "{method} {path}");
        assert_eq!(error_code(response, 405).await, "method_not_allowed");
    }
    for path in ["/", "/openapi.json", "/docs"] {
        assert_eq!(app.get(path, None).await.status(), 200, "GET {path}");
        let head = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
    }
    let post_unknown = app
        .client
        .post(app.url("/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(post_unknown, 404).await, "not_found");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    for path in ["/", "/version", "/nope"] {
        let response = app.get(path, None).await;
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
        assert_eq!(
            response.headers()["referrer-policy"],
            "no-referrer",
            "{path}"
        );
    }
    let page = app.get("/", None).await;
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let etag = page.headers()["etag"].to_str().unwrap().to_owned();
    let again = app
        .client
        .get(app.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(
        app.get("/", None)
            .await
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn metrics_move_as_requests_are_made() {
    let app = TestApp::spawn().await;
    let account = app.account("metrics@example.com").await;
    app.conversation(&account, "qa_info").await;
    let visitors: Value = app
        .get("/metrics-update-visitors", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(visitors["visitors"], 1);
    let tokens: Value = app
        .get("/metrics-update-tokens", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["tokens_today"], 0);
    let text = app.get("/metrics", None).await.text().await.unwrap();
    for family in [
        "magdi_http_requests_total{method=\"POST\",route=\"/register\",status=\"201\"} 1",
        "magdi_http_requests_total{method=\"POST\",route=\"/start_conversation\",status=\"200\"} 1",
        "magdi_visitors_total 1",
        "magdi_active_conversations 1",
        "# TYPE magdi_http_request_duration_seconds histogram",
        "# TYPE magdi_tokens_today gauge",
    ] {
        assert!(text.contains(family), "missing {family:?} in\n{text}");
    }
    assert!(!text.contains(&account.email));

    let id = app.conversation(&account, "qa_info").await;
    app.conversation_detail(&account.token, &id).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let detail = "magdi_http_requests_total{method=\"GET\",route=\"/conversations/{conversation_id}\",status=\"200\"} 1";
    assert!(
        text.contains(detail),
        "route templates name their parameters:\n{text}"
    );
    assert!(!text.contains(&id), "no raw ids in labels");
}

#[tokio::test]
async fn the_visitor_counter_cannot_be_pumped_from_one_address() {
    let app = TestApp::spawn().await;
    let mut last = Value::Null;
    for _ in 0..30 {
        last = app
            .get("/metrics-update-visitors", None)
            .await
            .json()
            .await
            .unwrap();
    }
    assert_eq!(last["visitors"], 10);
}

#[tokio::test]
async fn a_request_head_trickled_slowly_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(|s| {
        s.head_timeout = std::time::Duration::from_millis(800);
        s.body_timeout = std::time::Duration::from_millis(800);
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let started = std::time::Instant::now();
    let mut closed = false;
    for byte in b"GET /version HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n\r\n" {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if started.elapsed() > std::time::Duration::from_secs(3) {
            break;
        }
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        slow.read_to_end(&mut answer),
    )
    .await;
    assert!(
        closed || read.is_ok_and(|r| r.is_err() || answer.is_empty()),
        "the connection was closed without an answer"
    );

    // A JSON body trickled slowly is refused with 408.
    let mut slow = tokio::net::TcpStream::connect(app.address).await.unwrap();
    slow.write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        slow.read_to_end(&mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    // Quick clients are unaffected.
    assert_eq!(app.get("/version", None).await.status(), 200);
}

#[tokio::test]
async fn a_keep_alive_connection_left_idle_is_closed_and_one_in_use_is_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idle = std::time::Duration::from_millis(600);
    let app = TestApp::spawn_with(|s| s.idle_timeout = idle).await;
    let mut conn = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let request = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = vec![0; 4096];

    // Requests a little under the limit apart keep the connection open.
    for round in 0..3 {
        if round > 0 {
            tokio::time::sleep(idle * 2 / 3).await;
        }
        conn.write_all(request).await.unwrap();
        let n = conn.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }

    // Then it idles past the limit, counted from the last answer: the server
    // closes it, without a word.
    let answered = std::time::Instant::now();
    let n = tokio::time::timeout(idle * 5, conn.read(&mut buf))
        .await
        .expect("the idle connection was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    assert!(
        answered.elapsed() >= idle * 9 / 10,
        "{:?}",
        answered.elapsed()
    );
}

#[tokio::test]
async fn cors_answers_only_the_origins_named() {
    let app = TestApp::spawn_with(|s| s.cors_origins = vec!["https://qa.example.com".into()]).await;
    let allowed = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/version"))
        .header("origin", "https://qa.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://qa.example.com"
    );
    let other = app
        .client
        .get(app.url("/version"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// Made-up HTTP methods are counted under one label, so that nobody can grow
/// the metrics without bound.
#[tokio::test]
async fn made_up_methods_share_one_metrics_label() {
    let app = TestApp::spawn().await;
    for n in 0..5 {
        let method = reqwest::Method::from_bytes(format!("M{n:04}").as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url("/version"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error());
    }
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(!text.contains("M0001"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
}
