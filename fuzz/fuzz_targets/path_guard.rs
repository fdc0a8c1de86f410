//! The path guard: whatever name a client sends, an accepted name is a clean
//! relative path that stays inside the workspace, and cleaning it again
//! changes nothing.

#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use magdi::workspace::safe_relative_path;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(clean) = safe_relative_path(name) else {
        return;
    };

    assert!(!clean.is_empty(), "{name:?} became an empty path");
    assert!(
        clean.len() <= 1024,
        "{name:?} became a path over 1024 bytes"
    );
    assert!(
        !clean.contains('\\') && !clean.chars().any(char::is_control),
        "{name:?} kept a backslash or a control character: {clean:?}"
    );
    assert!(
        clean
            .split('/')
            .all(|part| !matches!(part, "" | "." | "..")),
        "{name:?} kept an empty, `.` or `..` part: {clean:?}"
    );

    // Resolved against a workspace, lexically (a workspace holds no links:
    // the unpacker refuses them), it never leaves it.
    let workspace = Path::new("/data/workspaces/conversation");
    let target = workspace.join(&clean);
    assert!(
        target.starts_with(workspace) && target != workspace,
        "{name:?} resolves to {target:?}"
    );
    let mut depth = 0usize;
    for component in Path::new(&clean).components() {
        match component {
            Component::Normal(_) => depth += 1,
            other => panic!("{name:?} resolves through {other:?}: {clean:?}"),
        }
    }
    assert!(depth >= 1);

    assert_eq!(
        safe_relative_path(&clean).ok().as_deref(),
        Some(clean.as_str()),
        "cleaning {name:?} twice gives another path"
    );
});
