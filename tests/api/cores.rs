//! `magdi serve` on one core serves every request from one thread; with
//! more cores it keeps a thread per core. Both serve chats with uploads,
//! several at once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{FakeProvider, log_in, post_for_json};

/// The first CPU this process may run on, as `taskset -c` takes it.
fn first_allowed_cpu() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    list.split([',', '-']).next().unwrap().to_owned()
}

struct Server {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(dir: &Path, fake: &FakeProvider, one_core: bool) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.join(format!("server-{one_core}.log"));
    let mut command = if one_core {
        let mut taskset = Command::new("taskset");
        taskset
            .args(["-c", &first_allowed_cpu()])
            .arg(env!("CARGO_BIN_EXE_magdi"));
        taskset
    } else {
        Command::new(env!("CARGO_BIN_EXE_magdi"))
    };
    let child = command
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .args(["--llm-base-url", &fake.base_url(), "--models", "fake-small"])
        .env("MAGDI_LOG_FORMAT", "json")
        .env("MAGDI_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting magdi (and taskset, from util-linux)");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        log,
    };
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if http
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("magdi did not start");
}

/// The `request_threads` and `scheduler` of the line saying where magdi
/// listens.
fn request_threads(log: &Path) -> (u64, String) {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("magdi is listening"))
        })
        .and_then(|line| {
            let fields = &line["fields"];
            Some((
                fields["request_threads"].as_u64()?,
                fields["scheduler"].as_str()?.to_owned(),
            ))
        })
        .unwrap_or_else(|| panic!("no listening line with request_threads in:\n{text}"))
}

/// Signs a user up, then sends `turns` chats at once, each in its own
/// conversation, the first with a file; every one is answered and kept.
async fn chats_at_once(base: &str, email: &str, turns: usize) {
    let http = reqwest::Client::new();
    let password = "one-core-pass-1";
    let body =
        serde_json::json!({"email": email, "password": password, "confirmPassword": password});
    let registered = http
        .post(format!("{base}/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let token = log_in(&http, base, email, password).await;

    let mut turns_in_flight = Vec::new();
    for n in 0..turns {
        let http = http.clone();
        let token = token.clone();
        let base = base.to_owned();
        turns_in_flight.push(tokio::spawn(async move {
            let started = post_for_json(
                &http,
                &format!("{base}/start_conversation"),
                Some(&token),
                &serde_json::json!({"category": "qa_info"}),
            )
            .await;
            let id = started["conversation_id"].as_str().unwrap().to_owned();
            let mut form = reqwest::multipart::Form::new()
                .text("conversation_id", id.clone())
                .text("category", "qa_info")
                .text("message", format!("question {n}"));
            if n == 0 {
                form = form.part(
                    "files[]",
                    reqwest::multipart::Part::bytes(b"GET /health -> 200\n".to_vec())
                        .file_name("notes.txt"),
                );
            }
            let chat = http
                .post(format!("{base}/chat"))
                .bearer_auth(&token)
                .multipart(form)
                .send()
                .await
                .unwrap();
            assert_eq!(chat.status(), 200, "{}", chat.text().await.unwrap());
            let kept: Value = http
                .get(format!("{base}/conversations/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let messages = kept["messages"].as_array().unwrap();
            assert_eq!(messages.len(), 2, "{kept}");
            assert_eq!(messages[0]["content"], format!("question {n}"));
            assert_eq!(messages[1]["role"], "assistant");
        }));
    }
    for turn in turns_in_flight {
        turn.await.unwrap();
    }
}

/// Eight chats at once from two users: four at once is the most one user
/// may have waiting.
async fn eight_chats_at_once(base: &str) {
    tokio::join!(
        chats_at_once(base, "first@example.com", 4),
        chats_at_once(base, "second@example.com", 4),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_core_one_thread_serves_every_request() {
    let fake = FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &fake, true).await;
    eight_chats_at_once(&server.base).await;
    assert_eq!(request_threads(&server.log), (1, "one thread".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_more_cores_each_core_gets_a_thread() {
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    let fake = FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &fake, false).await;
    eight_chats_at_once(&server.base).await;
    let scheduler = if cores == 1 {
        "one thread"
    } else {
        "a thread per core"
    };
    assert_eq!(request_threads(&server.log), (cores, scheduler.to_owned()));
}
