//! Change events encode exactly as the interface contract shows, in the
//! native format and as Debezium envelopes.

use serde_json::{json, Value as Json};
use tidefeed_engine::{Column, ColumnType, Engine, EngineOptions, Mutation, TableSchema, Value};
use tidefeed_feed::time::format_rfc3339;
use tidefeed_feed::{encode, json::named_values_from_json, ChangeEvent, Format};

fn users(engine: &Engine) {
    let column = |name: &str, ty, nullable| Column {
        name: name.into(),
        ty,
        nullable,
    };
    engine
        .create_table(TableSchema {
            name: "users".into(),
            columns: vec![
                column("id", ColumnType::Int64, false),
                column("email", ColumnType::String, true),
                column("avatar", ColumnType::Bytes, true),
                column("seen", ColumnType::Timestamp, true),
            ],
            primary_key: vec!["id".into()],
        })
        .unwrap();
}

fn events(engine: &Engine) -> Vec<ChangeEvent> {
    engine
        .changes(0, None)
        .unwrap()
        .map(|c| ChangeEvent::from_change(&c.unwrap()).unwrap())
        .collect()
}

fn parse(bytes: &[u8]) -> Json {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn native_events_match_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
    users(&engine);
    let table = engine.table("users").unwrap();
    let row = named_values_from_json(
        &table,
        &json!({"id": 7, "email": "a@example.com", "avatar": "AP8=", "seen": "2026-11-24T10:00:00.5Z"}),
    )
    .unwrap();
    engine.write(vec![Mutation::upsert("users", row)]).unwrap();
    engine
        .write(vec![
            Mutation::patch(
                "users",
                vec![Value::Int64(7)],
                vec![("email".into(), Value::Null)],
            ),
            Mutation::delete("users", vec![Value::Int64(7)]),
        ])
        .unwrap();
    let events = events(&engine);
    let encoded: Vec<_> = events
        .iter()
        .map(|e| encode(e, Format::Native).unwrap())
        .collect();
    let ts = |i: usize| format_rfc3339(events[i].ts_micros).unwrap();
    let full = json!({"id": 7, "email": "a@example.com", "avatar": "AP8=", "seen": "2026-11-24T10:00:00.500000Z"});
    let patched =
        json!({"id": 7, "email": null, "avatar": "AP8=", "seen": "2026-11-24T10:00:00.500000Z"});
    assert_eq!(
        parse(&encoded[0]),
        json!({"seq": 1, "ts": ts(0), "table": "users", "op": "insert", "key": {"id": 7},
               "before": null, "after": full, "batch": {"first_seq": 1, "index": 0, "size": 1}})
    );
    assert_eq!(
        parse(&encoded[1]),
        json!({"seq": 2, "ts": ts(1), "table": "users", "op": "update", "key": {"id": 7},
               "before": full, "after": patched, "batch": {"first_seq": 2, "index": 0, "size": 2}})
    );
    assert_eq!(
        parse(&encoded[2]),
        json!({"seq": 3, "ts": ts(2), "table": "users", "op": "delete", "key": {"id": 7},
               "before": patched, "after": null, "batch": {"first_seq": 2, "index": 1, "size": 2}})
    );
    // Field order as documented, columns in table order.
    let text = std::str::from_utf8(&encoded[0]).unwrap();
    assert!(text.starts_with(r#"{"seq":1,"ts":""#), "{text}");
    assert!(
        text.contains(r#""after":{"id":7,"email":"a@example.com","avatar":"AP8=","seen":"#),
        "{text}"
    );
    assert!(
        text.ends_with(r#""batch":{"first_seq":1,"index":0,"size":1}}"#),
        "{text}"
    );
}

#[test]
fn debezium_envelopes_use_op_codes_and_source_fields() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
    users(&engine);
    let row = |email: &str| {
        vec![
            ("id".into(), Value::Int64(1)),
            ("email".into(), Value::String(email.into())),
        ]
    };
    engine
        .write(vec![Mutation::upsert("users", row("a"))])
        .unwrap();
    engine
        .write(vec![Mutation::upsert("users", row("b"))])
        .unwrap();
    engine
        .write(vec![Mutation::delete("users", vec![Value::Int64(1)])])
        .unwrap();
    let events = events(&engine);
    let a = json!({"id": 1, "email": "a", "avatar": null, "seen": null});
    let b = json!({"id": 1, "email": "b", "avatar": null, "seen": null});
    let expected = [
        ("c", Json::Null, a.clone()),
        ("u", a, b.clone()),
        ("d", b, Json::Null),
    ];
    for (event, (op, before, after)) in events.iter().zip(expected) {
        let ts_ms = event.ts_micros / 1000;
        assert_eq!(
            parse(&encode(event, Format::Debezium).unwrap()),
            json!({"before": before, "after": after,
                   "source": {"name": "tidefeed", "table": "users", "seq": event.seq, "ts_ms": ts_ms, "snapshot": "false"},
                   "op": op, "ts_ms": ts_ms})
        );
    }

    // A snapshot row: op "r", snapshot "true", no batch in the native form.
    engine
        .write(vec![Mutation::upsert("users", row("c"))])
        .unwrap();
    let table = engine.table("users").unwrap();
    let current = engine
        .get("users", &[Value::Int64(1)], None)
        .unwrap()
        .unwrap();
    let read = ChangeEvent::snapshot_read(table, current.row, engine.visible_seq(), 1_000_000);
    let envelope = parse(&encode(&read, Format::Debezium).unwrap());
    assert_eq!(envelope["op"], "r");
    assert_eq!(envelope["source"]["snapshot"], "true");
    assert_eq!(envelope["before"], Json::Null);
    let native = parse(&encode(&read, Format::Native).unwrap());
    assert_eq!(native["op"], "read");
    assert_eq!(native["batch"], Json::Null);
    assert_eq!(native["seq"], json!(engine.visible_seq()));
    assert_eq!(native["ts"], "1970-01-01T00:00:01.000000Z");
}

#[test]
fn formats_parse_by_name() {
    assert_eq!("native".parse(), Ok(Format::Native));
    assert_eq!("debezium".parse(), Ok(Format::Debezium));
    assert!("avro".parse::<Format>().unwrap_err().contains("avro"));
}

#[test]
fn timestamps_outside_years_0000_to_9999_are_an_error_never_invalid_rfc_3339() {
    use tidefeed_feed::time::{TimestampError, MAX_MICROS, MIN_MICROS};
    use tidefeed_feed::FeedError;

    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
    engine
        .create_table(TableSchema {
            name: "visits".into(),
            columns: vec![Column {
                name: "at".into(),
                ty: ColumnType::Timestamp,
                nullable: false,
            }],
            primary_key: vec!["at".into()],
        })
        .unwrap();
    let table = engine.table("visits").unwrap();
    let row =
        named_values_from_json(&table, &json!({"at": "9999-12-31T23:59:59.999999Z"})).unwrap();
    engine.write(vec![Mutation::upsert("visits", row)]).unwrap();
    let event = events(&engine).remove(0);
    for format in [Format::Native, Format::Debezium] {
        let native = parse(&encode(&event, format).unwrap());
        assert_eq!(
            native
                .to_string()
                .matches("9999-12-31T23:59:59.999999Z")
                .count(),
            if format == Format::Native { 2 } else { 1 }
        );
    }

    for (field, micros) in [
        ("ts", MAX_MICROS + 1),
        ("at", MIN_MICROS - 1),
        ("at", i64::MAX),
    ] {
        let mut bad = event.clone();
        if field == "ts" {
            bad.ts_micros = micros;
        } else {
            bad.key = vec![Value::Timestamp(micros)];
        }
        for format in [Format::Native, Format::Debezium] {
            let err = encode(&bad, format).unwrap_err();
            assert!(
                matches!(&err, FeedError::Unencodable { seq: 1, table, field: f, problem: TimestampError::OutOfRange { micros: m } }
                    if table == "visits" && f == field && *m == micros),
                "{err}"
            );
            assert!(tidefeed_feed::encode_bounded(&bad, format, 10).is_err());
        }
    }
}
