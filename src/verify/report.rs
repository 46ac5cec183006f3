//! What `stele verify` found: counts, and one finding per failure naming the tenant,
//! day, file and event where it applies.

use std::fmt;

use chrono::NaiveDate;

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub tenant: Option<String>,
    pub day: Option<NaiveDate>,
    pub file: Option<String>,
    pub event_id: Option<String>,
    pub what: String,
}

impl Finding {
    pub fn new(what: impl Into<String>) -> Self {
        Finding {
            tenant: None,
            day: None,
            file: None,
            event_id: None,
            what: what.into(),
        }
    }
    pub fn tenant(mut self, t: &str) -> Self {
        self.tenant = Some(t.to_string());
        self
    }
    pub fn day(mut self, d: NaiveDate) -> Self {
        self.day = Some(d);
        self
    }
    pub fn file(mut self, f: &str) -> Self {
        self.file = Some(f.to_string());
        self
    }
    pub fn event(mut self, e: String) -> Self {
        if !e.is_empty() {
            self.event_id = Some(e);
        }
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(t) = &self.tenant {
            parts.push(format!("tenant {t}"));
        }
        if let Some(d) = &self.day {
            parts.push(format!("day {d}"));
        }
        if let Some(x) = &self.file {
            parts.push(format!("file {x}"));
        }
        if let Some(e) = &self.event_id {
            parts.push(format!("event {e}"));
        }
        if parts.is_empty() {
            write!(f, "{}", self.what)
        } else {
            write!(f, "{}: {}", parts.join(", "), self.what)
        }
    }
}

/// Counts of what was checked, and the failures.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub manifests: u64,
    pub files: u64,
    pub archived_rows: u64,
    pub hot_rows: u64,
    pub rows_without_leaf: u64,
    pub checkpoints: u64,
    pub tenants: u64,
    pub leaves_checked: u64,
    /// Leaves a checkpoint covers whose row was not read (hot rows, without `--database`).
    pub leaves_unread: u64,
    /// Tenant-days whose manifest names the signed checkpoint covering its rows.
    pub anchored: u64,
    /// Tenant-days archived before any checkpoint covered their rows (their leaves
    /// are still proven, against the newest checkpoint).
    pub unanchored: u64,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn fail(&mut self, f: Finding) {
        self.findings.push(f);
    }

    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        format!(
            "{} manifests, {} files, {} archived rows, {} hot rows checked; {} tenant-days anchored to a named checkpoint{}; {} tenants' logs, {} checkpoints, {} leaves matched{}{}; {}",
            self.manifests,
            self.files,
            self.archived_rows,
            self.hot_rows,
            self.anchored,
            if self.unanchored > 0 {
                format!(" ({} archived before a checkpoint covered them)", self.unanchored)
            } else {
                String::new()
            },
            self.tenants,
            self.checkpoints,
            self.leaves_checked,
            if self.leaves_unread > 0 {
                format!(", {} leaves not read (hot rows: pass --database-url to check them)", self.leaves_unread)
            } else {
                String::new()
            },
            if self.rows_without_leaf > 0 {
                format!(", {} rows stored before the log (no leaf)", self.rows_without_leaf)
            } else {
                String::new()
            },
            if self.ok() {
                "OK".to_string()
            } else {
                format!("{} FAILURES", self.findings.len())
            }
        )
    }
}
