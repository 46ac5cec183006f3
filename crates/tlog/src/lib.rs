//! The verifiable log under stele, without I/O: RFC 6962/9162 Merkle trees, proofs,
//! tiles, and C2SP signed notes and checkpoints.
//!
//! # What is proven
//!
//! Each tenant has an append-only log whose leaves are its stored events
//! ([`leaf`]: tenant, `event_hash`, `received_at`). The log periodically signs a
//! [`Checkpoint`] (origin, size, root) with an Ed25519 key ([`note`]). Given the public key:
//!
//! - an **inclusion proof** ([`verify_inclusion`]) shows that a given event is leaf `i`
//!   of the signed tree: the event existed, with exactly this content, tenant and
//!   receive time, when the checkpoint was signed;
//! - a **consistency proof** ([`verify_consistency`]) shows that an older checkpoint's
//!   tree is a prefix of a newer one: nothing signed earlier was changed, removed or
//!   reordered since, and the log was not forked or rolled back between the two.
//!
//! Both rest on SHA-256 collision resistance and the domain separation of leaves
//! (`0x00`) from nodes (`0x01`), and on the signing key staying secret. They say nothing
//! about events never logged, nor about a log that shows different checkpoints to
//! different people unless those people compare (or a witness does).
//!
//! # Layout
//!
//! - [`hash`]: leaf/node hashing, [`Hash`].
//! - [`node`]: stored hashes are perfect subtrees, keyed `(level, index)` ([`NodeId`]).
//! - [`proof`]: [`ProofPlan`] (which stored hashes a proof needs, O(log n)) and verification.
//! - [`compact`]: [`Frontier`], the O(log n) appender state (root + new nodes per leaf).
//! - [`store`]: the [`HashReader`] port, convenience proof functions, [`MemoryLog`].
//! - [`tile`]: C2SP tlog-tiles (height 8) over the same nodes, [`TileHashReader`], [`MemoryTiles`].
//! - [`leaf`]: stele's leaf encoding.
//! - [`note`], [`checkpoint`], [`tlog_proof`]: C2SP signed-note, tlog-checkpoint, tlog-proof.

pub mod checkpoint;
pub mod compact;
pub mod hash;
pub mod leaf;
pub mod node;
pub mod note;
pub mod proof;
pub mod publish;
pub mod store;
pub mod tile;
pub mod tlog_proof;

pub use checkpoint::{open_checkpoint, Checkpoint, SignedCheckpoint};
pub use compact::Frontier;
pub use hash::{empty_root, leaf_hash, node_hash, root_of, Hash};
pub use leaf::{encode_leaf, event_leaf_hash, LeafData};
pub use node::NodeId;
pub use note::{Ed25519Signer, Ed25519Verifier, Signer, Verifier, Verifiers};
pub use proof::{root_from_inclusion_proof, verify_consistency, verify_inclusion, ProofPlan};
pub use store::{consistency_proof, frontier_at, inclusion_proof, root_at, HashReader, MemoryLog};
pub use tile::{MemoryTiles, TileHashReader, TileId, TileReader};
pub use tlog_proof::TlogProof;

/// Everything that can go wrong in this crate; each variant says what and with what.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a hash must be 32 bytes, got {len}")]
    HashLength { len: usize },
    #[error("a hash must be standard base64")]
    HashEncoding,
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {size2} is smaller than {size1}: the log went backwards")]
    SizeOrder { size1: u64, size2: u64 },
    #[error("there is no consistency proof from the empty tree (every tree extends it)")]
    ConsistencyFromEmpty,
    #[error("proof has {got} hashes, the tree shape needs {want}")]
    ProofLength { got: usize, want: usize },
    #[error("proof leads to root {computed}, expected {expected}")]
    RootMismatch { computed: Hash, expected: Hash },
    #[error("got {got} hashes, expected {want}")]
    HashCount { got: usize, want: usize },
    #[error("stored hash for node (level {}, index {}) is missing", .0.level, .0.index)]
    MissingNode(NodeId),
    #[error("the tree is full")]
    TreeFull,
    #[error("invalid tile path {0:?}")]
    TilePath(String),
    #[error("tile {} is missing", .0.path())]
    MissingTile(TileId),
    #[error("tile {} has {len} bytes, too few or not whole hashes", .tile.path())]
    ShortTile { tile: TileId, len: usize },
    #[error("tile (level {level}, index {index}) does not hold {offset} hashes before this append")]
    TileAppendOffset { level: u8, index: u64, offset: u16 },
    #[error("invalid leaf data: {0}")]
    LeafData(&'static str),
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    #[error("key ID does not match the key name and public key")]
    KeyIdMismatch,
    #[error("unknown signature algorithm {0:#04x}")]
    UnknownAlgorithm(u8),
    #[error("two trusted keys are {name}+{key_id:08x}")]
    AmbiguousKey { name: String, key_id: u32 },
    #[error("invalid signature for key {name}+{key_id:08x}")]
    InvalidSignature { name: String, key_id: u32 },
    #[error("note has no valid signature from a trusted key (signed by: {})", .keys.join(", "))]
    NoTrustedSignature { keys: Vec<String> },
    #[error("signer failed: {0}")]
    Signer(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    #[error("checkpoint is for log {found:?}, expected {expected:?}")]
    OriginMismatch { expected: String, found: String },
    #[error("malformed tlog proof: {0}")]
    MalformedProof(&'static str),
}
