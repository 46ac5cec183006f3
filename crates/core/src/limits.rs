//! Size limits of the API, in one place. Kinesis sets the request ones
//! (PutRecords: 500 records, 5 MiB per call); the per-field ones follow common
//! audit-log services so that a single event stays small enough to query.

/// Events in one request (= records in one PutRecords call).
pub const MAX_EVENTS_PER_REQUEST: usize = 500;
/// Bytes in one request body (= one PutRecords call).
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// Bytes of one event in canonical form.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Bytes of `changes` in canonical form.
pub const MAX_CHANGES_BYTES: usize = 32 * 1024;
/// Nesting depth of `changes`.
pub const MAX_JSON_DEPTH: usize = 32;
pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY_CHARS: usize = 40;
pub const MAX_METADATA_VALUE_CHARS: usize = 500;
pub const MAX_ACTION_CHARS: usize = 128;
/// Identifiers: actor/resource ids and types, correlation ids, service names.
pub const MAX_ID_CHARS: usize = 256;
pub const MAX_DISPLAY_CHARS: usize = 256;
pub const MAX_USER_AGENT_CHARS: usize = 1024;
/// Largest integer an IEEE-754 double holds exactly (2^53).
pub const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;
/// Problems listed in one `400` answer. Every problem is counted, but a hostile
/// 5 MiB body can hold hundreds of thousands, and a Lambda answer may not exceed
/// 6 MB: the list stops here and `problems_total` says how many there were.
pub const MAX_PROBLEMS_LISTED: usize = 1000;
