//! Runs mint.py (PyJWT): keys and tokens made by a library Weir did not write. Shared by tests/jwt_auth.rs
//! and the plugin_call bench.

use std::process::{Command, Stdio};

use serde_json::Value;

/// mint.py's answer to `request` (see mint.py for both shapes).
pub fn run(request: &Value) -> Value {
    let mut child = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/jwt/mint.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python3 (PyJWT: `make test-deps`)");
    serde_json::to_writer(child.stdin.take().expect("stdin"), request).expect("write request");
    let out = child.wait_with_output().expect("mint.py output");
    assert!(
        out.status.success(),
        "mint.py failed (is PyJWT installed? `make test-deps`)"
    );
    serde_json::from_slice(&out.stdout).expect("mint.py JSON")
}
