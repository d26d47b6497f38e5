//! Versions of the files the engine writes (catalog, manifest, WAL, segment checksums), the
//! check that refuses a file written by a newer Eddy instead of misreading it, and the
//! checksummed JSON envelope every JSON file is written in. The JSON helpers are public so
//! files kept by other crates (view definitions and checkpoints) follow the same rules.
//!
//! Each file kind has its own number because they change for different reasons. Files written
//! before versions were recorded carry none and are version 1: their shape is exactly today's
//! body, without the envelope.
//!
//! From version 2 on, every JSON file is an envelope around its body:
//!
//! ```text
//! {"format_version":2,"crc32":<u32>,"body":{...}}
//! ```
//!
//! `crc32` is the CRC-32 (IEEE, as `crc32fast` computes it) of the exact bytes of `body` as
//! they stand in the file, from its opening `{` to its closing `}`. The body is read back as a
//! raw slice of the file (serde_json's `RawValue`), so the checksum is verified over the same
//! bytes it was computed over, whatever whitespace the writer used.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Result, StorageError};

/// Version of `catalog.json`. Bump when a change to `TableDef`, `ColumnDef` or the catalog file
/// would make an older Eddy misread the file (a new field an older one must not ignore).
/// Version 2: the checksummed envelope.
pub const CATALOG_FORMAT_VERSION: u32 = 2;

/// Version of `manifest.json`. Bump when the segment list or the covered WAL position changes
/// meaning (for example segments that an older Eddy would not know how to read). Version 2:
/// the checksummed envelope, the `retired` list, and a checksum file next to every segment.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;

/// Version of WAL files. Bump when the record frame or body layout changes, so an older Eddy
/// refuses the file instead of cutting it as a torn tail. Version 2: multi-part records with
/// a stream source's progress (see `wal.rs`).
pub const WAL_FORMAT_VERSION: u32 = 2;

/// Version of segment checksum files (`<id>.parquet.crc`, see `checksum.rs`). Bump when their
/// layout changes.
pub const SEGMENT_CHECKSUM_FORMAT_VERSION: u32 = 1;

/// Version of a file written before versions were recorded.
pub const UNVERSIONED: u32 = 1;

/// First version, of every JSON file kind, written in the checksummed envelope. Older
/// versions are a bare body and are read without a checksum.
pub const JSON_ENVELOPE_SINCE: u32 = 2;

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

/// A JSON file from version [`JSON_ENVELOPE_SINCE`] on, as read back: the body is borrowed
/// as the exact bytes of the file.
#[derive(Deserialize)]
struct Envelope<'a> {
    crc32: u32,
    #[serde(borrow)]
    body: &'a RawValue,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: reason.into(),
    }
}

/// Encodes `body` as the JSON file of format `version`: from [`JSON_ENVELOPE_SINCE`] on, the
/// checksummed envelope (module comment); before, the body's fields with `format_version` in
/// front. `pretty` indents it for people who read the file.
pub fn to_json<T: Serialize>(path: &Path, body: &T, version: u32, pretty: bool) -> Result<Vec<u8>> {
    if version < JSON_ENVELOPE_SINCE {
        return to_flat_json(path, body, version, pretty);
    }
    let encoded = if pretty {
        serde_json::to_vec_pretty(body)
    } else {
        serde_json::to_vec(body)
    };
    let mut body = encoded.map_err(|e| corrupt(path, e.to_string()))?;
    if pretty {
        // Indent the body one level inside the envelope. JSON strings never hold a raw
        // newline (serde_json writes `\n`), so every newline byte here is layout.
        let mut indented = Vec::with_capacity(body.len() + body.len() / 8);
        for &b in &body {
            indented.push(b);
            if b == b'\n' {
                indented.extend_from_slice(b"  ");
            }
        }
        body = indented;
    }
    let crc = crc32fast::hash(&body);
    let mut out = Vec::with_capacity(body.len() + 64);
    if pretty {
        out.extend_from_slice(
            format!("{{\n  \"format_version\": {version},\n  \"crc32\": {crc},\n  \"body\": ")
                .as_bytes(),
        );
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\n}");
    } else {
        out.extend_from_slice(
            format!("{{\"format_version\":{version},\"crc32\":{crc},\"body\":").as_bytes(),
        );
        out.extend_from_slice(&body);
        out.push(b'}');
    }
    Ok(out)
}

/// A JSON body written with its format version in front (versions before the envelope).
#[derive(Serialize)]
struct Versioned<'a, T> {
    format_version: u32,
    #[serde(flatten)]
    body: &'a T,
}

fn to_flat_json<T: Serialize>(
    path: &Path,
    body: &T,
    version: u32,
    pretty: bool,
) -> Result<Vec<u8>> {
    let versioned = Versioned {
        format_version: version,
        body,
    };
    let encoded = if pretty {
        serde_json::to_vec_pretty(&versioned)
    } else {
        serde_json::to_vec(&versioned)
    };
    encoded.map_err(|e| corrupt(path, e.to_string()))
}

/// Decodes a JSON file after checking its version and, from [`JSON_ENVELOPE_SINCE`] on, its
/// checksum: the version is read on its own first, so a newer file is refused by name even when
/// its shape no longer matches `T`. A damaged file (not JSON, checksum mismatch, a body that
/// does not decode) is [`StorageError::Corrupt`] naming it.
pub fn from_json<T: DeserializeOwned>(path: &Path, bytes: &[u8], supported: u32) -> Result<T> {
    from_json_versioned(path, bytes, supported).map(|(body, _)| body)
}

