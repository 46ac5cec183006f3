//! Reading settings from the environment (or any lookup, in tests) with errors
//! that name the variable and the accepted range. Every stele binary reads its
//! configuration through these, so they all fail at start-up the same way.

use std::ops::RangeInclusive;

/// A variable's value, trimmed; `None` when unset or blank.
pub fn text(get: &impl Fn(&str) -> Option<String>, key: &str) -> Option<String> {
    get(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A whole number within `range`; `Ok(None)` when unset or blank.
pub fn number(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    range: RangeInclusive<u64>,
) -> Result<Option<u64>, String> {
    let Some(raw) = text(get, key) else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "{key} must be a whole number from {} to {}, got `{raw}`",
            range.start(),
            range.end()
        )),
    }
}

/// A lookup over fixed pairs, for tests of configuration readers.
pub fn from_pairs(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked_against_their_range_and_named() {
        let get = from_pairs(&[("A", " 7 "), ("B", "0"), ("C", "x"), ("D", "  ")]);
        assert_eq!(number(&get, "A", 1..=10), Ok(Some(7)));
        assert_eq!(number(&get, "D", 1..=10), Ok(None), "blank is unset");
        assert_eq!(number(&get, "E", 1..=10), Ok(None));
        let err = number(&get, "B", 1..=10).unwrap_err();
        assert_eq!(err, "B must be a whole number from 1 to 10, got `0`");
        assert!(number(&get, "C", 0..=1).unwrap_err().starts_with("C must be"));
    }
}
