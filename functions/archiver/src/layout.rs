//! Object keys: `<prefix>/tenant_id=<t>/dt=<YYYY-MM-DD>/part-<nnnnn>.parquet`
//! and `<prefix>/_manifests/dt=<YYYY-MM-DD>.json` (later versions of a day's
//! manifest: `dt=<YYYY-MM-DD>.v<n>.json`, so no version overwrites another).
//! Part names are deterministic, so a re-run overwrites rather than
//! duplicates; a supplement's parts continue the day's numbering.

use chrono::NaiveDate;

/// A tenant id as a Hive partition value: the characters Hive escapes
/// (`FileUtils.escapePathName`) become `%XX`; everything else stays.
pub fn hive_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let escape = c.is_control()
            || matches!(
                c,
                '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
            );
        if escape {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    }
}

/// `<prefix>/tenant_id=<t>/dt=<day>/`
pub fn tenant_day_prefix(prefix: &str, tenant: &str, day: NaiveDate) -> String {
    join(
        prefix,
        &format!("tenant_id={}/dt={}/", hive_escape(tenant), day.format("%Y-%m-%d")),
    )
}

pub fn part_key(prefix: &str, tenant: &str, day: NaiveDate, n: u32) -> String {
    format!("{}part-{n:05}.parquet", tenant_day_prefix(prefix, tenant, day))
}

pub fn manifest_key(prefix: &str, day: NaiveDate) -> String {
    manifest_version_key(prefix, day, 1)
}

/// The key of version `version` of a day's manifest (1 is [`manifest_key`]).
pub fn manifest_version_key(prefix: &str, day: NaiveDate, version: u32) -> String {
    let dt = day.format("%Y-%m-%d");
    if version <= 1 {
        join(prefix, &format!("_manifests/dt={dt}.json"))
    } else {
        join(prefix, &format!("_manifests/dt={dt}.v{version}.json"))
    }
}

/// The version of a manifest key from [`manifest_version_key`] (1 when unversioned).
pub fn manifest_version(key: &str) -> u32 {
    key.strip_suffix(".json")
        .and_then(|k| k.rsplit_once(".v"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1)
}

/// The number `n` of a `part-<n>.parquet` key.
pub fn part_number(key: &str) -> Option<u32> {
    key.rsplit_once("/part-")?.1.strip_suffix(".parquet")?.parse().ok()
}

/// Where multipart uploads of this archive live (for finding unfinished ones).
pub fn uploads_prefix(prefix: &str) -> String {
    join(prefix, "tenant_id=")
}

/// True for a part key of `day` (any tenant).
pub fn is_part_of_day(key: &str, day: NaiveDate) -> bool {
    key.contains(&format!("/dt={}/part-", day.format("%Y-%m-%d")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_hive_layout() {
        let day = NaiveDate::from_ymd_opt(2024, 3, 9).unwrap();
        assert_eq!(
            part_key("audit", "acme", day, 0),
            "audit/tenant_id=acme/dt=2024-03-09/part-00000.parquet"
        );
        assert_eq!(manifest_key("audit", day), "audit/_manifests/dt=2024-03-09.json");
        assert_eq!(manifest_key("", day), "_manifests/dt=2024-03-09.json");
        assert!(is_part_of_day(&part_key("audit", "t", day, 3), day));
        assert_eq!(part_number(&part_key("audit", "t", day, 12)), Some(12));
    }

    #[test]
    fn manifest_versions_have_their_own_keys() {
        let day = NaiveDate::from_ymd_opt(2024, 3, 9).unwrap();
        assert_eq!(manifest_version_key("audit", day, 1), manifest_key("audit", day));
        let v2 = manifest_version_key("audit", day, 2);
        assert_eq!(v2, "audit/_manifests/dt=2024-03-09.v2.json");
        assert_eq!(manifest_version(&v2), 2);
        assert_eq!(manifest_version(&manifest_key("audit", day)), 1);
    }

    #[test]
    fn tenant_ids_cannot_escape_their_directory() {
        assert_eq!(hive_escape("a/b=c"), "a%2Fb%3Dc");
        assert_eq!(hive_escape("plain-tenant_1.x"), "plain-tenant_1.x");
    }
}
