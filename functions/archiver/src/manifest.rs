//! The per-day manifest, `<prefix>/_manifests/dt=<YYYY-MM-DD>.json`: what was
//! archived (files, rows, bytes, SHA-256 per file, time range), a Merkle root
//! of the event hashes per tenant, and the SHA-256 of the previous manifest so
//! the manifests form a chain (as CloudTrail's digest files do).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::export::TenantArchive;

pub const MERKLE_SCHEME: &str =
    "RFC 6962 Merkle tree, SHA-256, leaves = event_hash bytes of one tenant in (occurred_at, event_id) order";

/// The scheme of a supplemented manifest's tenant roots: the files are one
/// sorted run each (the day's first export, then each supplement).
pub const MERKLE_SCHEME_SUPPLEMENTED: &str =
    "RFC 6962 Merkle tree, SHA-256, leaves = event_hash bytes of one tenant's files in manifest order, each file in (occurred_at, event_id) order";

fn first_version() -> u32 {
    1
}

/// What one version of a day's manifest added to the previous one: the late
/// rows written as extra parts, per tenant (rows, Merkle root of these rows
/// alone, the new files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supplement {
    pub rows: u64,
    pub tenants: Vec<TenantArchive>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousManifest {
    pub key: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// The version of this day's manifest: 1 for the day's export, one more
    /// for each version after it (a re-export or a supplement).
    #[serde(default = "first_version")]
    pub version: u32,
    pub table: String,
    pub partition: String,
    pub dt: String,
    pub created_at: String,
    pub rows: u64,
    pub files: u32,
    pub bytes: u64,
    pub min_occurred_at: Option<String>,
    pub max_occurred_at: Option<String>,
    pub merkle_scheme: String,
    pub tenants: Vec<TenantArchive>,
    pub previous_manifest: Option<PreviousManifest>,
    /// The earlier manifest of this same day that this one replaces (the day
    /// was written again because rows landed after it was verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<PreviousManifest>,
    /// Set when this version adds late rows to the one it supersedes: `tenants`
    /// then lists every file of the day, the earlier ones first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplement: Option<Supplement>,
}

fn rfc3339_us(us: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_micros(us).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

impl Manifest {
    pub fn new(
        partition: &str,
        dt: chrono::NaiveDate,
        tenants: Vec<TenantArchive>,
        previous_manifest: Option<PreviousManifest>,
        now: DateTime<Utc>,
    ) -> Self {
        let files = tenants.iter().flat_map(|t| &t.files);
        let min = files.clone().filter_map(|f| f.min_occurred_at_us).min();
        let max = files.clone().filter_map(|f| f.max_occurred_at_us).max();
        Self {
            format_version: 1,
            version: 1,
            table: stele_store::partitions::PARENT_TABLE.to_string(),
            partition: partition.to_string(),
            dt: dt.format("%Y-%m-%d").to_string(),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            rows: tenants.iter().map(|t| t.rows).sum(),
            files: files.clone().count() as u32,
            bytes: files.map(|f| f.bytes).sum(),
            min_occurred_at: min.and_then(rfc3339_us),
            max_occurred_at: max.and_then(rfc3339_us),
            merkle_scheme: MERKLE_SCHEME.to_string(),
            tenants,
            previous_manifest,
            supersedes: None,
            supplement: None,
        }
    }

    /// The same manifest, naming the version of this day it replaces.
    pub fn superseding(mut self, earlier: Option<PreviousManifest>, version: u32) -> Self {
        self.supersedes = earlier;
        self.version = version;
        self
    }

    /// The same manifest, as a supplement: `supplement` is what it adds.
    pub fn supplementing(mut self, supplement: Supplement) -> Self {
        self.merkle_scheme = MERKLE_SCHEME_SUPPLEMENTED.to_string();
        self.supplement = Some(supplement);
        self
    }

    /// The exact bytes stored in S3 and their SHA-256 (hex).
    pub fn to_bytes(&self) -> (Vec<u8>, String) {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        let sha = hex::encode(Sha256::digest(&bytes));
        (bytes, sha)
    }
}
