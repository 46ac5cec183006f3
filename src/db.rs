//! `stele db`: the operator's database steps that need the schema owner (the
//! master user), which no function holds: applying migrations, and making the
//! login user of each function's secret (migration 0006_roles.sql makes the
//! roles; passwords never go through Terraform or a migration).

use base64::Engine;
use sha2::{Digest, Sha256};
use stele::local::aws;
use stele_store::{SecretReader, StoreSettings};

#[derive(clap::Args)]
pub struct DbArgs {
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(clap::Subcommand)]
enum DbCommand {
    /// Apply pending migrations, as the schema's owner.
    Migrate(Connection),
    /// Create the login user named in a function's secret (or give it a new
    /// password), as a member of `--role`, and write the password into the secret.
    CreateLogin {
        #[command(flatten)]
        connection: Connection,
        /// The database role the login user acts in.
        #[arg(long, value_parser = ["stele_writer", "stele_archiver", "stele_checkpointer", "stele_reader"])]
        role: String,
        /// The function's secret ({host, port, username, password, dbname}); its
        /// `username` is the login user; its `password` is replaced.
        #[arg(long)]
        secret_arn: String,
    },
}

#[derive(clap::Args)]
struct Connection {
    /// The owner's connection string. Without it: `--master-secret-arn`.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// The master user's secret (Aurora's `manage_master_user_password` secret
    /// holds only username and password); host, port and dbname come from
    /// `--endpoint-secret-arn` (any function's secret: the RDS Proxy).
    #[arg(long)]
    master_secret_arn: Option<String>,
    #[arg(long)]
    endpoint_secret_arn: Option<String>,
    /// Secrets Manager endpoint (LocalStack's); absent means AWS from the environment.
    #[arg(long, env = "STELE_AWS_ENDPOINT")]
    aws_endpoint: Option<String>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl Connection {
    async fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        let config = match &self.aws_endpoint {
            Some(endpoint) => aws::sdk_config(endpoint).await,
            None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
        };
        aws_sdk_secretsmanager::Client::new(&config)
    }

    /// A client connected as the owner (`STELE_DB_TLS` and the other settings
    /// from the environment, as the functions read them).
    async fn connect(&self, secrets: &aws_sdk_secretsmanager::Client) -> Result<tokio_postgres::Client, Error> {
        let url = match (&self.database_url, &self.master_secret_arn, &self.endpoint_secret_arn) {
            (Some(url), _, _) => url.clone(),
            (None, Some(master), Some(endpoint)) => {
                let mut merged = json_secret(secrets, endpoint).await?;
                let master = json_secret(secrets, master).await?;
                for key in ["username", "password"] {
                    merged[key] = master[key].clone();
                }
                stele_store::conninfo_from_secret(&merged.to_string())?
            }
            _ => return Err("give --database-url, or --master-secret-arn and --endpoint-secret-arn".into()),
        };
        let settings = StoreSettings::from_lookup(|k| match k {
            "DATABASE_URL" => Some(url.clone()),
            "STELE_DB_SECRET_ARN" => None,
            other => std::env::var(other).ok(),
        })?;
        let config = settings.resolve(secrets).await?;
        Ok(stele_store::connect(&config).await?)
    }
}

async fn json_secret(secrets: &aws_sdk_secretsmanager::Client, arn: &str) -> Result<serde_json::Value, Error> {
    let text = secrets
        .secret_string(arn)
        .await
        .map_err(|e| format!("reading {arn}: {e}"))?;
    Ok(serde_json::from_str(&text).map_err(|e| format!("{arn} is not JSON: {e}"))?)
}

pub async fn run(args: DbArgs) -> Result<(), Error> {
    match args.command {
        DbCommand::Migrate(connection) => {
            let client = connection.connect(&connection.secrets().await).await?;
            let applied = stele_store::migrate(&client).await?;
            println!("applied migrations: {applied:?}");
            Ok(())
        }
        DbCommand::CreateLogin {
            connection,
            role,
            secret_arn,
        } => {
            let secrets = connection.secrets().await;
            let client = connection.connect(&secrets).await?;
            let mut secret = json_secret(&secrets, &secret_arn).await?;
            let user = secret["username"]
                .as_str()
                .filter(|u| is_identifier(u))
                .ok_or_else(|| format!("{secret_arn}: `username` must be a lowercase SQL identifier"))?
                .to_string();
            let password = new_password();
            create_login(&client, &user, &role, &password).await?;
            secret["password"] = password.into();
            secrets
                .put_secret_value()
                .secret_id(&secret_arn)
                .secret_string(secret.to_string())
                .send()
                .await
                .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())?;
            println!("login user {user} in role {role}; its password is in {secret_arn}");
            Ok(())
        }
    }
}

/// Create `user` (or reset its password) as a member of `role`. The password
/// is sent as a SCRAM-SHA-256 verifier, so the statement (which
/// `log_statement = ddl` writes to the database log) never holds it.
pub async fn create_login(
    client: &tokio_postgres::Client,
    user: &str,
    role: &str,
    password: &str,
) -> Result<(), Error> {
    if !is_identifier(user) || !is_identifier(role) {
        return Err(format!("`{user}` / `{role}` is not a plain SQL identifier").into());
    }
    let verifier = scram_verifier(password, &new_salt());
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
        .await?
        .is_some();
    let verb = if exists { "ALTER" } else { "CREATE" };
    client
        .batch_execute(&format!(
            "{verb} ROLE {user} WITH LOGIN PASSWORD '{verifier}'; GRANT {role} TO {user}"
        ))
        .await?;
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// 64 hex characters from two random v4 UUIDs (244 random bits).
fn new_password() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

fn new_salt() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802, 7677):
/// `SCRAM-SHA-256$4096:salt$StoredKey:ServerKey`. (A hex password needs no SASLprep.)
fn scram_verifier(password: &str, salt: &[u8]) -> String {
    const ITERATIONS: u32 = 4096;
    // PBKDF2-HMAC-SHA-256, one 32-byte block.
    let mut u = hmac(password.as_bytes(), &[salt, &1u32.to_be_bytes()].concat());
    let mut salted = u;
    for _ in 1..ITERATIONS {
        u = hmac(password.as_bytes(), &u);
        salted.iter_mut().zip(u).for_each(|(s, x)| *s ^= x);
    }
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        b64(salt),
        b64(&stored_key),
        b64(&server_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn identifiers_are_plain() {
        assert!(is_identifier("stele_writer_login"));
        assert!(!is_identifier("Writer"));
        assert!(!is_identifier("a; DROP TABLE x"));
        assert!(!is_identifier(""));
    }
}
