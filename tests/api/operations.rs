//! What an operator does from the shell: accounts, backups, upgrades and
//! health checks, run through the real `magdi` executable.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::{PASSWORD, TestApp};

fn magdi(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_magdi"))
        .args(args)
        .env_remove("MAGDI_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running magdi");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// `magdi user --data-dir DIR ACTION --email EMAIL`, with the password on
/// standard input when one is given.
fn user_command(dir: &str, action: &str, email: &str, password: Option<&str>) -> Output {
    let mut args = vec!["user", "--data-dir", dir, action, "--email", email];
    if password.is_some() {
        args.push("--password-stdin");
    }
    magdi(&args, password)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn accounts_are_managed_from_the_command_line() {
    let app = TestApp::spawn().await;
    let dir = app.data().to_str().unwrap().to_owned();
    let created = user_command(&dir, "create", "ops@example.com", Some("first password\n"));
    assert!(created.status.success(), "{}", text(&created));
    assert_eq!(
        app.login("ops@example.com", "first password")
            .await
            .status(),
        200
    );

    let short = user_command(&dir, "create", "x@example.com", Some("short\n"));
    assert!(!short.status.success());
    assert!(
        text(&short).contains("at least 8 characters"),
        "{}",
        text(&short)
    );

    let set_limit = |tokens: &str| {
        magdi(
            &[
                "user",
                "--data-dir",
                &dir,
                "set-limit",
                "--email",
                "ops@example.com",
                "--tokens",
                tokens,
            ],
            None,
        )
    };
    let limit = set_limit("777");
    assert!(limit.status.success(), "{}", text(&limit));
    let login: Value = app
        .login("ops@example.com", "first password")
        .await
        .json()
        .await
        .unwrap();
    let old_token = login["token"].as_str().unwrap().to_owned();
    assert_eq!(app.usage(&old_token).await["daily_limit"], 777);

    let listed = magdi(&["user", "--data-dir", &dir, "list"], None);
    assert!(
        text(&listed).contains("ops@example.com") && text(&listed).contains("777"),
        "{}",
        text(&listed)
    );
    // 0 is no limit, and says so; a negative number is refused as a value.
    let unlimited = set_limit("0");
    assert!(unlimited.status.success(), "{}", text(&unlimited));
    assert!(
        text(&unlimited).contains("is now unlimited"),
        "{}",
        text(&unlimited)
    );
    let listed = magdi(&["user", "--data-dir", &dir, "list"], None);
    assert!(text(&listed).contains("unlimited"), "{}", text(&listed));
    let negative = set_limit("-5");
    assert!(!negative.status.success());
    assert!(
        text(&negative).contains("invalid value '-5'"),
        "{}",
        text(&negative)
    );
    let limit = set_limit("777");
    assert!(limit.status.success(), "{}", text(&limit));

    // A password change signs out the tokens issued before it, even in the
    // same second (no pause here), and a login right after it works.
    let changed = user_command(
        &dir,
        "set-password",
        "ops@example.com",
        Some("second password\n"),
    );
    assert!(changed.status.success(), "{}", text(&changed));
    assert_eq!(
        app.get("/validate-user", Some(&old_token)).await.status(),
        401
    );
    assert_eq!(
        app.login("ops@example.com", "first password")
            .await
            .status(),
        401
    );
    let login: Value = app
        .login("ops@example.com", "second password")
        .await
        .json()
        .await
        .unwrap();
    let new_token = login["token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/validate-user", Some(&new_token)).await.status(),
        200
    );

    let disabled = user_command(&dir, "disable", "ops@example.com", None);
    assert!(disabled.status.success());
    assert_eq!(
        app.get("/validate-user", Some(&new_token)).await.status(),
        401
    );
    assert_eq!(
        app.login("ops@example.com", "second password")
            .await
            .status(),
        401
    );
    let enabled = user_command(&dir, "enable", "ops@example.com", None);
    assert!(enabled.status.success(), "{}", text(&enabled));
    assert_eq!(
        app.login("ops@example.com", "second password")
            .await
            .status(),
        200
    );
    // A token from before the disable does not come back with the account.
    assert_eq!(
        app.get("/validate-user", Some(&new_token)).await.status(),
        401
    );

    let deleted = user_command(&dir, "delete", "ops@example.com", None);
    assert!(deleted.status.success(), "{}", text(&deleted));
    assert_eq!(app.count_rows("users"), 0);
    let missing = user_command(&dir, "delete", "ops@example.com", None);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("there is no account ops@example.com"),
        "{}",
        text(&missing)
    );

    // Any command but `create` on a directory without a database was given
    // the wrong --data-dir: it is refused, and nothing is created there.
    let elsewhere = app.data().join("not-the-data-dir");
    let wrong = magdi(
        &["user", "--data-dir", elsewhere.to_str().unwrap(), "list"],
        None,
    );
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("there is no Magdi database"),
        "{}",
        text(&wrong)
    );
    assert!(!elsewhere.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_zero_only_while_the_server_answers() {
    let mut app = TestApp::spawn().await;
    let address = app.address.to_string();
    let up = magdi(&["healthcheck", "--bind", &address], None);
    assert!(up.status.success(), "{}", text(&up));
    app.stop().await;
    let down = magdi(&["healthcheck", "--bind", &address], None);
    assert!(!down.status.success());
}

#[tokio::test]
async fn a_backup_taken_under_write_load_restores_every_committed_row() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        app.account(&format!("before{i}@example.com")).await;
    }
    // Keep writing while the backup runs.
    let writer = {
        let client = app.client.clone();
        let url = app.url("/register");
        tokio::spawn(async move {
            for i in 0..40 {
                let body = serde_json::json!({"email": format!("during{i}@example.com"), "password": PASSWORD, "confirmPassword": PASSWORD});
                let _ = client.post(&url).json(&body).send().await;
            }
        })
    };
    let backup_file = app
        .data()
        .parent()
        .unwrap()
        .join(format!("backup-{}.db", uuid::Uuid::new_v4()));
    let dir = app.data().to_str().unwrap().to_owned();
    let target = backup_file.to_str().unwrap().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        magdi(&["backup", "--data-dir", &dir, "--to", &target], None)
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    writer.await.unwrap();
    // The database and its copies hold password hashes: for Magdi's user only.
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [app.data().join("magdi.db"), backup_file.clone()] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
    }

    let restored = tempfile::tempdir().unwrap();
    let restored_dir = restored.path().join("data");
    let output = magdi(
        &[
            "restore",
            "--data-dir",
            restored_dir.to_str().unwrap(),
            "--from",
            backup_file.to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", text(&output));
    let conn = rusqlite::Connection::open(restored_dir.join("magdi.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    for i in 0..5 {
        let email = format!("before{i}@example.com");
        let found: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM users WHERE email = ?1",
                [&email],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(found, 1, "{email} is in the backup");
    }
    let _ = std::fs::remove_file(backup_file);

    // Restoring into a directory that holds data is refused.
    let again = magdi(
        &[
            "restore",
            "--data-dir",
            restored_dir.to_str().unwrap(),
            "--from",
            "/dev/null",
        ],
        None,
    );
    assert!(!again.status.success());
    assert!(text(&again).contains("not empty"), "{}", text(&again));
}

#[tokio::test]
async fn a_backup_with_files_brings_back_workspaces_and_artifacts() {
    let app = TestApp::spawn().await;
    let account = app.account("files@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    app.upload(
        &account.token,
        &id,
        vec![("keep.txt", b"precious".to_vec())],
    )
    .await;
    let archive = app
        .data()
        .parent()
        .unwrap()
        .join(format!("backup-{}.tar", uuid::Uuid::new_v4()));
    let dir = app.data().to_str().unwrap().to_owned();
    let output = magdi(
        &[
            "backup",
            "--data-dir",
            &dir,
            "--to",
            archive.to_str().unwrap(),
            "--with-files",
        ],
        None,
    );
    assert!(output.status.success(), "{}", text(&output));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&archive).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let restored = tempfile::tempdir().unwrap();
    let restored_dir = restored.path().join("data");
    let output = magdi(
        &[
            "restore",
            "--data-dir",
            restored_dir.to_str().unwrap(),
            "--from",
            archive.to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", text(&output));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&restored_dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o700,
            "the restored data directory is private"
        );
    }
    let kept = std::fs::read(restored_dir.join("workspaces").join(&id).join("keep.txt")).unwrap();
    assert_eq!(kept, b"precious");
    let _ = std::fs::remove_file(archive);
}

#[tokio::test]
async fn an_older_database_is_upgraded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("magdi.db");
    magdi::store::migrate_up_to(&db, 1).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "INSERT INTO users (email, password_hash, created_at) VALUES ('old@example.com', 'x', '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
        let columns: i64 = conn
            .query_row("SELECT COUNT(*) FROM pragma_table_info('users') WHERE name = 'password_changed_at'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(columns, 0, "a version 1 database");
    }
    let output = magdi(
        &["migrate", "--data-dir", dir.path().to_str().unwrap()],
        None,
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains(&format!(
        "schema version {}",
        magdi::store::latest_schema_version()
    )));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let email: String = conn
        .query_row("SELECT email FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(email, "old@example.com");
    let changed: Option<i64> = conn
        .query_row("SELECT password_changed_at FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(changed, None);
}

#[tokio::test]
async fn messages_keep_their_order_ids_and_cascade_through_the_version_5_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("magdi.db");
    magdi::store::migrate_up_to(&db, 4).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, email, password_hash, created_at)
                 VALUES (1, 'old@example.com', 'x', '2026-01-01T00:00:00Z');
             INSERT INTO conversations (id, user_id, category, assistant_id, agent_name, llm_model,
                                        status, created_at, updated_at)
                 VALUES ('c1', 1, 'qa_info', 'a', 'QA Helper', 'builtin', 'active',
                         '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'),
                        ('c2', 1, 'qa_info', 'a', 'QA Helper', 'builtin', 'active',
                         '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');
             INSERT INTO messages (id, conversation_id, seq, role, content, content_tokens, created_at)
                 VALUES ('m2', 'c1', 2, 'assistant', 'an answer', 2, '2026-01-01T00:00:01Z'),
                        ('m1', 'c1', 1, 'user', 'a question', 2, '2026-01-01T00:00:00Z'),
                        ('m3', 'c2', 1, 'user', 'elsewhere', 1, '2026-01-01T00:00:00Z');",
        )
        .unwrap();
    }
    let output = magdi(
        &["migrate", "--data-dir", dir.path().to_str().unwrap()],
        None,
    );
    assert!(output.status.success(), "{}", text(&output));

    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    let rows: Vec<(String, i64, String)> = conn
        .prepare("SELECT id, seq, content FROM messages WHERE conversation_id = 'c1' ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        [
            ("m1".to_owned(), 1, "a question".to_owned()),
            ("m2".to_owned(), 2, "an answer".to_owned())
        ]
    );
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT sql IS NULL FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'",
        )
        .unwrap()
        .query_map([], |r| Ok(r.get::<_, bool>(0)?.to_string()))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        indexes,
        ["true"],
        "only the (conversation_id, seq) index is left"
    );
    let duplicate = conn.execute(
        "INSERT INTO messages (id, conversation_id, seq, role, content, content_tokens, created_at)
         VALUES ('m4', 'c1', 2, 'user', 'again', 1, '2026-01-01T00:00:02Z')",
        [],
    );
    assert!(duplicate.is_err(), "a conversation's seq stays unique");
    conn.execute("DELETE FROM conversations WHERE id = 'c1'", [])
        .unwrap();
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        left, 1,
        "deleting a conversation still deletes its messages"
    );
}

