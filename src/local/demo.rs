//! Demo traffic and live progress for `stele dev --demo`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::esm::MappingStats;
use super::http;

/// What the demo sender saw at the API.
#[derive(Debug, Default)]
pub struct SenderTotals {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub unavailable: AtomicU64,
}

/// What the batch-writer reported, summed over batches.
#[derive(Debug, Default)]
pub struct WriterTotals {
    pub inserted: AtomicU64,
    pub duplicates: AtomicU64,
    pub poison: AtomicU64,
}

impl WriterTotals {
    pub fn add(&self, report: &stele_batch_writer::BatchReport) {
        self.inserted.fetch_add(report.inserted, Ordering::Relaxed);
        self.duplicates.fetch_add(report.duplicates, Ordering::Relaxed);
        self.poison.fetch_add(report.poison, Ordering::Relaxed);
    }
}

/// What the archiver timer did.
#[derive(Debug, Default)]
pub struct ArchiveTotals {
    pub partitions: AtomicU64,
    pub rows: AtomicU64,
    /// Late rows added to days already archived, and how many supplements that took.
    pub supplements: AtomicU64,
    pub supplement_rows: AtomicU64,
}

/// Run the archiver every `every` until stopped (the EventBridge schedule's stand-in).
pub async fn archive_periodically(
    archiver: stele_archiver::PgArchiver<stele_archiver::S3Store>,
    every: Duration,
    totals: Arc<ArchiveTotals>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if tokio::time::timeout(every, stop.changed()).await.is_ok() || *stop.borrow() {
            return;
        }
        // A run may use the whole interval beyond the archiver's own safety margin.
        let budget = archiver.config().min_remaining + every.max(Duration::from_secs(60));
        let report = archiver.run(Utc::now(), std::time::Instant::now() + budget).await;
        for partition in report.archived.iter().filter(|p| !p.dry_run) {
            if partition.supplemented > 0 {
                totals.supplements.fetch_add(1, Ordering::Relaxed);
                totals
                    .supplement_rows
                    .fetch_add(partition.supplemented, Ordering::Relaxed);
                eprintln!(
                    "archiver: {} ← {} late rows as a supplement ({})",
                    partition.partition,
                    partition.supplemented,
                    partition.manifest_key.as_deref().unwrap_or("no manifest")
                );
                continue;
            }
            totals.partitions.fetch_add(1, Ordering::Relaxed);
            totals.rows.fetch_add(partition.rows, Ordering::Relaxed);
            eprintln!(
                "archiver: {} → {} rows in {} files ({})",
                partition.partition,
                partition.rows,
                partition.files,
                partition.manifest_key.as_deref().unwrap_or("no manifest")
            );
        }
        if let Some(error) = report.error {
            eprintln!("archiver: {error} (retried next run)");
        }
    }
}

/// What the checkpointer timer did.
#[derive(Debug, Default)]
pub struct CheckpointTotals {
    pub signed: AtomicU64,
    pub published: AtomicU64,
    pub refused: AtomicU64,
}

/// Run the checkpointer every `every` until stopped (its schedule's stand-in).
pub async fn checkpoint_periodically(
    checkpointer: stele_checkpointer::Checkpointer<stele_archiver::S3Store>,
    store: stele_store::StoreConfig,
    every: Duration,
    totals: Arc<CheckpointTotals>,
    mut stop: watch::Receiver<bool>,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        if tokio::time::timeout(every, stop.changed()).await.is_ok() || *stop.borrow() {
            return;
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            match stele_store::connect(&store).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    eprintln!("checkpointer: {e} (retried next run)");
                    continue;
                }
            }
        }
        let Some(c) = client.as_ref() else { continue };
        let report = checkpointer.run(c).await;
        totals.signed.fetch_add(report.signed, Ordering::Relaxed);
        totals.published.fetch_add(report.published, Ordering::Relaxed);
        totals.refused.fetch_add(report.refused.len() as u64, Ordering::Relaxed);
        for r in &report.refused {
            eprintln!(
                "checkpointer: REFUSED tenant {} at size {}: {}",
                r.tenant_id, r.size, r.reason
            );
        }
        if let Some(error) = report.error {
            eprintln!("checkpointer: {error} (retried next run)");
        }
    }
}

