//! `/metrics` is valid Prometheus text, and its figures move with writes,
//! streams and consumers.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::Server;

/// `name{labels}` -> value, checked line by line against the text
/// format: every sample belongs to a family declared by `# TYPE` before
/// it, names are `tidefeed_*`, counters end in `_total`, labels are
/// `key="value"` pairs.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            let (kind, name) = (words.next().unwrap(), words.next().expect("a metric name"));
            assert!(name.starts_with("tidefeed_"), "{line}");
            match kind {
                "HELP" => assert!(words.next().is_some_and(|help| !help.is_empty()), "{line}"),
                "TYPE" => {
                    let ty = words.next().expect("a type").to_owned();
                    assert!(
                        ["counter", "gauge", "histogram"].contains(&ty.as_str()),
                        "{line}"
                    );
                    if ty == "counter" {
                        assert!(name.ends_with("_total"), "counter without _total: {line}");
                    }
                    types.insert(name.to_owned(), ty);
                }
                _ => panic!("unexpected comment {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its # TYPE: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .expect("braced labels");
                for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                    let (key, value) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label in {line}"));
                    assert!(
                        key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(!value.contains('\n'), "{line}");
                }
            }
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate series {series}"
        );
    }
    samples
}

async fn scrape(server: &Server) -> BTreeMap<String, f64> {
    let response = server
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    parse(&response.text().await.unwrap())
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_writes_streams_and_consumers() {
    let server = Server::start().await;
    server.create_users().await;
    let before = scrape(&server).await;
    assert_eq!(value(&before, "tidefeed_engine_visible_seq"), 0.0);

    for id in 1..=3 {
        server.put_user(id, "a").await;
    }
    server.put_user(1, "b").await;
    let (status, _) = server
        .post(
            "/v1/batch",
            json!({"ops": [{"op": "delete", "table": "users", "key": {"id": 2}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut stream = server.stream("since=0", None).await;
    stream.changes(5).await;
    let (status, _) = server
        .put("/v1/consumers/etl", json!({"position": 1}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = server.get("/v1/tables/users/rows/1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get("/v1/tables/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let after = scrape(&server).await;
    assert_eq!(
        value(
            &after,
            r#"tidefeed_write_rows_total{op="insert",table="users"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &after,
            r#"tidefeed_write_rows_total{op="update",table="users"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"tidefeed_write_rows_total{op="delete",table="users"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"tidefeed_write_duration_seconds_count{kind="row"}"#
        ),
        4.0
    );
    assert_eq!(
        value(
            &after,
            r#"tidefeed_write_duration_seconds_count{kind="batch"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"tidefeed_http_requests_total{method="PUT",route="/v1/tables/{table}/rows/{key}",status="200"}"#
        ),
        4.0
    );
    assert_eq!(
        value(
            &after,
            r#"tidefeed_http_requests_total{method="GET",route="/v1/tables/{table}",status="404"}"#
        ),
        1.0
    );
    assert_eq!(value(&after, "tidefeed_sse_subscribers"), 1.0);
    assert_eq!(value(&after, "tidefeed_sse_streams_opened_total"), 1.0);
    assert_eq!(
        value(
            &after,
            r#"tidefeed_feed_events_sent_total{transport="sse"}"#
        ),
        5.0
    );
    assert!(value(&after, "tidefeed_sse_sent_bytes_total") > 0.0);
    assert_eq!(value(&after, "tidefeed_engine_visible_seq"), 5.0);
    assert_eq!(value(&after, "tidefeed_commit_changes_total"), 5.0);
    assert!(value(&after, "tidefeed_wal_fsyncs_total") >= 1.0);
    assert_eq!(value(&after, "tidefeed_feed_consumers"), 1.0);
    assert_eq!(
        value(&after, r#"tidefeed_feed_consumer_lag_seqs{consumer="etl"}"#),
        4.0
    );
    assert!(
        value(
            &after,
            r#"tidefeed_feed_consumer_lag_bytes{consumer="etl"}"#
        ) > 0.0,
        "four changes in the memtable are behind the consumer"
    );
    assert!(value(&after, "tidefeed_memtable_bytes") > 0.0);
    let groups = value(&after, "tidefeed_commit_group_size_requests_count");
    assert!(groups >= 1.0);
    assert_eq!(
        value(
            &after,
            r#"tidefeed_commit_group_size_requests_bucket{le="+Inf"}"#
        ),
        groups
    );
    assert_eq!(
        value(&after, "tidefeed_commit_group_size_requests_sum"),
        value(&after, "tidefeed_commit_batches_total")
    );
    assert_eq!(value(&after, r#"tidefeed_lsm_level_bytes{level="0"}"#), 0.0);
    assert_eq!(value(&after, "tidefeed_lsm_retained_bytes"), 0.0);
    assert!(after
        .keys()
        .any(|k| k.starts_with("tidefeed_http_request_duration_seconds_bucket")));
    // No series is labelled by a key or a raw path.
    assert!(
        !after.keys().any(|k| k.contains("/rows/1")),
        "raw paths in labels"
    );

    drop(stream);
    let (status, _) = server
        .call(reqwest::Method::DELETE, "/v1/consumers/etl", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let later = scrape(&server).await;
    assert_eq!(value(&later, "tidefeed_feed_consumers"), 0.0);
    assert!(!later.contains_key(r#"tidefeed_feed_consumer_lag_seqs{consumer="etl"}"#));
    // Mirrored counters never double-count across scrapes.
    assert_eq!(value(&later, "tidefeed_commit_changes_total"), 5.0);
}
