//! Shared helpers for end-to-end tests of the binary: a `tidefeed serve`
//! child process on 127.0.0.1:0, killed when dropped, with its log in a
//! file so a full pipe never blocks it.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `tidefeed serve`.
pub struct Tidefeed {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub log: PathBuf,
    _stdout: BufReader<ChildStdout>,
}

impl Tidefeed {
    /// Starts the server on `data_dir` and waits for its readiness line,
    /// which names the bound address.
    pub fn start(data_dir: &Path, log: &Path) -> Tidefeed {
        Tidefeed::start_with_env(data_dir, log, &[])
    }

    /// [`Tidefeed::start`] with `TIDEFEED_*` variables set.
    pub fn start_with_env(data_dir: &Path, log: &Path, env: &[(&str, &str)]) -> Tidefeed {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidefeed"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("TIDEFEED_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let mut server = Tidefeed {
            child,
            base: String::new(),
            log: log.to_owned(),
            _stdout: stdout,
        };
        assert!(
            line.starts_with("tidefeed ready"),
            "unexpected first line {line:?}; log: {}",
            server.log_text()
        );
        let addr = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("listen="))
            .expect("the readiness line names the address");
        server.base = format!("http://{addr}");
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident set size (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("/proc/<pid>/status has VmRSS")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The exit status, if the process exits within `limit`.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tidefeed {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads SSE events from a response with a real SSE parser.
pub mod sse {
    use std::time::Duration;

    use eventsource_stream::{Event, EventStreamError, Eventsource};
    use futures_util::stream::BoxStream;
    use futures_util::StreamExt;

    pub struct Sse {
        events: BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>,
    }

    impl Sse {
        pub fn new(response: reqwest::Response) -> Sse {
            assert_eq!(response.status(), reqwest::StatusCode::OK);
            Sse {
                events: response.bytes_stream().eventsource().boxed(),
            }
        }

        /// The next event within `patience`; `None` when the stream ended.
        pub async fn next(&mut self, patience: Duration) -> Option<Event> {
            tokio::time::timeout(patience, self.events.next())
                .await
                .expect("an event within the patience")
                .map(|event| event.expect("a well-formed SSE stream"))
        }
    }
}
