//! `stele send`: post events from a file or stdin to an ingest endpoint.
//!
//! Accepts one event object, a JSON array of events, a `{"events": [...]}` body
//! or newline-delimited JSON (one event per line), and sends them in requests
//! of at most 500 events, printing each answer.

use std::io::Read;
use std::net::SocketAddr;

use serde_json::{json, Value};
use stele::local::http;

#[derive(clap::Args)]
pub struct SendArgs {
    /// File with events (JSON, a JSON array, {"events": [...]}, or NDJSON); `-` or absent reads stdin.
    file: Option<String>,
    /// Ingest endpoint (host:port of `stele dev`'s HTTP front).
    #[arg(long, default_value = "127.0.0.1:8787")]
    endpoint: SocketAddr,
    /// Bearer token (with `stele dev`: one of the development tokens it prints).
    #[arg(long, env = "STELE_TOKEN", default_value = "dev-token-acme")]
    token: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Split the input into events.
pub fn parse_events(text: &str) -> Result<Vec<Value>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("no events in the input".into());
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Array(events)) => Ok(events),
        Ok(Value::Object(mut body)) if body.contains_key("events") => match body.remove("events") {
            Some(Value::Array(events)) => Ok(events),
            _ => Err("`events` must be an array".into()),
        },
        Ok(event @ Value::Object(_)) => Ok(vec![event]),
        Ok(_) => Err("expected an event object, an array of events or {\"events\": [...]}".into()),
        Err(_) => trimmed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1)))
            .collect(),
    }
}

pub async fn run(args: SendArgs) -> Result<(), BoxError> {
    let mut text = String::new();
    match args.file.as_deref() {
        None | Some("-") => {
            std::io::stdin().read_to_string(&mut text)?;
        }
        Some(path) => text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?,
    }
    let events = parse_events(&text)?;
    let (mut accepted, mut failed) = (0usize, 0usize);
    for chunk in events.chunks(stele_core::limits::MAX_EVENTS_PER_REQUEST) {
        let body = json!({ "events": chunk }).to_string();
        let response = http::post_json(args.endpoint, "/v1/events", Some(&args.token), body.as_bytes())
            .await
            .map_err(|e| format!("posting to {}: {e}", args.endpoint))?;
        if response.status == 202 {
            accepted += chunk.len();
        } else {
            failed += chunk.len();
        }
        println!("{} {}", response.status, response.body);
    }
    eprintln!("stele send: {accepted} accepted, {failed} not accepted");
    if failed > 0 {
        return Err(format!("{failed} events were not accepted").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_shape_is_understood() {
        assert_eq!(parse_events(r#"{"action":"a.b"}"#).unwrap().len(), 1);
        assert_eq!(parse_events(r#"[{"a":1},{"a":2}]"#).unwrap().len(), 2);
        assert_eq!(
            parse_events(r#"{"events":[{"a":1},{"a":2},{"a":3}]}"#).unwrap().len(),
            3
        );
        assert_eq!(parse_events("{\"a\":1}\n\n{\"a\":2}\n").unwrap().len(), 2);
    }

    #[test]
    fn bad_lines_are_named() {
        let err = parse_events("{\"a\":1}\n{oops\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        assert!(parse_events("   ").is_err());
    }
}
