//! Versions of the files the engine writes (catalog, manifest, WAL), and the check that
//! refuses a file written by a newer Eddy instead of misreading it. The JSON helpers are public
//! so files kept by other crates (view definitions and checkpoints) follow the same rules.
//!
//! Each file kind has its own number because they change for different reasons. Files written
//! before versions were recorded carry none and are version 1: their shape is exactly today's.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

/// Version of `catalog.json`. Bump when a change to `TableDef`, `ColumnDef` or the catalog file
/// would make an older Eddy misread the file (a new field an older one must not ignore).
pub const CATALOG_FORMAT_VERSION: u32 = 1;

/// Version of `manifest.json`. Bump when the segment list or the covered WAL position changes
/// meaning (for example segments that an older Eddy would not know how to read).
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// Version of WAL files. Bump when the record frame or body layout changes, so an older Eddy
/// refuses the file instead of cutting it as a torn tail.
pub const WAL_FORMAT_VERSION: u32 = 1;

/// Version of a file written before versions were recorded.
pub const UNVERSIONED: u32 = 1;

/// Refuses a file whose format is newer than this Eddy reads.
pub fn check_version(path: &Path, found: u32, supported: u32) -> Result<()> {
    if found > supported {
        return Err(StorageError::UnsupportedFormat {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    Ok(())
}

fn unversioned() -> u32 {
    UNVERSIONED
}

/// Just the version of a JSON file; every other field is ignored.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(default = "unversioned")]
    format_version: u32,
}

/// A JSON body written with its format version in front.
#[derive(Serialize)]
pub(crate) struct Versioned<'a, T> {
    /// The version the body is written in.
    pub format_version: u32,
    /// The body, whose fields sit beside `format_version`.
    #[serde(flatten)]
    pub body: &'a T,
}

/// Encodes `body` as JSON with `format_version` as its first field.
pub fn to_json<T: Serialize>(path: &Path, body: &T, version: u32, pretty: bool) -> Result<Vec<u8>> {
    let versioned = Versioned {
        format_version: version,
        body,
    };
    let encoded = if pretty {
        serde_json::to_vec_pretty(&versioned)
    } else {
        serde_json::to_vec(&versioned)
    };
    encoded.map_err(|e| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: e.to_string(),
    })
}

/// Decodes a JSON file after checking its version: the version is read on its own first, so
/// a newer file is refused by name even when its shape no longer matches `T`.
pub fn from_json<T: DeserializeOwned>(path: &Path, bytes: &[u8], supported: u32) -> Result<T> {
    // A file that is not even a JSON object fails below with the decoder's own reason.
    if let Ok(probe) = serde_json::from_slice::<VersionProbe>(bytes) {
        check_version(path, probe.format_version, supported)?;
    }
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Body {
        a: u64,
    }

    #[test]
    fn writes_the_version_first_and_reads_it_back() {
        let path = Path::new("x.json");
        let bytes = to_json(path, &Body { a: 7 }, 1, false).expect("encode");
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"format_version":1,"a":7}"#
        );
        let back: Body = from_json(path, &bytes, 1).expect("decode");
        assert_eq!(back, Body { a: 7 });
    }

    #[test]
    fn a_missing_version_is_version_one_and_a_newer_one_is_refused() {
        let path = Path::new("dir/x.json");
        let back: Body = from_json(path, br#"{"a":3}"#, 1).expect("unversioned");
        assert_eq!(back, Body { a: 3 });
        let err = from_json::<Body>(path, br#"{"format_version":2,"b":"new shape"}"#, 1)
            .expect_err("newer");
        let msg = err.to_string();
        assert!(matches!(
            err,
            StorageError::UnsupportedFormat {
                found: 2,
                supported: 1,
                ..
            }
        ));
        assert!(msg.contains("dir/x.json"), "{msg}");
        assert!(msg.contains("newer Eddy"), "{msg}");
        assert!(msg.contains("format version 2"), "{msg}");
        assert!(msg.contains("reads up to 1"), "{msg}");
    }
}
