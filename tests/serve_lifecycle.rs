//! `tidefeed serve`: starts on an empty data directory, reports readiness,
//! refuses a second instance, rejects bad configuration by field name, and
//! stops cleanly on SIGTERM and SIGINT.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn tidefeed(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidefeed"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("TIDEFEED_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Starts the server and waits for its readiness line.
fn start(data_dir: &Path) -> (Child, String) {
    let mut child = tidefeed(data_dir).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("tidefeed ready"),
        "unexpected first line {line:?}"
    );
    (child, line)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn serve_starts_on_an_empty_directory_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, ready) = start(&data);
    assert!(ready.contains("visible_seq=0"), "{ready}");
    assert!(ready.contains("listen=127.0.0.1:"), "{ready}");
    assert!(
        data.join("wal").is_dir(),
        "the data directory is created with its WAL"
    );

    // A second server on the same directory is refused while the first runs.
    let second = tidefeed(&data).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(stderr(&second).contains("locked"), "{}", stderr(&second));

    signal(&child, "TERM");
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        stderr(&output)
    );
    let log = stderr(&output);
    assert!(
        log.contains("SIGTERM") && log.contains("stopped cleanly"),
        "{log}"
    );

    // Released: it starts again, and SIGINT stops it as well.
    let (child, _) = start(&data);
    signal(&child, "INT");
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn bad_configuration_is_rejected_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let output = tidefeed(dir.path())
        .env("TIDEFEED_STORAGE__DURABILITY", "sometimes")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("storage.durability") && message.contains("sometimes"),
        "{message}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_tidefeed"))
        .args(["serve", "--frobnicate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--frobnicate"));
}

#[test]
fn print_config_shows_a_file_that_serve_accepts() {
    let example = Command::new(env!("CARGO_BIN_EXE_tidefeed"))
        .arg("print-config")
        .output()
        .unwrap();
    assert!(example.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidefeed.toml");
    std::fs::write(&file, &example.stdout).unwrap();
    let mut command = tidefeed(&dir.path().join("data"));
    command.arg("--config").arg(&file);
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("tidefeed ready"), "{line:?}");
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
}
