//! Checkpointer settings, read once at start-up from the environment.

use std::path::PathBuf;

use crate::Error;

/// Where the signing key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerSource {
    /// `STELE_LOG_SIGNING_KEY_FILE`: a C2SP signed-note private key (`PRIVATE+KEY+…`),
    /// for `stele dev` and tests.
    KeyFile(PathBuf),
    /// `STELE_LOG_KMS_KEY_ID`: an AWS KMS asymmetric key (ECC_NIST_EDWARDS25519,
    /// SIGN_VERIFY), by id, ARN or alias.
    Kms(String),
}

#[derive(Debug, Clone)]
pub struct CheckpointerConfig {
    /// `STELE_ARCHIVE_BUCKET` (required), as the archiver reads it.
    pub bucket: String,
    /// `STELE_ARCHIVE_PREFIX` (default `audit`), without slashes at the ends.
    pub prefix: String,
    /// `STELE_LOG_ORIGIN` (required): the deployment's log origin, e.g.
    /// `audit.example.com/prod`; each tenant's is `<origin>/tenant/<tenant>`.
    pub origin: String,
    /// `STELE_LOG_KMS_KEY_ID` or `STELE_LOG_SIGNING_KEY_FILE`, exactly one.
    pub signer: SignerSource,
}

impl CheckpointerConfig {
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`CheckpointerConfig::from_env`], reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let bucket = var("STELE_ARCHIVE_BUCKET")
            .ok_or_else(|| Error::Config("STELE_ARCHIVE_BUCKET is not set (the archive's S3 bucket)".into()))?;
        let prefix = get("STELE_ARCHIVE_PREFIX")
            .map(|p| p.trim().trim_matches('/').to_string())
            .unwrap_or_else(|| "audit".into());
        let origin = var("STELE_LOG_ORIGIN").ok_or_else(|| {
            Error::Config(
                "STELE_LOG_ORIGIN is not set (the deployment's log origin, e.g. audit.example.com/prod)".into(),
            )
        })?;
        check_origin(&origin)?;
        let signer = match (var("STELE_LOG_KMS_KEY_ID"), var("STELE_LOG_SIGNING_KEY_FILE")) {
            (Some(key), None) => SignerSource::Kms(key),
            (None, Some(path)) => SignerSource::KeyFile(path.into()),
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "set exactly one of STELE_LOG_KMS_KEY_ID and STELE_LOG_SIGNING_KEY_FILE, not both".into(),
                ))
            }
            (None, None) => {
                return Err(Error::Config(
                    "no signing key: set STELE_LOG_KMS_KEY_ID (AWS KMS, ECC_NIST_EDWARDS25519) or \
                     STELE_LOG_SIGNING_KEY_FILE (a note private key file)"
                        .into(),
                ))
            }
        };
        Ok(Self {
            bucket,
            prefix,
            origin,
            signer,
        })
    }
}

/// The origin is the first line of every checkpoint and the signing key's note name:
/// printable, no spaces and no `+`.
pub fn check_origin(origin: &str) -> Result<(), Error> {
    if !stele_tlog::note::is_valid_key_name(origin) || origin.chars().any(char::is_control) {
        return Err(Error::Config(format!(
            "STELE_LOG_ORIGIN `{origin}` must be a non-empty name without spaces, `+` or control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stele_core::settings::from_pairs as lookup;

    #[test]
    fn required_and_exclusive_settings() {
        let base = [
            ("STELE_ARCHIVE_BUCKET", "b"),
            ("STELE_LOG_ORIGIN", "audit.example.com/prod"),
        ];
        let err = |pairs: &[(&str, &str)]| CheckpointerConfig::from_lookup(lookup(pairs)).unwrap_err().to_string();
        assert!(err(&[("STELE_LOG_ORIGIN", "o"), ("STELE_LOG_KMS_KEY_ID", "k")]).contains("STELE_ARCHIVE_BUCKET"));
        assert!(err(&[("STELE_ARCHIVE_BUCKET", "b"), ("STELE_LOG_KMS_KEY_ID", "k")]).contains("STELE_LOG_ORIGIN"));
        assert!(err(&base).contains("no signing key"));
        let both = [
            base[0],
            base[1],
            ("STELE_LOG_KMS_KEY_ID", "k"),
            ("STELE_LOG_SIGNING_KEY_FILE", "/f"),
        ];
        assert!(err(&both).contains("exactly one"));
        assert!(
            err(&[base[0], ("STELE_LOG_ORIGIN", "a b"), ("STELE_LOG_KMS_KEY_ID", "k")]).contains("STELE_LOG_ORIGIN")
        );
        let c = CheckpointerConfig::from_lookup(lookup(&[base[0], base[1], ("STELE_LOG_KMS_KEY_ID", "alias/log")]))
            .unwrap();
        assert_eq!(c.signer, SignerSource::Kms("alias/log".into()));
        assert_eq!(c.prefix, "audit");
        assert_eq!(c.origin, "audit.example.com/prod");
    }
}