/// [`from_json`], also returning the format version the file was written in (so a caller can
/// rewrite an older file in today's format).
pub fn from_json_versioned<T: DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    supported: u32,
) -> Result<(T, u32)> {
    let version = match serde_json::from_slice::<VersionProbe>(bytes) {
        Ok(probe) => probe.format_version,
        // Not even a JSON object with a numeric version: the decoder's reason says why.
        Err(e) => return Err(corrupt(path, format!("not a readable JSON file: {e}"))),
    };
    check_version(path, version, supported)?;
    if version < JSON_ENVELOPE_SINCE {
        let body = serde_json::from_slice(bytes).map_err(|e| corrupt(path, e.to_string()))?;
        return Ok((body, version));
    }
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| {
        corrupt(
            path,
            format!("not a format {version} file (crc32 and body expected): {e}"),
        )
    })?;
    let raw = envelope.body.get();
    let actual = crc32fast::hash(raw.as_bytes());
    if actual != envelope.crc32 {
        return Err(corrupt(
            path,
            format!(
                "checksum mismatch: the file records crc32 {}, its body has {actual}",
                envelope.crc32
            ),
        ));
    }
    let body = serde_json::from_str(raw).map_err(|e| corrupt(path, e.to_string()))?;
    Ok((body, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Body {
        a: u64,
        s: String,
    }

    fn body() -> Body {
        Body {
            a: 7,
            s: "line\nbreak \"quoted\"".into(),
        }
    }

    #[test]
    fn writes_the_checksummed_envelope_and_reads_it_back() {
        let path = Path::new("x.json");
        let bytes = to_json(path, &body(), 2, false).expect("encode");
        let inner = br#"{"a":7,"s":"line\nbreak \"quoted\""}"#;
        let expected = format!(
            r#"{{"format_version":2,"crc32":{},"body":{}}}"#,
            crc32fast::hash(inner),
            String::from_utf8_lossy(inner)
        );
        assert_eq!(String::from_utf8_lossy(&bytes), expected);
        let (back, version) = from_json_versioned::<Body>(path, &bytes, 2).expect("decode");
        assert_eq!(back, body());
        assert_eq!(version, 2);

        // Pretty files verify as well: the checksum covers the indented body as written.
        let pretty = to_json(path, &body(), 2, true).expect("pretty");
        let text = String::from_utf8_lossy(&pretty);
        assert!(text.starts_with("{\n  \"format_version\": 2,\n"), "{text}");
        assert!(text.contains("\n    \"a\": 7,"), "{text}");
        assert_eq!(from_json::<Body>(path, &pretty, 2).expect("decode"), body());
    }

    #[test]
    fn any_changed_byte_of_an_envelope_is_refused_naming_the_file() {
        let path = Path::new("dir/x.json");
        for pretty in [false, true] {
            let bytes = to_json(path, &body(), 2, pretty).expect("encode");
            for i in 0..bytes.len() {
                for flip in [0x01u8, 0x20, 0x80] {
                    let mut bad = bytes.clone();
                    bad[i] ^= flip;
                    match from_json::<Body>(path, &bad, 2) {
                        // Whitespace between the envelope's fields is not covered: changing it
                        // to other whitespace changes nothing read.
                        Ok(b) => assert_eq!(b, body(), "byte {i} ^ {flip:#x} changed the data"),
                        Err(e) => {
                            let msg = e.to_string();
                            assert!(msg.contains("dir/x.json"), "{msg}");
                            assert!(
                                matches!(
                                    e,
                                    StorageError::Corrupt { .. }
                                        | StorageError::UnsupportedFormat { .. }
                                ),
                                "{msg}"
                            );
                        }
                    }
                }
            }
        }
        // A body edited by hand (valid JSON, wrong checksum) is refused.
        let bytes = to_json(path, &body(), 2, false).expect("encode");
        let edited = String::from_utf8_lossy(&bytes).replace("\"a\":7", "\"a\":8");
        let err = from_json::<Body>(path, edited.as_bytes(), 2).expect_err("edited");
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn older_flat_files_open_and_a_newer_one_is_refused() {
        let path = Path::new("dir/x.json");
        // Version 1 with and without the field: a bare body, no checksum.
        let (back, version) =
            from_json_versioned::<Body>(path, br#"{"a":3,"s":""}"#, 2).expect("unversioned");
        assert_eq!((back.a, version), (3, 1));
        let (back, version) =
            from_json_versioned::<Body>(path, br#"{"format_version":1,"a":4,"s":""}"#, 2)
                .expect("version 1");
        assert_eq!((back.a, version), (4, 1));
        let v1 = to_json(path, &body(), 1, false).expect("v1");
        assert!(String::from_utf8_lossy(&v1).starts_with(r#"{"format_version":1,"a":7"#));

        let err = from_json::<Body>(path, br#"{"format_version":3,"b":"new shape"}"#, 2)
            .expect_err("newer");
        let msg = err.to_string();
        assert!(matches!(
            err,
            StorageError::UnsupportedFormat {
                found: 3,
                supported: 2,
                ..
            }
        ));
        assert!(msg.contains("dir/x.json"), "{msg}");
        assert!(msg.contains("newer Eddy"), "{msg}");
        assert!(msg.contains("format version 3"), "{msg}");
        assert!(msg.contains("reads up to 2"), "{msg}");

        // Not JSON at all, and an envelope's shape with a flat version: corrupt, by name.
        for bad in [
            &b"\x00\x01garbage"[..],
            br#"{"format_version":2,"a":1}"#,
            b"",
        ] {
            let err = from_json::<Body>(path, bad, 2).expect_err("bad");
            assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains("dir/x.json"), "{err}");
        }
    }
}
