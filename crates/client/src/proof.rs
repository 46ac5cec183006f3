//! Proofs for tenants: the answers of `GET /v1/events/{id}/proof` and
//! `GET /v1/log/consistency`, and their offline checks.
//!
//! [`verify_event_proof`] needs no network: given what the tenant knows of its
//! event (the [`ProofSubject`]: tenant, `event_hash` and `received_at` from the
//! ingest receipt), the proof response, and the log's trusted verifier key and
//! origin ([`TrustedLog`]), it checks
//! 1. the proof is about that event (same tenant, hash and receive time);
//! 2. the leaf hash, rebuilt from the subject, is the one proven;
//! 3. the checkpoint note is signed by the trusted key for the tenant's origin;
//! 4. the inclusion proof leads from the leaf to the signed root.
//!
//! Each failure is its own [`ProofError`] variant, naming what differs.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use stele_tlog::{Hash, TlogProof, Verifiers};
use uuid::Uuid;

/// A signed checkpoint as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckpointInfo {
    pub origin: String,
    pub size: u64,
    /// The root hash, standard base64.
    pub root: String,
    /// The signed note (C2SP tlog-checkpoint), verbatim.
    pub note: String,
}

/// The answer of `GET /v1/events/{event_id}/proof`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventProof {
    pub tenant_id: String,
    pub event_id: Uuid,
    /// SHA-256 of the event's canonical form (hex), as stored.
    pub event_hash: String,
    /// When the API received it (RFC 3339, microseconds), as stored.
    pub received_at: String,
    pub leaf_index: u64,
    /// The RFC 6962 leaf hash (base64).
    pub leaf_hash: String,
    pub tree_size: u64,
    /// The inclusion proof (base64 hashes), also inside `tlog_proof`.
    pub inclusion_proof: Vec<String>,
    pub checkpoint: CheckpointInfo,
    /// The C2SP tlog-proof text: index, proof and signed checkpoint.
    pub tlog_proof: String,
}

/// The answer of `GET /v1/log/consistency`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConsistencyProof {
    pub tenant_id: String,
    pub from: CheckpointInfo,
    pub to: CheckpointInfo,
    /// Base64 hashes.
    pub consistency_proof: Vec<String>,
}

/// What the tenant knows of its event independently of the proof: the ingest
/// receipt (`event_hash`, `received_at`) and its own tenant id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofSubject {
    pub tenant_id: String,
    pub event_hash: [u8; 32],
    pub received_at: DateTime<Utc>,
}

impl ProofSubject {
    /// From the receipt's text fields: `event_hash` in hex, `received_at` RFC 3339.
    pub fn new(tenant_id: &str, event_hash_hex: &str, received_at: &str) -> Result<Self, ProofError> {
        Ok(Self {
            tenant_id: tenant_id.to_owned(),
            event_hash: parse_event_hash(event_hash_hex)?,
            received_at: parse_time(received_at)?,
        })
    }
}

/// The log a tenant trusts: the deployment's verifier key (C2SP vkey, published
/// next to the checkpoints and as a Terraform output) and the tenant's origin.
pub struct TrustedLog {
    verifiers: Verifiers,
    origin: String,
}

impl std::fmt::Debug for TrustedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedLog")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl TrustedLog {
    /// Trust `vkey` for checkpoints of the log `origin` (the full tenant origin).
    pub fn new(vkey: &str, origin: &str) -> Result<Self, ProofError> {
        Ok(Self {
            verifiers: Verifiers::from_vkeys([vkey]).map_err(ProofError::Key)?,
            origin: origin.to_owned(),
        })
    }

    /// Trust `vkey` for `tenant`'s log of the deployment `deployment_origin`
    /// (`STELE_LOG_ORIGIN`, e.g. `audit.example.com/prod`).
    pub fn for_tenant(vkey: &str, deployment_origin: &str, tenant_id: &str) -> Result<Self, ProofError> {
        Self::new(vkey, &stele_tlog::publish::tenant_origin(deployment_origin, tenant_id))
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// What a verified proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub root: Hash,
}

