//! Reading an archive back as a user would: objects from S3 and DuckDB (the
//! Athena stand-in) over the Parquet files with Hive partitioning.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use serde_json::Value;

/// Every key in the bucket, sorted.
pub async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = s3.list_objects_v2().bucket(bucket).send().await.expect("list");
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

/// One object's bytes.
pub async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Bytes {
    let out = s3.get_object().bucket(bucket).key(key).send().await.expect("get");
    out.body.collect().await.expect("body").into_bytes()
}

/// The project-local venv with the pinned DuckDB, made once per test binary.
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    PY.get_or_init(|| {
        let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let root = super::repo_root();
        let py = root.join(".venv-tests/bin/python");
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().expect("run python");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
        if !py.exists() {
            run(std::process::Command::new("python3.11")
                .args(["-m", "venv"])
                .arg(root.join(".venv-tests")));
        }
        let has = std::process::Command::new(&py)
            .args(["-c", "import duckdb, sys; sys.exit(duckdb.__version__ != '1.5.5')"])
            .status()
            .is_ok_and(|s| s.success());
        if !has {
            run(std::process::Command::new(&py)
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"])
                .arg(root.join("tests/python/requirements.txt")));
        }
        py
    })
    .clone()
}

/// Copy the bucket to a temp dir and read it with DuckDB and Hive partitioning.
pub async fn duckdb_readback(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Value {
    let dir = std::env::temp_dir().join(super::unique_name("archive"));
    for key in list_keys(s3, bucket).await {
        if !key.ends_with(".parquet") {
            continue;
        }
        let path = dir.join(&key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, get(s3, bucket, &key).await).expect("write");
    }
    let out = std::process::Command::new(python())
        .arg(super::repo_root().join("tests/python/check_archive.py"))
        .arg(dir.join(prefix))
        .output()
        .expect("run check_archive.py");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "check_archive.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("check_archive.py prints JSON")
}
