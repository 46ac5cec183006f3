//! Peak memory of the ingest handler on the worst hostile bodies (issue 18).
//!
//! Each body runs in a child process (this test binary again, running only the
//! ignored `child_runs_one_body`), which builds the API Gateway event as Lambda
//! receives it (the body JSON-escaped inside it), lets the handler answer, and
//! prints its peak resident set (`VmHWM` from `/proc/self/status`). The parent
//! asserts every peak stays under 64 MiB and prints the table that
//! docs/BENCHMARKS.md records:
//!
//! `cargo test -p stele-ingest --test peak_rss -- --nocapture`
//!
//! Before issue 18 a 5 MiB body of `"\u0000"` strings made validation build
//! one problem per string (~580 000), and `stele dev` went from 34 to 161 MB.

use std::io::Write;
use std::process::Command;

use chrono::Utc;
use serde_json::{json, Value};
use stele_core::event::timestamp;
use stele_core::limits::MAX_REQUEST_BYTES;
use stele_ingest::lambda_http;
use stele_ingest::{EventSink, Ingest, IngestConfig, PutResult, Record};

const LIMIT_MIB: u64 = 64;
const CASE_VAR: &str = "STELE_PEAK_RSS_CASE";
const CASES: &[&str] = &[
    "nul-strings-in-changes",
    "nul-strings-in-a-batch",
    "unknown-fields",
    "empty-arrays-in-changes",
    "gzip-of-nul-strings",
];

/// A sink that stores nothing (the bodies are all refused anyway).
struct NullSink;

impl EventSink for NullSink {
    async fn put(&self, records: &[Record]) -> Vec<PutResult> {
        records
            .iter()
            .map(|_| PutResult::Stored {
                shard_id: "s".into(),
                sequence_number: "1".into(),
            })
            .collect()
    }
}

fn event() -> Value {
    json!({
        "occurred_at": timestamp::format(&Utc::now()),
        "category": "audit",
        "action": "user.login",
        "outcome": "success",
        "actor": { "id": "u1", "type": "user" },
        "source": { "service": "auth" },
    })
}

/// `{…event, "<member>": <open>` + `item,` repeated + `<close>}` filling `len` bytes.
fn fill(len: usize, member: &str, open: &str, item: &str, close: &str) -> Vec<u8> {
    let head = event().to_string();
    let mut body = head.as_bytes()[..head.len() - 1].to_vec();
    body.extend_from_slice(format!(",\"{member}\":{open}").as_bytes());
    let tail = format!("{close}}}");
    let mut i = 0usize;
    loop {
        let next = item.replace("{i}", &i.to_string());
        if body.len() + next.len() + 1 + tail.len() > len {
            break;
        }
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(next.as_bytes());
        i += 1;
    }
    body.extend_from_slice(tail.as_bytes());
    body
}

/// The body of a case and whether it is gzip.
fn body_of(case: &str) -> (Vec<u8>, bool) {
    let len = MAX_REQUEST_BYTES;
    match case {
        "nul-strings-in-changes" => (fill(len, "changes", "{\"after\":[", "\"\\u0000\"", "]}"), false),
        "nul-strings-in-a-batch" => {
            // 500 events, each with `changes` full of NUL strings.
            let per = len / 500 - 2;
            let events: Vec<Vec<u8>> = (0..500)
                .map(|_| fill(per, "changes", "{\"after\":[", "\"\\u0000\"", "]}"))
                .collect();
            let mut body = b"{\"events\":[".to_vec();
            body.extend_from_slice(&events.join(&b","[..]));
            body.extend_from_slice(b"]}");
            (body, false)
        }
        "unknown-fields" => {
            let head = event().to_string();
            let mut body = head.as_bytes()[..head.len() - 1].to_vec();
            let mut i = 0;
            while body.len() + 20 < len {
                body.extend_from_slice(format!(",\"x{i}\":0").as_bytes());
                i += 1;
            }
            body.push(b'}');
            (body, false)
        }
        "empty-arrays-in-changes" => (fill(len, "changes", "{\"after\":[", "[]", "]}"), false),
        "gzip-of-nul-strings" => {
            let plain = fill(len, "changes", "{\"after\":[", "\"\\u0000\"", "]}");
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(&plain).unwrap();
            (enc.finish().unwrap(), true)
        }
        other => panic!("no case {other}"),
    }
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The payload v2 event as API Gateway sends it: the body as a JSON string,
/// or base64 when it takes the body for binary (gzip).
fn gateway_event(body: &[u8], gzip: bool) -> String {
    use base64::Engine;
    let mut headers = json!({ "content-type": "application/json" });
    let (body, base64) = if gzip {
        headers["content-encoding"] = json!("gzip");
        (base64::engine::general_purpose::STANDARD.encode(body), true)
    } else {
        (String::from_utf8(body.to_vec()).unwrap(), false)
    };
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/v1/events", "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000", "apiId": "local", "domainName": "localhost", "domainPrefix": "localhost",
            "http": { "method": "POST", "path": "/v1/events", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "" },
            "authorizer": { "jwt": { "claims": { "tenant_id": "acme" }, "scopes": null } },
            "requestId": "r", "routeKey": "$default", "stage": "$default", "time": "", "timeEpoch": 0,
        },
        "body": body, "isBase64Encoded": base64,
    })
    .to_string()
}

#[test]
#[ignore = "run by the_worst_hostile_bodies_stay_under_64_mib_of_peak_rss in a child process"]
fn child_runs_one_body() {
    let Ok(case) = std::env::var(CASE_VAR) else {
        return;
    };
    let start_kib = vm_hwm_kib();
    let (body, gzip) = body_of(&case);
    let body_bytes = body.len();
    let event = gateway_event(&body, gzip);
    drop(body);
    let event_bytes = event.len();
    let request = lambda_http::request::from_str(&event).unwrap();
    drop(event);
    let ingest = Ingest::new(IngestConfig::new("s"), NullSink);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let resp = runtime.block_on(ingest.handle(request));
    let answer: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    println!(
        "PEAK case={case} body_bytes={body_bytes} event_bytes={event_bytes} status={} problems_total={} start_kib={start_kib} peak_kib={}",
        resp.status().as_u16(),
        answer["problems_total"],
        vm_hwm_kib()
    );
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

#[test]
fn the_worst_hostile_bodies_stay_under_64_mib_of_peak_rss() {
    let exe = std::env::current_exe().unwrap();
    let mut over = Vec::new();
    println!("| body | body bytes | event bytes | status | problems_total | peak RSS MiB (start) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for case in CASES {
        let out = Command::new(&exe)
            .args([
                "child_runs_one_body",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CASE_VAR, case)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let Some(line) = stdout.lines().find_map(|l| l.find("PEAK ").map(|at| &l[at..])) else {
            panic!(
                "{case}: the child printed no measurement\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let peak: u64 = field(line, "peak_kib").parse().unwrap();
        let start: u64 = field(line, "start_kib").parse().unwrap();
        let status = field(line, "status");
        println!(
            "| {case} | {} | {} | {status} | {} | {:.1} ({:.1}) |",
            field(line, "body_bytes"),
            field(line, "event_bytes"),
            field(line, "problems_total"),
            peak as f64 / 1024.0,
            start as f64 / 1024.0
        );
        assert!(
            ["400", "413"].contains(&status),
            "{case}: answered {status}, not a refusal"
        );
        if peak > LIMIT_MIB * 1024 {
            over.push(format!("{case}: {peak} KiB"));
        }
    }
    assert!(over.is_empty(), "over {LIMIT_MIB} MiB of peak RSS: {over:?}");
}
