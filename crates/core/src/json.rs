//! Strict JSON parsing for untrusted input.
//!
//! `serde_json::Value` keeps the last of two duplicate keys; other parsers keep
//! the first. An audit record that two readers see differently is a forgery
//! vector, so duplicate keys are refused outright. Nesting is bounded by
//! serde_json's recursion limit (128), so deep input is an error, not a crash.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("body is not valid UTF-8 (first bad byte at offset {0})")]
    InvalidUtf8(usize),
    #[error("{0}")]
    Syntax(String),
}

/// Parse `bytes` as one JSON document, refusing invalid UTF-8, duplicate keys and
/// trailing garbage.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return Err(JsonError::InvalidUtf8(e.valid_up_to())),
    };
    // From the checked `str`: the parser need not check each string's UTF-8 again.
    let mut de = serde_json::Deserializer::from_str(text);
    let StrictValue(value) = StrictValue::deserialize(&mut de).map_err(|e| JsonError::Syntax(e.to_string()))?;
    de.end().map_err(|e| JsonError::Syntax(e.to_string()))?;
    Ok(value)
}

pub(crate) struct StrictValue(pub(crate) Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let StrictValue(v) = access.next_value()?;
            // One search of the map per member, whether it is new or a duplicate.
            match map.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(v);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    return Err(de::Error::custom(format!("duplicate key `{}`", slot.key())));
                }
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse_strict` as it was: from the bytes, one map search for the
    /// duplicate check and another for the insert.
    fn reference(bytes: &[u8]) -> Result<Value, JsonError> {
        if let Err(e) = std::str::from_utf8(bytes) {
            return Err(JsonError::InvalidUtf8(e.valid_up_to()));
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let StrictValue(value) = StrictValue::deserialize(&mut de).map_err(|e| JsonError::Syntax(e.to_string()))?;
        de.end().map_err(|e| JsonError::Syntax(e.to_string()))?;
        Ok(value)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 4096, failure_persistence: None, ..Default::default() })]

        /// Same values, same errors word for word, on JSON-like text and on bytes.
        #[test]
        fn parses_and_errs_as_before(
            text in r#"[\[\]{}",:0-9a-z\\ .eE+\-\x00-\x1f\u{80}-\u{10ffff}]{0,40}"#,
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            proptest::prop_assert_eq!(parse_strict(text.as_bytes()), reference(text.as_bytes()));
            proptest::prop_assert_eq!(parse_strict(&bytes), reference(&bytes));
            let wrapped = format!(r#"{{"a":{text},"b":[{text}],"a":1}}"#);
            proptest::prop_assert_eq!(parse_strict(wrapped.as_bytes()), reference(wrapped.as_bytes()));
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let err = parse_strict(br#"{"a":{"b":1,"b":2}}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key `b`"), "{err}");
    }

    #[test]
    fn invalid_utf8_reports_the_offset() {
        assert_eq!(parse_strict(b"{\"a\":\"\xff\"}"), Err(JsonError::InvalidUtf8(6)));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(matches!(parse_strict(deep.as_bytes()), Err(JsonError::Syntax(_))));
    }

    #[test]
    fn trailing_garbage_is_refused() {
        assert!(parse_strict(b"{} {}").is_err());
    }

    #[test]
    fn values_parse_like_serde_json() {
        let text = br#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}]}"#;
        assert_eq!(
            parse_strict(text).unwrap(),
            serde_json::from_slice::<Value>(text).unwrap()
        );
    }
}
