//! Cold start: the archiver exactly as the Lambda builds it from its
//! environment, behind a lookup so a test can give it what Terraform gives
//! the function and nothing else.

use std::sync::Arc;

use stele_store::{SecretReader, StoreSettings};

use crate::config::ArchiverConfig;
use crate::error::Error;
use crate::runner::{Archiver, PgArchiver};
use crate::s3::S3Store;

/// Read the settings through `get` (`STELE_ARCHIVE_*`, and the database as every
/// binary reads it: `DATABASE_URL` or `STELE_DB_SECRET_ARN` through `secrets`).
/// `STELE_STREAM_NAME` (optional; Terraform sets it): the stream whose backlog
/// holds days back (see [`crate::backlog`]); without it the clock alone decides.
pub async fn archiver(
    get: impl Fn(&str) -> Option<String>,
    s3: aws_sdk_s3::Client,
    kinesis: aws_sdk_kinesis::Client,
    secrets: &impl SecretReader,
) -> Result<PgArchiver<S3Store>, Error> {
    let config = ArchiverConfig::from_lookup(&get)?;
    let db = StoreSettings::from_lookup(&get)
        .map_err(|e| Error::Config(e.to_string()))?
        .resolve(secrets)
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    let store = Arc::new(S3Store::new(s3, config.bucket.clone()));
    let stream = get("STELE_STREAM_NAME");
    Ok(Archiver::with_postgres(store, db, config).with_stream_backlog(kinesis, stream.as_deref()))
}
