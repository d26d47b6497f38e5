//! The files under a data directory's `data/` tree, and what each is to a manifest: shared by
//! recovery (which deletes only what is provably garbage) and `eddy check` (which reports).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// What a file under `data/` is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `<id>.parquet`: a segment.
    Segment(u64),
    /// `<id>.parquet.crc`: a segment's checksum file.
    Checksums(u64),
    /// `*.tmp`: a write that did not finish.
    Temporary,
    /// Anything else: not a file Eddy writes.
    Other,
}

/// A file under `data/`.
#[derive(Debug, Clone)]
pub(crate) struct DataFile {
    pub path: PathBuf,
    pub kind: Kind,
}

impl DataFile {
    /// The segment this file is or belongs to.
    pub(crate) fn segment_path(&self) -> PathBuf {
        match self.kind {
            Kind::Checksums(_) => self.path.with_extension(""),
            _ => self.path.clone(),
        }
    }
}

/// What a file is to a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A live segment or its checksum file: kept.
    Live,
    /// A segment the manifest lists as retired, or its checksum file: garbage.
    Retired,
    /// A segment id the manifest has not handed out yet: written by a flush that stopped
    /// before its manifest, whose rows are still in the WAL. Garbage.
    Unflushed,
    /// An unfinished write: garbage.
    Temporary,
    /// Not Eddy's, or a segment the manifest does not account for: left alone.
    Unknown,
}

fn kind_of(name: &str) -> Kind {
    if name.ends_with(".tmp") {
        return Kind::Temporary;
    }
    let id = |stem: &str| {
        (!stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()))
            .then(|| stem.parse::<u64>().ok())
            .flatten()
    };
    if let Some(Some(id)) = name.strip_suffix(".parquet.crc").map(id) {
        return Kind::Checksums(id);
    }
    if let Some(Some(id)) = name.strip_suffix(".parquet").map(id) {
        return Kind::Segment(id);
    }
    Kind::Other
}

/// Every file under `dir/data`, in no particular order (none if there is no `data/`).
pub(crate) fn list(dir: &Path) -> Result<Vec<DataFile>> {
    let data = dir.join("data");
    let mut out = Vec::new();
    if !data.exists() {
        return Ok(out);
    }
    let mut stack = vec![data];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).at(&d)? {
            let path = entry.at(&d)?.path();
            if path.is_dir() {
                // Full-text indexes (`<segment>.fts/`) are the indexer's, which removes those
                // no segment needs (text_index.rs).
                if path.extension().is_none_or(|e| e != "fts") {
                    stack.push(path);
                }
                continue;
            }
            let kind = path
                .file_name()
                .and_then(|n| n.to_str())
                .map_or(Kind::Other, kind_of);
            out.push(DataFile { path, kind });
        }
    }
    Ok(out)
}

/// The live and retired segment paths of a manifest, and its next segment id.
pub(crate) struct Accounted {
    pub live: HashSet<PathBuf>,
    pub retired: HashSet<PathBuf>,
    pub next_segment_id: u64,
}

impl Accounted {
    /// What `manifest` (of the data directory `dir`) accounts for. Outputs of unfinished
    /// compactions count as retired: garbage once found.
    pub(crate) fn of(dir: &Path, manifest: &crate::manifest::Manifest) -> Self {
        Self {
            live: manifest
                .segments
                .iter()
                .map(|s| dir.join(&s.path))
                .collect(),
            retired: manifest
                .retired
                .iter()
                .chain(&manifest.compacting)
                .map(|r| dir.join(&r.path))
                .collect(),
            next_segment_id: manifest.next_segment_id,
        }
    }

    /// What `file` is to the manifest these were taken from.
    pub(crate) fn verdict(&self, file: &DataFile) -> Verdict {
        let id = match file.kind {
            Kind::Temporary => return Verdict::Temporary,
            Kind::Other => return Verdict::Unknown,
            Kind::Segment(id) | Kind::Checksums(id) => id,
        };
        let segment = file.segment_path();
        if self.live.contains(&segment) {
            Verdict::Live
        } else if self.retired.contains(&segment) {
            Verdict::Retired
        } else if id >= self.next_segment_id {
            Verdict::Unflushed
        } else {
            Verdict::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_into_kinds() {
        assert_eq!(kind_of("00000000000000000012.parquet"), Kind::Segment(12));
        assert_eq!(
            kind_of("00000000000000000012.parquet.crc"),
            Kind::Checksums(12)
        );
        assert_eq!(kind_of("00000000000000000012.parquet.tmp"), Kind::Temporary);
        assert_eq!(
            kind_of("00000000000000000012.parquet.crc.tmp"),
            Kind::Temporary
        );
        assert_eq!(kind_of("notes.parquet"), Kind::Other);
        assert_eq!(kind_of(".parquet"), Kind::Other);
        assert_eq!(kind_of("README"), Kind::Other);
        let f = DataFile {
            path: PathBuf::from("/d/data/t/x/00000000000000000012.parquet.crc"),
            kind: Kind::Checksums(12),
        };
        assert_eq!(
            f.segment_path(),
            PathBuf::from("/d/data/t/x/00000000000000000012.parquet")
        );
    }
}
