//! Pending handles: `<prefix>:<field>:<field>…`, versioned by the prefix.
//!
//! The host persists the handle and may hand it to a fresh plugin instance after a
//! restart, so everything `poll` and `cancel` need (task id, region, which API family)
//! travels inside it. Fields must not contain `:` except the last, which may.

use easel_sdk::{Error, Result};

/// Joins `fields` behind `prefix`.
pub fn encode(prefix: &str, fields: &[&str]) -> String {
    let mut out = prefix.to_string();
    for field in fields {
        out.push(':');
        out.push_str(field);
    }
    out
}

/// Splits a handle made by [`encode`] with the same prefix into exactly `count` fields;
/// the last field keeps any further `:`.
pub fn decode<'a>(prefix: &str, handle: &'a str, count: usize) -> Result<Vec<&'a str>> {
    let rest = handle
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(|| Error::invalid(format!("`{handle}` is not a handle this plugin made")))?;
    let fields: Vec<&str> = rest.splitn(count, ':').collect();
    if fields.len() != count || fields.iter().any(|f| f.is_empty()) {
        return Err(Error::invalid(format!("handle `{handle}` is malformed")));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_refuse_strangers() {
        let h = encode("acme-task:v1", &["video", "abc:def"]);
        assert_eq!(h, "acme-task:v1:video:abc:def");
        assert_eq!(decode("acme-task:v1", &h, 2).unwrap(), ["video", "abc:def"]);
        assert!(decode("other:v1", &h, 2).is_err());
        assert!(decode("acme-task:v1", "acme-task:v1:video", 2).is_err());
        assert!(decode("acme-task:v1", "acme-task:v1::x", 2).is_err());
    }
}
