//! Pending handles: `<prefix>:<field>:<field>…`, versioned by the prefix.
//!
//! The host persists the handle and may hand it to a fresh plugin instance after a
//! restart, so everything `poll` and `cancel` need (task id, region, which API family)
//! travels inside it. Fields must not contain `:` except the last, which may.
//!
//! Vendors with a global and a mainland platform ([`Region`]) put the region in the prefix
//! ([`encode_regional`], [`decode_regional`]): a global handle keeps the `<vendor>:<version>`
//! prefix handles had before mainland support, so tasks pending across that upgrade still
//! poll; a mainland one starts `<vendor>-cn:<version>`.

use crate::region::Region;
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
    let rest = after(prefix, handle).ok_or_else(|| foreign(handle))?;
    split(handle, rest, count)
}

/// Joins `fields` behind the prefix of `region`'s handles for `vendor` at `version`.
pub fn encode_regional(region: Region, vendor: &str, version: &str, fields: &[&str]) -> String {
    encode(&regional_prefix(region, vendor, version), fields)
}

/// Reads a handle made by [`encode_regional`] for either region: the region that holds the
/// task, and its fields as [`decode`] splits them.
pub fn decode_regional<'a>(
    vendor: &str,
    version: &str,
    handle: &'a str,
    count: usize,
) -> Result<(Region, Vec<&'a str>)> {
    let (region, rest) = [Region::Global, Region::Mainland]
        .into_iter()
        .find_map(|region| Some((region, after(&regional_prefix(region, vendor, version), handle)?)))
        .ok_or_else(|| foreign(handle))?;
    Ok((region, split(handle, rest, count)?))
}

/// `id` when it can be a vendor's task id: ASCII letters, digits, `-` and `_`. The id goes
/// into a URL, so a handle someone tampered with must not smuggle `/`, `?` or `&` there.
pub fn task_id(id: &str) -> Result<&str> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(Error::invalid(format!("handle carries a malformed task id `{id}`")));
    }
    Ok(id)
}

fn regional_prefix(region: Region, vendor: &str, version: &str) -> String {
    format!("{vendor}{}:{version}", region.pick("", "-cn"))
}

/// What follows `<prefix>:`.
fn after<'a>(prefix: &str, handle: &'a str) -> Option<&'a str> {
    handle.strip_prefix(prefix)?.strip_prefix(':')
}

fn split<'a>(handle: &str, rest: &'a str, count: usize) -> Result<Vec<&'a str>> {
    let fields: Vec<&str> = rest.splitn(count, ':').collect();
    if fields.len() != count || fields.iter().any(|f| f.is_empty()) {
        return Err(Error::invalid(format!("handle `{handle}` is malformed")));
    }
    Ok(fields)
}

fn foreign(handle: &str) -> Error {
    Error::invalid(format!("`{handle}` is not a handle this plugin made"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid<T: std::fmt::Debug>(result: Result<T>) -> bool {
        matches!(result, Err(Error::InvalidRequest(_)))
    }

    #[test]
    fn handles_round_trip_and_refuse_strangers() {
        let h = encode("acme-task:v1", &["video", "abc:def"]);
        assert_eq!(h, "acme-task:v1:video:abc:def");
        assert_eq!(decode("acme-task:v1", &h, 2).unwrap(), ["video", "abc:def"]);
        assert!(invalid(decode("other:v1", &h, 2)));
        assert!(invalid(decode("acme-task:v1", "acme-task:v1:video", 2)));
        assert!(invalid(decode("acme-task:v1", "acme-task:v1::x", 2)));
        assert!(invalid(decode("acme-task:v1", "acme-task:v12:x", 1)));
    }

    #[test]
    fn regional_handles_carry_the_region_and_global_ones_keep_the_old_prefix() {
        assert_eq!(encode_regional(Region::Global, "acme", "v1", &["n", "42"]), "acme:v1:n:42");
        assert_eq!(encode_regional(Region::Mainland, "acme", "v1", &["n", "42"]), "acme-cn:v1:n:42");
        assert_eq!(decode_regional("acme", "v1", "acme:v1:n:42", 2).unwrap(), (Region::Global, vec!["n", "42"]));
        assert_eq!(decode_regional("acme", "v1", "acme-cn:v1:n:42", 2).unwrap(), (Region::Mainland, vec!["n", "42"]));
        for bad in ["acme-eu:v1:n:42", "other:v1:n:42", "acme:v2:n:42", "acme:v1:42", "acme-cn:v1::42", "acme", ""] {
            assert!(invalid(decode_regional("acme", "v1", bad, 2)), "{bad}");
        }
    }

    #[test]
    fn task_ids_are_letters_digits_dashes_and_underscores() {
        assert_eq!(task_id("cgt-2026_01Ab").unwrap(), "cgt-2026_01Ab");
        for bad in ["", "../x", "a/b", "t4&x=1", "a:b", "a b", "ü"] {
            assert!(invalid(task_id(bad)), "{bad}");
        }
    }
}
