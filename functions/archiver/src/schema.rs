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

/// The columns of every archive file, in order.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
            Arc::new(Schema::new(vec![
                s("event_id", false),
                Field::new("occurred_at", utc_micros(), false),
                Field::new("received_at", utc_micros(), false),
                s("category", false),
                s("action", false),
                s("outcome", false),
                s("actor_id", false),
                s("actor_type", false),
                s("actor_display", true),
                s("actor_ip", true),
                s("actor_user_agent", true),
                s("resource_type", true),
                s("resource_id", true),
                s("resource_display", true),
                s("changes", true),  // JSON text
                s("metadata", true), // JSON text
                s("correlation_id", true),
                s("causation_id", true),
                s("trace_parent", true),
                s("trace_state", true),
                s("source_service", false),
                s("source_version", true),
                s("source_host", true),
                s("source_region", true),
                Field::new("schema_version", DataType::Int32, false),
                s("event_hash", false), // lowercase hex of the 32-byte SHA-256
                s("kinesis_shard", true),
                s("kinesis_seq", true),
            ]))
        })
        .clone()
}

/// Column indexes used by the exporter and the verifier.
pub mod col {
    pub const EVENT_ID: usize = 0;
    pub const OCCURRED_AT: usize = 1;
    pub const EVENT_HASH: usize = 25;
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
        assert_eq!(names.len(), 28);
        assert_eq!(names[0], "event_id");
        assert_eq!(names[col::OCCURRED_AT], "occurred_at");
        assert_eq!(names[col::EVENT_HASH], "event_hash");
        assert_eq!(names[27], "kinesis_seq");
        assert_eq!(d["columns"][1]["glue_type"], "timestamp");
        assert_eq!(d["columns"][24]["glue_type"], "int");
        assert_eq!(d["layout"], "tenant_id=${tenant_id}/dt=${dt}");
        assert_eq!(d["partition_keys"][1]["name"], "dt");
    }
}
