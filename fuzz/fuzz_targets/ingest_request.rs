//! libFuzzer target: arbitrary bytes → the ingest request parser and validator
//! (`check_media_type` → `decode_body` → `parse_events` → `validate_event` →
//! seal → `SealedEvent::open`). The logic, and the invariants it asserts, live in
//! `ingest_one.rs`, which `tests/hostile.rs` also runs as a bounded smoke loop.
#![no_main]

#[path = "ingest_one.rs"]
mod ingest_one;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingest_one::ingest_one(data);
});