const ACTIONS: [(&str, &str, &str); 8] = [
    ("security", "user.login", "success"),
    ("security", "user.login", "failure"),
    ("security", "mfa.challenge", "success"),
    ("audit", "role.grant", "success"),
    ("audit", "permission.revoke", "success"),
    ("audit", "export.create", "success"),
    ("application", "report.generate", "error"),
    ("audit", "document.delete", "denied"),
];

/// One realistic event; `n` varies the actor, action and resource. One event in
/// ten happened two days ago (a late batch from an offline agent), so that an
/// archiver with a short retention has something to archive in a demo.
pub fn demo_event(n: u64) -> Value {
    let (category, action, outcome) = ACTIONS[(n % ACTIONS.len() as u64) as usize];
    let occurred_at = if n.is_multiple_of(10) {
        Utc::now() - chrono::TimeDelta::days(2)
    } else {
        Utc::now()
    };
    json!({
        "occurred_at": occurred_at.to_rfc3339(),
        "category": category,
        "action": action,
        "outcome": outcome,
        "actor": {
            "id": format!("user-{}", n % 37),
            "type": "user",
            "ip": format!("203.0.113.{}", n % 250 + 1),
            "user_agent": "Mozilla/5.0 (stele demo)"
        },
        "resource": {"type": "document", "id": format!("doc-{}", n % 101)},
        "metadata": {"request_id": format!("req-{n}"), "plan": "enterprise"},
        "source": {"service": "demo-app", "version": "1.4.2", "region": "us-east-1"}
    })
}

/// Post batches of demo events round-robin over the tenants' tokens until stopped.
pub async fn send_traffic(
    addr: SocketAddr,
    tokens: Vec<String>,
    totals: Arc<SenderTotals>,
    mut stop: watch::Receiver<bool>,
) {
    let mut n = 0u64;
    while !*stop.borrow() {
        for token in &tokens {
            let events: Vec<Value> = (0..20).map(|i| demo_event(n + i)).collect();
            n += 20;
            let body = json!({ "events": events }).to_string();
            match http::post_json(addr, "/v1/events", Some(token), body.as_bytes()).await {
                Ok(r) if r.status == 202 => totals.accepted.fetch_add(20, Ordering::Relaxed),
                Ok(r) if r.status == 503 => totals.unavailable.fetch_add(20, Ordering::Relaxed),
                Ok(_) | Err(_) => totals.refused.fetch_add(20, Ordering::Relaxed),
            };
        }
        let _ = tokio::time::timeout(Duration::from_millis(250), stop.changed()).await;
    }
}

/// Print one progress line every two seconds until stopped.
pub async fn report_progress(
    sent: Arc<SenderTotals>,
    written: Arc<WriterTotals>,
    mapping: Arc<MappingStats>,
    archived: Arc<ArchiveTotals>,
    checkpoints: Arc<CheckpointTotals>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stopping = tokio::time::timeout(Duration::from_secs(2), stop.changed())
            .await
            .is_ok();
        eprintln!(
            "progress: demo accepted {} | written {} | duplicates {} | dead letters {} | redeliveries {} | lag {} ms | archived {} rows in {} partitions, {} late rows in {} supplements | checkpoints signed {}",
            sent.accepted.load(Ordering::Relaxed),
            written.inserted.load(Ordering::Relaxed),
            written.duplicates.load(Ordering::Relaxed),
            written.poison.load(Ordering::Relaxed),
            mapping.retries.load(Ordering::Relaxed),
            mapping.lag_ms.load(Ordering::Relaxed),
            archived.rows.load(Ordering::Relaxed),
            archived.partitions.load(Ordering::Relaxed),
            archived.supplement_rows.load(Ordering::Relaxed),
            archived.supplements.load(Ordering::Relaxed),
            checkpoints.signed.load(Ordering::Relaxed),
        );
        if stopping || *stop.borrow() {
            return;
        }
    }
}
