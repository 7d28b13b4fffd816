//! Test fixtures shared by the CSV and JSON decoder tests: a schema with
//! one column of each type, and a decode helper that checks the contract
//! that a failed decode leaves the output untouched.

use crate::format::Decoder;
use crate::types::{DataType, Field, Schema, Value};

pub fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field {
        name: name.into(),
        data_type,
        nullable,
    }
}

/// auction BIGINT NOT NULL, price DOUBLE, ok BOOLEAN, name VARCHAR, ts TIMESTAMP
pub fn sample_schema() -> Schema {
    Schema::new(vec![
        field("auction", DataType::Int, false),
        field("price", DataType::Double, true),
        field("ok", DataType::Bool, true),
        field("name", DataType::Str, true),
        field("ts", DataType::Ts, true),
    ])
}

/// Decodes one record into a fresh row; on error, asserts the output
/// buffer was left exactly as it was, and gives the error's message.
pub fn decode_checked(d: &mut dyn Decoder, line: &str) -> Result<Vec<Value>, String> {
    let mut out = vec![Value::Int(-7)];
    let r = d.decode(line.as_bytes(), &mut out);
    if r.is_err() {
        assert_eq!(out, vec![Value::Int(-7)], "out must be untouched on error");
    }
    r.map(|()| out[1..].to_vec()).map_err(|e| d.explain(line.as_bytes(), e))
}
