//! The write-ahead log: segmented files of checksummed records, each a sequence number, a table
//! id and a zstd-compressed Arrow IPC batch.
//!
//! Record frame: `len: u32 | crc32(body): u32 | body`, body = `seq: u64 | table_id: u64 |
//! zstd(IPC stream)`, all little endian. A record is only trusted when its length fits in the
//! file and its checksum matches, so a torn tail (a crash in the middle of an append) is
//! detected and cut on replay, never read as data.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{IoContext, Result, StorageError};
use crate::fsutil::sync_dir;

const FRAME_HEADER_BYTES: usize = 8;
const BODY_HEADER_BYTES: usize = 16;
/// Largest record accepted on replay; anything larger is a torn or corrupt length.
pub const RECORD_BYTES_MAX: usize = 1 << 30;
const ZSTD_LEVEL: i32 = 1;

/// Encodes the body of a record, without its sequence number (assigned at append time).
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut ipc = Vec::with_capacity(batch.get_array_memory_size() / 2);
    {
        let mut w = StreamWriter::try_new(&mut ipc, batch.schema_ref())?;
        w.write(batch)?;
        w.finish()?;
    }
    zstd::bulk::compress(&ipc, ZSTD_LEVEL).map_err(|e| StorageError::Io {
        path: PathBuf::from("<wal encode>"),
        source: e,
    })
}

fn decode_batch(bytes: &[u8]) -> std::result::Result<RecordBatch, String> {
    let ipc = zstd::stream::decode_all(bytes).map_err(|e| format!("zstd: {e}"))?;
    let mut reader = StreamReader::try_new(ipc.as_slice(), None).map_err(|e| e.to_string())?;
    match reader.next() {
        Some(Ok(b)) => Ok(b),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("record holds no batch".to_string()),
    }
}

fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// WAL files in `dir`, as (first sequence number, path), oldest first.
fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        if let Ok(seq) = stem.parse::<u64>() {
            files.push((seq, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// A record read back from the WAL.
pub struct WalRecord {
    /// Sequence number.
    pub seq: u64,
    /// Id of the table incarnation written to.
    pub table_id: u64,
    /// The rows.
    pub batch: RecordBatch,
}

/// What replay found.
#[derive(Debug, Default)]
pub struct ReplayStats {
    /// Highest sequence number seen (0 when the WAL is empty).
    pub last_seq: u64,
    /// Records handed to the caller (above the flushed position).
    pub records_applied: u64,
    /// Bytes cut from a torn tail, if any.
    pub torn_bytes_cut: u64,
}

/// Replays every record with `seq > after_seq` in order. A torn or corrupt tail of the newest
/// file is cut off (the file is truncated to its last good record); corruption in an older
/// file is an error, because records after it were acknowledged.
pub fn replay(
    dir: &Path,
    after_seq: u64,
    apply: impl FnMut(WalRecord) -> Result<()>,
) -> Result<ReplayStats> {
    read_records(dir, after_seq, true, apply)
}

/// Reads every record with `seq > after_seq` without changing the files (a bad tail ends the
/// scan). Returns `false` if files holding some of those records were already removed.
pub fn scan(
    dir: &Path,
    after_seq: u64,
    apply: impl FnMut(WalRecord) -> Result<()>,
) -> Result<bool> {
    let complete = list_files(dir)?
        .first()
        .is_none_or(|(first, _)| *first <= after_seq.saturating_add(1));
    read_records(dir, after_seq, false, apply)?;
    Ok(complete)
}

fn read_records(
    dir: &Path,
    after_seq: u64,
    cut_torn_tail: bool,
    mut apply: impl FnMut(WalRecord) -> Result<()>,
) -> Result<ReplayStats> {
    let files = list_files(dir)?;
    let mut stats = ReplayStats {
        last_seq: after_seq,
        ..Default::default()
    };
    for (i, (_, path)) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .at(path)?;
        let mut off = 0usize;
        let bad = loop {
            if off == bytes.len() {
                break None;
            }
            if bytes.len() - off < FRAME_HEADER_BYTES {
                break Some("truncated record header".to_string());
            }
            let len =
                u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap_or_default()) as usize;
            let crc = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap_or_default());
            if !(BODY_HEADER_BYTES..=RECORD_BYTES_MAX).contains(&len)
                || bytes.len() - off - FRAME_HEADER_BYTES < len
            {
                break Some(format!("record length {len} does not fit the file"));
            }
            let body = &bytes[off + FRAME_HEADER_BYTES..off + FRAME_HEADER_BYTES + len];
            if crc32fast::hash(body) != crc {
                break Some("checksum mismatch".to_string());
            }
            let seq = u64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
            let table_id = u64::from_le_bytes(body[8..16].try_into().unwrap_or_default());
            if seq > after_seq {
                let batch = decode_batch(&body[16..]).map_err(|reason| StorageError::Corrupt {
                    path: path.clone(),
                    offset: off as u64,
                    reason,
                })?;
                apply(WalRecord {
                    seq,
                    table_id,
                    batch,
                })?;
                stats.records_applied += 1;
            }
            stats.last_seq = stats.last_seq.max(seq);
            off += FRAME_HEADER_BYTES + len;
        };
        if let Some(reason) = bad {
            if !cut_torn_tail {
                break;
            }
            if !is_last {
                return Err(StorageError::Corrupt {
                    path: path.clone(),
                    offset: off as u64,
                    reason,
                });
            }
            tracing::warn!(
                file = %path.display(),
                offset = off,
                cut_bytes = bytes.len() - off,
                %reason,
                "cutting torn WAL tail"
            );
            let f = OpenOptions::new().write(true).open(path).at(path)?;
            f.set_len(off as u64).at(path)?;
            f.sync_all().at(path)?;
            stats.torn_bytes_cut = (bytes.len() - off) as u64;
        }
    }
    Ok(stats)
}

