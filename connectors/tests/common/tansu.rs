//! A real Kafka-protocol broker for tests: `tansu` 0.6.0 with in-memory
//! storage on 127.0.0.1 and a free port, killed when dropped.
//!
//! `scripts/tansu.sh install` builds it once into a cache directory; this
//! finds it there (or at `$TANSU_BIN`). Without it, a test is skipped
//! with a printed reason, unless `CI=true`, where a missing broker fails
//! the test.

#![allow(dead_code)]

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TANSU_VERSION: &str = "0.6.0";

/// Where `scripts/tansu.sh` installs the binary.
pub fn tansu_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return Some(PathBuf::from(path));
    }
    let cache = if let Some(dir) = std::env::var_os("TIDEFEED_TOOLS_DIR") {
        PathBuf::from(dir)
    } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(dir).join("tidefeed-tools")
    } else {
        PathBuf::from(std::env::var_os("HOME")?).join(".cache/tidefeed-tools")
    };
    let path = cache.join(format!("tansu-{TANSU_VERSION}/bin/tansu"));
    path.is_file().then_some(path)
}

/// A running broker.
pub struct Tansu {
    child: Child,
    pub port: u16,
    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub brokers: String,
    pub log: PathBuf,
    frozen: bool,
    _dir: tempfile::TempDir,
}

impl Tansu {
    /// Starts a broker, or returns `None` (saying why) when tansu is not
    /// installed and this is not CI.
    pub fn start() -> Option<Tansu> {
        let Some(binary) = tansu_binary() else {
            let reason = format!(
                "tansu {TANSU_VERSION} is not installed (run scripts/tansu.sh install, or set TANSU_BIN)"
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{reason}; CI=true needs the real-broker suite");
            }
            eprintln!("SKIPPED: {reason}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("tansu.log");
        // A port the kernel just handed out and that nobody holds now.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(File::create(&log).unwrap())
            .stderr(File::create(dir.path().join("tansu.err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let tansu = Tansu {
            child,
            port,
            brokers: format!("127.0.0.1:{port}"),
            log,
            frozen: false,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(tansu)
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// SIGSTOP: the broker stops answering, its connections stay open.
    /// (Its in-memory storage would not survive a restart.)
    pub fn freeze(&mut self) {
        self.signal("STOP");
        self.frozen = true;
    }

    /// SIGCONT.
    pub fn thaw(&mut self) {
        self.signal("CONT");
        self.frozen = false;
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if self.frozen {
            self.signal("CONT");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
