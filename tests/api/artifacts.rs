use std::io::Read;

use serde_json::Value;

use crate::support::{Account, FakeProvider, TestApp, error_code, files_under};

/// A conversation whose agent wrote files, with the artifact of that turn.
async fn conversation_with_artifact(
    app: &TestApp,
    fake: &FakeProvider,
    account: &Account,
) -> (String, String) {
    let id = app.conversation(account, "test_generation").await;
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let upload = app
        .upload(
            &account.token,
            &id,
            vec![
                ("logo.png", binary),
                (
                    "node_modules/left-pad/index.js",
                    b"module.exports = 1;\n".to_vec(),
                ),
                ("src/app.py", b"print('hi')\n".to_vec()),
            ],
        )
        .await;
    assert_eq!(upload.status(), 200);
    *fake.reply.lock() =
        "```python path=tests/test_app.py\ndef test_ok():\n    assert True\n```\n".into();
    let answer: Value = app
        .chat(
            &account.token,
            app.chat_form(&id, "test_generation", "tests please"),
        )
        .await
        .json()
        .await
        .unwrap();
    let zip_id = answer["artifact"]["zip_id"]
        .as_str()
        .expect("an artifact")
        .to_owned();
    (id, zip_id)
}

async fn setup() -> (TestApp, FakeProvider, Account) {
    let fake = FakeProvider::start().await;
    let app = TestApp::spawn_with(|s| fake.configure(s)).await;
    let account = app.account("zip@example.com").await;
    (app, fake, account)
}

#[tokio::test]
async fn the_zip_holds_the_workspace_byte_for_byte_without_generated_folders() {
    let (app, fake, account) = setup().await;
    let (id, zip_id) = conversation_with_artifact(&app, &fake, &account).await;
    let response = app.download(&account.token, &zip_id, false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        disposition,
        format!("attachment; filename=\"magdicreator-{}-1.zip\"", &id[..8])
    );
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len(), length);

    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let names: Vec<String> = (0..archive.len())
        .map(|i| archive.by_index(i).unwrap().name().to_owned())
        .collect();
    assert_eq!(names, ["logo.png", "src/app.py", "tests/test_app.py"]);
    let workspace = app.data().join("workspaces").join(&id);
    for name in &names {
        let mut entry = archive.by_name(name).unwrap();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(
            content,
            std::fs::read(workspace.join(name)).unwrap(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_disposable_artifact_downloads_once() {
    let (app, fake, account) = setup().await;
    let (_, zip_id) = conversation_with_artifact(&app, &fake, &account).await;
    let first = app.download(&account.token, &zip_id, true).await;
    assert_eq!(first.status(), 200);
    let _ = first.bytes().await.unwrap();
    // Deletion happens right after the last byte; give it a moment.
    for _ in 0..50 {
        if app.count_rows("artifacts") == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let second = app.download(&account.token, &zip_id, false).await;
    assert_eq!(error_code(second, 404).await, "artifact_not_found");
    assert!(files_under(&app.data().join("artifacts")).is_empty());
}

#[tokio::test]
async fn a_head_request_leaves_a_disposable_download_in_place() {
    let (app, fake, account) = setup().await;
    let (_, zip_id) = conversation_with_artifact(&app, &fake, &account).await;
    let head = app
        .client
        .head(app.url(&format!("/api/download?zip_id={zip_id}&disposable=1")))
        .bearer_auth(&account.token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers()["content-length"].to_str().unwrap() != "0");
    for _ in 0..2 {
        let download = app.download(&account.token, &zip_id, false).await;
        assert_eq!(download.status(), 200);
        assert!(!download.bytes().await.unwrap().is_empty());
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(app.count_rows("artifacts"), 1, "neither made it disposable");
}

#[tokio::test]
async fn another_users_artifact_is_not_found() {
    let (app, fake, account) = setup().await;
    let (_, zip_id) = conversation_with_artifact(&app, &fake, &account).await;
    let stranger = app.account("stranger@example.com").await;
    assert_eq!(
        error_code(app.download(&stranger.token, &zip_id, true).await, 404).await,
        "artifact_not_found"
    );
    assert_eq!(
        error_code(
            app.download(&account.token, &"0".repeat(40), false).await,
            404
        )
        .await,
        "artifact_not_found"
    );
    assert_eq!(
        app.download(&account.token, &zip_id, false).await.status(),
        200
    );
    let missing = app.get("/api/download", Some(&account.token)).await;
    assert_eq!(error_code(missing, 400).await, "bad_request");
    let anonymous = app
        .get(&format!("/api/download?zip_id={zip_id}"), None)
        .await;
    assert_eq!(error_code(anonymous, 401).await, "unauthorized");
}

#[tokio::test]
async fn an_interrupted_download_leaves_the_artifact_in_place() {
    let (app, fake, account) = setup().await;
    let (id, _) = conversation_with_artifact(&app, &fake, &account).await;
    // A large workspace makes a ZIP bigger than the socket buffers.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..40 * 1024 * 1024)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    app.upload(&account.token, &id, vec![("noise.bin", noise)])
        .await;
    *fake.reply.lock() = "```text path=notes.txt\nmore\n```\n".into();
    let answer: Value = app
        .chat(
            &account.token,
            app.chat_form(&id, "test_generation", "more"),
        )
        .await
        .json()
        .await
        .unwrap();
    let zip_id = answer["artifact"]["zip_id"].as_str().unwrap().to_owned();
    assert!(
        answer["artifact"]["size"].as_u64().unwrap() > 40_000_000,
        "the ZIP outgrows socket buffers"
    );

    let mut response = app.download(&account.token, &zip_id, true).await;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(response);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let again = app.download(&account.token, &zip_id, false).await;
    assert_eq!(again.status(), 200);
    assert!(
        app.data()
            .join("artifacts")
            .join(format!("{zip_id}.zip"))
            .exists()
    );
}

#[tokio::test]
async fn a_partial_zip_left_by_a_crash_is_swept_at_start() {
    let (app, fake, account) = setup().await;
    let (_, zip_id) = conversation_with_artifact(&app, &fake, &account).await;
    let artifacts = app.data().join("artifacts");
    std::fs::write(artifacts.join("deadbeef.zip.tmp"), b"PK half").unwrap();
    std::fs::write(
        artifacts.join(format!("{}.zip", "ab".repeat(20))),
        b"PK orphan",
    )
    .unwrap();
    std::fs::create_dir_all(
        app.data()
            .join("workspaces")
            .join(uuid::Uuid::new_v4().to_string()),
    )
    .unwrap();
    let app = app.restart(|_| {}).await;
    assert_eq!(files_under(&artifacts), [format!("{zip_id}.zip")]);
    assert_eq!(
        std::fs::read_dir(app.data().join("workspaces"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(
        app.download(&account.token, &zip_id, false).await.status(),
        200
    );
}

#[tokio::test]
async fn artifacts_past_retention_are_removed() {
    let (app, fake, account) = setup().await;
    let (_, zip_id) = conversation_with_artifact(&app, &fake, &account).await;
    let report = magdi::artifacts::sweep(
        &app.state.store,
        Some(&app.state.live),
        app.data(),
        std::time::Duration::ZERO,
        std::time::Duration::from_secs(3600),
        false,
    )
    .await
    .unwrap();
    assert_eq!(report.expired_artifacts, 1);
    assert_eq!(
        error_code(app.download(&account.token, &zip_id, false).await, 404).await,
        "artifact_not_found"
    );
    assert!(files_under(&app.data().join("artifacts")).is_empty());
}
