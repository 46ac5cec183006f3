//! One checkpointer run: publish what an earlier run signed, then check, sign,
//! record and publish every grown head.

use bytes::Bytes;
use serde::Serialize;
use stele_archiver::ArchiveStore;
use stele_store::{CheckpointInsert, LogHead, PgLog, StoredCheckpoint};
use stele_tlog::{publish, tile, Checkpoint};

use crate::signer::LogSigner;
use crate::Error;

/// A tenant whose head the checkpointer refused to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub tenant_id: String,
    /// The head's size (or the conflicting checkpoint's).
    pub size: u64,
    pub reason: String,
}

/// What a run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RunReport {
    /// Tenants whose head grew and got a new checkpoint.
    pub signed: u64,
    /// Checkpoints written to the bucket (new ones and ones an earlier run left unpublished).
    pub published: u64,
    /// Tiles written to the bucket.
    pub tiles: u64,
    /// Heads refused (rewritten log, rollback, fork): nothing was signed for them.
    pub refused: Vec<Refusal>,
    /// Another run held the lock: this one did nothing.
    pub skipped: bool,
    /// An error that stopped the run (database, bucket, signer).
    pub error: Option<String>,
}

impl RunReport {
    /// A run is healthy when it refused nothing and nothing stopped it.
    pub fn ok(&self) -> bool {
        self.refused.is_empty() && self.error.is_none()
    }
}

/// Signs and publishes checkpoints. Holds the signer and the bucket; the database
/// client is given per run.
pub struct Checkpointer<S> {
    store: S,
    signer: LogSigner,
    prefix: String,
    origin: String,
    /// `log.vkey` is known to be in the bucket (checked once per process).
    vkey_published: std::sync::atomic::AtomicBool,
}

impl<S: ArchiveStore> Checkpointer<S> {
    /// `origin` is the deployment's origin; each tenant's is
    /// [`publish::tenant_origin`]`(origin, tenant)`.
    pub fn new(store: S, signer: LogSigner, prefix: impl Into<String>, origin: impl Into<String>) -> Self {
        Checkpointer {
            store,
            signer,
            prefix: prefix.into(),
            origin: origin.into(),
            vkey_published: Default::default(),
        }
    }

    /// The published verifier key.
    pub fn vkey(&self) -> String {
        self.signer.vkey()
    }

