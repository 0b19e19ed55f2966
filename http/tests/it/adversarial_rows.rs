//! Adversarial probes of row semantics over HTTP: 404s that consume no
//! seq, ETags and If-Match in odd forms, `as_of` edges, range pages in
//! key order for awkward keys, batches that touch one key many times, and
//! concurrent writers whose answers must match the feed.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

use crate::common::{assert_error, enc, json_of, Server};

async fn all_changes(server: &Server) -> Vec<Json> {
    let mut since = 0u64;
    let mut out = Vec::new();
    loop {
        let (status, page) = server
            .get(&format!("/v1/changes?since={since}&limit=1000"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let changes = page["changes"].as_array().unwrap().clone();
        let next = page["next"].as_u64().unwrap();
        if changes.is_empty() && next == since {
            return out;
        }
        out.extend(changes);
        since = next;
    }
}

async fn with_if_match(
    server: &Server,
    method: Method,
    path: &str,
    if_match: &[&str],
    body: Option<Json>,
) -> (StatusCode, Json) {
    let mut request = server.request(method, path);
    for value in if_match {
        request = request.header("if-match", *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    json_of(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_absent_rows_are_404_and_consume_no_seq() {
    let server = Server::start().await;
    server.create_users().await;
    server.put_user(1, "a").await;
    let (status, body) = server
        .call(Method::DELETE, "/v1/tables/users/rows/2", None)
        .await;
    assert_error(status, &body, 404, "row_not_found");
    let (status, body) = server
        .call(
            Method::PATCH,
            "/v1/tables/users/rows/2",
            Some(json!({"email": "x"})),
        )
        .await;
    assert_error(status, &body, 404, "row_not_found");
    // Delete, then delete again: the second is a 404, no second event.
    let (status, body) = server
        .call(Method::DELETE, "/v1/tables/users/rows/1", None)
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"seq": 2, "op": "delete"}))
    );
    let (status, body) = server
        .call(Method::DELETE, "/v1/tables/users/rows/1", None)
        .await;
    assert_error(status, &body, 404, "row_not_found");
    let (status, body) = server
        .call(
            Method::PATCH,
            "/v1/tables/users/rows/1",
            Some(json!({"email": "x"})),
        )
        .await;
    assert_error(status, &body, 404, "row_not_found");
    assert_eq!(server.engine.visible_seq(), 2);
    let changes = all_changes(&server).await;
    assert_eq!(changes.len(), 2);
    // A re-insert after a delete is an insert with a null before-image.
    let (_, body) = server
        .put("/v1/tables/users/rows/1", json!({"id": 1, "email": "b"}))
        .await;
    assert_eq!(body, json!({"seq": 3, "op": "insert"}));
    let changes = all_changes(&server).await;
    assert_eq!(changes[2]["before"], Json::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_forms_are_refused_or_honoured_and_never_write_on_failure() {
    let server = Server::start().await;
    server.create_users().await;
    let seq = server.put_user(1, "a").await;
    let path = "/v1/tables/users/rows/1";
    let row = || Some(json!({"id": 1, "email": "b"}));
    let bad = [
        vec!["1".to_owned()],
        vec![format!("W/\"{seq}\"")],
        vec![format!("\"{seq}")],
        vec!["\"\"".to_owned()],
        vec!["\"-1\"".to_owned()],
        vec!["\"18446744073709551616\"".to_owned()],
        vec![format!("\"{seq}\""), format!("\"{seq}\"")],
    ];
    for values in bad {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let (status, body) = with_if_match(&server, Method::PUT, path, &values, row()).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::PRECONDITION_FAILED,
            "{values:?}: {status} {body}"
        );
        assert!(body["error"]["code"].is_string(), "{body}");
        assert_eq!(server.engine.visible_seq(), seq, "{values:?} wrote");
    }
    // Stale ETag: 412 with both versions, for PUT, PATCH and DELETE.
    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let body = (method != Method::DELETE).then(|| json!({"id": 1, "email": "c"}));
        let (status, error) =
            with_if_match(&server, method.clone(), path, &["\"999\""], body).await;
        assert_error(status, &error, 412, "precondition_failed");
        assert_eq!(error["error"]["actual"], seq, "{error}");
        assert_eq!(server.engine.visible_seq(), seq, "{method} wrote");
    }
    // If-Match on a row that does not exist: 412 (or 404 for patch and
    // delete), never a create.
    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let body = (method != Method::DELETE).then(|| json!({"id": 2, "email": "c"}));
        let (status, error) = with_if_match(
            &server,
            method.clone(),
            "/v1/tables/users/rows/2",
            &[&format!("\"{seq}\"")],
            body,
        )
        .await;
        assert!(
            status == StatusCode::PRECONDITION_FAILED || status == StatusCode::NOT_FOUND,
            "{method}: {status} {error}"
        );
        assert_eq!(server.engine.visible_seq(), seq, "{method} wrote");
    }
    // The right ETag, with surrounding whitespace: honoured.
    let (status, body) = with_if_match(
        &server,
        Method::PATCH,
        path,
        &[&format!("  \"{seq}\" ")],
        Some(json!({"email": "d"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let patched = body["seq"].as_u64().unwrap();
    // The ETag of a GET is the seq of that patch; deleting with it works.
    let response = server.request(Method::GET, path).send().await.unwrap();
    assert_eq!(response.headers()["etag"], format!("\"{patched}\""));
    let (status, body) = with_if_match(
        &server,
        Method::DELETE,
        path,
        &[&format!("\"{patched}\"")],
        None,
    )
    .await;
    assert_eq!((status, &body["op"]), (StatusCode::OK, &json!("delete")));
}

/// `If-Match: *` is the standard way to say "only if the row exists"
/// (RFC 9110 section 13.1.1); it is refused as a bad header instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_star_means_the_row_exists() {
    let server = Server::start().await;
    server.create_users().await;
    server.put_user(1, "a").await;
    let (status, body) = with_if_match(
        &server,
        Method::PUT,
        "/v1/tables/users/rows/1",
        &["*"],
        Some(json!({"id": 1, "email": "b"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = with_if_match(
        &server,
        Method::PUT,
        "/v1/tables/users/rows/2",
        &["*"],
        Some(json!({"id": 2, "email": "b"})),
    )
    .await;
    assert_error(status, &body, 412, "precondition_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_reads_at_the_edges_of_a_rows_life() {
    let server = Server::start().await;
    server.create_users().await;
    server.put_user(9, "other").await; // seq 1
    let inserted = server.put_user(1, "a").await; // seq 2
    let updated = server.put_user(1, "b").await; // seq 3
    let (_, deleted) = server
        .call(Method::DELETE, "/v1/tables/users/rows/1", None)
        .await; // seq 4
    let deleted = deleted["seq"].as_u64().unwrap();
    server.put_user(9, "other2").await; // seq 5
    let get = |as_of: u64| {
        let server = &server;
        async move {
            let response = server
                .request(
                    Method::GET,
                    &format!("/v1/tables/users/rows/1?as_of={as_of}"),
                )
                .send()
                .await
                .unwrap();
            let etag = response
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_owned());
            let (status, body) = json_of(response).await;
            (status, etag, body)
        }
    };
    let (status, _, body) = get(0).await;
    assert_error(status, &body, 404, "row_not_found");
    let (status, _, body) = get(inserted - 1).await;
    assert_error(status, &body, 404, "row_not_found");
    let (status, etag, body) = get(inserted).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(etag.as_deref(), Some(&*format!("\"{inserted}\"")));
    assert_eq!(body["email"], "a");
    let (_, etag, body) = get(deleted - 1).await;
    assert_eq!(etag.as_deref(), Some(&*format!("\"{updated}\"")));
    assert_eq!(body["email"], "b");
    let (status, _, body) = get(deleted).await;
    assert_error(status, &body, 404, "row_not_found");
    let (status, _, body) = get(deleted + 1).await;
    assert_error(status, &body, 404, "row_not_found");
    let (status, _, body) = get(6).await;
    assert_error(status, &body, 400, "future_seq");
    let (status, _, body) = get(u64::MAX).await;
    assert_error(status, &body, 400, "future_seq");
    // Range scans as of each seq see exactly the rows alive then.
    for (as_of, expected) in [(1, vec![9]), (2, vec![1, 9]), (4, vec![9]), (5, vec![9])] {
        let (status, page) = server
            .get(&format!("/v1/tables/users/rows?as_of={as_of}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let ids: Vec<i64> = page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, expected, "as_of={as_of}");
    }
    let (status, body) = server.get("/v1/tables/users/rows?as_of=6").await;
    assert_error(status, &body, 400, "future_seq");
}

/// Pages through every row with `limit` and `next`; returns the rows.
async fn scan_all(server: &Server, table: &str, extra: &str, limit: usize) -> Vec<Json> {
    let mut rows = Vec::new();
    let mut next: Option<String> = None;
    let mut as_of: Option<u64> = None;
    loop {
        let mut path = format!("/v1/tables/{table}/rows?limit={limit}");
        for param in extra.split('&').filter(|p| !p.is_empty()) {
            // `next` replaces `start` on later pages.
            if !(next.is_some() && param.starts_with("start=")) {
                path.push('&');
                path.push_str(param);
            }
        }
        if let Some(next) = &next {
            path.push_str(&format!("&next={}", enc(next)));
        }
        if let Some(as_of) = as_of {
            path.push_str(&format!("&as_of={as_of}"));
        }
        let (status, page) = server.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        as_of = page["as_of"].as_u64().or(as_of);
        let batch = page["rows"].as_array().unwrap();
        assert!(batch.len() <= limit);
        rows.extend(batch.iter().cloned());
        match &page["next"] {
            Json::Null => return rows,
            Json::String(n) => next = Some(n.clone()),
            other => panic!("next is a key in its URL form or null, got {other}"),
        }
        assert!(rows.len() < 10_000, "paging does not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_pages_are_in_key_order_for_awkward_keys() {
    let server = Server::start().await;
    server.create_users().await;
    let ids = [
        i64::MIN,
        -1_000_000,
        -256,
        -255,
        -1,
        0,
        1,
        255,
        256,
        65_536,
        i64::MAX,
    ];
    // Insert in a scrambled order.
    for id in ids
        .iter()
        .rev()
        .step_by(2)
        .chain(ids.iter().skip(1).step_by(2))
    {
        let (status, body) = server
            .put(
                &format!("/v1/tables/users/rows/{id}"),
                json!({"id": id, "email": "x"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{id}: {body}");
    }
    for limit in [1, 2, 3, 1000] {
        let rows = scan_all(&server, "users", "", limit).await;
        let got: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(got, ids, "limit {limit}");
    }
    // Bounds: start inclusive, end exclusive, both as one-column keys.
    let rows = scan_all(&server, "users", "&start=-255&end=256", 2).await;
    let got: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(got, [-255, -1, 0, 1, 255]);
    // start after end: empty, not an error or the whole table.
    let (status, page) = server.get("/v1/tables/users/rows?start=5&end=1").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["rows"], json!([]));
    assert_eq!(page["next"], Json::Null);

    // Strings: byte order of UTF-8, with characters that need encoding.
    let (status, _) = server
        .put(
            "/v1/tables/names",
            json!({"columns": [{"name": "k", "type": "string"}], "primary_key": ["k"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut keys = vec![
        "a",
        "a\u{0}",
        "a b",
        "a/b",
        "a%2Fb",
        "a?b",
        "a#b",
        "a+b",
        "a&b=c",
        "ab",
        "b",
        "é",
        "\u{2028}",
        "\u{10FFFF}",
        "[1]",
        "\"q\"",
        "null",
        "...",
        ".a",
    ];
    for key in &keys {
        let (status, body) = server
            .put(
                &format!("/v1/tables/names/rows/{}", enc(key)),
                json!({"k": key}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{key:?}: {body}");
        let (status, row) = server
            .get(&format!("/v1/tables/names/rows/{}", enc(key)))
            .await;
        assert_eq!(
            (status, &row["k"]),
            (StatusCode::OK, &json!(key)),
            "{key:?}"
        );
    }
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for limit in [1, 4] {
        let rows = scan_all(&server, "names", "", limit).await;
        let got: Vec<&str> = rows.iter().map(|r| r["k"].as_str().unwrap()).collect();
        assert_eq!(got, keys, "limit {limit}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_key_prefix_ranges_and_paging() {
    let server = Server::start().await;
    let (status, _) = server
        .put(
            "/v1/tables/pairs",
            json!({"columns": [{"name": "a", "type": "string"}, {"name": "b", "type": "int64"}, {"name": "v", "type": "int64", "nullable": true}], "primary_key": ["a", "b"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut expected = Vec::new();
    for a in ["", "x", "x\u{0}", "xy", "y"] {
        for b in [-2i64, 0, 7] {
            let key = json!([a, b]).to_string();
            let (status, body) = server
                .put(
                    &format!("/v1/tables/pairs/rows/{}", enc(&key)),
                    json!({"a": a, "b": b, "v": 1}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{key}: {body}");
            expected.push((a.to_owned(), b));
        }
    }
    expected.sort_by(|x, y| x.0.as_bytes().cmp(y.0.as_bytes()).then(x.1.cmp(&y.1)));
    for limit in [1, 2, 5] {
        let rows = scan_all(&server, "pairs", "", limit).await;
        let got: Vec<(String, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r["a"].as_str().unwrap().to_owned(),
                    r["b"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, expected, "limit {limit}");
    }
    // A one-value prefix selects every b of that a, and only those.
    let rows = scan_all(
        &server,
        "pairs",
        &format!("&start={}&end={}", enc(r#"["x"]"#), enc(r#"["x\u0000"]"#)),
        2,
    )
    .await;
    let got: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["a"].as_str().unwrap().to_owned(),
                r["b"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("x".to_owned(), -2),
            ("x".to_owned(), 0),
            ("x".to_owned(), 7)
        ]
    );
}

/// A one-column string key may be the empty string (a batch writes it),
/// but `/rows/{key}` cannot address it: the row can never be read,
/// patched or deleted by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_string_key_is_addressable_or_refused() {
    let server = Server::start().await;
    let (status, _) = server
        .put(
            "/v1/tables/names",
            json!({"columns": [{"name": "k", "type": "string"}], "primary_key": ["k"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = server
        .post(
            "/v1/batch",
            json!({"ops": [{"op": "upsert", "table": "names", "row": {"k": ""}}]}),
        )
        .await;
    if status == StatusCode::OK {
        // Written: it must be readable and deletable by its key.
        let (status, body) = server.get("/v1/tables/names/rows/").await;
        assert_eq!(status, StatusCode::OK, "GET of the empty key: {body}");
        let (status, body) = server
            .call(Method::DELETE, "/v1/tables/names/rows/", None)
            .await;
        assert_eq!(status, StatusCode::OK, "DELETE of the empty key: {body}");
    } else {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_touching_one_key_many_times_chains_and_is_contiguous() {
    let server = Server::start().await;
    server.create_users().await;
    server.put_user(5, "pre").await;
    let (status, body) = server
        .post(
            "/v1/batch",
            json!({"ops": [
                {"op": "upsert", "table": "users", "row": {"id": 1, "email": "a"}},
                {"op": "patch", "table": "users", "key": {"id": 1}, "row": {"age": 3}},
                {"op": "delete", "table": "users", "key": {"id": 1}},
                {"op": "delete", "table": "users", "key": {"id": 1}},
                {"op": "upsert", "table": "users", "row": {"id": 1, "email": "b"}},
                {"op": "delete", "table": "users", "key": {"id": 404}},
                {"op": "upsert", "table": "users", "row": {"id": 5, "email": "post"}},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ops: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["op"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        ["insert", "update", "delete", "none", "insert", "none", "update"]
    );
    let seqs: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert_eq!(seqs, [2, 3, 4, 5, 6]);
    assert_eq!(
        (body["first_seq"].as_u64(), body["last_seq"].as_u64()),
        (Some(2), Some(6))
    );
    let changes = all_changes(&server).await;
    assert_eq!(changes.len(), 6);
    let mut last_after: BTreeMap<String, Json> = BTreeMap::new();
    for (i, event) in changes.iter().enumerate() {
        assert_eq!(event["seq"], i as u64 + 1);
        let key = event["key"].to_string();
        assert_eq!(
            event["before"],
            last_after.get(&key).cloned().unwrap_or(Json::Null),
            "chain at {event}"
        );
        last_after.insert(key, event["after"].clone());
        if i >= 1 {
            assert_eq!(
                event["batch"],
                json!({"first_seq": 2, "index": i - 1, "size": 5}),
                "{event}"
            );
        }
    }
}

/// A batch that commits nothing (only deletes of missing rows) consumes
/// no seq; its answer must not claim seqs it did not take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_no_ops_claims_no_seq() {
    let server = Server::start().await;
    server.create_users().await;
    server.put_user(1, "a").await;
    let (status, body) = server
        .post(
            "/v1/batch",
            json!({"ops": [{"op": "delete", "table": "users", "key": {"id": 2}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.engine.visible_seq(), 1);
    assert_eq!(
        body["results"],
        json!([{"seq": null, "op": "none"}]),
        "{body}"
    );
    for field in ["first_seq", "last_seq"] {
        let value = &body[field];
        assert!(
            value.is_null() || value.as_u64().is_some_and(|s| s > 1),
            "{field} must not name a committed seq it did not write: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_pages_next_and_resolved_with_filters() {
    let server = Server::start().await;
    server.create_users().await;
    let (status, _) = server
        .put(
            "/v1/tables/orders",
            json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for id in 1..=10 {
        server.put_user(id, "a").await;
    }
    let (_, body) = server
        .put("/v1/tables/orders/rows/1", json!({"id": 1}))
        .await;
    let order_seq = body["seq"].as_u64().unwrap();
    // since=now and absent: empty page at the head.
    for path in ["/v1/changes", "/v1/changes?since=now"] {
        let (status, page) = server.get(path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            page,
            json!({"changes": [], "next": order_seq, "resolved": order_seq})
        );
    }
    // A filter that matches only the last event: next jumps to it.
    let (_, page) = server
        .get("/v1/changes?since=0&tables=orders&limit=1")
        .await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["next"], order_seq);
    // A filter that matches nothing still advances to the head (maybe
    // over several pages), never goes backwards, never stalls.
    let mut since = 0;
    for _ in 0..100 {
        let (_, page) = server
            .get(&format!("/v1/changes?since={since}&ops=delete&limit=3"))
            .await;
        assert_eq!(page["changes"], json!([]), "{page}");
        let next = page["next"].as_u64().unwrap();
        assert!(next >= since);
        assert_eq!(page["resolved"], page["next"]);
        if next == since {
            break;
        }
        since = next;
    }
    assert_eq!(since, order_seq);
    // Pages of 3 cover every event once, in order.
    let mut since = 0;
    let mut seen = Vec::new();
    loop {
        let (_, page) = server
            .get(&format!(
                "/v1/changes?since={since}&limit=3&tables=users,%20orders"
            ))
            .await;
        let changes = page["changes"].as_array().unwrap();
        assert!(changes.len() <= 3);
        seen.extend(changes.iter().map(|e| e["seq"].as_u64().unwrap()));
        let next = page["next"].as_u64().unwrap();
        if next == since {
            break;
        }
        since = next;
    }
    assert_eq!(seen, (1..=order_seq).collect::<Vec<_>>());
}

/// Writers racing on one key: every answer (seq, op) is the event the
/// feed holds at that seq, the before-images chain, and insert/delete
/// alternate consistently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_on_one_key_get_answers_that_match_the_feed() {
    let server = Server::start().await;
    server.create_users().await;
    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for writer in 0..8i64 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..40i64 {
                let (method, body) = match (writer + i) % 4 {
                    0 | 1 => (
                        Method::PUT,
                        Some(json!({"id": 1, "email": format!("{writer}-{i}"), "age": i})),
                    ),
                    2 => (Method::PATCH, Some(json!({"age": writer * 1000 + i}))),
                    _ => (Method::DELETE, None),
                };
                let (status, answer) = server
                    .call(method.clone(), "/v1/tables/users/rows/1", body)
                    .await;
                match status {
                    StatusCode::OK => answers.push((
                        answer["seq"].as_u64().unwrap(),
                        answer["op"].as_str().unwrap().to_owned(),
                        method,
                    )),
                    StatusCode::NOT_FOUND => {
                        assert_ne!(method, Method::PUT);
                        assert_eq!(answer["error"]["code"], "row_not_found");
                    }
                    other => panic!("{other}: {answer}"),
                }
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.unwrap());
    }
    answers.sort_by_key(|a| a.0);
    let changes = all_changes(&server).await;
    assert_eq!(
        changes.len(),
        answers.len(),
        "one event per acknowledged write"
    );
    let mut previous_after = Json::Null;
    for ((seq, op, method), event) in answers.iter().zip(&changes) {
        assert_eq!(event["seq"], *seq);
        assert_eq!(event["op"], op.as_str(), "{method} answered {op}: {event}");
        assert_eq!(event["before"], previous_after, "chain at {seq}");
        match op.as_str() {
            "insert" => assert_eq!(event["before"], Json::Null),
            "update" | "delete" => assert_ne!(event["before"], Json::Null),
            other => panic!("op {other}"),
        }
        previous_after = event["after"].clone();
    }
    let (status, row) = server.get("/v1/tables/users/rows/1").await;
    if previous_after.is_null() {
        assert_eq!(status, StatusCode::NOT_FOUND);
    } else {
        assert_eq!(row, previous_after);
    }
}

/// String keys "." and ".." are path segments that every WHATWG URL
/// client (browsers, reqwest, fetch) removes as dot-segments, even
/// percent-encoded (`%2E%2E`): such a row is written by a batch but a
/// standard client can never GET or DELETE it by key. Consumer names "."
/// and ".." are refused for this reason (issue 7, defect 20); row keys
/// are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segment_string_keys_are_addressable_or_refused() {
    let server = Server::start().await;
    let (status, _) = server
        .put(
            "/v1/tables/names",
            json!({"columns": [{"name": "k", "type": "string"}], "primary_key": ["k"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for key in [".", ".."] {
        let (status, body) = server
            .post(
                "/v1/batch",
                json!({"ops": [{"op": "upsert", "table": "names", "row": {"k": key}}]}),
            )
            .await;
        if status != StatusCode::OK {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            continue;
        }
        let encoded: String = key.chars().map(|_| "%2E").collect();
        let (status, row) = server
            .get(&format!("/v1/tables/names/rows/{encoded}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{key:?}: {row}");
        assert_eq!(row["k"], key);
    }
}

/// A json column as (part of) the primary key: either refused as a key
/// type, or addressable — a row written with an object key can be read
/// back by that key in the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_key_columns_are_refused_or_addressable() {
    let server = Server::start().await;
    let (status, body) = server
        .put(
            "/v1/tables/jk",
            json!({"columns": [{"name": "k", "type": "json"}, {"name": "v", "type": "int64", "nullable": true}], "primary_key": ["k"]}),
        )
        .await;
    if status != StatusCode::CREATED {
        assert_error(status, &body, 400, "invalid_schema");
        return;
    }
    for key in [
        json!({"a": 1}),
        json!([1, 2]),
        json!("s"),
        json!(1),
        json!(true),
    ] {
        let (status, body) = server
            .post(
                "/v1/batch",
                json!({"ops": [{"op": "upsert", "table": "jk", "row": {"k": key, "v": 1}}]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{key}: {body}");
        let (status, row) = server
            .get(&format!("/v1/tables/jk/rows/{}", enc(&key.to_string())))
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "key {key} written but not found by its JSON text: {row}"
        );
        assert_eq!(row["k"], key);
    }
}

/// Conditional writes inside a batch: a stale or create-time `if_match`
/// fails the whole batch with the operation's index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_preconditions_fail_the_whole_batch_with_the_index() {
    let server = Server::start().await;
    server.create_users().await;
    let seq = server.put_user(1, "a").await;
    for (ops, code, index) in [
        (
            json!([
                {"op": "upsert", "table": "users", "row": {"id": 3}},
                {"op": "upsert", "table": "users", "row": {"id": 1}, "if_match": seq + 5},
            ]),
            "precondition_failed",
            1,
        ),
        (
            json!([
                {"op": "upsert", "table": "users", "row": {"id": 3}},
                {"op": "upsert", "table": "users", "row": {"id": 2}, "if_match": seq},
            ]),
            "precondition_failed",
            1,
        ),
        (
            json!([
                {"op": "upsert", "table": "users", "row": {"id": 3}},
                {"op": "delete", "table": "users", "key": {"id": 3}},
                {"op": "patch", "table": "users", "key": {"id": 3}, "row": {"age": 1}},
            ]),
            "row_not_found",
            2,
        ),
    ] {
        let (status, body) = server.post("/v1/batch", json!({ "ops": ops })).await;
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["index"], index, "{body}");
        assert!(status.is_client_error());
        assert_eq!(server.engine.visible_seq(), seq, "{body}");
    }
    let (status, body) = server
        .post(
            "/v1/batch",
            json!({"ops": [{"op": "patch", "table": "users", "key": {"id": 1}, "row": {"age": 2}, "if_match": seq}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
