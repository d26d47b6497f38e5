//! The write-ahead log: segmented files of checksummed records, each a sequence number, a table
//! id and a zstd-compressed Arrow IPC batch.
//!
//! File: `header | record*`, header = `b"EDWL" | format version: u32`. Files written before
//! the header existed start directly with a record and are read as format version 1; the
//! magic, read as a record length, is larger than any record may be, so the two never mix up.
//! A file whose header names a newer version is refused, not cut as a torn tail.
//!
//! Record frame: `len: u32 | crc32(body): u32 | body`, body = `seq: u64 | table_id: u64 |
//! zstd(IPC stream)`, all little endian. A record whose table id is [`MULTI_PART`] (format
//! version 2) holds several tables' batches and a stream source's progress instead:
//! `progress_len: u32 | progress (JSON) | parts: u32 | (table_id: u64 | len: u32 |
//! zstd(IPC stream))*`; under one checksum, so they are durable together or not at all. A record is only trusted when its length fits in the
//! file and its checksum matches, so a torn tail (a crash in the middle of an append) is
//! detected and cut on replay, never read as data.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{IoContext, Result, StorageError};
use crate::format::{WAL_FORMAT_VERSION, check_version};
use crate::fsutil::sync_dir;
use crate::limits::{WAL_RECORD_BYTES_MAX, WAL_ZSTD_LEVEL};
use crate::source::SourceProgress;

/// The table id of a record that holds several tables' batches and a source's progress.
pub(crate) const MULTI_PART: u64 = u64::MAX;

const FRAME_HEADER_BYTES: usize = 8;
const BODY_HEADER_BYTES: usize = 16;
/// First bytes of a WAL file that has a header.
const FILE_MAGIC: [u8; 4] = *b"EDWL";
/// `magic | version: u32`.
const FILE_HEADER_BYTES: usize = 8;

// A file from before headers starts with a record length of at most WAL_RECORD_BYTES_MAX:
// the magic must not be one, or such a file could be taken for one with a header.
const _: () = assert!(u32::from_le_bytes(FILE_MAGIC) as usize > WAL_RECORD_BYTES_MAX);

/// The header written at the start of every new WAL file.
fn file_header() -> [u8; FILE_HEADER_BYTES] {
    let mut h = [0u8; FILE_HEADER_BYTES];
    h[..4].copy_from_slice(&FILE_MAGIC);
    h[4..].copy_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    h
}

/// Where the records of a WAL file start.
enum FileStart {
    /// At this offset (0 for a file from before headers).
    Records(usize),
    /// The file ends inside its header: a crash just after the file was created.
    TornHeader,
}

/// Reads the header of a WAL file, if it has one, and refuses a newer format.
fn file_start(path: &Path, bytes: &[u8]) -> Result<FileStart> {
    if !bytes.starts_with(&FILE_MAGIC) {
        // Written before WAL files had a header (format version 1): records start at once.
        return Ok(FileStart::Records(0));
    }
    let Some(version) = bytes.get(FILE_MAGIC.len()..FILE_HEADER_BYTES) else {
        return Ok(FileStart::TornHeader);
    };
    let version = u32::from_le_bytes(version.try_into().unwrap_or_default());
    check_version(path, version, WAL_FORMAT_VERSION)?;
    Ok(FileStart::Records(FILE_HEADER_BYTES))
}

/// Encodes the body of a record, without its sequence number (assigned at append time).
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut ipc = Vec::with_capacity(batch.get_array_memory_size() / 2);
    {
        let mut w = StreamWriter::try_new(&mut ipc, batch.schema_ref())?;
        w.write(batch)?;
        w.finish()?;
    }
    zstd::bulk::compress(&ipc, WAL_ZSTD_LEVEL).map_err(|e| StorageError::Io {
        path: PathBuf::from("<wal encode>"),
        source: e,
    })
}

