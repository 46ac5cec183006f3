//! RFC 8785 (JCS) vectors beyond the ones in `canonical.rs`'s unit tests. Only
//! vectors taken from the RFC text itself are here:
//! - §3.2.4: the UTF-8 bytes of the §3.2.2 sample output, as the RFC prints them;
//! - Appendix B: NaN and Infinity "must cause an error" (they cannot reach the
//!   canonicaliser: strict parsing refuses them and `serde_json` cannot hold them);
//! - §3.1 (I-JSON): duplicate property names and lone surrogates are refused;
//! - §3.2.2.2: strings are not Unicode-normalised.

use serde_json::{json, Number, Value};
use stele_core::canonical::{to_canonical_string, to_canonical_vec};
use stele_core::json::parse_strict;

fn jcs(text: &str) -> Vec<u8> {
    to_canonical_vec(&parse_strict(text.as_bytes()).expect("test input is valid JSON"))
}

/// RFC 8785 §3.2.4: the sample of §3.2.2 in UTF-8, byte by byte.
#[test]
fn sample_output_utf8_bytes() {
    let input = r#"{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"#;
    let expected_hex = "\
        7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72 \
        75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a \
        5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31 \
        65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37 \
        5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30 \
        30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d";
    let expected: Vec<u8> = expected_hex
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    assert_eq!(jcs(input), expected);
}

/// RFC 8785 Appendix B: NaN and ±Infinity must cause an error.
#[test]
fn non_finite_numbers_are_errors() {
    for text in ["NaN", "Infinity", "-Infinity", "[1e400]", "[-1e400]", r#"{"a":NaN}"#] {
        assert!(parse_strict(text.as_bytes()).is_err(), "{text} was accepted");
    }
    assert!(Number::from_f64(f64::NAN).is_none());
    assert!(Number::from_f64(f64::INFINITY).is_none());
    assert!(Number::from_f64(f64::NEG_INFINITY).is_none());
}

/// RFC 8785 §3.1: input must be I-JSON: no duplicate names, no lone surrogates.
#[test]
fn input_must_be_i_json() {
    assert!(parse_strict(br#"{"a":1,"a":1}"#).is_err());
    assert!(parse_strict(br#"{"a":1,"\u0061":1}"#).is_err());
    assert!(parse_strict(br#"["\udc00"]"#).is_err());
    assert!(parse_strict(br#"["\ud800x"]"#).is_err());
}

/// RFC 8785 §3.2.2.2: strings are serialised as they are, without Unicode
/// normalisation, so precomposed and decomposed forms stay distinct.
#[test]
fn strings_are_not_normalised() {
    let composed = json!("\u{c5}");
    let decomposed = json!("A\u{30a}");
    assert_eq!(to_canonical_string(&composed), "\"\u{c5}\"");
    assert_eq!(to_canonical_string(&decomposed), "\"A\u{30a}\"");
    assert_ne!(to_canonical_vec(&composed), to_canonical_vec(&decomposed));
}

/// RFC 8785 §3.2.2.2: only `"`, `\` and U+0000..U+001F are escaped; the seven
/// short forms are used where they exist and `\u00xx` (lower-case hex) otherwise.
/// `/`, DEL and non-ASCII characters are written as they are.
#[test]
fn string_escaping_rules() {
    let all_controls: String = (0u8..0x20).map(char::from).collect();
    let expected = "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\
        \\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\"";
    assert_eq!(to_canonical_string(&Value::String(all_controls)), expected);
    assert_eq!(
        to_canonical_string(&json!("/\u{7f}\u{e9}\u{2028}\u{1f600}\"\\")),
        "\"/\u{7f}\u{e9}\u{2028}\u{1f600}\\\"\\\\\""
    );
}
