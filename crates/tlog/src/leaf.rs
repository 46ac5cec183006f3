//! What a stele leaf commits to: one stored event of one tenant, at the time it was received.
//!
//! Leaf data, version 1 (all integers big-endian):
//!
//! ```text
//! "stele/leaf/v1"          13 bytes, fixed: a stele leaf is never another format's data
//! u16  len(tenant_id)       then the tenant id's UTF-8 bytes (1..=65535 bytes)
//! [32] event_hash          SHA-256 of the event's RFC 8785 canonical JSON (stele-core)
//! i64  received_at         microseconds since 1970-01-01T00:00:00Z (UTC), as stored
//! ```
//!
//! Every field is fixed-size except the tenant id, which is length-prefixed, so two
//! different `(tenant, event_hash, received_at)` triples never give the same bytes.
//! The tenant is in the leaf (not only in the log's origin) so that a leaf moved into
//! another tenant's log fails to verify there. The leaf hash is then
//! `SHA-256(0x00 || leaf data)` as for any RFC 6962 leaf.

use crate::hash::{leaf_hash, Hash};
use crate::Error;

/// Version tag at the start of every v1 leaf.
pub const LEAF_TAG_V1: &[u8; 13] = b"stele/leaf/v1";

/// The fields a stele leaf binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafData {
    pub tenant_id: String,
    pub event_hash: [u8; 32],
    /// Microseconds since the Unix epoch, UTC.
    pub received_at_micros: i64,
}

impl LeafData {
    pub fn new(tenant_id: &str, event_hash: [u8; 32], received_at_micros: i64) -> Self {
        LeafData {
            tenant_id: tenant_id.to_owned(),
            event_hash,
            received_at_micros,
        }
    }

    /// The v1 encoding above.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        encode_leaf(&self.tenant_id, &self.event_hash, self.received_at_micros)
    }

    /// The RFC 6962 leaf hash of the encoding: what goes into the tree.
    pub fn leaf_hash(&self) -> Result<Hash, Error> {
        Ok(leaf_hash(&self.encode()?))
    }

    /// Reads a v1 encoding; refuses any other tag, a bad length, bad UTF-8 or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |why: &'static str| Error::LeafData(why);
        let rest = bytes
            .strip_prefix(LEAF_TAG_V1.as_slice())
            .ok_or(bad("unknown leaf tag"))?;
        let (len, rest) = rest.split_first_chunk::<2>().ok_or(bad("truncated tenant length"))?;
        let len = usize::from(u16::from_be_bytes(*len));
        if len == 0 {
            return Err(bad("empty tenant id"));
        }
        if rest.len() < len {
            return Err(bad("truncated tenant id"));
        }
        let (tenant, rest) = rest.split_at(len);
        let tenant_id = std::str::from_utf8(tenant).map_err(|_| bad("tenant id is not UTF-8"))?;
        let (event_hash, rest) = rest.split_first_chunk::<32>().ok_or(bad("truncated event hash"))?;
        let (micros, rest) = rest.split_first_chunk::<8>().ok_or(bad("truncated received_at"))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(LeafData::new(tenant_id, *event_hash, i64::from_be_bytes(*micros)))
    }
}

/// The v1 leaf data for an event.
pub fn encode_leaf(tenant_id: &str, event_hash: &[u8; 32], received_at_micros: i64) -> Result<Vec<u8>, Error> {
    let tenant = tenant_id.as_bytes();
    if tenant.is_empty() {
        return Err(Error::LeafData("empty tenant id"));
    }
    let len = u16::try_from(tenant.len()).map_err(|_| Error::LeafData("tenant id longer than 65535 bytes"))?;
    let mut out = Vec::with_capacity(LEAF_TAG_V1.len() + 2 + tenant.len() + 32 + 8);
    out.extend_from_slice(LEAF_TAG_V1);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(tenant);
    out.extend_from_slice(event_hash);
    out.extend_from_slice(&received_at_micros.to_be_bytes());
    Ok(out)
}

/// The leaf hash of an event: `SHA-256(0x00 || encode_leaf(..))`.
pub fn event_leaf_hash(tenant_id: &str, event_hash: &[u8; 32], received_at_micros: i64) -> Result<Hash, Error> {
    Ok(leaf_hash(&encode_leaf(tenant_id, event_hash, received_at_micros)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_the_documented_layout() {
        let data = encode_leaf("acme", &[0xab; 32], 1_700_000_000_000_001).unwrap();
        let mut want = b"stele/leaf/v1".to_vec();
        want.extend_from_slice(&[0, 4]);
        want.extend_from_slice(b"acme");
        want.extend_from_slice(&[0xab; 32]);
        want.extend_from_slice(&1_700_000_000_000_001i64.to_be_bytes());
        assert_eq!(data, want);
        assert_eq!(
            LeafData::decode(&data).unwrap(),
            LeafData::new("acme", [0xab; 32], 1_700_000_000_000_001)
        );
    }

    #[test]
    fn fields_cannot_slide_into_each_other() {
        // Without the length prefix "ab" + hash starting with "c" and "abc" + ... could collide.
        let a = encode_leaf("ab", &[b'c'; 32], 0).unwrap();
        let b = encode_leaf("abc", &[b'c'; 32], 0).unwrap();
        assert_ne!(a, b);
        assert_ne!(
            event_leaf_hash("t", &[1; 32], 5).unwrap(),
            event_leaf_hash("t", &[1; 32], 6).unwrap()
        );
        assert_ne!(
            event_leaf_hash("t", &[1; 32], 5).unwrap(),
            event_leaf_hash("u", &[1; 32], 5).unwrap()
        );
    }

    #[test]
    fn malformed_leaf_data_is_refused() {
        let good = encode_leaf("acme", &[7; 32], -1).unwrap();
        assert!(LeafData::decode(&good).is_ok());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(LeafData::decode(&trailing).is_err());
        assert!(LeafData::decode(&good[..good.len() - 1]).is_err());
        let mut tag = good.clone();
        tag[12] = b'2';
        assert!(LeafData::decode(&tag).is_err());
        assert!(encode_leaf("", &[0; 32], 0).is_err());
        assert!(encode_leaf(&"x".repeat(65_536), &[0; 32], 0).is_err());
        assert!(encode_leaf(&"x".repeat(65_535), &[0; 32], 0).is_ok());
    }
}
