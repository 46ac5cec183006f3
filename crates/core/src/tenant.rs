//! The tenant id rule, in one place. A tenant id ends up in Kinesis partition
//! keys (`tenant#<n>` for hot tenants), in Postgres keys, in S3 object keys
//! (`tenant_id=<t>/`), in log origins and in operators' terminals, so only a
//! plain, unambiguous shape is accepted:
//!
//! `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`
//!
//! ASCII only (no look-alike, zero-width, bidi or unnormalised Unicode), no
//! `/`, `=`, `#`, space or control characters, and no leading `.` or `-` (so
//! neither `..` nor an option-like name). Every place a tenant id enters uses
//! [`check_tenant_id`]: the ingest handler (the authorizer's claim), the hot
//! tenant setting, and `stele dev --token TOKEN=TENANT`. [`tenant_from_authorizer`]
//! reads it from an API request's authorizer context, for every HTTP function.

/// Longest tenant id: with a `#<n>` hot-tenant suffix it stays far within
/// Kinesis' 256-character partition key.
pub const MAX_TENANT_ID_CHARS: usize = 128;

/// The rule, as written in messages and docs.
pub const TENANT_ID_RULE: &str =
    "1 to 128 characters: ASCII letters, digits, '.', '_' or '-', starting with a letter or digit";

/// Why a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantIdError {
    #[error("the tenant id is empty; it must be {TENANT_ID_RULE}")]
    Empty,
    #[error("the tenant id is {0} characters; it must be {TENANT_ID_RULE}")]
    TooLong(usize),
    #[error("the tenant id starts with {0:?}; it must be {TENANT_ID_RULE}")]
    BadStart(char),
    #[error("the tenant id contains {0:?} (U+{code:04X}); it must be {TENANT_ID_RULE}", code = u32::from(*.0))]
    BadCharacter(char),
}

/// `Ok` for a usable tenant id, else why not. Pure ASCII checks: nothing is
/// normalised or trimmed, so the id checked is the id stored.
pub fn check_tenant_id(id: &str) -> Result<(), TenantIdError> {
    let mut chars = id.chars();
    let Some(first) = chars.next() else {
        return Err(TenantIdError::Empty);
    };
    if !first.is_ascii_alphanumeric() {
        return Err(TenantIdError::BadStart(first));
    }
    if let Some(bad) = chars
        .clone()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TenantIdError::BadCharacter(bad));
    }
    // Every character is ASCII now, so bytes are characters.
    if id.len() > MAX_TENANT_ID_CHARS {
        return Err(TenantIdError::TooLong(id.len()));
    }
    Ok(())
}

/// Why a request carries no usable tenant (see [`tenant_from_authorizer`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantClaimError {
    /// No authorizer context, or no (or an empty) claim: the caller is not
    /// authenticated (`401` with `WWW-Authenticate: Bearer`).
    #[error("no tenant in the authorizer context (claim `{claim}`); send a valid bearer token")]
    Missing { claim: String },
    /// The claim is there but breaks the tenant id rule (`403`).
    #[error("the tenant claim `{claim}` is not a usable tenant id: {error}")]
    Unusable { claim: String, error: TenantIdError },
}

/// The tenant of an API request, as every HTTP function reads it: the JWT
/// authorizer's claim `claim` (`jwt_claims`), or else a Lambda authorizer's
/// context field of the same name (`lambda_fields`, string values only).
/// Nothing in the request body is consulted; the id must pass [`check_tenant_id`]
/// (`a#b/../c` or a look-alike never becomes a tenant, a partition key or a prefix).
pub fn tenant_from_authorizer(
    jwt_claims: Option<&std::collections::HashMap<String, String>>,
    lambda_fields: Option<&std::collections::HashMap<String, serde_json::Value>>,
    claim: &str,
) -> Result<String, TenantClaimError> {
    let missing = || TenantClaimError::Missing {
        claim: claim.to_owned(),
    };
    let from_jwt = jwt_claims.and_then(|claims| claims.get(claim)).cloned();
    let from_lambda = || match lambda_fields.and_then(|f| f.get(claim)) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let tenant = from_jwt
        .or_else(from_lambda)
        .filter(|t| !t.is_empty())
        .ok_or_else(missing)?;
    check_tenant_id(&tenant).map_err(|error| TenantClaimError::Unusable {
        claim: claim.to_owned(),
        error,
    })?;
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_are_accepted() {
        for id in ["acme", "a", "0", "tenant-p", "Acme_Corp.eu-1", "a..b", &"t".repeat(128)] {
            assert_eq!(check_tenant_id(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn separators_paths_unicode_and_odd_starts_are_refused() {
        for id in [
            "",
            "a#b",
            "a#b/../c",
            "a/b",
            "a=b",
            "..",
            ".hidden",
            "-rf",
            "_x",
            "a b",
            " a",
            "a\n",
            "a\0",
            "acme\u{200B}", // zero-width space
            "acme\u{202E}", // right-to-left override
            "\u{0430}cme",  // Cyrillic а
            "cafe\u{301}",  // unnormalised é
            "caf\u{e9}",    // normalised é: still not ASCII
            "ａｃｍｅ",     // full-width
            "a:b",
            "a%2Fb",
            &"t".repeat(129),
        ] {
            assert!(check_tenant_id(id).is_err(), "{id:?} accepted");
        }
    }

    #[test]
    fn messages_name_the_rule_and_the_culprit() {
        let err = check_tenant_id("a#b").unwrap_err().to_string();
        assert!(err.contains("'#'") && err.contains(TENANT_ID_RULE), "{err}");
        let err = check_tenant_id(&"t".repeat(129)).unwrap_err().to_string();
        assert!(err.contains("129"), "{err}");
    }

    #[test]
    fn the_tenant_comes_from_the_jwt_claim_or_the_lambda_context() {
        use std::collections::HashMap;
        let jwt: HashMap<String, String> = [("org".to_string(), "acme".to_string())].into();
        assert_eq!(tenant_from_authorizer(Some(&jwt), None, "org"), Ok("acme".into()));
        let fields: HashMap<String, serde_json::Value> = [("org".to_string(), serde_json::json!("globex"))].into();
        assert_eq!(tenant_from_authorizer(None, Some(&fields), "org"), Ok("globex".into()));
        let number: HashMap<String, serde_json::Value> = [("org".to_string(), serde_json::json!(7))].into();
        assert!(matches!(
            tenant_from_authorizer(None, Some(&number), "org"),
            Err(TenantClaimError::Missing { .. })
        ));
        let empty: HashMap<String, String> = [("org".to_string(), String::new())].into();
        assert!(matches!(
            tenant_from_authorizer(Some(&empty), None, "org"),
            Err(TenantClaimError::Missing { .. })
        ));
        let bad: HashMap<String, String> = [("org".to_string(), "a#b".to_string())].into();
        let err = tenant_from_authorizer(Some(&bad), None, "org").unwrap_err().to_string();
        assert!(err.contains("`org`") && err.contains(TENANT_ID_RULE), "{err}");
    }
}