#[tokio::test]
async fn a_database_from_a_newer_magdi_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("magdi.db");
    magdi::store::migrate_up_to(&db, 1).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (999, 'future', '2030-01-01', '0')",
        [],
    )
    .unwrap();
    drop(conn);
    let output = magdi(
        &[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ],
        None,
    );
    assert!(!output.status.success());
    let message = text(&output);
    assert!(
        message.contains("schema version 999") && message.contains("newer"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_from_the_shell_removes_their_workspaces_and_artifacts() {
    let fake = crate::support::FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| fake.configure(s)).await;
    let account = app.account("leaves@example.com").await;
    let stays = app.account("stays@example.com").await;
    *fake.reply.lock() =
        "```python path=tests/test_a.py\ndef test_a():\n    assert 1\n```\n".into();
    for who in [&account, &stays] {
        let id = app.conversation(who, "test_generation").await;
        let answer: Value = app
            .chat(&who.token, app.chat_form(&id, "test_generation", "tests"))
            .await
            .json()
            .await
            .unwrap();
        assert!(answer["artifact"]["zip_id"].is_string(), "{answer}");
    }
    let zips = || crate::support::files_under(&app.data().join("artifacts"));
    assert_eq!(zips().len(), 2);

    let dir = app.data().to_str().unwrap().to_owned();
    let deleted = user_command(&dir, "delete", "leaves@example.com", None);
    assert!(deleted.status.success(), "{}", text(&deleted));
    assert!(
        text(&deleted).contains("1 conversations and 1 artifacts"),
        "{}",
        text(&deleted)
    );
    // Only the other user's artifact and workspace are left.
    assert_eq!(zips().len(), 1);
    let workspaces = std::fs::read_dir(app.data().join("workspaces"))
        .unwrap()
        .count();
    assert_eq!(workspaces, 1);
}
