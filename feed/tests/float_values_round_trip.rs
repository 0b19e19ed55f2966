//! Float64 values survive the JSON encodings bit for bit, in float64
//! columns and inside json columns, through the native and Debezium
//! events and back through the row parser.

use proptest::prelude::*;
use serde_json::{json, Value as Json};
use tidefeed_engine::{
    Column, ColumnType, Engine, EngineOptions, Mutation, Table, TableSchema, Value,
};
use tidefeed_feed::json::named_values_from_json;
use tidefeed_feed::{encode, ChangeEvent, Format};

fn column(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column {
        name: name.into(),
        ty,
        nullable,
    }
}

/// `t(id int64 key, f float64, j json, nj json nullable)`.
fn engine(dir: &std::path::Path) -> Engine {
    let engine = Engine::open(EngineOptions::new(dir)).unwrap();
    engine
        .create_table(TableSchema {
            name: "t".into(),
            columns: vec![
                column("id", ColumnType::Int64, false),
                column("f", ColumnType::Float64, false),
                column("j", ColumnType::Json, false),
                column("nj", ColumnType::Json, true),
            ],
            primary_key: vec!["id".into()],
        })
        .unwrap();
    engine
}

/// The `after` image of `event` in `format`, read back into values through
/// the row parser.
fn after_values(table: &Table, event: &ChangeEvent, format: Format) -> Vec<(String, Value)> {
    let bytes = encode(event, format).unwrap();
    let envelope: Json = serde_json::from_slice(&bytes).unwrap();
    named_values_from_json(table, &envelope["after"]).unwrap()
}

fn value_of<'a>(values: &'a [(String, Value)], name: &str) -> &'a Value {
    &values.iter().find(|(n, _)| n == name).unwrap().1
}

fn float_bits(value: &Value) -> u64 {
    match value {
        Value::Float64(f) => f.to_bits(),
        Value::Json(Json::Number(n)) => n.as_f64().unwrap().to_bits(),
        other => panic!("not a float: {other:?}"),
    }
}

#[test]
fn the_float_that_lost_its_last_digit_round_trips() {
    let f = 219.481_962_895_267_54_f64;
    let text = serde_json::to_string(&json!(f)).unwrap();
    assert_eq!(
        serde_json::from_str::<f64>(&text).unwrap().to_bits(),
        f.to_bits()
    );
    let json: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(json.as_f64().unwrap().to_bits(), f.to_bits());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn float64_bits_round_trip_through_every_encoding(bits in proptest::collection::vec(any::<u64>(), 1..16)) {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let table = engine.table("t").unwrap();
        // Finite values: non-finite ones travel as strings, tested beside the parser.
        let floats: Vec<f64> = bits.iter().map(|b| f64::from_bits(*b)).filter(|f| f.is_finite()).collect();
        for (id, f) in floats.iter().enumerate() {
            let row = named_values_from_json(&table, &json!({
                "id": id, "f": f, "j": {"x": [f]}, "nj": f,
            })).unwrap();
            engine.write(vec![Mutation::upsert("t", row)]).unwrap();
        }
        let events: Vec<ChangeEvent> = engine.changes(0, None).unwrap()
            .map(|c| ChangeEvent::from_change(&c.unwrap()).unwrap())
            .collect();
        prop_assert_eq!(events.len(), floats.len());
        for (event, f) in events.iter().zip(&floats) {
            for format in [Format::Native, Format::Debezium] {
                let values = after_values(&table, event, format);
                prop_assert_eq!(float_bits(value_of(&values, "f")), f.to_bits(), "float64 column, {:?}", format);
                prop_assert_eq!(float_bits(value_of(&values, "nj")), f.to_bits(), "json column, {:?}", format);
                let Value::Json(j) = value_of(&values, "j") else { panic!("j is json") };
                prop_assert_eq!(j["x"][0].as_f64().unwrap().to_bits(), f.to_bits(), "nested, {:?}", format);
            }
        }
        engine.close().unwrap();
    }
}
