//! Adversarial probes of the operator's side: `/metrics` checked by
//! `promtool`, the metric set the issue promises, bounded labels,
//! monotonic counters; the OpenAPI document; body and engine limits at
//! their boundaries; request timeouts on slow uploads; durable consumer
//! edges.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

use crate::common::{assert_error, json_of, Server};

async fn metrics_text(server: &Server) -> String {
    let response = server
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// series (name{labels}) -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, ty) = l.split_once(' ').unwrap();
            (name.to_owned(), ty.to_owned())
        })
        .collect()
}

/// Drives some of everything: writes, errors, unknown routes with random
/// paths and keys, streams, consumers (created, acked, deleted).
async fn activity(server: &Server, round: u64) {
    for i in 0..20 {
        server.put_user(i, &format!("r{round}")).await;
    }
    for i in 0..10 {
        let _ = server
            .get(&format!(
                "/v1/tables/users/rows/{}",
                1_000_000 + round * 100 + i
            ))
            .await;
        let _ = server.get(&format!("/v1/random-{round}-{i}/x")).await;
        let _ = server
            .call(
                Method::DELETE,
                &format!("/v1/tables/users/rows/9{round}{i}"),
                None,
            )
            .await;
    }
    let name = format!("c{round}");
    let (status, _) = server
        .call(Method::PUT, &format!("/v1/consumers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let _ = server
        .post(&format!("/v1/consumers/{name}/ack"), json!({"seq": 1}))
        .await;
    let mut stream = server.stream("since=0", None).await;
    stream.changes(3).await;
    drop(stream);
    if round.is_multiple_of(2) {
        let (status, _) = server
            .call(Method::DELETE, &format!("/v1/consumers/{name}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_with_bounded_labels_and_monotonic_counters() {
    let server = Server::start().await;
    server.create_users().await;
    activity(&server, 0).await;
    let first = metrics_text(&server).await;
    activity(&server, 1).await;
    activity(&server, 2).await;
    let text = metrics_text(&server).await;

    // promtool's own checks (format and naming conventions).
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Every name is tidefeed_*; labels never hold keys, raw paths or seqs.
    let routes: BTreeSet<&str> = [
        "/v1/tables",
        "/v1/tables/{table}",
        "/v1/tables/{table}/rows",
        "/v1/tables/{table}/rows/{key}",
        "/v1/batch",
        "/v1/changes",
        "/v1/changes/stream",
        "/v1/consumers",
        "/v1/consumers/{name}",
        "/v1/consumers/{name}/ack",
        "/v1/status",
        "/v1/openapi.json",
        "/metrics",
        "/healthz",
        "/readyz",
        "unmatched",
    ]
    .into();
    for series in samples(&text).keys() {
        assert!(series.starts_with("tidefeed_"), "{series}");
        assert!(
            !series.contains("random-"),
            "a raw path as a label: {series}"
        );
        assert!(!series.contains("1000000"), "a key as a label: {series}");
        if let Some(start) = series.find("route=\"") {
            let rest = &series[start + 7..];
            let route = &rest[..rest.find('"').unwrap()];
            assert!(routes.contains(route), "route label {route:?}");
        }
    }
    // Deleted consumers leave the lag gauge.
    assert!(
        !text.contains("consumer=\"c0\""),
        "deleted consumer c0 still exported"
    );
    assert!(text.contains("consumer=\"c1\""));

    // Counters never go down between scrapes.
    let ty = types(&text);
    let before = samples(&first);
    let after = samples(&text);
    for (series, value) in &before {
        let name = series.split('{').next().unwrap();
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_count")
            .trim_end_matches("_sum");
        let counter = ty.get(name).is_some_and(|t| t == "counter")
            || ty.get(base).is_some_and(|t| t == "histogram");
        if counter {
            let now = after.get(series).copied().unwrap_or(0.0);
            assert!(now >= *value, "{series} went from {value} to {now}");
        }
    }
}

/// Issue 8 promises these figures; each must be exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_export_every_promised_figure() {
    let server = Server::start().await;
    server.create_users().await;
    activity(&server, 1).await;
    let text = metrics_text(&server).await;
    let names: BTreeSet<String> = types(&text).into_keys().collect();
    let has = |pred: &dyn Fn(&str) -> bool| names.iter().any(|n| pred(n));
    let mut missing = Vec::new();
    for (what, ok) in [
        (
            "memtable bytes",
            has(&|n| n.contains("memtable") && n.ends_with("_bytes")),
        ),
        (
            "bytes per level",
            text.lines()
                .any(|l| l.contains("level=\"") && l.contains("_bytes")),
        ),
        (
            "retained bytes",
            has(&|n| n.contains("retained") && n.contains("bytes")),
        ),
        (
            "consumer lag bytes",
            has(&|n| n.contains("consumer_lag") && n.contains("bytes")),
        ),
        (
            "write latency",
            has(&|n| n.starts_with("tidefeed_write_duration_seconds")),
        ),
        ("fsyncs", has(&|n| n.contains("fsync"))),
        ("group commit sizes", has(&|n| n.contains("commit"))),
        ("immutable memtables", has(&|n| n.contains("immutable"))),
        ("L0 files", has(&|n| n.contains("l0_files"))),
        ("flushes", has(&|n| n.contains("flushes"))),
        ("compactions", has(&|n| n.contains("compactions"))),
        ("write stalls", has(&|n| n.contains("stall"))),
        ("visible seq", has(&|n| n.contains("visible_seq"))),
        ("low-water seq", has(&|n| n.contains("low_water"))),
        ("live subscribers", has(&|n| n.contains("subscribers"))),
        ("events sent", has(&|n| n.contains("events_sent"))),
        (
            "SSE bytes",
            has(&|n| n.contains("sse") && n.contains("bytes")),
        ),
        ("consumer lag seqs", has(&|n| n.contains("consumer_lag"))),
        ("consumers invalidated", has(&|n| n.contains("invalidated"))),
        ("oversized events", has(&|n| n.contains("oversized"))),
        ("requests", has(&|n| n.contains("http_requests"))),
        (
            "request latency",
            has(&|n| n.contains("http_request_duration")),
        ),
    ] {
        if !ok {
            missing.push(what);
        }
    }
    assert!(missing.is_empty(), "missing: {missing:?}\n{names:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_openapi_3_1_and_complete() {
    let server = Server::start().await;
    let (status, doc) = server.get("/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let expected: &[(&str, &str, &[&str])] = &[
        ("get", "/v1/tables", &["200"]),
        ("put", "/v1/tables/{table}", &["200", "201", "400", "409"]),
        ("get", "/v1/tables/{table}", &["200", "404"]),
        ("get", "/v1/tables/{table}/rows", &["200", "400", "410"]),
        (
            "get",
            "/v1/tables/{table}/rows/{key}",
            &["200", "404", "410"],
        ),
        (
            "put",
            "/v1/tables/{table}/rows/{key}",
            &["200", "400", "412", "413", "415"],
        ),
        (
            "patch",
            "/v1/tables/{table}/rows/{key}",
            &["200", "404", "412"],
        ),
        (
            "delete",
            "/v1/tables/{table}/rows/{key}",
            &["200", "404", "412"],
        ),
        ("post", "/v1/batch", &["200", "400", "413"]),
        ("get", "/v1/changes", &["200", "400", "410"]),
        ("get", "/v1/changes/stream", &["200", "400", "410", "503"]),
        ("get", "/v1/consumers", &["200"]),
        ("put", "/v1/consumers/{name}", &["201", "409"]),
        ("get", "/v1/consumers/{name}", &["200", "404"]),
        ("delete", "/v1/consumers/{name}", &["204", "404"]),
        ("post", "/v1/consumers/{name}/ack", &["200", "404"]),
        ("get", "/v1/status", &["200"]),
        ("get", "/metrics", &["200"]),
        ("get", "/healthz", &["200"]),
        ("get", "/readyz", &["200", "503"]),
        ("get", "/v1/openapi.json", &["200"]),
    ];
    let mut operation_ids = BTreeSet::new();
    for (method, path, codes) in expected {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} missing");
        for code in *codes {
            assert!(
                operation["responses"][code].is_object(),
                "{method} {path} does not document {code}"
            );
        }
        if let Some(id) = operation["operationId"].as_str() {
            assert!(
                operation_ids.insert(id.to_owned()),
                "duplicate operationId {id}"
            );
        }
        // Path parameters are declared.
        for name in ["table", "key", "name"] {
            if path.contains(&format!("{{{name}}}")) {
                let params = operation["parameters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                    "{method} {path}: path parameter {name} not declared"
                );
            }
        }
    }
    // Every $ref resolves inside the document.
    fn refs(value: &Json, out: &mut Vec<String>) {
        match value {
            Json::Object(map) => {
                for (k, v) in map {
                    if k == "$ref" {
                        out.push(v.as_str().unwrap().to_owned());
                    } else {
                        refs(v, out);
                    }
                }
            }
            Json::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for reference in all {
        let pointer = reference.strip_prefix('#').expect("local refs");
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {reference}");
    }
    // Security schemes named by operations exist.
    let schemes = &doc["components"]["securitySchemes"];
    for (_, item) in doc["paths"].as_object().unwrap() {
        for (_, op) in item.as_object().unwrap() {
            for requirement in op["security"].as_array().cloned().unwrap_or_default() {
                for name in requirement.as_object().unwrap().keys() {
                    assert!(
                        schemes[name].is_object(),
                        "security scheme {name} undefined"
                    );
                }
            }
        }
    }
}

/// A body of exactly `max_body_bytes` is accepted, one byte more is 413,
/// with and without a Content-Length; engine limits are 413 too, and none
/// writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_and_engine_limits_hold_at_their_boundaries() {
    let limit = 1000;
    let server = Server::start_with(
        |options| {
            options.limits.max_row_bytes = 4096;
            options.limits.max_batch_bytes = 16 * 1024;
            options.limits.max_key_bytes = 512;
        },
        |options| options.max_body_bytes = limit,
    )
    .await;
    server.create_users().await;
    let (status, _) = server
        .put(
            "/v1/tables/names",
            json!({"columns": [{"name": "k", "type": "string"}, {"name": "v", "type": "string", "nullable": true}], "primary_key": ["k"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let body_of = |len: usize| {
        let prefix = r#"{"id":1,"email":""#;
        let suffix = r#""}"#;
        let filler = "x".repeat(len - prefix.len() - suffix.len());
        format!("{prefix}{filler}{suffix}")
    };
    for chunked in [false, true] {
        for (len, ok) in [(limit, true), (limit + 1, false)] {
            let body = body_of(len);
            assert_eq!(body.len(), len);
            let request = server
                .request(Method::PUT, "/v1/tables/users/rows/1")
                .header("content-type", "application/json");
            let request = if chunked {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                    body.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
                request.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                )))
            } else {
                request.body(body)
            };
            let before = server.engine.visible_seq();
            let (status, json) = json_of(request.send().await.unwrap()).await;
            if ok {
                assert_eq!(status, StatusCode::OK, "{len} chunked={chunked}: {json}");
            } else {
                assert_error(status, &json, 413, "payload_too_large");
                assert_eq!(server.engine.visible_seq(), before);
            }
        }
    }
    // A Content-Length that lies (says small, sends more) is cut off, not
    // read past the limit.
    let seq = server.engine.visible_seq();
    // Engine limits, through small enough bodies: key, row, batch.
    let big_key = "k".repeat(600);
    let (status, body) = server
        .put(
            &format!("/v1/tables/names/rows/{big_key}"),
            json!({"k": big_key}),
        )
        .await;
    assert!(
        status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::BAD_REQUEST,
        "{body}"
    );
    assert!(body["error"]["code"].is_string());
    let (status, body) = server
        .post(
            "/v1/batch",
            json!({"ops": [{"op": "upsert", "table": "names", "row": {"k": "a", "v": "v".repeat(900)}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seq_after_ok = server.engine.visible_seq();
    assert_eq!(seq_after_ok, seq + 1);
    drop(server);

    // Row and batch limits with a body limit that lets them through.
    let server = Server::start_with(
        |options| {
            options.limits.max_row_bytes = 4096;
            options.limits.max_batch_bytes = 16 * 1024;
        },
        |options| options.max_body_bytes = 1 << 20,
    )
    .await;
    let (status, _) = server
        .put(
            "/v1/tables/names",
            json!({"columns": [{"name": "k", "type": "string"}, {"name": "v", "type": "string", "nullable": true}], "primary_key": ["k"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = server
        .put(
            "/v1/tables/names/rows/a",
            json!({"k": "a", "v": "v".repeat(5000)}),
        )
        .await;
    assert_error(status, &body, 413, "payload_too_large");
    assert!(body["error"]["limit_name"].is_string(), "{body}");
    let ops: Vec<Json> = (0..10)
        .map(|i| json!({"op": "upsert", "table": "names", "row": {"k": format!("k{i}"), "v": "v".repeat(3000)}}))
        .collect();
    let (status, body) = server.post("/v1/batch", json!({ "ops": ops })).await;
    assert_error(status, &body, 413, "payload_too_large");
    assert_eq!(server.engine.visible_seq(), 0, "nothing written");
}

/// A client that sends its body slowly is cut off by the request timeout
/// with the JSON 408, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_times_out_with_json_and_writes_nothing() {
    let server = Server::start_with(
        |_| {},
        |options| options.request_timeout = Duration::from_millis(500),
    )
    .await;
    server.create_users().await;
    let body = br#"{"id":1,"email":"slow"}"#.to_vec();
    let stream = futures_util::stream::unfold(0usize, move |i| {
        let body = body.clone();
        async move {
            if i >= body.len() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok::<Vec<u8>, std::io::Error>(vec![body[i]]), i + 1))
        }
    });
    let response = server
        .request(Method::PUT, "/v1/tables/users/rows/1")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    match response {
        Ok(response) => {
            let (status, json) = json_of(response).await;
            assert_error(status, &json, 408, "request_timeout");
        }
        // The server may close the connection while the upload goes on.
        Err(error) => assert!(!error.is_timeout(), "{error}"),
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(server.engine.visible_seq(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_consumer_edges() {
    let server = Server::start().await;
    server.create_users().await;
    for id in 1..=3 {
        server.put_user(id, "a").await;
    }
    let head = server.engine.visible_seq();
    // Names: 64 characters fine, 65 not; dot names refused, even encoded.
    let long = "c".repeat(64);
    let (status, body) = server
        .call(Method::PUT, &format!("/v1/consumers/{long}"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for name in [
        "c".repeat(65),
        "%2E".into(),
        "%2E%2E".into(),
        "a%2Fb".into(),
        "A".into(),
        "%C3%A9".into(),
        "a%00".into(),
    ] {
        let (status, body) = server
            .call(Method::PUT, &format!("/v1/consumers/{name}"), None)
            .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{name}: {status} {body}"
        );
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    // Create: exists is 409; a future position is 400 future_seq.
    let (status, body) = server.put("/v1/consumers/c", json!({"position": 1})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["position"], 1);
    assert_eq!(body["lag"], head - 1);
    let (status, body) = server.put("/v1/consumers/c", json!({"position": 1})).await;
    assert_error(status, &body, 409, "consumer_exists");
    let (status, body) = server
        .put("/v1/consumers/d", json!({"position": head + 1}))
        .await;
    assert_error(status, &body, 400, "future_seq");
    let (status, body) = server.put("/v1/consumers/d", json!({"position": -1})).await;
    assert_error(status, &body, 400, "invalid_json");
    let (status, body) = server.put("/v1/consumers/d", json!({"bogus": 1})).await;
    assert_error(status, &body, 400, "invalid_json");
    // Ack: forward only, never past the head.
    let (status, body) = server
        .post("/v1/consumers/c/ack", json!({"seq": head + 1}))
        .await;
    assert_error(status, &body, 400, "future_seq");
    let (status, body) = server.post("/v1/consumers/c/ack", json!({"seq": 2})).await;
    assert_eq!(
        (status, &body["position"]),
        (StatusCode::OK, &json!(2)),
        "{body}"
    );
    let (status, body) = server.post("/v1/consumers/c/ack", json!({"seq": 1})).await;
    assert_eq!(
        (status, &body["position"]),
        (StatusCode::OK, &json!(2)),
        "{body}"
    );
    let (status, body) = server.post("/v1/consumers/c/ack", json!({})).await;
    assert_error(status, &body, 400, "invalid_json");
    // A consumer stream starts after the ack; Last-Event-ID does not move it.
    let mut stream = server.stream("consumer=c", Some(1)).await;
    let (id, _) = stream.changes(1).await.remove(0);
    assert_eq!(id, "3");
    drop(stream);
    // Delete: 204, empty body; then 404 everywhere.
    let response = server
        .request(Method::DELETE, "/v1/consumers/c")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.text().await.unwrap().is_empty());
    let (status, body) = server.get("/v1/consumers/c").await;
    assert_error(status, &body, 404, "consumer_not_found");
    let (status, body) = server.post("/v1/consumers/c/ack", json!({"seq": 3})).await;
    assert_error(status, &body, 404, "consumer_not_found");
    let (status, body) = json_of(server.open_stream("consumer=c", None).await).await;
    assert_error(status, &body, 404, "consumer_not_found");
    let (status, body) = server.call(Method::DELETE, "/v1/consumers/c", None).await;
    assert_error(status, &body, 404, "consumer_not_found");
    // Re-created: a fresh position (the head), not the old one.
    let (status, body) = server.call(Method::PUT, "/v1/consumers/c", None).await;
    assert_eq!(
        (status, &body["position"]),
        (StatusCode::CREATED, &json!(head)),
        "{body}"
    );
}

/// Batches at the operation limit and near the default body limit: the
/// largest allowed batch commits in one contiguous run, one more op is a
/// 400 naming the limit, and a body near 8 MiB is answered well within
/// the request timeout, writing all or nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_at_their_limits() {
    let server = Server::start().await;
    server.create_users().await;
    let ops = |n: usize, offset: usize| -> Json {
        json!({"ops": (0..n).map(|i| json!({"op": "upsert", "table": "users", "row": {"id": i + offset, "email": "e"}})).collect::<Vec<_>>()})
    };
    let limit = tidefeed_engine::MAX_BATCH_OPS;
    let (status, body) = server.post("/v1/batch", ops(limit + 1, 0)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        body.to_string().chars().take(300).collect::<String>()
    );
    assert_eq!(body["error"]["limit"], limit);
    assert_eq!(server.engine.visible_seq(), 0);
    let started = std::time::Instant::now();
    let (status, body) = server.post("/v1/batch", ops(limit, 0)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["first_seq"].as_u64(), body["last_seq"].as_u64()),
        (Some(1), Some(limit as u64))
    );
    assert_eq!(body["results"].as_array().unwrap().len(), limit);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // ~8 MiB: fewer ops with big rows, under the op limit.
    let big = "x".repeat(820);
    let body = json!({"ops": (0..9000).map(|i| json!({"op": "upsert", "table": "users", "row": {"id": 100_000 + i, "email": big}})).collect::<Vec<_>>()});
    let size = serde_json::to_vec(&body).unwrap().len();
    assert!(size < 8 << 20 && size > 7 << 20, "{size}");
    let before = server.engine.visible_seq();
    let started = std::time::Instant::now();
    let (status, answer) = server.post("/v1/batch", body).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    match status {
        StatusCode::OK => assert_eq!(server.engine.visible_seq(), before + 9000),
        _ => {
            assert!(answer["error"]["code"].is_string(), "{status}");
            assert_eq!(server.engine.visible_seq(), before);
        }
    }
}

/// A pull page is bounded by events (`limit`, up to 1000) but not by
/// bytes: with events near `max_event_bytes` (1 MiB by default) one
/// request makes the server build a response of up to ~1 GiB in memory
/// (twice: the encoded events and the body). Any read-scoped client can
/// do it, and an honest poller with `limit=1000` on wide rows does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_page_is_bounded_by_bytes() {
    let server = Server::start().await;
    let (status, _) = server
        .put(
            "/v1/tables/wide",
            json!({"columns": [{"name": "id", "type": "int64"}, {"name": "v", "type": "string"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let wide = "w".repeat(900_000);
    for id in 0..40 {
        let (status, body) = server
            .put(
                &format!("/v1/tables/wide/rows/{id}"),
                json!({"id": id, "v": wide}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let response = server
        .request(Method::GET, "/v1/changes?since=0&limit=1000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await.unwrap();
    let page: Json = serde_json::from_slice(&body).unwrap();
    assert!(
        !page["changes"].as_array().unwrap().is_empty(),
        "progress is still made"
    );
    // Range pages of rows: the same.
    let rows = server
        .request(Method::GET, "/v1/tables/wide/rows?limit=1000")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        body.len() <= 16 << 20 && rows.len() <= 16 << 20,
        "one pull page is {} bytes ({} events); one range page is {} bytes",
        body.len(),
        page["changes"].as_array().unwrap().len(),
        rows.len()
    );
}

/// Every status a route actually answers (as counted by the server's own
/// request metrics, over a spread of good and bad requests, with tokens
/// configured) is documented for that operation in the OpenAPI document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_a_route_answers_is_documented() {
    use tidefeed_http::{Scope, TokenRule, TokenSecret};
    let mut server = Server::start_with(
        |options| options.history_window = Some(Duration::ZERO),
        |options| {
            options.max_body_bytes = 2048;
            options.tokens = vec![
                TokenRule {
                    secret: TokenSecret::Plain("all".into()),
                    scopes: vec![Scope::Read, Scope::Write, Scope::Admin],
                    tables: None,
                },
                TokenRule {
                    secret: TokenSecret::Plain("ro".into()),
                    scopes: vec![Scope::Read],
                    tables: Some(vec!["users".into()]),
                },
            ];
        },
    )
    .await;
    server.token = Some("all".into());
    server.create_users().await;
    for id in 1..=5 {
        server.put_user(id, "a").await;
    }
    server
        .blocking(|engine| {
            engine.flush().unwrap();
            engine.compact().unwrap();
        })
        .await;
    let big = json!({"id": 1, "email": "x".repeat(4000)});
    let paths_get = [
        "/v1/tables",
        "/v1/tables/users",
        "/v1/tables/nope",
        "/v1/tables/Bad",
        "/v1/tables/users/rows",
        "/v1/tables/users/rows?limit=0",
        "/v1/tables/users/rows?as_of=1",
        "/v1/tables/users/rows/1",
        "/v1/tables/users/rows/99",
        "/v1/tables/users/rows/x",
        "/v1/tables/users/rows/1?as_of=999",
        "/v1/changes?since=0",
        "/v1/changes?since=999",
        "/v1/changes?since=5",
        "/v1/changes/stream?since=0",
        "/v1/changes/stream?since=999",
        "/v1/changes/stream?tables=nope",
        "/v1/consumers",
        "/v1/consumers/nope",
        "/v1/status",
        "/v1/openapi.json",
        "/metrics",
        "/healthz",
        "/readyz",
    ];
    for token in [Some("all"), Some("ro"), None, Some("bad")] {
        server.token = token.map(str::to_owned);
        for path in paths_get {
            let response = server.request(Method::GET, path).send().await.unwrap();
            drop(response);
        }
        let _ = server
            .put("/v1/tables/users/rows/1", json!({"id": 1}))
            .await;
        let _ = server
            .put("/v1/tables/users/rows/1", json!({"id": 2}))
            .await;
        let _ = server.put("/v1/tables/users/rows/1", big.clone()).await;
        let _ = server.put("/v1/tables/nope/rows/1", json!({"id": 1})).await;
        let _ = server
            .request(Method::PUT, "/v1/tables/users/rows/1")
            .header("if-match", "\"1\"")
            .json(&json!({"id": 1}))
            .send()
            .await;
        let _ = server
            .request(Method::PUT, "/v1/tables/users/rows/1")
            .header("if-match", "junk")
            .json(&json!({"id": 1}))
            .send()
            .await;
        let _ = server
            .request(Method::PUT, "/v1/tables/users/rows/1")
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await;
        let _ = server
            .call(
                Method::PATCH,
                "/v1/tables/users/rows/99",
                Some(json!({"email": "x"})),
            )
            .await;
        let _ = server
            .call(Method::DELETE, "/v1/tables/users/rows/99", None)
            .await;
        let _ = server.post("/v1/batch", json!({"ops": []})).await;
        let _ = server
            .post(
                "/v1/batch",
                json!({"ops": [{"op": "upsert", "table": "users", "row": big.clone()}]}),
            )
            .await;
        let _ = server
            .put(
                "/v1/tables/users",
                json!({"columns": [{"name": "id", "type": "string"}], "primary_key": ["id"]}),
            )
            .await;
        let _ = server
            .put(
                "/v1/tables/Bad",
                json!({"columns": [{"name": "id", "type": "string"}], "primary_key": ["id"]}),
            )
            .await;
        let _ = server.call(Method::PUT, "/v1/consumers/c", None).await;
        let _ = server.call(Method::PUT, "/v1/consumers/c", None).await;
        let _ = server.put("/v1/consumers/d", json!({"position": 0})).await;
        let _ = server
            .post("/v1/consumers/c/ack", json!({"seq": 999}))
            .await;
        let _ = server
            .post("/v1/consumers/nope/ack", json!({"seq": 1}))
            .await;
        let _ = server
            .call(Method::DELETE, "/v1/consumers/nope", None)
            .await;
    }
    server.token = Some("all".into());
    let (_, doc) = server.get("/v1/openapi.json").await;
    let text = server
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut missing = std::collections::BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("tidefeed_http_requests_total{"))
    {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            line[start..start + line[start..].find('"').unwrap()].to_owned()
        };
        let (route, method, status) = (label("route"), label("method"), label("status"));
        let operation = &doc["paths"][&route][method.to_ascii_lowercase()];
        if !operation.is_object() {
            continue;
        }
        if !operation["responses"][&status].is_object() {
            missing.insert(format!("{method} {route} {status}"));
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:#?}");
}

/// Idle expiry exists so a dead consumer cannot hold history forever. A
/// consumer that is caught up holds nothing back; on a quiet system it
/// has nothing to acknowledge, and must not be invalidated for that
/// (its next change would otherwise end it with consumer_invalidated, and
/// a consumer recreated "now" misses what was written in between).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_consumer_on_a_quiet_system_is_not_invalidated() {
    let expiry = Duration::from_secs(2);
    let server = Server::start_with(
        |options| options.consumer_idle_expiry = Some(expiry),
        |_| {},
    )
    .await;
    server.create_users().await;
    server.put_user(1, "a").await;
    let (status, body) = server.call(Method::PUT, "/v1/consumers/quiet", None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["lag"], 0);
    let mut stream = server.stream("consumer=quiet", None).await;
    tokio::time::sleep(expiry + Duration::from_millis(700)).await;
    server.blocking(|engine| engine.compact().unwrap()).await;
    let (_, info) = server.get("/v1/consumers/quiet").await;
    assert_eq!(info["invalidated"], Json::Null, "{info}");
    let seq = server.put_user(2, "b").await;
    let event = loop {
        let event = stream.next().await.expect("open");
        if event.event != "resolved" {
            break event;
        }
    };
    assert_eq!(
        (event.event.as_str(), event.id.as_str()),
        ("message", &*seq.to_string()),
        "{}",
        event.data
    );
}

/// The served document passes an independent OpenAPI 3.1 validator
/// (`openapi-spec-validator`, when installed; skipped otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_passes_an_independent_validator() {
    let server = Server::start().await;
    let text = server
        .request(Method::GET, "/v1/openapi.json")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, text).unwrap();
    let output = match Command::new("openapi-spec-validator").arg(&path).output() {
        Ok(output) => output,
        Err(error) => {
            eprintln!("skipped: openapi-spec-validator is not installed ({error})");
            return;
        }
    };
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
