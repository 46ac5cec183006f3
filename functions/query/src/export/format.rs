//! The two export formats. NDJSON is the exact form: one event per line, as
//! `GET /v1/events` serves it. CSV is for spreadsheets: one column per stored column
//! (the table's, in its order), JSON members (`changes`, `metadata`) as JSON text.

use serde_json::Value;
use stele_store::RowEvent;

use crate::events::event_json;

/// `format=ndjson` (default) or `format=csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

impl Format {
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "ndjson" => Some(Format::Ndjson),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }

    /// What the output starts with (the CSV header line).
    pub fn header(self) -> Vec<u8> {
        match self {
            Format::Ndjson => Vec::new(),
            Format::Csv => {
                let mut line = CSV_COLUMNS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(",");
                line.push_str("\r\n");
                line.into_bytes()
            }
        }
    }

    /// Appends one stored event to `out`.
    pub fn write(self, e: &RowEvent, out: &mut Vec<u8>) {
        self.write_json(&event_json(e), out)
    }

    /// Appends one event as the API serves it ([`event_json`]) to `out`.
    pub fn write_json(self, v: &Value, out: &mut Vec<u8>) {
        match self {
            Format::Ndjson => {
                // A `Value` always serialises.
                let _ = serde_json::to_writer(&mut *out, v);
                out.push(b'\n');
            }
            Format::Csv => {
                for (i, (_, path)) in CSV_COLUMNS.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let cell = path.iter().try_fold(v, |v, k| v.get(k));
                    match cell {
                        None | Some(Value::Null) => {}
                        Some(Value::String(s)) => csv_field(s, out),
                        Some(Value::Number(n)) => out.extend_from_slice(n.to_string().as_bytes()),
                        Some(other) => csv_field(&other.to_string(), out),
                    }
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// The CSV columns: the stored columns' names (as in PostgreSQL and the archive, but
/// for the stream position) and where each is in the event's JSON.
pub const CSV_COLUMNS: [(&str, &[&str]); 28] = [
    ("tenant_id", &["tenant_id"]),
    ("event_id", &["event_id"]),
    ("occurred_at", &["occurred_at"]),
    ("received_at", &["received_at"]),
    ("category", &["category"]),
    ("action", &["action"]),
    ("outcome", &["outcome"]),
    ("actor_id", &["actor", "id"]),
    ("actor_type", &["actor", "type"]),
    ("actor_display", &["actor", "display"]),
    ("actor_ip", &["actor", "ip"]),
    ("actor_user_agent", &["actor", "user_agent"]),
    ("resource_type", &["resource", "type"]),
    ("resource_id", &["resource", "id"]),
    ("resource_display", &["resource", "display"]),
    ("changes", &["changes"]),
    ("metadata", &["metadata"]),
    ("correlation_id", &["correlation_id"]),
    ("causation_id", &["causation_id"]),
    ("trace_parent", &["trace", "traceparent"]),
    ("trace_state", &["trace", "tracestate"]),
    ("source_service", &["source", "service"]),
    ("source_version", &["source", "version"]),
    ("source_host", &["source", "host"]),
    ("source_region", &["source", "region"]),
    ("schema_version", &["schema_version"]),
    ("event_hash", &["event_hash"]),
    ("leaf_index", &["leaf_index"]),
];

/// One CSV field (RFC 4180): quoted when it holds a separator, a quote or a line
/// break. A field a spreadsheet would run as a formula (starting `=`, `+`, `-`, `@`,
/// tab or CR: OWASP's CSV injection list) gets a leading `'`, since events carry
/// text their senders chose; NDJSON is the export that keeps every byte.
fn csv_field(s: &str, out: &mut Vec<u8>) {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || s.contains([',', '"', '\r', '\n']);
    if quote {
        out.push(b'"');
    }
    if formula {
        out.push(b'\'');
    }
    for b in s.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    if quote {
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(s: &str) -> String {
        let mut out = Vec::new();
        csv_field(s, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-1+1"), "\"'-1+1\"");
    }

    #[test]
    fn csv_columns_follow_the_table_without_the_stream_position() {
        let table: Vec<&str> = stele_store::columns::EVENT_COLUMNS
            .iter()
            .map(|c| c.name)
            .filter(|n| !n.starts_with("kinesis_"))
            .collect();
        let ours: Vec<&str> = CSV_COLUMNS.iter().map(|(n, _)| *n).collect();
        assert_eq!(ours, table);
    }
}
