//! The main job on real input: a Python project uploaded as a zip, MagdiCreator
//! on the offline model, and the generated tests run with pytest.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{TestApp, files_under, zip_of};

/// The Python that runs the generated tests: `MAGDI_TEST_PYTHON`, else the
/// repository's `.venv` (made by `scripts/test`), else `python3`.
fn python() -> PathBuf {
    if let Ok(path) = std::env::var("MAGDI_TEST_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn fixture_zip() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shop");
    let files: Vec<(String, Vec<u8>)> = files_under(&root)
        .into_iter()
        .filter(|p| !p.contains("__pycache__"))
        .map(|p| {
            (
                format!("shop-1.0/{p}"),
                std::fs::read(root.join(&p)).unwrap(),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    zip_of(&borrowed)
}

#[tokio::test]
async fn magdi_creator_offline_writes_tests_that_pass_on_a_real_project() {
    let python = python();
    let has_pytest = Command::new(&python)
        .args(["-c", "import pytest"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_pytest,
        "{} cannot import pytest: run scripts/test, or set MAGDI_TEST_PYTHON",
        python.display()
    );

    let app = TestApp::spawn().await;
    let account = app.account("offline@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    let upload = app
        .upload(&account.token, &id, vec![("shop-1.0.zip", fixture_zip())])
        .await;
    assert_eq!(upload.status(), 200);

    let response = app
        .chat(
            &account.token,
            app.chat_form(
                &id,
                "test_generation",
                "Write pytest tests for this project.",
            ),
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let reply = answer["reply"].as_str().unwrap();
    assert!(
        reply.contains("offline"),
        "the reply says it is the offline model: {reply}"
    );
    let changed: Vec<&str> = answer["artifact"]["files_changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for module in ["cart", "pricing", "text"] {
        let expected = format!("shop-1.0/tests/magdi_generated/test_magdi_shop_{module}.py");
        assert!(
            changed.contains(&expected.as_str()),
            "a test module for shop.{module}: {changed:?}"
        );
    }

    // The workspace, read back through the API, holds the generated files.
    let detail = app.conversation_detail(&account.token, &id).await;
    let workspace: Vec<&str> = detail["workspace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for path in &changed {
        assert!(
            workspace.contains(path),
            "{path} is in the workspace listing"
        );
    }

    // Run them on a copy of the downloaded artifact.
    let zip_id = answer["artifact"]["zip_id"].as_str().unwrap();
    let bytes = app
        .download(&account.token, zip_id, false)
        .await
        .bytes()
        .await
        .unwrap();
    let checkout = tempfile::tempdir().unwrap();
    zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec()))
        .unwrap()
        .extract(checkout.path())
        .unwrap();
    let output = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .current_dir(checkout.path().join("shop-1.0"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pytest failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let passed: u32 = stdout
        .lines()
        .rev()
        .find_map(|line| {
            line.split(" passed")
                .next()
                .and_then(|n| n.trim().rsplit(' ').next()?.parse().ok())
        })
        .unwrap_or(0);
    assert!(
        passed >= 6,
        "at least an import test and a docstring test per module passed:\n{stdout}"
    );
    assert!(
        !stdout.contains("failed") && !stdout.contains("error"),
        "{stdout}"
    );
}
