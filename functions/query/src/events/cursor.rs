//! The page cursor: where the last page ended (the last event's `occurred_at` and
//! id), bound to the tenant and the query by an HMAC-SHA256 under the function's
//! secret. Opaque to the caller; a cursor that was altered, made for another query
//! or presented by another tenant is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The position after which the next page starts (in the query's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub occurred_at_micros: i64,
    pub event_id: Uuid,
}

impl Position {
    pub fn occurred_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.occurred_at_micros).unwrap_or_default()
    }
}

/// The secret cursors are signed with (`STELE_CURSOR_KEY`).
#[derive(Clone)]
pub struct CursorKey([u8; 32]);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

const VERSION: u8 = 1;

/// HMAC-SHA256 (RFC 2104) with a key of at most one block (64 bytes).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().take(64).enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new().chain_update(ipad).chain_update(message).finalize();
    Sha256::new().chain_update(opad).chain_update(inner).finalize().into()
}
const MAC_LEN: usize = 16;
const BODY_LEN: usize = 1 + 8 + 16;

impl CursorKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        CursorKey(bytes)
    }

    /// A random key: cursors stay valid only as long as this process (`stele dev`, tests).
    pub fn random() -> Self {
        CursorKey(rand::random())
    }

    /// HMAC-SHA256 of `parts`, each length-prefixed so they cannot run into each other.
    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut message = Vec::new();
        for p in parts {
            message.extend_from_slice(&(p.len() as u64).to_be_bytes());
            message.extend_from_slice(p);
        }
        hmac_sha256(&self.0, &message)
    }

    /// The cursor after `pos`, for `tenant` and the query with `digest`.
    pub fn seal(&self, tenant: &str, digest: &[u8; 32], pos: Position) -> String {
        let mut body = Vec::with_capacity(BODY_LEN + MAC_LEN);
        body.push(VERSION);
        body.extend_from_slice(&pos.occurred_at_micros.to_be_bytes());
        body.extend_from_slice(pos.event_id.as_bytes());
        let mac = self.mac(&[tenant.as_bytes(), digest, &body]);
        body.extend_from_slice(&mac[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(body)
    }

    /// The position a cursor holds, if it was made by this key for `tenant` and the
    /// query with `digest`; `None` for anything else.
    pub fn open(&self, tenant: &str, digest: &[u8; 32], cursor: &str) -> Option<Position> {
        let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        if raw.len() != BODY_LEN + MAC_LEN || raw[0] != VERSION {
            return None;
        }
        let (body, mac) = raw.split_at(BODY_LEN);
        let expected = self.mac(&[tenant.as_bytes(), digest, body]);
        // Constant time: no early exit on the first differing byte.
        let diff = mac.iter().zip(&expected[..MAC_LEN]).fold(0u8, |d, (a, b)| d | (a ^ b));
        if diff != 0 {
            return None;
        }
        Some(Position {
            occurred_at_micros: i64::from_be_bytes(body[1..9].try_into().ok()?),
            event_id: Uuid::from_slice(&body[9..25]).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_only_for_its_tenant_query_and_key() {
        let key = CursorKey::new([7; 32]);
        let pos = Position {
            occurred_at_micros: 1_772_323_200_000_000,
            event_id: Uuid::from_u128(42),
        };
        let c = key.seal("acme", &[1; 32], pos);
        assert_eq!(key.open("acme", &[1; 32], &c), Some(pos));
        assert_eq!(key.open("globex", &[1; 32], &c), None, "another tenant");
        assert_eq!(key.open("acme", &[2; 32], &c), None, "another query");
        assert_eq!(CursorKey::new([8; 32]).open("acme", &[1; 32], &c), None, "another key");
        // Any altered byte is refused.
        let raw = URL_SAFE_NO_PAD.decode(&c).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 1;
            assert_eq!(
                key.open("acme", &[1; 32], &URL_SAFE_NO_PAD.encode(bad)),
                None,
                "byte {i}"
            );
        }
        assert_eq!(key.open("acme", &[1; 32], "not a cursor"), None);
        assert_eq!(key.open("acme", &[1; 32], ""), None);
    }

    #[test]
    fn hmac_is_rfc_4231() {
        // RFC 4231 test case 2 (key "Jefe") and the first half of case 1 (key 0x0b x 20).
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }
}
