//! The columns of `audit_events`, listed once. The insert (COPY and UNNEST),
//! the archive export query and the archive's Arrow schema are all derived
//! from [`EVENT_COLUMNS`], so a column added here reaches every one of them.

use std::sync::OnceLock;

use tokio_postgres::types::Type;

/// The Postgres type of a column, as declared in the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    Text,
    Uuid,
    Timestamptz,
    Jsonb,
    SmallInt,
    BigInt,
    Bytea,
}

impl PgType {
    pub fn pg(self) -> Type {
        match self {
            PgType::Text => Type::TEXT,
            PgType::Uuid => Type::UUID,
            PgType::Timestamptz => Type::TIMESTAMPTZ,
            PgType::Jsonb => Type::JSONB,
            PgType::SmallInt => Type::INT2,
            PgType::BigInt => Type::INT8,
            PgType::Bytea => Type::BYTEA,
        }
    }

    /// How the archive stores a value of this type: timestamps as UTC
    /// microseconds, `smallint` widened to `int` (Athena's smallest common
    /// integer), everything else as text (uuid in its canonical form, JSON as
    /// its Postgres text, the hash as lowercase hex).
    pub fn archived_as(self) -> ArchivedAs {
        match self {
            PgType::Timestamptz => ArchivedAs::TimestampMicros,
            PgType::SmallInt => ArchivedAs::Int32,
            PgType::BigInt => ArchivedAs::Int64,
            PgType::Text | PgType::Uuid | PgType::Jsonb | PgType::Bytea => ArchivedAs::Text,
        }
    }
}

/// The value kind of a column in the archive (and in the export stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchivedAs {
    Text,
    TimestampMicros,
    Int32,
    Int64,
}

impl ArchivedAs {
    /// The type the export's binary COPY decodes.
    pub fn copy_type(self) -> Type {
        match self {
            ArchivedAs::Text => Type::TEXT,
            ArchivedAs::TimestampMicros => Type::TIMESTAMPTZ,
            ArchivedAs::Int32 => Type::INT4,
            ArchivedAs::Int64 => Type::INT8,
        }
    }
}

/// One column of `audit_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub pg: PgType,
    pub nullable: bool,
}

impl Column {
    /// The export's SQL expression producing [`PgType::archived_as`].
    pub fn export_expr(&self) -> String {
        match self.pg {
            PgType::Uuid | PgType::Jsonb => format!("{}::text", self.name),
            PgType::Bytea => format!("encode({}, 'hex')", self.name),
            PgType::SmallInt => format!("{}::int4", self.name),
            PgType::Text | PgType::Timestamptz | PgType::BigInt => self.name.to_string(),
        }
    }
}

const fn col(name: &'static str, pg: PgType, nullable: bool) -> Column {
    Column { name, pg, nullable }
}

use PgType::{BigInt, Bytea, Jsonb, SmallInt, Text, Timestamptz, Uuid};

/// Every column of `audit_events`, in table order.
pub const EVENT_COLUMNS: [Column; 30] = [
    col("tenant_id", Text, false),
    col("event_id", Uuid, false),
    col("occurred_at", Timestamptz, false),
    col("received_at", Timestamptz, false),
    col("category", Text, false),
    col("action", Text, false),
    col("outcome", Text, false),
    col("actor_id", Text, false),
    col("actor_type", Text, false),
    col("actor_display", Text, true),
    col("actor_ip", Text, true),
    col("actor_user_agent", Text, true),
    col("resource_type", Text, true),
    col("resource_id", Text, true),
    col("resource_display", Text, true),
    col("changes", Jsonb, true),
    col("metadata", Jsonb, true),
    col("correlation_id", Text, true),
    col("causation_id", Text, true),
    col("trace_parent", Text, true),
    col("trace_state", Text, true),
    col("source_service", Text, false),
    col("source_version", Text, true),
    col("source_host", Text, true),
    col("source_region", Text, true),
    col("schema_version", SmallInt, false),
    col("event_hash", Bytea, false),
    col("kinesis_shard", Text, true),
    col("kinesis_seq", Text, true),
    // The event's leaf in its tenant's verifiable log (migration 0005; NULL before it).
    col("leaf_index", BigInt, true),
];