    /// One run. Never panics on a bad log: refusals and errors are in the report
    /// (and logged); [`RunReport::ok`] says whether the run was clean.
    pub async fn run(&self, client: &tokio_postgres::Client) -> RunReport {
        let mut report = RunReport::default();
        let log = PgLog::new(client);
        match log.try_lock_checkpointer().await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!("another checkpointer run holds the lock; skipping");
                report.skipped = true;
                return report;
            }
            Err(e) => {
                report.error = Some(e.to_string());
                return report;
            }
        }
        let result = self.run_locked(&log, &mut report).await;
        if let Err(e) = log.unlock_checkpointer().await {
            tracing::warn!(error = %e, "releasing the checkpointer lock");
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "checkpointer run failed");
            report.error = Some(e.to_string());
        }
        for r in &report.refused {
            tracing::error!(
                tenant = %r.tenant_id,
                size = r.size,
                reason = %r.reason,
                "REFUSED to sign a log head: the log is not consistent with what was signed before"
            );
        }
        report
    }

    async fn run_locked(&self, log: &PgLog<'_>, report: &mut RunReport) -> Result<(), Error> {
        // 1. What an earlier run signed and did not publish (a crash between the steps).
        // They are checked again: a row nobody signed, or one whose root is not the
        // log's, is refused, never published.
        for cp in log.unpublished_checkpoints().await? {
            if let Err(reason) = self.check_recorded(log, &cp).await? {
                report.refused.push(Refusal {
                    tenant_id: cp.tenant_id.clone(),
                    size: cp.size,
                    reason,
                });
                continue;
            }
            let previous = log.checkpoint_before(&cp.tenant_id, cp.size).await?;
            self.publish(log, &cp, previous.map_or(0, |p| p.size), report).await?;
        }
        // 2. Every head that grew.
        let latest = log.latest_checkpoints().await?;
        for head in log.heads().await? {
            let last = latest
                .binary_search_by(|c| c.tenant_id.as_str().cmp(&head.tenant_id))
                .ok()
                .map(|i| &latest[i]);
            if let Some(last) = last {
                if head.size == last.size && head.root == last.root {
                    continue; // no growth
                }
            }
            if let Err(reason) = self.check(log, &head, last).await? {
                report.refused.push(Refusal {
                    tenant_id: head.tenant_id.clone(),
                    size: head.size,
                    reason,
                });
                continue;
            }
            let checkpoint = Checkpoint::new(
                &publish::tenant_origin(&self.origin, &head.tenant_id),
                head.size,
                head.root,
            );
            let note = checkpoint.sign(&self.signer).await?;
            let stored = match log
                .insert_checkpoint(&head.tenant_id, head.size, &head.root, &note)
                .await?
            {
                CheckpointInsert::Inserted => {
                    report.signed += 1;
                    StoredCheckpoint {
                        tenant_id: head.tenant_id.clone(),
                        size: head.size,
                        root: head.root,
                        note,
                        published: false,
                    }
                }
                CheckpointInsert::Exists(existing) if existing.root != head.root => {
                    report.refused.push(Refusal {
                        tenant_id: head.tenant_id.clone(),
                        size: head.size,
                        reason: format!(
                            "fork: a checkpoint of size {} with root {} is recorded, the head has root {}",
                            existing.size, existing.root, head.root
                        ),
                    });
                    continue;
                }
                CheckpointInsert::Exists(existing) => existing,
            };
            if !stored.published {
                self.publish(log, &stored, last.map_or(0, |l| l.size), report).await?;
            }
        }
        Ok(())
    }

    /// Checks `head` before it is signed: `Ok(Err(reason))` refuses it.
    async fn check(
        &self,
        log: &PgLog<'_>,
        head: &LogHead,
        last: Option<&StoredCheckpoint>,
    ) -> Result<Result<(), String>, Error> {
        let tenant = head.tenant_id.as_str();
        // The tiles must reproduce the head's root.
        let from_tiles = match log.root_at(tenant, head.size).await {
            Ok(root) => root,
            Err(e) => return Ok(Err(format!("the tiles of size {} cannot be read: {e}", head.size))),
        };
        if from_tiles != head.root {
            return Ok(Err(format!(
                "the head's root {} is not the root of its tiles {from_tiles} (size {})",
                head.root, head.size
            )));
        }
        let Some(last) = last else { return Ok(Ok(())) };
        if head.size < last.size {
            return Ok(Err(format!(
                "rollback: the head has {} leaves, checkpoint {} was signed with {}",
                head.size, last.size, last.size
            )));
        }
        if head.size == last.size {
            return Ok(Err(format!(
                "fork: the head of size {} has root {}, the signed checkpoint has {}",
                head.size, head.root, last.root
            )));
        }
        // The signed tree must be a prefix of the head's.
        let proof = match log.consistency_proof(tenant, last.size, head.size).await {
            Ok(p) => p,
            Err(e) => {
                return Ok(Err(format!(
                    "no consistency proof from {} to {}: {e}",
                    last.size, head.size
                )))
            }
        };
        if let Err(e) = stele_tlog::verify_consistency(last.size, head.size, &proof, &last.root, &head.root) {
            return Ok(Err(format!(
                "the head (size {}) is not consistent with the signed checkpoint of size {}: {e}",
                head.size, last.size
            )));
        }
        Ok(Ok(()))
    }

    /// Checks a recorded, unpublished checkpoint before publishing it: its note is
    /// signed by this signer for this tenant's origin and says the row's size and root,
    /// and that root is the log's at that size.
    async fn check_recorded(&self, log: &PgLog<'_>, cp: &StoredCheckpoint) -> Result<Result<(), String>, Error> {
        let origin = publish::tenant_origin(&self.origin, &cp.tenant_id);
        let verifiers = stele_tlog::Verifiers::from_vkeys([self.vkey().as_str()])?;
        let opened = match stele_tlog::open_checkpoint(cp.note.as_bytes(), &verifiers, &origin) {
            Ok(o) => o.checkpoint,
            Err(e) => return Ok(Err(format!("recorded checkpoint {} does not verify: {e}", cp.size))),
        };
        if opened.size != cp.size || opened.root != cp.root {
            return Ok(Err(format!(
                "recorded checkpoint {} says size {} root {}, its row says root {}",
                cp.size, opened.size, opened.root, cp.root
            )));
        }
        match log.root_at(&cp.tenant_id, cp.size).await {
            Ok(root) if root == cp.root => Ok(Ok(())),
            Ok(root) => Ok(Err(format!(
                "fork: recorded checkpoint {} has root {}, the log's root at that size is {root}",
                cp.size, cp.root
            ))),
            Err(e) => Ok(Err(format!("the tiles of size {} cannot be read: {e}", cp.size))),
        }
    }

    /// Tiles new since `previous_size`, then the checkpoint, the latest pointer and the
    /// vkey; then marks the checkpoint published.
    async fn publish(
        &self,
        log: &PgLog<'_>,
        cp: &StoredCheckpoint,
        previous_size: u64,
        report: &mut RunReport,
    ) -> Result<(), Error> {
        let tenant = cp.tenant_id.as_str();
        let ids = tile::new_tiles(previous_size, cp.size);
        let data = log.tiles(tenant, &ids).await?;
        for (id, mut bytes) in ids.into_iter().zip(data) {
            let want = usize::from(id.width) * 32;
            if bytes.len() < want {
                return Err(Error::Log(stele_tlog::Error::ShortTile {
                    tile: id,
                    len: bytes.len(),
                }));
            }
            bytes.truncate(want);
            self.put(&publish::tile_key(&self.prefix, tenant, id), bytes).await?;
            report.tiles += 1;
        }
        let note = Bytes::from(cp.note.clone().into_bytes());
        self.put(&publish::checkpoint_key(&self.prefix, tenant, cp.size), note.clone())
            .await?;
        self.put(&publish::latest_checkpoint_key(&self.prefix, tenant), note)
            .await?;
        self.ensure_vkey().await?;
        log.mark_published(tenant, cp.size).await?;
        report.published += 1;
        tracing::info!(tenant, size = cp.size, root = %cp.root, "checkpoint published");
        Ok(())
    }

    async fn put(&self, key: &str, body: impl Into<Bytes>) -> Result<(), Error> {
        self.store
            .put(key, body.into())
            .await
            .map_err(|e| Error::Bucket(format!("writing {key}: {e}")))
    }

    /// Writes `log.vkey` if absent; refuses to go on if another key is published there.
    async fn ensure_vkey(&self) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        if self.vkey_published.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.check_vkey().await?;
        self.vkey_published.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn check_vkey(&self) -> Result<(), Error> {
        let key = publish::vkey_key(&self.prefix);
        let vkey = self.vkey();
        match self
            .store
            .get(&key)
            .await
            .map_err(|e| Error::Bucket(format!("reading {key}: {e}")))?
        {
            None => self.put(&key, format!("{vkey}\n").into_bytes()).await,
            Some(existing) if String::from_utf8_lossy(&existing).trim() == vkey => Ok(()),
            Some(existing) => Err(Error::Signer(format!(
                "{key} holds {}, the signer's key is {vkey}: checkpoints would not verify with the published key",
                String::from_utf8_lossy(&existing).trim()
            ))),
        }
    }
}
