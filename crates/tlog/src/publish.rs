//! Names the log is published under: each tenant's checkpoint origin, and the
//! archive bucket keys of checkpoints, tiles and the public key. One place, so the
//! checkpointer that writes them and `stele verify` that reads them agree.
//!
//! ```text
//! <prefix>/_log/log.vkey                               the verifier key (C2SP signed-note vkey)
//! <prefix>/_log/<tenant>/checkpoint                    the latest signed checkpoint
//! <prefix>/_log/<tenant>/checkpoints/<size, 20 digits> every signed checkpoint, kept
//! <prefix>/_log/<tenant>/tile/<L>/<N>[.p/<W>]          C2SP tlog-tiles of the tree
//! ```
//!
//! `_log` starts with an underscore, so Athena and Hive skip it when they list the table.
//! Tenant ids are `[A-Za-z0-9][A-Za-z0-9._-]{0,127}` (stele-core), safe in a key and a line.

use crate::tile::TileId;

/// The log origin of one tenant: `<deployment origin>/tenant/<tenant>`, e.g.
/// `audit.example.com/prod/tenant/acme`. The deployment origin names the deployment
/// (it must be unique among all stele deployments whose checkpoints a verifier trusts).
pub fn tenant_origin(deployment: &str, tenant_id: &str) -> String {
    format!("{deployment}/tenant/{tenant_id}")
}

fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{}/{rest}", prefix.trim_end_matches('/'))
    }
}

/// `<prefix>/_log/log.vkey`
pub fn vkey_key(prefix: &str) -> String {
    join(prefix, "_log/log.vkey")
}

/// `<prefix>/_log/<tenant>/`
pub fn tenant_log_prefix(prefix: &str, tenant_id: &str) -> String {
    join(prefix, &format!("_log/{tenant_id}/"))
}

/// `<prefix>/_log/<tenant>/checkpoint`
pub fn latest_checkpoint_key(prefix: &str, tenant_id: &str) -> String {
    format!("{}checkpoint", tenant_log_prefix(prefix, tenant_id))
}

/// `<prefix>/_log/<tenant>/checkpoints/<size, zero-padded to 20 digits>` (lists in size order).
pub fn checkpoint_key(prefix: &str, tenant_id: &str, size: u64) -> String {
    format!("{}checkpoints/{size:020}", tenant_log_prefix(prefix, tenant_id))
}

/// The size a [`checkpoint_key`] names.
pub fn checkpoint_size(key: &str) -> Option<u64> {
    let (_, digits) = key.rsplit_once("/checkpoints/")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// `<prefix>/_log/<tenant>/tile/<L>/<N>[.p/<W>]`
pub fn tile_key(prefix: &str, tenant_id: &str, tile: TileId) -> String {
    format!("{}{}", tenant_log_prefix(prefix, tenant_id), tile.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            tenant_origin("audit.example.com/prod", "acme"),
            "audit.example.com/prod/tenant/acme"
        );
        assert_eq!(vkey_key("audit"), "audit/_log/log.vkey");
        assert_eq!(vkey_key(""), "_log/log.vkey");
        assert_eq!(latest_checkpoint_key("audit", "acme"), "audit/_log/acme/checkpoint");
        let k = checkpoint_key("audit", "acme", 1234);
        assert_eq!(k, "audit/_log/acme/checkpoints/00000000000000001234");
        assert_eq!(checkpoint_size(&k), Some(1234));
        assert_eq!(checkpoint_size("audit/_log/acme/checkpoints/12"), None);
        let tile = TileId {
            level: 0,
            index: 1234067,
            width: 5,
        };
        assert!(tile_key("audit", "acme", tile).starts_with("audit/_log/acme/tile/0/x001/x234/067.p/5"));
    }
}