/// Appends records to the newest WAL file and rotates files by size.
#[derive(Debug)]
pub struct WalWriter {
    dir: PathBuf,
    file: File,
    file_path: PathBuf,
    file_bytes: u64,
    file_first_seq: u64,
    last_seq: u64,
    segment_bytes_max: u64,
    buf: Vec<u8>,
}

impl WalWriter {
    /// Starts a new WAL file whose first record will be `next_seq`.
    pub fn create(dir: &Path, next_seq: u64, segment_bytes_max: u64) -> Result<Self> {
        fs::create_dir_all(dir).at(dir)?;
        let (file, file_path) = Self::open_file(dir, next_seq)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            file_path,
            file_bytes: 0,
            file_first_seq: next_seq,
            last_seq: next_seq.saturating_sub(1),
            segment_bytes_max,
            buf: Vec::new(),
        })
    }

    fn open_file(dir: &Path, first_seq: u64) -> Result<(File, PathBuf)> {
        let path = dir.join(file_name(first_seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .at(&path)?;
        sync_dir(dir)?;
        Ok((file, path))
    }

    /// Buffers one record; nothing reaches the file before [`WalWriter::write_buffered`].
    pub fn push(&mut self, seq: u64, table_id: u64, encoded_batch: &[u8]) {
        let len = (BODY_HEADER_BYTES + encoded_batch.len()) as u32;
        let start = self.buf.len();
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&[0u8; 4]);
        self.buf.extend_from_slice(&seq.to_le_bytes());
        self.buf.extend_from_slice(&table_id.to_le_bytes());
        self.buf.extend_from_slice(encoded_batch);
        let crc = crc32fast::hash(&self.buf[start + FRAME_HEADER_BYTES..]);
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.last_seq = seq;
    }

    /// Writes the buffered records with one `write` call.
    pub fn write_buffered(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf).at(&self.file_path)?;
        self.file_bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().at(&self.file_path)
    }

    /// Starts a new file when the current one is over its size limit. Call after `sync`.
    pub fn rotate_if_full(&mut self) -> Result<()> {
        if self.file_bytes >= self.segment_bytes_max {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        self.file.sync_all().at(&self.file_path)?;
        let first = self.last_seq + 1;
        let (file, path) = Self::open_file(&self.dir, first)?;
        self.file = file;
        self.file_path = path;
        self.file_bytes = 0;
        self.file_first_seq = first;
        Ok(())
    }

    /// Deletes WAL files whose records all have `seq <= flushed_seq` (they are in segments).
    pub fn remove_flushed(&mut self, flushed_seq: u64) -> Result<usize> {
        if self.file_bytes > 0 && self.last_seq <= flushed_seq {
            self.rotate()?;
        }
        let files = list_files(&self.dir)?;
        let mut removed = 0;
        for (i, (_, path)) in files.iter().enumerate() {
            let Some((next_first, _)) = files.get(i + 1) else {
                break;
            };
            if *path == self.file_path {
                break;
            }
            if next_first.saturating_sub(1) <= flushed_seq {
                fs::remove_file(path).at(path)?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Sequence number of the last record pushed.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}
