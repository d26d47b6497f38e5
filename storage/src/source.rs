//! What storage keeps for stream sources: their definitions (in the catalog) and how far each
//! has consumed (in the WAL record of the rows it produced, then in the manifest).
//!
//! Storage does not interpret either: the definition's options are the ingest layer's, and an
//! offset is just the last position consumed in a partition. Keeping the position in the same
//! WAL record as the rows is what makes a source exactly once: both are durable, or neither.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A source as `CREATE SOURCE` defined it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceDef {
    /// Unique id of this incarnation (a dropped and re-created source starts afresh).
    pub id: u64,
    /// Its name.
    pub name: String,
    /// What it reads (`kafka`, `mqtt`).
    pub kind: String,
    /// Its options, as given (secrets included: the data directory is the server's own).
    pub options: BTreeMap<String, String>,
    /// `ALTER SOURCE ... PAUSE` holds it until `RESUME`.
    #[serde(default)]
    pub paused: bool,
}

/// How far a source has consumed, stored with the rows it produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProgress {
    /// The source's id ([`SourceDef::id`]).
    pub source_id: u64,
    /// The last position consumed, by partition (for Kafka `topic/partition` → offset).
    pub offsets: BTreeMap<String, i64>,
}

/// Positions of every source, by source id: the state a WAL record's progress is merged into.
pub type SourceOffsets = BTreeMap<u64, BTreeMap<String, i64>>;

/// Merges `progress` into `offsets`: a later record's position replaces an earlier one's.
pub(crate) fn merge_progress(offsets: &mut SourceOffsets, progress: &SourceProgress) {
    let entry = offsets.entry(progress.source_id).or_default();
    for (k, v) in &progress.offsets {
        entry.insert(k.clone(), *v);
    }
}

/// Merges one map of positions into another (a newer one over an older one).
pub(crate) fn merge_offsets(into: &mut SourceOffsets, newer: &SourceOffsets) {
    for (id, offsets) in newer {
        let entry = into.entry(*id).or_default();
        for (k, v) in offsets {
            entry.insert(k.clone(), *v);
        }
    }
}
