//! Database credentials from AWS Secrets Manager (`STELE_DB_SECRET_ARN`),
//! read once at start-up.

use crate::config::conninfo_from_secret;
use crate::error::{Error, Result};

/// Fetch the secret and turn it into a connection string.
pub async fn database_conninfo(client: &aws_sdk_secretsmanager::Client, arn: &str) -> Result<String> {
    let secret_error = |message: String| Error::Secret {
        arn: arn.to_string(),
        message,
    };
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| secret_error(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
    let text = output
        .secret_string()
        .ok_or_else(|| secret_error("the secret has no SecretString".into()))?;
    conninfo_from_secret(text).map_err(secret_error)
}
