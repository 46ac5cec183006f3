//! Reading an archive back as a user would: objects from S3 and DuckDB (the
//! Athena stand-in) over the Parquet files with Hive partitioning.

use std::path::PathBuf;
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::Value;

/// Every key under `prefix` (`""`: the whole bucket), sorted.
pub async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list objects");
        keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        token = out.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    keys.sort();
    keys
}

/// One object's bytes.
pub async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Bytes {
    let out = s3.get_object().bucket(bucket).key(key).send().await.expect("get");
    out.body.collect().await.expect("body").into_bytes()
}

/// The project-local venv with the pinned DuckDB. `tests/python/venv.sh` makes
/// it under a cross-process lock (nextest runs each test in its own process, and
/// concurrent `python -m venv` runs broke each other); scripts/test has already
/// run it, so here it only checks, once per process.
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let script = super::repo_root().join("tests/python/venv.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run tests/python/venv.sh");
        assert!(out.status.success(), "{} failed", script.display());
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// Copy the bucket to a temp dir and read it with DuckDB and Hive partitioning.
pub async fn duckdb_readback(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Value {
    let dir = std::env::temp_dir().join(super::unique_name("archive"));
    for key in list_keys(s3, bucket, "").await {
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

/// The bytes at `url`, as any HTTP client would fetch a presigned URL.
pub fn download(url: &str) -> Vec<u8> {
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())",
            url,
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
