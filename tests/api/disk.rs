//! A full disk: uploads and artifact builds that hit ENOSPC answer a clear
//! JSON error, keep nothing partial, and the server keeps serving reads.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::{TestApp, error_code, files_under};

/// A small tmpfs, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<Self> {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self {
            path,
            _parent: parent,
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_loses_nothing() {
    let Some(disk) = SmallDisk::mount(6) else {
        assert!(
            std::env::var("MAGDI_SKIP_DISK_TEST").is_ok(),
            "mounting a small tmpfs needs root; set MAGDI_SKIP_DISK_TEST=1 to leave this test out"
        );
        return;
    };
    let data = disk.path.join("data");
    let mut app = TestApp::spawn_with(|s| {
        s.data_dir = data.clone();
        s.max_upload_bytes = 20 * 1024 * 1024;
        s.max_request_bytes = 40 * 1024 * 1024;
    })
    .await;
    let account = app.account("disk@example.com").await;
    let id = app.conversation(&account, "test_generation").await;
    let first = app
        .upload(
            &account.token,
            &id,
            vec![("first.bin", vec![7u8; 2 * 1024 * 1024])],
        )
        .await;
    assert_eq!(first.status(), 200);

    let too_much = app
        .upload(
            &account.token,
            &id,
            vec![("second.bin", vec![8u8; 8 * 1024 * 1024])],
        )
        .await;
    let status = too_much.status().as_u16();
    assert!(status == 507 || status == 413, "status {status}");
    let code = error_code(too_much, status).await;
    assert!(code == "disk_full" || code == "payload_too_large", "{code}");

    // Nothing partial, and reads still work.
    assert_eq!(
        files_under(&data.join("workspaces").join(&id)),
        ["first.bin"]
    );
    assert!(files_under(&data.join("tmp")).is_empty());
    let detail = app.conversation_detail(&account.token, &id).await;
    assert_eq!(detail["workspace"].as_array().unwrap().len(), 1);
    assert_eq!(app.get("/healthz", None).await.status(), 200);

    // A turn that cannot write its files or its artifact still answers clearly.
    app.upload(
        &account.token,
        &id,
        vec![(
            "calc.py",
            b"def f(x):\n    \"\"\"\n    >>> f(1)\n    2\n    \"\"\"\n    return 2 * x\n".to_vec(),
        )],
    )
    .await;
    let filler = disk.path.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 8 * 1024 * 1024]);
    let chat = app
        .chat(
            &account.token,
            app.chat_form(&id, "test_generation", "tests"),
        )
        .await;
    let status = chat.status().as_u16();
    assert!(status == 200 || status == 507, "status {status}");
    if status == 200 {
        let answer: Value = chat.json().await.unwrap();
        assert_eq!(
            answer["artifact"],
            Value::Null,
            "no artifact could be written"
        );
    } else {
        assert_eq!(error_code(chat, 507).await, "disk_full");
    }
    assert!(
        files_under(&data.join("artifacts"))
            .iter()
            .all(|f| f.ends_with(".zip"))
    );
    let _ = std::fs::remove_file(&filler);
    assert_eq!(
        app.get(&format!("/conversations/{id}"), Some(&account.token))
            .await
            .status(),
        200
    );
    app.stop().await;
}
