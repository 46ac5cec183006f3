//! Cold start: the checkpointer as the Lambda builds it from its environment,
//! behind a lookup so a test can give it exactly what Terraform gives the function.

use stele_archiver::S3Store;
use stele_store::{SecretReader, StoreConfig, StoreSettings};

use crate::config::CheckpointerConfig;
use crate::run::Checkpointer;
use crate::signer::LogSigner;
use crate::Error;

/// The checkpointer and the database it reads: `STELE_ARCHIVE_BUCKET`,
/// `STELE_ARCHIVE_PREFIX`, `STELE_LOG_ORIGIN`, the signer (`STELE_LOG_KMS_KEY_ID` or
/// `STELE_LOG_SIGNING_KEY_FILE`) and the database as every binary reads it
/// (`DATABASE_URL` or `STELE_DB_SECRET_ARN` through `secrets`).
pub async fn checkpointer(
    get: impl Fn(&str) -> Option<String>,
    s3: aws_sdk_s3::Client,
    kms: impl FnOnce() -> aws_sdk_kms::Client,
    secrets: &impl SecretReader,
) -> Result<(Checkpointer<S3Store>, StoreConfig), Error> {
    let config = CheckpointerConfig::from_lookup(&get)?;
    let db = StoreSettings::from_lookup(&get)
        .map_err(|e| Error::Config(e.to_string()))?
        .resolve(secrets)
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    let signer = LogSigner::load(&config.signer, &config.origin, kms).await?;
    let store = S3Store::new(s3, config.bucket.clone());
    Ok((Checkpointer::new(store, signer, config.prefix, config.origin), db))
}
