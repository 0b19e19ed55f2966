//! The server refuses to listen beyond loopback without tokens, before it
//! binds anything or touches the data directory.

use std::process::Command;

#[test]
fn listening_beyond_loopback_without_tokens_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_tidefeed"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&data)
        .env_remove("TIDEFEED_LOG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("allow_insecure"), "{stderr}");
    assert!(!data.exists(), "the data directory was not touched");
}
