//! Crash safety: the real executable killed with SIGKILL at random moments
//! while clients register, upload, chat and build artifacts. Whatever got a
//! 2xx answer must survive, no row may point at a missing file, and no
//! orphaned file may remain after the restart's sweep.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::support::{PASSWORD, files_under};

struct Server {
    child: Child,
    base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(data: &Path, port: u16) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_magdi"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .env("MAGDI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting magdi");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return Server { child, base };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("magdi did not start");
}

/// What the server confirmed with a 2xx answer.
#[derive(Default)]
struct Confirmed {
    users: HashSet<String>,
    conversations: HashSet<String>,
    uploads: Vec<(String, String, String)>,
    artifacts: HashSet<String>,
}

async fn client_loop(
    base: String,
    client_no: usize,
    round: usize,
    confirmed: Arc<Mutex<Confirmed>>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let email = format!("c{client_no}r{round}@example.com");
    let body =
        serde_json::json!({"email": email, "password": PASSWORD, "confirmPassword": PASSWORD});
    let Ok(response) = http
        .post(format!("{base}/register"))
        .json(&body)
        .send()
        .await
    else {
        return;
    };
    if response.status() != 201 {
        return;
    }
    confirmed.lock().users.insert(email.clone());
    let login = serde_json::json!({"email": email, "password": PASSWORD});
    let Ok(response) = http.post(format!("{base}/login")).json(&login).send().await else {
        return;
    };
    let Ok(login) = response.json::<Value>().await else {
        return;
    };
    let Some(token) = login["token"].as_str().map(str::to_owned) else {
        return;
    };
    for step in 0.. {
        let start = serde_json::json!({"category": "test_generation"});
        let Ok(response) = http
            .post(format!("{base}/start_conversation"))
            .bearer_auth(&token)
            .json(&start)
            .send()
            .await
        else {
            return;
        };
        let Ok(started) = response.json::<Value>().await else {
            return;
        };
        let Some(id) = started["conversation_id"].as_str().map(str::to_owned) else {
            return;
        };
        confirmed.lock().conversations.insert(id.clone());

        let source = format!(
            "def f{step}(x):\n    \"\"\"Double.\n\n    >>> f{step}(2)\n    4\n    \"\"\"\n    return 2 * x\n"
        );
        let path = format!("pkg{step}.py");
        let form = reqwest::multipart::Form::new()
            .text("conversation_id", id.clone())
            .part(
                "files[]",
                reqwest::multipart::Part::bytes(source.clone().into_bytes())
                    .file_name(path.clone()),
            );
        let Ok(response) = http
            .post(format!("{base}/conversation/upload"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await
        else {
            return;
        };
        if response.status() == 200 {
            use sha2::Digest;
            let sha = hex::encode(sha2::Sha256::digest(source.as_bytes()));
            confirmed.lock().uploads.push((id.clone(), path, sha));
        }
        let form = reqwest::multipart::Form::new()
            .text("conversation_id", id.clone())
            .text("category", "test_generation")
            .text("message", "tests please");
        let Ok(response) = http
            .post(format!("{base}/chat"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await
        else {
            return;
        };
        let Ok(answer) = response.json::<Value>().await else {
            return;
        };
        if let Some(zip_id) = answer["artifact"]["zip_id"].as_str() {
            confirmed.lock().artifacts.insert(zip_id.to_owned());
        }
    }
}

fn check_data_dir(data: &Path, confirmed: &Confirmed) {
    let conn = rusqlite::Connection::open(data.join("magdi.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");

    let strings = |sql: &str| -> HashSet<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let users = strings("SELECT email FROM users");
    let conversations = strings("SELECT id FROM conversations");
    let artifacts = strings("SELECT zip_id FROM artifacts");
    assert!(
        confirmed.users.is_subset(&users),
        "confirmed users were lost"
    );
    assert!(
        confirmed.conversations.is_subset(&conversations),
        "confirmed conversations were lost"
    );
    assert!(
        confirmed.artifacts.is_subset(&artifacts),
        "confirmed artifacts were lost"
    );
    for (id, path, sha) in &confirmed.uploads {
        let stored: String = conn
            .query_row(
                "SELECT sha256 FROM workspace_files WHERE conversation_id = ?1 AND path = ?2",
                [id, path],
                |r| r.get(0),
            )
            .unwrap_or_else(|_| panic!("the confirmed upload {path} of {id} was lost"));
        assert_eq!(&stored, sha);
    }

    // No row points at a missing file.
    for zip_id in &artifacts {
        assert!(
            data.join("artifacts")
                .join(format!("{zip_id}.zip"))
                .is_file(),
            "artifact {zip_id} has no file"
        );
    }
    let mut stmt = conn
        .prepare("SELECT conversation_id, path, size FROM workspace_files")
        .unwrap();
    let rows: Vec<(String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let listed: HashSet<String> = rows
        .iter()
        .map(|(id, path, _)| format!("{id}/{path}"))
        .collect();
    for (id, path, size) in &rows {
        let file = data.join("workspaces").join(id).join(path);
        assert_eq!(
            std::fs::metadata(&file).map(|m| m.len() as i64).ok(),
            Some(*size),
            "{}",
            file.display()
        );
    }

    // No file that no row references.
    for name in files_under(&data.join("artifacts")) {
        let id = name.strip_suffix(".zip").unwrap_or(&name);
        assert!(artifacts.contains(id), "orphaned artifact file {name}");
    }
    for name in files_under(&data.join("workspaces")) {
        assert!(listed.contains(&name), "orphaned workspace file {name}");
    }
    assert!(
        files_under(&data.join("tmp")).is_empty(),
        "staging files were left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_at_random_moments_loses_nothing_it_confirmed() {
    let data_dir = tempfile::tempdir().unwrap();
    let data: PathBuf = data_dir.path().to_owned();
    let port = free_port();
    let confirmed = Arc::new(Mutex::new(Confirmed::default()));
    let mut random = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut server = start(&data, port).await;

    for round in 0..5 {
        let clients: Vec<_> = (0..4)
            .map(|n| {
                tokio::spawn(client_loop(
                    server.base.clone(),
                    n,
                    round,
                    Arc::clone(&confirmed),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(random.random_range(1500..4000))).await;
        server.child.kill().expect("SIGKILL");
        server.child.wait().unwrap();
        for client in clients {
            let _ = client.await;
        }
        server = start(&data, port).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let confirmed = confirmed.lock();
    assert!(
        confirmed.users.len() >= 10,
        "the load did real work: {} users",
        confirmed.users.len()
    );
    assert!(
        !confirmed.artifacts.is_empty(),
        "some artifacts were built before the kills"
    );
    check_data_dir(&data, &confirmed);
}

/// A second server on the same data directory refuses to start while the
/// first runs, and starts once the first is gone (even killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_data_directory_has_one_server() {
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().join("data");
    let mut first = start(&data, free_port()).await;
    let second = Command::new(env!("CARGO_BIN_EXE_magdi"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .env("MAGDI_LOG", "warn")
        .output()
        .expect("running magdi");
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("another Magdi is already serving"), "{said}");
    assert!(
        first.child.try_wait().unwrap().is_none(),
        "the first still runs"
    );

    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let mut again = start(&data, free_port()).await;
    assert_eq!(
        reqwest::get(format!("{}/healthz", again.base))
            .await
            .unwrap()
            .status(),
        200
    );
    again.child.kill().unwrap();
    again.child.wait().unwrap();
}