/// Why a proof does not hold. Each variant names what differs.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("the trusted verifier key is not usable: {0}")]
    Key(#[source] stele_tlog::Error),
    #[error("the proof response is malformed: {0}")]
    Malformed(String),
    #[error("the proof is about another event: its {field} is {proof}, the receipt's is {receipt}")]
    SubjectMismatch {
        field: &'static str,
        receipt: String,
        proof: String,
    },
    #[error("the leaf hash rebuilt from the receipt is {computed}, the proof's leaf hash is {served}")]
    LeafMismatch { computed: String, served: String },
    #[error("the checkpoint is not a valid signed checkpoint of the trusted log: {0}")]
    Signature(#[source] stele_tlog::Error),
    #[error("the inclusion proof of leaf {index} does not lead to the signed root of tree size {size}: {source}")]
    Inclusion {
        index: u64,
        size: u64,
        #[source]
        source: stele_tlog::Error,
    },
    #[error("checkpoint {to} does not extend checkpoint {from}: {source}")]
    Consistency {
        from: u64,
        to: u64,
        #[source]
        source: stele_tlog::Error,
    },
}

fn malformed(what: impl Into<String>) -> ProofError {
    ProofError::Malformed(what.into())
}

fn parse_event_hash(hex_hash: &str) -> Result<[u8; 32], ProofError> {
    let bytes = stele_core::EventHash::from_hex(hex_hash)
        .ok_or_else(|| malformed(format!("event_hash `{hex_hash}` is not 64 hex digits")))?;
    Ok(bytes.0)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, ProofError> {
    stele_core::event::timestamp::parse(text)
        .ok_or_else(|| malformed(format!("received_at `{text}` is not an RFC 3339 time")))
}

fn parse_hash(field: &str, b64: &str) -> Result<Hash, ProofError> {
    Hash::from_base64(b64).map_err(|e| malformed(format!("{field}: {e}")))
}

/// The offline check of an event's inclusion proof (see the module doc).
pub fn verify_event_proof(
    subject: &ProofSubject,
    proof: &EventProof,
    trusted: &TrustedLog,
) -> Result<Verified, ProofError> {
    let mismatch = |field, receipt: String, proof: String| ProofError::SubjectMismatch { field, receipt, proof };
    if proof.tenant_id != subject.tenant_id {
        return Err(mismatch(
            "tenant_id",
            subject.tenant_id.clone(),
            proof.tenant_id.clone(),
        ));
    }
    let served_hash = parse_event_hash(&proof.event_hash)?;
    if served_hash != subject.event_hash {
        return Err(mismatch(
            "event_hash",
            hex::encode(subject.event_hash),
            proof.event_hash.clone(),
        ));
    }
    let served_time = parse_time(&proof.received_at)?;
    if served_time != subject.received_at {
        return Err(mismatch(
            "received_at",
            stele_core::event::timestamp::format(&subject.received_at),
            proof.received_at.clone(),
        ));
    }
    let leaf = stele_tlog::event_leaf_hash(
        &subject.tenant_id,
        &subject.event_hash,
        subject.received_at.timestamp_micros(),
    )
    .map_err(|e| malformed(e.to_string()))?;
    let served_leaf = parse_hash("leaf_hash", &proof.leaf_hash)?;
    if served_leaf != leaf {
        return Err(ProofError::LeafMismatch {
            computed: leaf.to_base64(),
            served: proof.leaf_hash.clone(),
        });
    }
    // The tlog-proof text is what is checked; the JSON fields must say the same.
    let tlog = TlogProof::parse(&proof.tlog_proof).map_err(|e| malformed(format!("tlog_proof: {e}")))?;
    if tlog.index != proof.leaf_index {
        return Err(malformed(format!(
            "tlog_proof is for index {}, leaf_index is {}",
            tlog.index, proof.leaf_index
        )));
    }
    if tlog.checkpoint != proof.checkpoint.note {
        return Err(malformed(
            "tlog_proof carries another checkpoint than `checkpoint.note`",
        ));
    }
    let listed: Vec<String> = tlog.proof.iter().map(Hash::to_base64).collect();
    if listed != proof.inclusion_proof {
        return Err(malformed("tlog_proof carries another proof than `inclusion_proof`"));
    }
    let signed = stele_tlog::open_checkpoint(tlog.checkpoint.as_bytes(), &trusted.verifiers, &trusted.origin)
        .map_err(ProofError::Signature)?;
    let cp = signed.checkpoint;
    stele_tlog::verify_inclusion(tlog.index, cp.size, &leaf, &tlog.proof, &cp.root).map_err(|source| {
        ProofError::Inclusion {
            index: tlog.index,
            size: cp.size,
            source,
        }
    })?;
    Ok(Verified {
        leaf_index: tlog.index,
        tree_size: cp.size,
        root: cp.root,
    })
}

/// The offline check of a consistency proof: both checkpoints are signed by the
/// trusted key for the trusted origin, and the newer extends the older.
pub fn verify_consistency_proof(proof: &ConsistencyProof, trusted: &TrustedLog) -> Result<(u64, u64), ProofError> {
    let open = |cp: &CheckpointInfo| {
        stele_tlog::open_checkpoint(cp.note.as_bytes(), &trusted.verifiers, &trusted.origin)
            .map(|s| s.checkpoint)
            .map_err(ProofError::Signature)
    };
    let old = open(&proof.from)?;
    let new = open(&proof.to)?;
    let hashes = proof
        .consistency_proof
        .iter()
        .map(|h| parse_hash("consistency_proof", h))
        .collect::<Result<Vec<_>, _>>()?;
    let failed = |source| ProofError::Consistency {
        from: old.size,
        to: new.size,
        source,
    };
    if old.size == new.size {
        if old.root != new.root || !hashes.is_empty() {
            return Err(failed(stele_tlog::Error::RootMismatch {
                computed: new.root,
                expected: old.root,
            }));
        }
    } else {
        stele_tlog::verify_consistency(old.size, new.size, &hashes, &old.root, &new.root).map_err(failed)?;
    }
    Ok((old.size, new.size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stele_tlog::{Checkpoint, Ed25519Signer, MemoryLog};

    const DEPLOYMENT: &str = "audit.example.com/test";

    struct Fixture {
        signer: Ed25519Signer,
        subject: ProofSubject,
        proof: EventProof,
        log: MemoryLog,
        leaves: Vec<Hash>,
    }

    fn subject(i: u8) -> ProofSubject {
        ProofSubject {
            tenant_id: "acme".into(),
            event_hash: [i; 32],
            received_at: DateTime::from_timestamp_micros(1_790_000_000_000_000 + i64::from(i)).unwrap(),
        }
    }

    async fn note(signer: &Ed25519Signer, leaves: &[Hash]) -> String {
        let origin = stele_tlog::publish::tenant_origin(DEPLOYMENT, "acme");
        Checkpoint::new(&origin, leaves.len() as u64, stele_tlog::root_of(leaves))
            .sign(signer)
            .await
            .unwrap()
    }

    async fn fixture() -> Fixture {
        let signer = Ed25519Signer::from_seed("stele.test", &[7; 32]).unwrap();
        let leaves: Vec<Hash> = (0..13)
            .map(|i| {
                let s = subject(i);
                stele_tlog::event_leaf_hash(&s.tenant_id, &s.event_hash, s.received_at.timestamp_micros()).unwrap()
            })
            .collect();
        let mut log = MemoryLog::default();
        for l in &leaves {
            log.append(*l).unwrap();
        }
        let index = 5u64;
        let size = leaves.len() as u64;
        let path = stele_tlog::inclusion_proof(&log, index, size).unwrap();
        let note = note(&signer, &leaves).await;
        let s = subject(index as u8);
        let tlog = TlogProof {
            extra: None,
            index,
            proof: path.clone(),
            checkpoint: note.clone(),
        };
        let proof = EventProof {
            tenant_id: "acme".into(),
            event_id: Uuid::nil(),
            event_hash: hex::encode(s.event_hash),
            received_at: stele_core::event::timestamp::format(&s.received_at),
            leaf_index: index,
            leaf_hash: leaves[index as usize].to_base64(),
            tree_size: size,
            inclusion_proof: path.iter().map(Hash::to_base64).collect(),
            checkpoint: CheckpointInfo {
                origin: stele_tlog::publish::tenant_origin(DEPLOYMENT, "acme"),
                size,
                root: stele_tlog::root_of(&leaves).to_base64(),
                note,
            },
            tlog_proof: tlog.to_text(),
        };
        Fixture {
            signer,
            subject: s,
            proof,
            log,
            leaves,
        }
    }

    fn trusted(f: &Fixture) -> TrustedLog {
        TrustedLog::for_tenant(&f.signer.verifier().vkey(), DEPLOYMENT, "acme").unwrap()
    }

    #[tokio::test]
    async fn a_genuine_proof_verifies_offline() {
        let f = fixture().await;
        let v = verify_event_proof(&f.subject, &f.proof, &trusted(&f)).unwrap();
        assert_eq!((v.leaf_index, v.tree_size), (5, 13));
        assert_eq!(v.root, stele_tlog::root_of(&f.leaves));
    }

    #[tokio::test]
    async fn a_tampered_proof_hash_fails_the_inclusion() {
        let f = fixture().await;
        let mut proof = f.proof.clone();
        let mut tlog = TlogProof::parse(&proof.tlog_proof).unwrap();
        tlog.proof[1] = Hash([9; 32]);
        proof.tlog_proof = tlog.to_text();
        proof.inclusion_proof = tlog.proof.iter().map(Hash::to_base64).collect();
        let err = verify_event_proof(&f.subject, &proof, &trusted(&f)).unwrap_err();
        assert!(matches!(err, ProofError::Inclusion { index: 5, size: 13, .. }), "{err}");
        assert!(
            err.to_string().contains("leaf 5") && err.to_string().contains("proof leads to root"),
            "{err}"
        );

        // The JSON list and the tlog-proof text disagreeing is caught as well.
        let mut proof = f.proof.clone();
        proof.inclusion_proof[0] = Hash([9; 32]).to_base64();
        let err = verify_event_proof(&f.subject, &proof, &trusted(&f)).unwrap_err();
        assert!(matches!(err, ProofError::Malformed(_)), "{err}");
    }

    #[tokio::test]
    async fn another_leaf_or_another_receipt_is_refused_by_name() {
        let f = fixture().await;
        // The proof of another event, presented for this receipt.
        let mut proof = f.proof.clone();
        proof.leaf_hash = f.leaves[6].to_base64();
        let err = verify_event_proof(&f.subject, &proof, &trusted(&f)).unwrap_err();
        assert!(matches!(err, ProofError::LeafMismatch { .. }), "{err}");
        // The receipt says another hash or time than the proof.
        let mut other = f.subject.clone();
        other.event_hash[0] ^= 1;
        let err = verify_event_proof(&other, &f.proof, &trusted(&f)).unwrap_err();
        assert!(
            matches!(
                err,
                ProofError::SubjectMismatch {
                    field: "event_hash",
                    ..
                }
            ),
            "{err}"
        );
        let mut other = f.subject.clone();
        other.received_at += chrono::TimeDelta::microseconds(1);
        let err = verify_event_proof(&other, &f.proof, &trusted(&f)).unwrap_err();
        assert!(
            matches!(
                err,
                ProofError::SubjectMismatch {
                    field: "received_at",
                    ..
                }
            ),
            "{err}"
        );
        let mut other = f.subject.clone();
        other.tenant_id = "globex".into();
        let err = verify_event_proof(&other, &f.proof, &trusted(&f)).unwrap_err();
        assert!(
            matches!(err, ProofError::SubjectMismatch { field: "tenant_id", .. }),
            "{err}"
        );
        // A leaf the served fields agree on but that is not at that index: the path fails.
        let mut proof = f.proof.clone();
        let s6 = subject(6);
        proof.event_hash = hex::encode(s6.event_hash);
        proof.received_at = stele_core::event::timestamp::format(&s6.received_at);
        proof.leaf_hash = f.leaves[6].to_base64();
        let err = verify_event_proof(&s6, &proof, &trusted(&f)).unwrap_err();
        assert!(matches!(err, ProofError::Inclusion { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_wrong_key_or_origin_fails_the_signature() {
        let f = fixture().await;
        let other = Ed25519Signer::from_seed("stele.test", &[8; 32]).unwrap();
        let wrong_key = TrustedLog::for_tenant(&other.verifier().vkey(), DEPLOYMENT, "acme").unwrap();
        let err = verify_event_proof(&f.subject, &f.proof, &wrong_key).unwrap_err();
        assert!(
            matches!(err, ProofError::Signature(stele_tlog::Error::NoTrustedSignature { .. })),
            "{err}"
        );
        let wrong_origin = TrustedLog::for_tenant(&f.signer.verifier().vkey(), DEPLOYMENT, "globex").unwrap();
        let err = verify_event_proof(&f.subject, &f.proof, &wrong_origin).unwrap_err();
        assert!(
            matches!(err, ProofError::Signature(stele_tlog::Error::OriginMismatch { .. })),
            "{err}"
        );
        // A note re-signed by another key for a forged root.
        let mut proof = f.proof.clone();
        let mut forged = f.leaves.clone();
        forged[0] = Hash([1; 32]);
        proof.checkpoint.note = note(&other, &forged).await;
        let mut tlog = TlogProof::parse(&proof.tlog_proof).unwrap();
        tlog.checkpoint = proof.checkpoint.note.clone();
        proof.tlog_proof = tlog.to_text();
        let err = verify_event_proof(&f.subject, &proof, &trusted(&f)).unwrap_err();
        assert!(matches!(err, ProofError::Signature(_)), "{err}");
        assert!(matches!(TrustedLog::new("not a key", "o"), Err(ProofError::Key(_))));
    }

    #[tokio::test]
    async fn consistency_between_two_checkpoints_verifies_and_a_fork_does_not() {
        let f = fixture().await;
        let old = note(&f.signer, &f.leaves[..4]).await;
        let new = f.proof.checkpoint.note.clone();
        let path = stele_tlog::consistency_proof(&f.log, 4, 13).unwrap();
        let info = |note: &str, size: u64| CheckpointInfo {
            origin: String::new(),
            size,
            root: String::new(),
            note: note.to_owned(),
        };
        let mut proof = ConsistencyProof {
            tenant_id: "acme".into(),
            from: info(&old, 4),
            to: info(&new, 13),
            consistency_proof: path.iter().map(Hash::to_base64).collect(),
        };
        assert_eq!(verify_consistency_proof(&proof, &trusted(&f)).unwrap(), (4, 13));
        let mut forked = f.leaves[..4].to_vec();
        forked[2] = Hash([3; 32]);
        proof.from = info(&note(&f.signer, &forked).await, 4);
        let err = verify_consistency_proof(&proof, &trusted(&f)).unwrap_err();
        assert!(matches!(err, ProofError::Consistency { from: 4, to: 13, .. }), "{err}");
    }
}
