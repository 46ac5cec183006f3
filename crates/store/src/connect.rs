//! Connections: one-off clients (tools, tests, the archiver) and the pool the
//! batch-writer keeps across invocations.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{StoreConfig, TlsMode};
use crate::error::{Error, Result};

fn rustls_connector(ca_file: Option<&str>) -> Result<MakeRustlsConnect> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| Error::Tls(format!("reading STELE_DB_CA_FILE {path}: {e}")))?;
        for cert in certs {
            let cert = cert.map_err(|e| Error::Tls(format!("parsing {path}: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("adding a CA from {path}: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Open one connection; its driver task runs on the current runtime.
pub async fn connect(config: &StoreConfig) -> Result<Client> {
    let pg = config.pg_config()?;
    match &config.tls {
        TlsMode::Disable => {
            let (client, conn) = pg.connect(NoTls).await.map_err(Error::Connect)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::warn!(error = %e, "postgres connection closed");
                }
            });
            Ok(client)
        }
        TlsMode::VerifyFull { ca_file } => {
            let tls = rustls_connector(ca_file.as_deref())?;
            let (client, conn) = pg.connect(tls).await.map_err(Error::Connect)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::warn!(error = %e, "postgres connection closed");
                }
            });
            Ok(client)
        }
    }
}

/// A pool whose connections are checked (`Fast` recycling re-validates closed
/// ones) so a database restart costs one failed attempt, not a poisoned pool.
pub fn pool(config: &StoreConfig) -> Result<Pool> {
    let pg = config.pg_config()?;
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &config.tls {
        TlsMode::Disable => Manager::from_config(pg, NoTls, manager_config),
        TlsMode::VerifyFull { ca_file } => {
            Manager::from_config(pg, rustls_connector(ca_file.as_deref())?, manager_config)
        }
    };
    Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(config.connect_timeout))
        .create_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| Error::Pool(e.to_string()))
}
