//! The pull cursor: pages in seq order, filters, exact resumption, and a
//! loud error below retention.

use std::collections::HashSet;

use tidefeed_engine::{
    Column, ColumnType, Engine, EngineOptions, Error, Mutation, TableSchema, Value,
};
use tidefeed_feed::{read_page, EventOp, FeedError, Filter, Format};

/// A table with one int64 key column `id`.
fn id_table(name: &str) -> TableSchema {
    TableSchema {
        name: name.into(),
        columns: vec![Column {
            name: "id".into(),
            ty: ColumnType::Int64,
            nullable: false,
        }],
        primary_key: vec!["id".into()],
    }
}

fn engine_with_history(dir: &std::path::Path) -> Engine {
    let mut options = EngineOptions::new(dir);
    options.memtable_bytes = 8 << 10;
    let engine = Engine::open(options).unwrap();
    for name in ["a", "b"] {
        engine.create_table(id_table(name)).unwrap();
    }
    for i in 0..600i64 {
        let table = if i % 3 == 0 { "b" } else { "a" };
        engine
            .write(vec![Mutation::upsert(
                table,
                vec![("id".into(), Value::Int64(i % 40))],
            )])
            .unwrap();
        if i % 7 == 0 {
            engine
                .write(vec![Mutation::delete(table, vec![Value::Int64(i % 40)])])
                .ok();
        }
    }
    engine
}

fn seq_of(event: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(event).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

/// Reads the whole feed page by page; returns (seq, table, op) per event.
fn drain(engine: &Engine, since: u64, limit: usize, filter: &Filter) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    let mut position = since;
    loop {
        let page = read_page(engine, position, limit, filter, Format::Native).unwrap();
        for (seq, bytes) in &page.events {
            let json: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            assert_eq!(seq_of(bytes), *seq);
            out.push((
                *seq,
                json["table"].as_str().unwrap().to_owned(),
                json["op"].as_str().unwrap().to_owned(),
            ));
        }
        if page.next == engine.visible_seq() && page.events.is_empty() {
            return out;
        }
        assert!(
            page.next > position || !page.events.is_empty(),
            "a page makes progress"
        );
        position = page.next;
    }
}

#[test]
fn pages_cover_the_feed_in_order_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_history(dir.path());
    engine.flush().unwrap();
    let all = drain(&engine, 0, 37, &Filter::default());
    let seqs: Vec<u64> = all.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (1..=engine.visible_seq()).collect::<Vec<_>>());
    // Resuming from every position gives the same suffix.
    for since in 0..=engine.visible_seq() {
        let suffix = drain(&engine, since, 50, &Filter::default());
        assert_eq!(
            suffix,
            all[since as usize..].to_vec(),
            "resume after {since}"
        );
    }
}

#[test]
fn filters_select_tables_and_ops_and_still_advance() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_history(dir.path());
    let all = drain(&engine, 0, 1000, &Filter::default());
    let filter = Filter {
        tables: HashSet::from(["b".to_owned()]),
        ops: HashSet::from([EventOp::Delete]),
    };
    let deletes_in_b = drain(&engine, 0, 3, &filter);
    let expected: Vec<_> = all
        .iter()
        .filter(|e| e.1 == "b" && e.2 == "delete")
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(deletes_in_b, expected);

    // A filter that matches nothing still moves `next`, in bounded steps.
    let none = Filter {
        tables: HashSet::from(["missing".to_owned()]),
        ops: HashSet::new(),
    };
    let page = read_page(&engine, 0, 2, &none, Format::Native).unwrap();
    assert!(page.events.is_empty());
    assert!(
        page.next > 0 && page.next < engine.visible_seq(),
        "bounded scan, progress made: {}",
        page.next
    );
}

#[test]
fn reading_below_retention_is_an_error_not_an_empty_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.memtable_bytes = 8 << 10;
    options.history_window = Some(std::time::Duration::ZERO);
    let engine = Engine::open(options).unwrap();
    engine.create_table(id_table("a")).unwrap();
    for i in 0..500i64 {
        engine
            .write(vec![Mutation::upsert(
                "a",
                vec![("id".into(), Value::Int64(i))],
            )])
            .unwrap();
    }
    engine.flush().unwrap();
    engine.compact().unwrap();
    let low_water = engine.low_water();
    assert!(low_water > 0);
    let err = read_page(&engine, 0, 10, &Filter::default(), Format::Debezium).unwrap_err();
    assert!(
        matches!(err, FeedError::Engine(Error::BelowRetention { requested: 0, low_water: lw }) if lw == low_water),
        "{err}"
    );
    assert!(read_page(&engine, low_water, 10, &Filter::default(), Format::Debezium).is_ok());
}

#[test]
fn a_page_after_the_visible_seq_is_a_future_seq_error_not_an_empty_page() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_history(dir.path());
    let visible = engine.visible_seq();
    for since in [visible + 1, visible + 1000, u64::MAX] {
        let err = read_page(&engine, since, 10, &Filter::default(), Format::Native).unwrap_err();
        assert!(
            matches!(err, FeedError::Engine(Error::FutureSeq { requested, visible: v }) if requested == since && v == visible),
            "{since}: {err}"
        );
    }
    // At the head: an empty page that stays there.
    let page = read_page(&engine, visible, 10, &Filter::default(), Format::Native).unwrap();
    assert!(page.events.is_empty());
    assert_eq!(page.next, visible);
}

#[test]
fn a_page_of_limit_zero_is_empty_and_stays_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_history(dir.path());
    for since in [0, 5, engine.visible_seq()] {
        let page = read_page(&engine, since, 0, &Filter::default(), Format::Native).unwrap();
        assert!(
            page.events.is_empty(),
            "{since}: {} events",
            page.events.len()
        );
        assert_eq!(page.next, since, "nothing examined, nothing skipped");
    }
}
