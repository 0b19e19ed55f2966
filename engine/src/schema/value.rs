use crate::schema::ColumnType;

/// Column name and value pairs, as a client supplies them.
pub type NamedValues = Vec<(String, Value)>;

/// A typed column value.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Int64(i64),
    Float64(f64),
    Bool(bool),
    String(String),
    Bytes(Vec<u8>),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    Json(serde_json::Value),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int64(_) => "int64",
            Value::Float64(_) => "float64",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Timestamp(_) => "timestamp",
            Value::Json(_) => "json",
        }
    }

    /// Whether a non-null value belongs to a column of type `ty`.
    pub(crate) fn fits(&self, ty: ColumnType) -> bool {
        matches!(
            (self, ty),
            (Value::Int64(_), ColumnType::Int64)
                | (Value::Float64(_), ColumnType::Float64)
                | (Value::Bool(_), ColumnType::Bool)
                | (Value::String(_), ColumnType::String)
                | (Value::Bytes(_), ColumnType::Bytes)
                | (Value::Timestamp(_), ColumnType::Timestamp)
                | (Value::Json(_), ColumnType::Json)
        )
    }

    /// Key equality: the equality the key codec implements (-0.0 == +0.0).
    pub(crate) fn same_key_value(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float64(a), Value::Float64(b)) => a == b,
            _ => self == other,
        }
    }
}

/// Values compare by their stored representation: floats bit for bit, so
/// that a row read back equals the row written (NaN included).
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Int64(a), Value::Int64(b)) => a == b,
            (Value::Float64(a), Value::Float64(b)) => a.to_bits() == b.to_bits(),
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Timestamp(a), Value::Timestamp(b)) => a == b,
            (Value::Json(a), Value::Json(b)) => a == b,
            _ => false,
        }
    }
}

/// A full row: one value per column, in the table's column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(Vec<Value>);

impl Row {
    pub(crate) fn new(values: Vec<Value>) -> Row {
        Row(values)
    }

    pub fn values(&self) -> &[Value] {
        &self.0
    }

    pub fn into_values(self) -> Vec<Value> {
        self.0
    }
}
