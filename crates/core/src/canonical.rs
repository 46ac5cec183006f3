//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! The event hash is taken over this form, so two parties that agree on the
//! event's content agree on its hash, whatever key order or whitespace they used.
//! Numbers follow ECMAScript `Number.prototype.toString` (via `ryu-js`), strings
//! use the minimal escaping of RFC 8785 §3.2.2.2, and object members are sorted
//! by their keys' UTF-16 code units (§3.2.3), not by UTF-8 bytes.

use std::io::Write as _;

use serde_json::{Map, Value};

/// The canonical (RFC 8785) serialisation of `value`.
pub fn to_canonical_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out);
    out
}

/// The canonical serialisation of an object given as its map.
pub fn to_canonical_object_vec(map: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_object(map, &mut out);
    out
}

/// The canonical serialisation as a `String` (JCS output is always UTF-8).
pub fn to_canonical_string(value: &Value) -> String {
    // JCS only ever writes valid UTF-8: every byte comes from a `&str` or ASCII.
    String::from_utf8(to_canonical_vec(value)).unwrap_or_default()
}

/// The length of `value`'s canonical form, counted without writing it, and
/// stopping as soon as it passes `limit` (the result is then some number above
/// `limit`). Size checks of untrusted input run this first, so that an
/// over-size value is refused without being copied or walked to its end.
pub fn canonical_len_within(value: &Value, limit: usize) -> usize {
    let mut n = 0;
    count_value(value, limit, &mut n);
    n
}

/// [`canonical_len_within`] of an object given as its map.
pub fn canonical_object_len_within(map: &Map<String, Value>, limit: usize) -> usize {
    let mut n = 0;
    count_object(map, limit, &mut n);
    n
}

fn count_value(value: &Value, limit: usize, n: &mut usize) {
    if *n > limit {
        return;
    }
    match value {
        Value::Null => *n += 4,
        Value::Bool(true) => *n += 4,
        Value::Bool(false) => *n += 5,
        Value::Number(num) => {
            let mut digits = Vec::new();
            write_number(num, &mut digits);
            *n += digits.len();
        }
        Value::String(s) => *n += string_len(s),
        Value::Array(items) => {
            *n += 2;
            for (i, item) in items.iter().enumerate() {
                *n += usize::from(i > 0);
                count_value(item, limit, n);
                if *n > limit {
                    return;
                }
            }
        }
        Value::Object(map) => count_object(map, limit, n),
    }
}

fn count_object(map: &Map<String, Value>, limit: usize, n: &mut usize) {
    *n += 2;
    for (i, (key, value)) in map.iter().enumerate() {
        *n += usize::from(i > 0) + string_len(key) + 1;
        count_value(value, limit, n);
        if *n > limit {
            return;
        }
    }
}

/// Bytes of `s` as a canonical JSON string (see [`write_string`]).
fn string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

pub(crate) fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, out),
    }
}

pub(crate) fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    if iterates_in_utf16_order(map) {
        write_members(map.iter(), out);
    } else {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
        write_members(members.into_iter(), out);
    }
}

fn write_members<'a>(members: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (key, value)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        write_value(value, out);
    }
    out.push(b'}');
}

/// Whether `map` already iterates in RFC 8785 order, so the common case skips
/// collecting and sorting its members. UTF-8 byte order is UTF-16 code unit
/// order unless a key holds a character from U+E000 up (lead byte 0xEE and
/// above: those sort after the surrogates of astral characters in UTF-16), and
/// the check does not assume which order `Map` iterates in.
fn iterates_in_utf16_order(map: &Map<String, Value>) -> bool {
    let mut previous: Option<&[u8]> = None;
    for key in map.keys() {
        let key = key.as_bytes();
        if key.iter().any(|&b| b >= 0xee) || previous.is_some_and(|p| p >= key) {
            return false;
        }
        previous = Some(key);
    }
    true
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    // JSON numbers are IEEE-754 doubles in JCS. Integers that fit 2^53 print
    // exactly; validation rejects larger ones before they get here, so the
    // conversion below never silently rounds an accepted value.
    // An integer a double holds exactly prints as its digits (ECMAScript
    // switches to exponents only from 1e21): no float formatting needed.
    const EXACT: u64 = 1 << 53;
    if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= EXACT) {
        let _ = write!(out, "{i}");
        return;
    }
    if let Some(u) = n.as_u64().filter(|&u| u <= EXACT) {
        let _ = write!(out, "{u}");
        return;
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f == 0.0 {
        out.push(b'0'); // ECMAScript prints -0 as "0"
        return;
    }
    let mut buf = ryu_js::Buffer::new();
    out.extend_from_slice(buf.format_finite(f).as_bytes());
}

pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jcs(text: &str) -> String {
        to_canonical_string(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn counted_length_is_the_written_length_and_stops_past_the_limit() {
        let samples = [
            r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, -0.0, 0, 7], "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/\u0000\b\f\r\t", "literals": [null, true, false], "": {}, "a": [[], [{}]]}"#,
            r#""""#,
            r#"[]"#,
            r#"{"é":"ü\u2028"}"#,
        ];
        for text in samples {
            let v: Value = serde_json::from_str(text).unwrap();
            let len = to_canonical_vec(&v).len();
            assert_eq!(canonical_len_within(&v, usize::MAX), len, "{text}");
            assert!(canonical_len_within(&v, len / 2) > len / 2, "{text}");
            if let Value::Object(m) = &v {
                assert_eq!(canonical_object_len_within(m, usize::MAX), len, "{text}");
            }
        }
        // Stops early: a long array is not counted to its end.
        let big = Value::Array(vec![Value::String("\0".into()); 100_000]);
        let n = canonical_len_within(&big, 1000);
        assert!(n > 1000 && n < 1100, "{n}");
    }

    /// RFC 8785 §3.2.2 example ("Sample Input"/"Output").
    #[test]
    fn rfc8785_sample_vector() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let expected = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(jcs(input), expected);
    }

    /// RFC 8785 §3.2.3 sorting example: keys compare by UTF-16 code units.
    #[test]
    fn rfc8785_sorting_vector() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
            \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
            \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(jcs(input), expected);
    }

    /// Number vectors from RFC 8785 Appendix B (IEEE-754 → ES6 text).
    #[test]
    fn rfc8785_number_vectors() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (f64::from_bits(0x0000000000000001), "5e-324"),
            (f64::from_bits(0x8000000000000001), "-5e-324"),
            (f64::from_bits(0x7fefffffffffffff), "1.7976931348623157e+308"),
            (f64::from_bits(0xffefffffffffffff), "-1.7976931348623157e+308"),
            (f64::from_bits(0x4340000000000000), "9007199254740992"),
            (f64::from_bits(0xc340000000000000), "-9007199254740992"),
            (f64::from_bits(0x4430000000000000), "295147905179352830000"),
            (f64::from_bits(0x44b52d02c7e14af5), "9.999999999999997e+22"),
            (f64::from_bits(0x44b52d02c7e14af6), "1e+23"),
            (f64::from_bits(0x44b52d02c7e14af7), "1.0000000000000001e+23"),
            (f64::from_bits(0x444b1ae4d6e2ef4e), "999999999999999700000"),
            (f64::from_bits(0x444b1ae4d6e2ef4f), "999999999999999900000"),
            (f64::from_bits(0x444b1ae4d6e2ef50), "1e+21"),
            (f64::from_bits(0x3eb0c6f7a0b5ed8c), "9.999999999999997e-7"),
            (f64::from_bits(0x3eb0c6f7a0b5ed8d), "0.000001"),
            (f64::from_bits(0x41b3de4355555553), "333333333.3333332"),
            (f64::from_bits(0x41b3de4355555554), "333333333.33333325"),
            (f64::from_bits(0x41b3de4355555555), "333333333.3333333"),
            (f64::from_bits(0x41b3de4355555556), "333333333.3333334"),
            (f64::from_bits(0x41b3de4355555557), "333333333.33333343"),
            (f64::from_bits(0xbecbf647612f3696), "-0.0000033333333333333333"),
            (f64::from_bits(0x43143ff3c1cb0959), "1424953923781206.2"),
        ];
        for (f, expected) in cases {
            let v = json!(f);
            assert_eq!(to_canonical_string(&v), *expected, "bits {:016x}", f.to_bits());
        }
    }

    /// ECMAScript's spelling of a double, the way `write_number` did it for every number.
    fn via_ryu(n: &serde_json::Number) -> String {
        let f = n.as_f64().unwrap();
        if f == 0.0 {
            return "0".into();
        }
        ryu_js::Buffer::new().format_finite(f).to_owned()
    }

    proptest::proptest! {
        /// Integers written as digits read the same as through the double.
        #[test]
        fn integers_are_spelled_as_through_a_double(
            i in proptest::prop_oneof![
                proptest::prelude::any::<i64>(),
                -(1i64 << 54)..(1i64 << 54),
                -1000i64..1000,
            ],
            u in proptest::prelude::any::<u64>(),
        ) {
            for n in [serde_json::Number::from(i), serde_json::Number::from(u)] {
                let mut out = Vec::new();
                write_number(&n, &mut out);
                proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), via_ryu(&n), "{}", n);
            }
        }
    }

    #[test]
    fn integers_at_the_edge_of_exactness() {
        for i in [
            0i64,
            1,
            -1,
            (1 << 53) - 1,
            1 << 53,
            (1 << 53) + 1,
            -(1 << 53),
            -(1 << 53) - 1,
            i64::MIN,
            i64::MAX,
        ] {
            let n = serde_json::Number::from(i);
            let mut out = Vec::new();
            write_number(&n, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), via_ryu(&n), "{i}");
        }
        let n = serde_json::Number::from(u64::MAX);
        let mut out = Vec::new();
        write_number(&n, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), via_ryu(&n));
    }

    #[test]
    fn control_characters_use_lowercase_unicode_escapes() {
        let v = json!("a\u{1}\u{1f}\u{7f}\u{2028}");
        assert_eq!(to_canonical_string(&v), "\"a\\u0001\\u001f\u{7f}\u{2028}\"");
    }

    #[test]
    fn nested_objects_are_sorted_at_every_level() {
        assert_eq!(
            jcs(r#"{"b":{"z":1,"a":[{"y":2,"x":1}]},"a":0}"#),
            r#"{"a":0,"b":{"a":[{"x":1,"y":2}],"z":1}}"#
        );
    }
}
