//! The Arrow schema of the archive's Parquet files, and its Glue/Athena
//! description. This schema is the single source: `describe()` (printed by
//! `stele archive-schema`, compared with the Glue table by the Terraform test)
//! is derived from it, never kept as a second list.
//!
//! The files do not contain `tenant_id` or `dt`: those are Hive partition keys
//! (`tenant_id=<t>/dt=<YYYY-MM-DD>/part-<n>.parquet`).

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::{json, Value};
use stele_store::columns::{archived_columns, ArchivedAs};

/// Hive partition keys, in path order. Both are strings in Glue (`dt` is
/// projected as a date range over `yyyy-MM-dd` strings).
pub const PARTITION_KEYS: [&str; 2] = ["tenant_id", "dt"];

/// Storage layout template for Athena partition projection.
pub const LAYOUT: &str = "tenant_id=${tenant_id}/dt=${dt}";

/// Timestamps are stored as UTC instants in microseconds (Postgres precision);
/// Parquet marks them `isAdjustedToUTC = true`, which Athena and DuckDB read
/// as `timestamp` / `timestamp with time zone`.
fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Arrow type of an archived column (see [`ArchivedAs`]).
pub fn arrow_type(kind: ArchivedAs) -> DataType {
    match kind {
        ArchivedAs::Text => DataType::Utf8,
        ArchivedAs::TimestampMicros => utc_micros(),
        ArchivedAs::Int32 => DataType::Int32,
        ArchivedAs::Int64 => DataType::Int64,
    }
}

/// The columns of every archive file, in order: derived from the store's one
/// column list ([`stele_store::columns::archived_columns`]), so the insert, the
/// export query and this schema cannot drift apart. JSON columns are their
/// Postgres text; `event_hash` is lowercase hex of the 32-byte SHA-256.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(
                archived_columns()
                    .map(|c| Field::new(c.name, arrow_type(c.pg.archived_as()), c.nullable))
                    .collect::<Vec<_>>(),
            ))
        })
        .clone()
}

/// Column indexes used by the exporter and the verifier.
pub mod col {
    use std::sync::OnceLock;

    fn index(cell: &OnceLock<usize>, name: &str) -> usize {
        *cell.get_or_init(|| stele_store::columns::archived_index(name))
    }

    pub fn occurred_at() -> usize {
        static I: OnceLock<usize> = OnceLock::new();
        index(&I, "occurred_at")
    }

    pub fn event_hash() -> usize {
        static I: OnceLock<usize> = OnceLock::new();
        index(&I, "event_hash")
    }

    pub fn actor_id() -> usize {
        static I: OnceLock<usize> = OnceLock::new();
        index(&I, "actor_id")
    }

    pub fn leaf_index() -> usize {
        static I: OnceLock<usize> = OnceLock::new();
        index(&I, "leaf_index")
    }
}

/// The Glue/Hive type of an Arrow type, for the types this schema uses.
/// `None` for a type Glue cannot be told about (a programming error caught by
/// the unit test below, never by input).
pub fn glue_type(t: &DataType) -> Option<&'static str> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 => "string",
        DataType::Timestamp(_, _) => "timestamp",
        DataType::Int32 => "int",
        DataType::Int64 => "bigint",
        DataType::Int16 => "smallint",
        DataType::Boolean => "boolean",
        DataType::Float64 => "double",
        DataType::Date32 => "date",
        _ => return None,
    })
}

/// `{"columns":[{"name","glue_type"}…], "partition_keys":[…], "layout":"…"}`.
pub fn describe() -> Value {
    let columns: Vec<Value> = schema()
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "glue_type": glue_type(f.data_type()).unwrap_or("unsupported")}))
        .collect();
    let keys: Vec<Value> = PARTITION_KEYS
        .iter()
        .map(|k| json!({"name": k, "glue_type": "string"}))
        .collect();
    json!({"columns": columns, "partition_keys": keys, "layout": LAYOUT})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_has_a_glue_type_and_partition_keys_are_not_columns() {
        for f in schema().fields() {
            assert!(glue_type(f.data_type()).is_some(), "{}", f.name());
            assert!(!PARTITION_KEYS.contains(&f.name().as_str()));
        }
    }

    #[test]
    fn description_follows_the_agreed_column_order() {
        let d = describe();
        let names: Vec<&str> = d["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 29);
        assert_eq!(names[0], "event_id");
        assert_eq!(names[col::occurred_at()], "occurred_at");
        assert_eq!(names[col::event_hash()], "event_hash");
        assert_eq!(names[27], "kinesis_seq");
        assert_eq!(names[28], "leaf_index");
        assert_eq!(d["columns"][28]["glue_type"], "bigint");
        assert_eq!(d["columns"][1]["glue_type"], "timestamp");
        assert_eq!(d["columns"][24]["glue_type"], "int");
        assert_eq!(d["layout"], "tenant_id=${tenant_id}/dt=${dt}");
        assert_eq!(d["partition_keys"][1]["name"], "dt");
    }
}
