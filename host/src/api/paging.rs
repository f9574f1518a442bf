//! Seed 001's paging of lists (jobs, assets): `limit` from 1 to 200 (default 20) and `before`,
//! an ISO time, for the next page. A page never splits a millisecond: rows created in the
//! same millisecond as its last one come with it (so the next page, `before` that time,
//! skips none), which can make a page a few rows longer than `limit`, never shorter while
//! rows remain.

use crate::{
    api::error::Error,
    engine::task::{parse_time, rfc3339},
};

/// Parses `limit` (1 to 200) and `before` (ISO time) the way every list route of 001 does.
pub fn page(limit: Option<&str>, before: Option<&str>) -> Result<(i64, Option<i64>), Error> {
    let limit = match limit {
        None => 20,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| Error::bad_request("limit must be an integer from 1 to 200."))?,
    };
    let before = match before.filter(|b| !b.is_empty()) {
        None => None,
        Some(text) => Some(
            parse_time(text)
                .ok_or_else(|| Error::bad_request("before must be an ISO 8601 time."))?,
        ),
    };
    Ok((limit, before))
}

/// The `nextBefore` of a page whose last (oldest) row was created at `last_created_at`: that
/// time while `more` rows follow, `None` on the last page.
pub fn next_before(more: bool, last_created_at: Option<i64>) -> Option<String> {
    more.then(|| last_created_at.map(rfc3339)).flatten()
}
