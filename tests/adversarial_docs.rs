//! Issue 8 promises a README a new user can paste from: a quick start
//! (create a table, write rows, `curl -N` the stream, resume with
//! Last-Event-ID, a batch, a snapshot subscription), the API table with a
//! link to `/v1/openapi.json`, the config reference and an updated status.
//! The README must also not contradict the binary.

#[test]
fn the_readme_has_the_promised_quick_start_and_does_not_contradict_the_binary() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut missing = Vec::new();
    for needle in [
        "curl",
        "curl -N",
        "PUT /v1/tables",
        "/v1/changes/stream",
        "Last-Event-ID",
        "snapshot=true",
        "/v1/batch",
        "/v1/openapi.json",
        "[auth]",
        "access_token",
        "tidefeed ready: listen=",
    ] {
        if !readme.contains(needle) {
            missing.push(needle);
        }
    }
    let mut contradictions = Vec::new();
    for stale in [
        "without serving any requests",
        "HTTP API, the\nchange stream and the Kafka connector are not yet",
        "| [4/6] | HTTP service: REST, SSE, /metrics, auth | not started |",
        "(`[auth]`, `[kafka]`) are rejected as unknown",
    ] {
        if readme.contains(stale) {
            contradictions.push(stale);
        }
    }
    assert!(
        missing.is_empty() && contradictions.is_empty(),
        "missing: {missing:?}; stale: {contradictions:?}"
    );
}

/// Issue 8's benchmark: a load tool in `bench/` that drives the real
/// server over HTTP beside Redis, with every figure kept in
/// `docs/benchmarks.md`.
#[test]
fn the_http_benchmark_and_its_figures_exist() {
    let root = env!("CARGO_MANIFEST_DIR");
    let doc = std::fs::read_to_string(format!("{root}/docs/benchmarks.md")).unwrap();
    let mut sources = String::new();
    for entry in std::fs::read_dir(format!("{root}/bench/src")).unwrap() {
        sources.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    let mut missing = Vec::new();
    for (what, ok) in [
        (
            "an HTTP client in bench/",
            sources.contains("reqwest")
                || sources.contains("hyper")
                || sources.contains("TcpStream"),
        ),
        (
            "Redis driven by the same tool",
            sources.to_lowercase().contains("redis"),
        ),
        ("Redis in the figures", doc.contains("Redis")),
        ("PUT/s", doc.contains("PUT")),
        (
            "/v1/batch rows/s",
            doc.contains("/v1/batch") || doc.contains("batch rows"),
        ),
        (
            "write-ack to SSE latency",
            doc.contains("p99") && doc.contains("SSE"),
        ),
        (
            "memory per idle SSE connection",
            doc.contains("per idle SSE") || doc.contains("per connection"),
        ),
    ] {
        if !ok {
            missing.push(what);
        }
    }
    assert!(missing.is_empty(), "missing: {missing:?}");
}

/// ARCHITECTURE.md's bird's-eye view must describe the code as it is.
#[test]
fn architecture_does_not_describe_the_http_crate_as_empty() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ARCHITECTURE.md")).unwrap();
    for stale in [
        "`http` and `connectors` are empty crates",
        "opens and recovers the engine but serves no requests yet",
        "waits for SIGINT/SIGTERM, closes the engine.",
    ] {
        assert!(!text.contains(stale), "stale: {stale:?}");
    }
}
