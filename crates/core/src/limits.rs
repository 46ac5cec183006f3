//! Size limits of the API, in one place. Kinesis sets the event count
//! (PutRecords: 500 records per call), Lambda's payload limit the body size
//! (see [`MAX_REQUEST_BYTES`]); the per-field ones follow common audit-log
//! services so that a single event stays small enough to query.

/// Events in one request (= records in one PutRecords call).
pub const MAX_EVENTS_PER_REQUEST: usize = 500;
/// Bytes in one request body (after gzip decompression): 1 000 000.
///
/// Not PutRecords' 5 MiB: API Gateway hands the body to Lambda inside a JSON
/// event, and a synchronous invocation may carry at most
/// [`LAMBDA_MAX_PAYLOAD_BYTES`]. JSON-escaping can make each body byte six
/// (`\u00XX`; base64, for a body API Gateway takes for binary, makes it 4/3), so
/// a 5 MiB body of control characters never reached the function: the client
/// got a 5xx instead of `413`. Six times this limit plus
/// [`GATEWAY_EVENT_OVERHEAD_BYTES`] fits the Lambda limit, so every body
/// within the limit, and every body a little over it, reaches the handler.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// Worst-case JSON growth of one body byte inside the API Gateway event.
pub const GATEWAY_ESCAPE_FACTOR: usize = 6;
/// What an API Gateway (HTTP API, payload v2) event holds besides the body, at
/// most: request line and headers are limited to 10 240 bytes, and appear up to
/// three times (headers, `rawPath`/`requestContext.http.path`, `userAgent`,
/// JWT claims decoded from the `Authorization` header), each escaped up to six
/// times, plus the fixed members.
pub const GATEWAY_EVENT_OVERHEAD_BYTES: usize = 3 * GATEWAY_ESCAPE_FACTOR * 10_240 + 16 * 1024;
/// Lambda's limit on a synchronous invocation's request payload (6 MB).
pub const LAMBDA_MAX_PAYLOAD_BYTES: usize = 6_291_456;
/// Bytes in one Kinesis PutRecords call (the sink chunks by it).
pub const MAX_PUT_RECORDS_BYTES: usize = 5 * 1024 * 1024;
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
/// 1 MB body can hold over a hundred thousand, and a Lambda answer may not exceed
/// 6 MB: the list stops here and `problems_total` says how many there were.
pub const MAX_PROBLEMS_LISTED: usize = 1000;

// Every body within the limit fits the Lambda payload, even fully escaped.
const _: () =
    assert!(GATEWAY_ESCAPE_FACTOR * MAX_REQUEST_BYTES + GATEWAY_EVENT_OVERHEAD_BYTES <= LAMBDA_MAX_PAYLOAD_BYTES);