/// Encodes the body of a [`MULTI_PART`] record from parts encoded by [`encode_batch`].
pub(crate) fn encode_multi(
    parts: &[(u64, Vec<u8>)],
    progress: Option<&SourceProgress>,
) -> Result<Vec<u8>> {
    let progress = match progress {
        Some(p) => serde_json::to_vec(p).map_err(|e| StorageError::Io {
            path: PathBuf::from("<wal encode>"),
            source: std::io::Error::other(e),
        })?,
        None => Vec::new(),
    };
    let size = 8 + progress.len() + parts.iter().map(|(_, b)| 12 + b.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(progress.len() as u32).to_le_bytes());
    out.extend_from_slice(&progress);
    out.extend_from_slice(&(parts.len() as u32).to_le_bytes());
    for (table_id, bytes) in parts {
        out.extend_from_slice(&table_id.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

/// What one record holds: batches by table id, and a source's progress.
type Decoded = (Vec<(u64, RecordBatch)>, Option<SourceProgress>);

/// Decodes a record's payload (after `seq | table_id`).
fn decode_record(table_id: u64, bytes: &[u8]) -> std::result::Result<Decoded, String> {
    if table_id != MULTI_PART {
        return Ok((vec![(table_id, decode_batch(bytes)?)], None));
    }
    let mut rest = bytes;
    let mut take = |n: usize| -> std::result::Result<&[u8], String> {
        if rest.len() < n {
            return Err("multi-part record is cut short".to_string());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize;
    let progress_len = u32_at(take(4)?);
    let progress = match progress_len {
        0 => None,
        n => Some(
            serde_json::from_slice::<SourceProgress>(take(n)?)
                .map_err(|e| format!("source progress: {e}"))?,
        ),
    };
    let count = u32_at(take(4)?);
    let mut parts = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let table_id = u64::from_le_bytes(take(8)?.try_into().unwrap_or_default());
        let len = u32_at(take(4)?);
        parts.push((table_id, decode_batch(take(len)?)?));
    }
    Ok((parts, progress))
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
pub(crate) struct WalRecord {
    /// Sequence number.
    pub seq: u64,
    /// The rows, by id of the table incarnation written to (one table, except for a
    /// source's commit).
    pub parts: Vec<(u64, RecordBatch)>,
    /// How far a stream source had consumed when it wrote these rows.
    pub progress: Option<SourceProgress>,
}

/// What replay found.
#[derive(Debug, Default)]
pub(crate) struct ReplayStats {
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
pub(crate) fn replay(
    dir: &Path,
    after_seq: u64,
    apply: impl FnMut(WalRecord) -> Result<()>,
) -> Result<ReplayStats> {
    read_records(dir, after_seq, true, apply)
}

/// Reads every record with `seq > after_seq` without changing the files (a bad tail ends the
/// scan). Returns `false` if files holding some of those records were already removed.
pub(crate) fn scan(
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
        let bad = match file_start(path, &bytes)? {
            FileStart::TornHeader => Some("truncated file header".to_string()),
            FileStart::Records(first) => {
                off = first;
                loop {
                    if off == bytes.len() {
                        break None;
                    }
                    if bytes.len() - off < FRAME_HEADER_BYTES {
                        break Some("truncated record header".to_string());
                    }
                    let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap_or_default())
                        as usize;
                    let crc =
                        u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap_or_default());
                    if !(BODY_HEADER_BYTES..=WAL_RECORD_BYTES_MAX).contains(&len)
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
                        let (parts, progress) =
                            decode_record(table_id, &body[16..]).map_err(|reason| {
                                StorageError::Corrupt {
                                    path: path.clone(),
                                    offset: off as u64,
                                    reason,
                                }
                            })?;
                        apply(WalRecord {
                            seq,
                            parts,
                            progress,
                        })?;
                        stats.records_applied += 1;
                    }
                    stats.last_seq = stats.last_seq.max(seq);
                    off += FRAME_HEADER_BYTES + len;
                }
            }
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

/// Sequence number the oldest WAL file starts at (by its name), if there is a WAL file.
pub(crate) fn first_file_seq(dir: &Path) -> Result<Option<u64>> {
    if !dir.exists() {
        return Ok(None);
    }
    Ok(list_files(dir)?.first().map(|(seq, _)| *seq))
}

/// Whether any WAL file holds more than its header: records, or the torn tail of one.
pub(crate) fn holds_records(dir: &Path) -> Result<bool> {
    if !dir.exists() {
        return Ok(false);
    }
    for (_, path) in list_files(dir)? {
        if fs::metadata(&path).at(&path)?.len() > FILE_HEADER_BYTES as u64 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What `eddy check` found in one WAL file.
#[derive(Debug)]
pub(crate) struct FileCheck {
    /// The file.
    pub path: PathBuf,
    /// Records whose frame, checksum and body are sound.
    pub records: u64,
    /// Highest sequence number of those records (0 if none).
    pub last_seq: u64,
    /// Damage start-up refuses: a bad record in an older file, a record that does not decode,
    /// a newer format.
    pub damage: Option<String>,
    /// A bad end of the newest file, which start-up cuts as a torn tail.
    pub torn_tail: Option<String>,
}

/// Verifies every record of every WAL file (frame, checksum, decoding), changing nothing.
pub(crate) fn check_files(dir: &Path) -> Result<Vec<FileCheck>> {
    let files = list_files(dir)?;
    let mut out = Vec::new();
    for (i, (_, path)) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        let bytes = fs::read(path).at(path)?;
        let mut check = FileCheck {
            path: path.clone(),
            records: 0,
            last_seq: 0,
            damage: None,
            torn_tail: None,
        };
        let bad = match file_start(path, &bytes) {
            Err(e) => {
                check.damage = Some(e.to_string());
                out.push(check);
                continue;
            }
            Ok(FileStart::TornHeader) => Some((0, "truncated file header".to_string())),
            Ok(FileStart::Records(first)) => {
                let mut off = first;
                loop {
                    if off == bytes.len() {
                        break None;
                    }
                    if bytes.len() - off < FRAME_HEADER_BYTES {
                        break Some((off, "truncated record header".to_string()));
                    }
                    let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap_or_default())
                        as usize;
                    let crc =
                        u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap_or_default());
                    if !(BODY_HEADER_BYTES..=WAL_RECORD_BYTES_MAX).contains(&len)
                        || bytes.len() - off - FRAME_HEADER_BYTES < len
                    {
                        break Some((off, format!("record length {len} does not fit the file")));
                    }
                    let body = &bytes[off + FRAME_HEADER_BYTES..off + FRAME_HEADER_BYTES + len];
                    if crc32fast::hash(body) != crc {
                        break Some((off, "checksum mismatch".to_string()));
                    }
                    let table_id = u64::from_le_bytes(body[8..16].try_into().unwrap_or_default());
                    if let Err(reason) = decode_record(table_id, &body[BODY_HEADER_BYTES..]) {
                        check.damage = Some(format!(
                            "the record at offset {off} has a sound checksum but does not decode: {reason}"
                        ));
                        break None;
                    }
                    check.records += 1;
                    let seq = u64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
                    check.last_seq = check.last_seq.max(seq);
                    off += FRAME_HEADER_BYTES + len;
                }
            }
        };
        if let Some((off, reason)) = bad {
            let what = format!(
                "{reason} at offset {off} ({} bytes from there on)",
                bytes.len() - off
            );
            if is_last {
                check.torn_tail = Some(what);
            } else {
                check.damage = Some(what);
            }
        }
        out.push(check);
    }
    Ok(out)
}

/// Appends records to the newest WAL file and rotates files by size.
///
/// A group of records is appended with one `write` and made durable with one fsync. When
/// either fails, [`WalWriter::roll_back`] cuts the file back to where the group started, so a
/// refused write leaves nothing behind that replay would later apply.
#[derive(Debug)]
pub struct WalWriter {
    dir: PathBuf,
    file: File,
    file_path: PathBuf,
    /// Bytes of records in the current file (its header not counted).
    file_bytes: u64,
    /// Length of the current file, header included.
    file_len: u64,
    file_first_seq: u64,
    last_seq: u64,
    segment_bytes_max: u64,
    buf: Vec<u8>,
    /// Where the group being appended started: what [`WalWriter::roll_back`] returns to.
    mark: GroupMark,
    /// Test-only: the next append or fsync fails as if the disk were full.
    #[cfg(test)]
    fault: Option<WalFault>,
}

/// The state of the writer before the first record of a group was pushed.
#[derive(Debug, Clone, Copy)]
struct GroupMark {
    file_len: u64,
    file_bytes: u64,
    last_seq: u64,
}

/// A failure [`WalWriter`] fakes once, for tests of what the engine does after it.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WalFault {
    /// The next `write_buffered` writes half of the group, then fails with `ENOSPC`.
    Write,
    /// The next `sync` fails with `ENOSPC` (after the group was written whole).
    Sync,
}

impl WalWriter {
    /// Starts a new WAL file whose first record will be `next_seq`.
    pub fn create(dir: &Path, next_seq: u64, segment_bytes_max: u64) -> Result<Self> {
        fs::create_dir_all(dir).at(dir)?;
        let (file, file_path, file_len) = Self::open_file(dir, next_seq)?;
        let last_seq = next_seq.saturating_sub(1);
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            file_path,
            file_bytes: 0,
            file_len,
            file_first_seq: next_seq,
            last_seq,
            segment_bytes_max,
            buf: Vec::new(),
            mark: GroupMark {
                file_len,
                file_bytes: 0,
                last_seq,
            },
            #[cfg(test)]
            fault: None,
        })
    }

    /// Opens (creating it if need be) the file whose first record is `first_seq`; returns it,
    /// its path and its length. On failure the file is removed again: a file left with a torn
    /// header would end replay with an error once newer files follow it, and a stray file
    /// whose name claims records that live in the file before it would let that file be
    /// deleted too early.
    fn open_file(dir: &Path, first_seq: u64) -> Result<(File, PathBuf, u64)> {
        let path = dir.join(file_name(first_seq));
        let opened: Result<(File, u64)> = (|| {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .at(&path)?;
            // A file reopened after a restart (empty, or cut back to its header) keeps the
            // start it has: only a new, empty file gets a header. The header becomes durable
            // with the first record's fsync; a crash before that leaves a torn header, which
            // replay cuts.
            let mut len = file.metadata().at(&path)?.len();
            if len == 0 {
                file.write_all(&file_header()).at(&path)?;
                len = FILE_HEADER_BYTES as u64;
            }
            sync_dir(dir)?;
            Ok((file, len))
        })();
        match opened {
            Ok((file, len)) => Ok((file, path, len)),
            Err(e) => {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(gone) if gone.kind() == std::io::ErrorKind::NotFound => {}
                    Err(rm) => {
                        tracing::error!(file = %path.display(), error = %rm, "cannot remove a WAL file that could not be started")
                    }
                }
                Err(e)
            }
        }
    }

    /// Buffers one record; nothing reaches the file before [`WalWriter::write_buffered`].
    /// The first record pushed after a write marks where its group starts.
    pub fn push(&mut self, seq: u64, table_id: u64, encoded_batch: &[u8]) {
        if self.buf.is_empty() {
            self.mark = GroupMark {
                file_len: self.file_len,
                file_bytes: self.file_bytes,
                last_seq: self.last_seq,
            };
        }
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
        #[cfg(test)]
        if self.fault == Some(WalFault::Write) {
            self.fault = None;
            // A full disk takes part of a write before it refuses the rest.
            let half = self.buf.len() / 2;
            self.file.write_all(&self.buf[..half]).at(&self.file_path)?;
            return Err::<(), _>(std::io::Error::from_raw_os_error(28)).at(&self.file_path);
        }
        self.file.write_all(&self.buf).at(&self.file_path)?;
        self.file_bytes += self.buf.len() as u64;
        self.file_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> Result<()> {
        #[cfg(test)]
        if self.fault == Some(WalFault::Sync) {
            self.fault = None;
            return Err::<(), _>(std::io::Error::from_raw_os_error(28)).at(&self.file_path);
        }
        self.file.sync_data().at(&self.file_path)
    }

    /// Undoes the group being appended after its write or fsync failed: the buffered records
    /// are dropped, the file is cut back to its length before the group and fsynced, and the
    /// sequence numbers of the group are handed out again. Afterwards the file holds exactly
    /// the records that were there before the group; an error means that could not be
    /// ensured.
    pub fn roll_back(&mut self) -> Result<()> {
        self.buf.clear();
        self.last_seq = self.mark.last_seq;
        self.file_bytes = self.mark.file_bytes;
        // The file is opened for appending, so the next write lands at the new end: no seek.
        self.file.set_len(self.mark.file_len).at(&self.file_path)?;
        self.file_len = self.mark.file_len;
        // `sync_all`, not `sync_data`: the new length is metadata.
        self.file.sync_all().at(&self.file_path)
    }

    /// Whether the current file has reached its size limit (see [`WalWriter::rotate_if_full`]).
    pub fn is_full(&self) -> bool {
        self.file_bytes >= self.segment_bytes_max
    }

    /// Starts a new file when the current one is over its size limit. Call after `sync`. On
    /// failure the current file stays in use, and the next call tries again.
    pub fn rotate_if_full(&mut self) -> Result<()> {
        if self.is_full() {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        self.file.sync_all().at(&self.file_path)?;
        let first = self.last_seq + 1;
        let (file, path, len) = Self::open_file(&self.dir, first)?;
        self.file = file;
        self.file_path = path;
        self.file_bytes = 0;
        self.file_len = len;
        self.file_first_seq = first;
        self.mark = GroupMark {
            file_len: len,
            file_bytes: 0,
            last_seq: self.last_seq,
        };
        Ok(())
    }

    /// Test-only: makes the next append or fsync fail as if the disk were full.
    #[cfg(test)]
    pub(crate) fn inject_fault(&mut self, fault: WalFault) {
        self.fault = Some(fault);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(v: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![v]))]).expect("batch")
    }

    /// One record framed by hand, as the module comment lays it out (and as Eddy wrote it
    /// before WAL files had a header).
    fn frame(seq: u64, table_id: u64, v: i64) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&seq.to_le_bytes());
        body.extend_from_slice(&table_id.to_le_bytes());
        body.extend_from_slice(&encode_batch(&batch(v)).expect("encode"));
        let mut out = Vec::new();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// One replayed record as the tests see it: (seq, table id, first value).
    type Replayed = (u64, u64, i64);

    /// Every record after `after_seq`, and the replay stats.
    fn replay_all(dir: &Path, after_seq: u64) -> Result<(Vec<Replayed>, ReplayStats)> {
        let mut got = Vec::new();
        let stats = replay(dir, after_seq, |rec| {
            let (table_id, batch) = &rec.parts[0];
            let v = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("i64")
                .value(0);
            got.push((rec.seq, *table_id, v));
            Ok(())
        })?;
        Ok((got, stats))
    }

    #[test]
    fn todays_headerless_wal_still_replays_and_its_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join(file_name(1));
        let mut bytes = frame(1, 7, 10);
        bytes.extend(frame(2, 7, 20));
        let good_len = bytes.len() as u64;
        // A record header promising 4 KiB, followed by a few bytes: a crash mid-append.
        let mut tail = 4096u32.to_le_bytes().to_vec();
        tail.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
        bytes.extend_from_slice(&tail);
        fs::write(&old, &bytes).expect("write");

        let (got, stats) = replay_all(dir.path(), 0).expect("replay");
        assert_eq!(got, [(1, 7, 10), (2, 7, 20)]);
        assert_eq!(stats.last_seq, 2);
        assert_eq!(stats.records_applied, 2);
        assert_eq!(stats.torn_bytes_cut, tail.len() as u64);
        assert_eq!(fs::metadata(&old).expect("meta").len(), good_len);

        // New files get a header, and old and new files replay together.
        let mut w = WalWriter::create(dir.path(), 3, 1 << 20).expect("wal");
        w.push(3, 7, &encode_batch(&batch(30)).expect("encode"));
        w.write_buffered().expect("write");
        w.sync().expect("sync");
        let new = fs::read(dir.path().join(file_name(3))).expect("read");
        assert_eq!(&new[..FILE_HEADER_BYTES], &file_header()[..]);
        assert_eq!(&new[FILE_HEADER_BYTES..], &frame(3, 7, 30)[..]);
        let (got, stats) = replay_all(dir.path(), 1).expect("replay");
        assert_eq!(got, [(2, 7, 20), (3, 7, 30)]);
        assert_eq!(stats.torn_bytes_cut, 0);
    }

    #[test]
    fn a_torn_tail_after_a_header_is_cut_back_to_the_last_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = WalWriter::create(dir.path(), 1, 1 << 20).expect("wal");
        w.push(1, 7, &encode_batch(&batch(10)).expect("encode"));
        w.write_buffered().expect("write");
        drop(w);
        let path = dir.path().join(file_name(1));
        let good_len = fs::metadata(&path).expect("meta").len();
        let mut bytes = fs::read(&path).expect("read");
        bytes.extend_from_slice(&frame(2, 7, 20)[..12]);
        fs::write(&path, &bytes).expect("write");

        let (got, stats) = replay_all(dir.path(), 0).expect("replay");
        assert_eq!(got, [(1, 7, 10)]);
        assert_eq!(stats.torn_bytes_cut, 12);
        assert_eq!(fs::metadata(&path).expect("meta").len(), good_len);
    }

    #[test]
    fn a_torn_header_is_cut_and_the_file_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(file_name(1));
        fs::write(&path, &file_header()[..5]).expect("write");
        let (got, stats) = replay_all(dir.path(), 0).expect("replay");
        assert!(got.is_empty());
        assert_eq!(stats.torn_bytes_cut, 5);
        assert_eq!(fs::metadata(&path).expect("meta").len(), 0);

        let mut w = WalWriter::create(dir.path(), 1, 1 << 20).expect("wal");
        w.push(1, 7, &encode_batch(&batch(10)).expect("encode"));
        w.write_buffered().expect("write");
        let (got, _) = replay_all(dir.path(), 0).expect("replay");
        assert_eq!(got, [(1, 7, 10)]);
    }

    #[test]
    fn a_wal_file_from_a_newer_eddy_is_refused_not_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(file_name(1));
        let mut bytes = FILE_MAGIC.to_vec();
        bytes.extend_from_slice(&(WAL_FORMAT_VERSION + 1).to_le_bytes());
        bytes.extend(frame(1, 7, 10));
        fs::write(&path, &bytes).expect("write");

        let err = replay_all(dir.path(), 0).expect_err("newer format");
        assert!(
            matches!(err, StorageError::UnsupportedFormat { found, supported, .. }
                if found == WAL_FORMAT_VERSION + 1 && supported == WAL_FORMAT_VERSION),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&file_name(1)), "{msg}");
        assert!(msg.contains("written by a newer Eddy"), "{msg}");
        assert!(
            msg.contains(&format!("format version {}", WAL_FORMAT_VERSION + 1)),
            "{msg}"
        );
        assert_eq!(fs::metadata(&path).expect("meta").len(), bytes.len() as u64);
        assert!(scan(dir.path(), 0, |_| Ok(())).is_err());
    }
}
