//! Builds the test guest (`tests/guests/testguest`) for `wasm32-unknown-unknown` and turns
//! it into a component with `wit-component`. Shared by the tests and `plugin-bench`.
//!
//! Invariants: builds are serialized across processes by a file lock, so test binaries
//! running at once never read a half-written artifact; each version is copied out under
//! its own name while the lock is held.

use std::path::PathBuf;
use std::process::Command;

/// The guest crate folder.
pub fn guest_dir() -> PathBuf {
    manifest_dir().join("tests/guests/testguest")
}

/// This crate's folder, read at run time: a compile-time path goes stale when clones in
/// different folders share one build cache and this file did not change.
fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo"))
}

fn target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../../../target"));
    base.join("easel-wasm-guests")
}

/// The test guest as a component, its manifest reporting `version`.
pub fn guest_component(version: &str) -> Vec<u8> {
    let target = target_dir();
    std::fs::create_dir_all(&target).expect("guest target dir");
    let lock = std::fs::File::create(target.join(".build.lock")).expect("lock file");
    lock.lock().expect("lock guest build");
    let out = target.join(format!("testguest-{version}.component.wasm"));
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-unknown-unknown",
            "--manifest-path",
        ])
        .arg(guest_dir().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env("GUEST_VERSION", version)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run cargo for the test guest (needs `rustup target add wasm32-unknown-unknown`)");
    assert!(status.success(), "building the test guest failed");
    let core = std::fs::read(target.join("wasm32-unknown-unknown/release/testguest.wasm"))
        .expect("guest module");
    let component = wit_component::ComponentEncoder::default()
        .module(&core)
        .expect("guest module carries its component type")
        .validate(true)
        .encode()
        .expect("componentize the test guest");
    std::fs::write(&out, &component).expect("write component");
    drop(lock);
    component
}
