//! Digests of what was written, to recognise the same write again without keeping the object: entries for objects
//! that are not reconciled again stay until swept, and at thousands of projects whole objects would be most of the
//! memory. A collision (2^-64) would at worst hold back one write until the entry expires or the watch delivers it.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde::Serialize;

pub fn of(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Of the JSON form: objects serialize their fields, and their maps (BTreeMaps), in a fixed order, so equal objects
/// digest equal.
pub fn of_json(value: &impl Serialize) -> u64 {
    of(&serde_json::to_vec(value).unwrap_or_default())
}
