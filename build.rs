//! Records the git commit and the build time for `/version` and `magdi version`.

use std::process::Command;

fn main() {
    let commit = std::env::var("MAGDI_GIT_COMMIT").ok().or_else(|| {
        let output = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    });
    // SOURCE_DATE_EPOCH makes the build time reproducible when it is set.
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!(
        "cargo:rustc-env=MAGDI_GIT_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
    println!("cargo:rustc-env=MAGDI_BUILD_TIME={}", rfc3339(seconds));
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-env-changed=MAGDI_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    pack_relative_relocations();
}

/// A position-independent executable carries one relocation per pointer in
/// its read-only data, 1.1 MB that the loader reads at every start and that
/// then stays resident. Packed (DT_RELR; binutils 2.38 and glibc 2.36 or
/// later) they take a few KB. A static build has none to pack.
fn pack_relative_relocations() {
    let cfg = |name: &str| std::env::var(format!("CARGO_CFG_TARGET_{name}")).unwrap_or_default();
    let is_static = cfg("FEATURE").split(',').any(|f| f == "crt-static");
    if cfg("OS") == "linux" && cfg("ENV") == "gnu" && !is_static {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

fn rfc3339(seconds: u64) -> String {
    let at = chrono::DateTime::from_timestamp(i64::try_from(seconds).unwrap_or(0), 0)
        .unwrap_or_default();
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
