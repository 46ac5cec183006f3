//! The real services of a local run, as host processes: a throwaway PostgreSQL
//! cluster (`scripts/pg.sh`) and LocalStack in host mode (`localstack/start.sh`).
//! Each is started with `--watch-pid` so it stops when this process exits,
//! however it exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("running {script}: {source}")]
    Spawn {
        script: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{script} failed ({status}); see the messages above")]
    Failed {
        script: String,
        status: std::process::ExitStatus,
    },
    #[error("{script} did not print {key}")]
    MissingOutput { script: String, key: &'static str },
}

/// Where the repository's scripts are: the working directory or, when run
/// through cargo, the package root.
pub fn repo_root() -> PathBuf {
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if here.join("scripts/pg.sh").exists() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A started service: its endpoint and state directory (removed on stop).
#[derive(Debug, Clone)]
pub struct Service {
    pub endpoint: String,
    pub dir: String,
    stop_script: &'static str,
    stop_args: &'static [&'static str],
}

impl Service {
    /// Stop now (the watchdog would do it at exit anyway).
    pub fn stop(&self) {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join(self.stop_script))
            .args(self.stop_args)
            .arg(&self.dir)
            .stdout(Stdio::null());
        if let Err(e) = cmd.status() {
            tracing::warn!(error = %e, dir = %self.dir, "stopping service");
        }
    }
}

fn run_start(root: &Path, script: &str, args: &[&str]) -> Result<Vec<(String, String)>, ServiceError> {
    let pid = std::process::id().to_string();
    let output = Command::new("bash")
        .arg(root.join(script))
        .args(args)
        .args(["--watch-pid", &pid])
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| ServiceError::Spawn {
            script: script.into(),
            source,
        })?;
    if !output.status.success() {
        return Err(ServiceError::Failed {
            script: script.into(),
            status: output.status,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect())
}

fn take(pairs: &[(String, String)], script: &str, key: &'static str) -> Result<String, ServiceError> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| ServiceError::MissingOutput {
            script: script.into(),
            key,
        })
}

/// Start a throwaway PostgreSQL cluster (installs Debian `postgresql` if missing).
/// `durable` keeps fsync on (benchmarks); tests and dev runs turn it off.
pub fn start_postgres(durable: bool) -> Result<Service, ServiceError> {
    let script = "scripts/pg.sh";
    let mut args = vec!["start"];
    if durable {
        args.push("--durable");
    }
    let out = run_start(&repo_root(), script, &args)?;
    Ok(Service {
        endpoint: take(&out, script, "STELE_PG_URL")?,
        dir: take(&out, script, "STELE_PG_DIR")?,
        stop_script: script,
        stop_args: &["stop"],
    })
}

/// Start LocalStack in host mode (installs its venv on first use).
pub fn start_localstack() -> Result<Service, ServiceError> {
    let script = "localstack/start.sh";
    let out = run_start(&repo_root(), script, &[])?;
    Ok(Service {
        endpoint: take(&out, script, "STELE_AWS_ENDPOINT")?,
        dir: take(&out, script, "LOCALSTACK_DIR")?,
        stop_script: "localstack/stop.sh",
        stop_args: &[],
    })
}
