//! RFC 6962 / RFC 9162 hashing: the only two ways a hash in the tree is made.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::Error;

/// A SHA-256 hash in the tree: a leaf hash, an interior node or a root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Size of a hash in bytes.
    pub const LEN: usize = 32;

    /// Takes exactly 32 bytes; anything else is not a tree hash.
    pub fn from_slice(b: &[u8]) -> Result<Self, Error> {
        <[u8; 32]>::try_from(b)
            .map(Hash)
            .map_err(|_| Error::HashLength { len: b.len() })
    }

    /// Standard base64 with padding, as checkpoints and tlog proofs write hashes.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Strict (canonical) standard base64 of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, Error> {
        let bytes = B64.decode(s).map_err(|_| Error::HashEncoding)?;
        Self::from_slice(&bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl fmt::Display for Hash {
    /// Base64, the form users see in checkpoints and proofs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// `SHA-256(0x00 || data)`: the 0x00 prefix keeps a leaf from ever being read as a node.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    Hash(h.finalize().into())
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The root of the empty tree: `SHA-256("")` (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The Merkle Tree Hash of a list of leaf hashes, straight from the RFC's recursive
/// definition. O(n): for tests and for rebuilding a tree from all of its leaves.
pub fn root_of(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes.len() {
        0 => empty_root(),
        1 => leaf_hashes[0],
        n => {
            let k = largest_power_of_two_below(n as u64) as usize;
            node_hash(&root_of(&leaf_hashes[..k]), &root_of(&leaf_hashes[k..]))
        }
    }
}

/// The largest power of two strictly below `n` (n ≥ 2): where RFC 6962 splits a tree.
pub(crate) fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(empty_root().to_base64(), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }

    #[test]
    fn leaf_hashes_match_rfc6962_reference_values() {
        // transparency-dev/merkle rfc6962/rfc6962_test.go.
        assert_eq!(
            hex::encode(leaf_hash(b"L123456").0),
            "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"").0),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_ne!(leaf_hash(b""), empty_root(), "an empty leaf is not an empty tree");
    }

    #[test]
    fn node_hash_is_order_sensitive_and_not_a_leaf_hash() {
        let (a, b) = (leaf_hash(b"Hello"), leaf_hash(b"World"));
        let n = node_hash(&a, &b);
        assert_ne!(n, node_hash(&b, &a));
        let mut concat = a.0.to_vec();
        concat.extend_from_slice(&b.0);
        assert_ne!(n, leaf_hash(&concat));
    }

    #[test]
    fn split_point_is_the_largest_power_of_two_strictly_below() {
        for (n, k) in [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1 << 40, 1 << 39)] {
            assert_eq!(largest_power_of_two_below(n), k, "n={n}");
        }
    }
}