/// The column that is a Hive partition key in the archive (the path, not the file).
pub const TENANT_COLUMN: &str = "tenant_id";

/// The columns stored inside archive files: all but the tenant, in table order.
pub fn archived_columns() -> impl Iterator<Item = &'static Column> {
    EVENT_COLUMNS.iter().filter(|c| c.name != TENANT_COLUMN)
}

/// Position of `name` among [`archived_columns`]. Panics only on a name that
/// is not a column, which is a programming error caught by unit tests.
pub fn archived_index(name: &str) -> usize {
    archived_columns()
        .position(|c| c.name == name)
        .unwrap_or_else(|| panic!("`{name}` is not an archived column"))
}

/// `tenant_id, event_id, …` in table order.
pub fn column_list() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| EVENT_COLUMNS.iter().map(|c| c.name).collect::<Vec<_>>().join(", "))
}

/// The Postgres types of [`EVENT_COLUMNS`], in order (for binary COPY in).
pub fn column_types() -> &'static [Type] {
    static TYPES: OnceLock<Vec<Type>> = OnceLock::new();
    TYPES.get_or_init(|| EVENT_COLUMNS.iter().map(|c| c.pg.pg()).collect())
}

/// The export's column types: the tenant, then [`archived_columns`] as archived.
pub fn export_copy_types() -> &'static [Type] {
    static TYPES: OnceLock<Vec<Type>> = OnceLock::new();
    TYPES.get_or_init(|| {
        std::iter::once(Type::TEXT)
            .chain(archived_columns().map(|c| c.pg.archived_as().copy_type()))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_matches_the_migration() {
        let migration = include_str!("../migrations/0001_audit_events.sql");
        let table = &migration[migration.find("CREATE TABLE audit_events").unwrap()..];
        let table = &table[..table.find("PRIMARY KEY").unwrap()];
        let mut declared: Vec<(&str, &str, bool)> = table
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let name = words.next()?;
                let ty = words.next()?.trim_end_matches(',');
                Some((name, ty, !l.contains("NOT NULL")))
            })
            .collect();
        // Columns added later, in migration order.
        for later in [include_str!("../migrations/0005_tlog.sql")] {
            for l in later.lines() {
                if let Some(rest) = l.strip_prefix("ALTER TABLE audit_events ADD COLUMN ") {
                    let mut words = rest.split_whitespace();
                    let (name, ty) = (words.next().unwrap(), words.next().unwrap().trim_end_matches(';'));
                    declared.push((name, ty, !l.contains("NOT NULL")));
                }
            }
        }
        let ours: Vec<(&str, &str, bool)> = EVENT_COLUMNS
            .iter()
            .map(|c| {
                let ty = match c.pg {
                    Text => "text",
                    Uuid => "uuid",
                    Timestamptz => "timestamptz",
                    Jsonb => "jsonb",
                    SmallInt => "smallint",
                    BigInt => "bigint",
                    Bytea => "bytea",
                };
                (c.name, ty, c.nullable)
            })
            .collect();
        assert_eq!(declared, ours);
    }

    #[test]
    fn archived_columns_leave_out_the_tenant_and_keep_the_order() {
        assert_eq!(archived_columns().count(), 29);
        assert_eq!(archived_index("event_id"), 0);
        assert_eq!(archived_index("event_hash"), 25);
        assert_eq!(archived_index("leaf_index"), 28);
        assert_eq!(export_copy_types().len(), 30);
        assert_eq!(EVENT_COLUMNS[26].export_expr(), "encode(event_hash, 'hex')");
    }
}
