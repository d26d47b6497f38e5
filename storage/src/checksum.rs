//! Checksums of the binary files Eddy reads back: segments (a checksum file next to each) and
//! small files another file names with their checksum (view checkpoint chunks).
//!
//! Parquet writers (parquet-rs among them) write no page checksums, and a flipped byte in a
//! compressed page can decode into different values without any error. So every segment
//! `<id>.parquet` has a checksum file `<id>.parquet.crc` beside it, written (and renamed into
//! place) before the segment itself, holding a CRC-32 of every block of the segment:
//!
//! ```text
//! "EDCK" | format version: u32 | block bytes: u32 | file length: u64 | block count: u32
//!        | crc32 of each block: u32 × count | crc32 of everything before: u32
//! ```
//!
//! little endian. The last block may be shorter. Every read of segment bytes reads whole
//! blocks and verifies them before handing any byte on; a mismatch is
//! [`StorageError::Corrupt`] naming the segment and the block's offset. The segment stays a
//! plain Parquet file any engine can read; the checksum file is separate.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StorageError};
use crate::format::{SEGMENT_CHECKSUM_FORMAT_VERSION, check_version};
use crate::limits::SEGMENT_READ_BATCH_ROWS;

const MAGIC: [u8; 4] = *b"EDCK";
/// `magic | version | block bytes | file length | block count`.
const HEADER_BYTES: usize = 4 + 4 + 4 + 8 + 4;

/// The checksum file of a segment: the segment's path with `.crc` appended.
pub fn sidecar_path(segment: &Path) -> PathBuf {
    let mut s = segment.as_os_str().to_owned();
    s.push(".crc");
    PathBuf::from(s)
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// The CRC-32 of every block of one segment file, as its checksum file holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockChecksums {
    block_bytes: u64,
    file_len: u64,
    crcs: Vec<u32>,
}

impl BlockChecksums {
    /// The checksums of `data` in blocks of `block_bytes`.
    pub fn of(data: &[u8], block_bytes: u32) -> Self {
        let block = block_bytes.max(1) as usize;
        Self {
            block_bytes: block as u64,
            file_len: data.len() as u64,
            crcs: data.chunks(block).map(crc32fast::hash).collect(),
        }
    }

    /// Bytes per block.
    pub fn block_bytes(&self) -> u64 {
        self.block_bytes
    }

    /// Length of the file the checksums cover.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.crcs.len()
    }

    /// The checksum file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + 4 * self.crcs.len() + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&SEGMENT_CHECKSUM_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.block_bytes as u32).to_le_bytes());
        out.extend_from_slice(&self.file_len.to_le_bytes());
        out.extend_from_slice(&(self.crcs.len() as u32).to_le_bytes());
        for c in &self.crcs {
            out.extend_from_slice(&c.to_le_bytes());
        }
        let own = crc32fast::hash(&out);
        out.extend_from_slice(&own.to_le_bytes());
        out
    }

    /// Reads a checksum file's bytes; `path` (the checksum file) names it in errors.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let u32_at =
            |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        if bytes.len() < HEADER_BYTES + 4 || bytes[..4] != MAGIC {
            return Err(corrupt(path, 0, "not an Eddy segment checksum file"));
        }
        check_version(path, u32_at(4), SEGMENT_CHECKSUM_FORMAT_VERSION)?;
        let body = bytes.len() - 4;
        let own = crc32fast::hash(&bytes[..body]);
        if own != u32_at(body) {
            return Err(corrupt(
                path,
                0,
                "checksum mismatch: the checksum file itself is damaged",
            ));
        }
        let block_bytes = u64::from(u32_at(8));
        let file_len = u64::from_le_bytes(bytes[12..20].try_into().unwrap_or_default());
        let count = u32_at(20) as usize;
        if block_bytes == 0
            || (count as u64) != file_len.div_ceil(block_bytes)
            || body != HEADER_BYTES + 4 * count
        {
            return Err(corrupt(path, 0, "inconsistent checksum file header"));
        }
        let crcs = (0..count).map(|i| u32_at(HEADER_BYTES + 4 * i)).collect();
        Ok(Self {
            block_bytes,
            file_len,
            crcs,
        })
    }

    /// Loads the checksum file of `segment`. A missing one is corruption of the segment: every
    /// segment Eddy writes (or adopts from before checksums) gets one before it is listed.
    pub fn load(segment: &Path) -> Result<Self> {
        let path = sidecar_path(segment);
        match fs::read(&path) {
            Ok(bytes) => Self::decode(&path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(corrupt(
                segment,
                0,
                format!(
                    "its checksum file {} is missing, so the segment cannot be verified",
                    path.display()
                ),
            )),
            Err(e) => Err(e).at(&path),
        }
    }

    /// Writes the checksum file of `segment` durably: a temporary file, fsync, rename. The
    /// caller fsyncs the directory.
    pub fn store(&self, segment: &Path) -> Result<()> {
        let path = sidecar_path(segment);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let written = (|| -> Result<()> {
            let mut f = File::create(&tmp).at(&tmp)?;
            f.write_all(&self.encode()).at(&tmp)?;
            f.sync_all().at(&tmp)?;
            drop(f);
            fs::rename(&tmp, &path).at(&path)
        })();
        if written.is_err() {
            // On a full disk the space of the partial file is needed back.
            crate::fsutil::remove_if_present(&tmp);
        }
        written
    }

    /// `range` widened to whole blocks (and cut at the end of the file); an error naming
    /// `segment` if it reaches past the end.
    pub fn aligned(&self, segment: &Path, range: &Range<u64>) -> Result<Range<u64>> {
        if range.start > range.end || range.end > self.file_len {
            return Err(corrupt(
                segment,
                range.start,
                format!(
                    "a read of bytes {}..{} reaches past the {} bytes the file holds",
                    range.start, range.end, self.file_len
                ),
            ));
        }
        let start = range.start / self.block_bytes * self.block_bytes;
        let end = range.end.div_ceil(self.block_bytes) * self.block_bytes;
        Ok(start..end.min(self.file_len))
    }

    /// Verifies `data`, the bytes of `segment` from offset `start` (a block boundary) to a
    /// block boundary or the end of the file.
    pub fn verify(&self, segment: &Path, start: u64, data: &[u8]) -> Result<()> {
        let first = (start / self.block_bytes) as usize;
        for (i, block) in data.chunks(self.block_bytes as usize).enumerate() {
            let b = first + i;
            let offset = b as u64 * self.block_bytes;
            let want_len = self.block_bytes.min(self.file_len.saturating_sub(offset));
            let Some(&want) = self.crcs.get(b) else {
                return Err(corrupt(
                    segment,
                    offset,
                    "bytes beyond what its checksums cover",
                ));
            };
            if block.len() as u64 != want_len {
                return Err(corrupt(
                    segment,
                    offset,
                    format!(
                        "block {b} is {} bytes, its checksum covers {want_len}",
                        block.len()
                    ),
                ));
            }
            if crc32fast::hash(block) != want {
                return Err(corrupt(
                    segment,
                    offset,
                    format!(
                        "checksum mismatch in block {b} (bytes {offset}..{}): the file is damaged",
                        offset + want_len
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks that `segment` on disk has the length the checksums cover.
    pub fn check_len(&self, segment: &Path, actual: u64) -> Result<()> {
        if actual != self.file_len {
            return Err(corrupt(
                segment,
                actual.min(self.file_len),
                format!(
                    "the file is {actual} bytes but its checksums cover {} bytes",
                    self.file_len
                ),
            ));
        }
        Ok(())
    }
}

/// Reads `range` of an open segment file after verifying every block it touches.
pub(crate) fn read_range(
    segment: &Path,
    sums: &BlockChecksums,
    file: &mut File,
    range: Range<u64>,
) -> Result<Bytes> {
    if range.start == range.end {
        return Ok(Bytes::new());
    }
    let span = sums.aligned(segment, &range)?;
    let want = span.end - span.start;
    // Read into uninitialized capacity: zeroing the buffer first (`vec![0; n]`) was half of
    // this function's time on a scan, for bytes the read overwrites at once.
    let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(usize::MAX));
    file.seek(SeekFrom::Start(span.start)).at(segment)?;
    let got = Read::by_ref(file)
        .take(want)
        .read_to_end(&mut buf)
        .at(segment)?;
    if (got as u64) < want {
        return Err(corrupt(
            segment,
            span.start,
            "the file is shorter than its checksums cover",
        ));
    }
    sums.verify(segment, span.start, &buf)?;
    let from = (range.start - span.start) as usize;
    let to = (range.end - span.start) as usize;
    Ok(Bytes::from(buf).slice(from..to))
}

/// Reads a whole segment and verifies every block against its checksum file.
pub fn read_segment_bytes(segment: &Path) -> Result<Bytes> {
    let sums = BlockChecksums::load(segment)?;
    let data = fs::read(segment).at(segment)?;
    sums.check_len(segment, data.len() as u64)?;
    sums.verify(segment, 0, &data)?;
    Ok(Bytes::from(data))
}

/// A writer that computes the block checksums of everything written through it.
pub(crate) struct BlockCrcWriter<W> {
    inner: W,
    block_bytes: u64,
    hasher: crc32fast::Hasher,
    in_block: u64,
    len: u64,
    crcs: Vec<u32>,
}

impl<W: Write> BlockCrcWriter<W> {
    pub(crate) fn new(inner: W, block_bytes: u32) -> Self {
        Self {
            inner,
            block_bytes: u64::from(block_bytes.max(1)),
            hasher: crc32fast::Hasher::new(),
            in_block: 0,
            len: 0,
            crcs: Vec::new(),
        }
    }

    fn track(&mut self, mut buf: &[u8]) {
        self.len += buf.len() as u64;
        while !buf.is_empty() {
            let room = (self.block_bytes - self.in_block) as usize;
            let take = room.min(buf.len());
            self.hasher.update(&buf[..take]);
            self.in_block += take as u64;
            buf = &buf[take..];
            if self.in_block == self.block_bytes {
                let full = std::mem::replace(&mut self.hasher, crc32fast::Hasher::new());
                self.crcs.push(full.finalize());
                self.in_block = 0;
            }
        }
    }

    /// The inner writer and the checksums of everything written.
    pub(crate) fn finish(mut self) -> (W, BlockChecksums) {
        if self.in_block > 0 {
            let last = std::mem::replace(&mut self.hasher, crc32fast::Hasher::new());
            self.crcs.push(last.finalize());
        }
        let sums = BlockChecksums {
            block_bytes: self.block_bytes,
            file_len: self.len,
            crcs: self.crcs,
        };
        (self.inner, sums)
    }
}

impl<W: Write> Write for BlockCrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.track(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The length and CRC-32 of a whole file, recorded by the file that names it (a view
/// checkpoint names its chunk files with theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChecksum {
    /// Length in bytes.
    pub bytes: u64,
    /// CRC-32 of the whole file.
    pub crc32: u32,
}

impl FileChecksum {
    /// The checksum of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self {
            bytes: data.len() as u64,
            crc32: crc32fast::hash(data),
        }
    }

    /// Checks `data`, read from `path`, against this checksum.
    pub fn verify(&self, path: &Path, data: &[u8]) -> Result<()> {
        if data.len() as u64 != self.bytes {
            return Err(corrupt(
                path,
                0,
                format!(
                    "the file is {} bytes, {} were written",
                    data.len(),
                    self.bytes
                ),
            ));
        }
        let actual = crc32fast::hash(data);
        if actual != self.crc32 {
            return Err(corrupt(
                path,
                0,
                format!(
                    "checksum mismatch: crc32 {actual}, {} was written",
                    self.crc32
                ),
            ));
        }
        Ok(())
    }
}

/// Reads a whole file and checks it against `expected` (when the file that names it recorded
/// one; files from before checksums have none).
pub fn read_file_verified(path: &Path, expected: Option<&FileChecksum>) -> Result<Vec<u8>> {
    let data = fs::read(path).at(path)?;
    if let Some(sum) = expected {
        sum.verify(path, &data)?;
    }
    Ok(data)
}

/// Decodes a whole Parquet file held in memory (already verified); a file that does not decode
/// is [`StorageError::Corrupt`] naming `path`.
pub fn decode_parquet(path: &Path, data: Bytes) -> Result<Vec<RecordBatch>> {
    let undecodable = |e: &dyn std::fmt::Display| corrupt(path, 0, format!("cannot decode: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)
        .and_then(|b| b.with_batch_size(SEGMENT_READ_BATCH_ROWS).build())
        .map_err(|e| undecodable(&e))?;
    let mut out = Vec::new();
    for b in reader {
        out.push(b.map_err(|e| undecodable(&e))?);
    }
    Ok(out)
}

/// Reads a Parquet file named by another file with its checksum, verifies it and decodes it.
pub fn read_parquet_verified(
    path: &Path,
    expected: Option<&FileChecksum>,
) -> Result<Vec<RecordBatch>> {
    let data = read_file_verified(path, expected)?;
    decode_parquet(path, Bytes::from(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_computes_what_of_computes_and_the_file_round_trips() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for block in [1u32, 7, 64, 4096, 10_000, 20_000] {
            let mut w = BlockCrcWriter::new(Vec::new(), block);
            // Uneven writes, crossing block boundaries.
            for piece in data.chunks(333) {
                w.write_all(piece).expect("write");
            }
            let (inner, sums) = w.finish();
            assert_eq!(inner, data);
            assert_eq!(sums, BlockChecksums::of(&data, block), "block {block}");
            assert_eq!(
                sums.blocks() as u64,
                (data.len() as u64).div_ceil(u64::from(block))
            );
            let back = BlockChecksums::decode(Path::new("x.crc"), &sums.encode()).expect("decode");
            assert_eq!(back, sums);
            back.verify(Path::new("x"), 0, &data).expect("verify");
        }
        let empty = BlockChecksums::of(&[], 64);
        assert_eq!(empty.blocks(), 0);
        let back = BlockChecksums::decode(Path::new("x.crc"), &empty.encode()).expect("empty");
        back.verify(Path::new("x"), 0, &[]).expect("verify empty");
    }

    #[test]
    fn a_damaged_checksum_file_is_refused_byte_by_byte() {
        let data = vec![42u8; 1000];
        let encoded = BlockChecksums::of(&data, 64).encode();
        for i in 0..encoded.len() {
            for flip in [0x01u8, 0x10, 0x80] {
                let mut bad = encoded.clone();
                bad[i] ^= flip;
                let err = BlockChecksums::decode(Path::new("dir/7.parquet.crc"), &bad)
                    .expect_err("damaged checksum file");
                assert!(err.to_string().contains("dir/7.parquet.crc"), "{err}");
            }
        }
        assert!(BlockChecksums::decode(Path::new("x"), &encoded[..encoded.len() - 1]).is_err());
    }

    #[test]
    fn file_checksums_catch_every_flipped_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chunk.parquet");
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let sum = FileChecksum::of(&data);
        std::fs::write(&path, &data).expect("write");
        assert_eq!(read_file_verified(&path, Some(&sum)).expect("read"), data);
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 0x04;
            std::fs::write(&path, &bad).expect("write");
            let err = read_file_verified(&path, Some(&sum)).expect_err("damaged");
            assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains("chunk.parquet"), "{err}");
        }
        std::fs::write(&path, &data[..299]).expect("write");
        assert!(read_file_verified(&path, Some(&sum)).is_err());
    }

    /// A range read verifies what it read, and a file cut short under its checksums is named
    /// as such rather than read as zeros.
    #[test]
    fn a_range_read_verifies_and_refuses_a_file_shorter_than_its_checksums() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("7.parquet");
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let sums = BlockChecksums::of(&data, 64);
        let mut file = File::open(&path).expect("open");
        for range in [0..1000u64, 5..6, 63..65, 900..1000, 999..1000] {
            let got = read_range(&path, &sums, &mut file, range.clone()).expect("read");
            assert_eq!(&got[..], &data[range.start as usize..range.end as usize]);
        }
        // Cut inside the last block the read needs.
        std::fs::write(&path, &data[..950]).expect("truncate");
        let mut file = File::open(&path).expect("open");
        let err = read_range(&path, &sums, &mut file, 900..1000).expect_err("short file");
        assert!(
            err.to_string().contains("shorter than its checksums cover"),
            "{err}"
        );
        // A flipped byte in the range read is caught.
        let mut bad = data.clone();
        bad[70] ^= 0x20;
        std::fs::write(&path, &bad).expect("flip");
        let mut file = File::open(&path).expect("open");
        assert!(read_range(&path, &sums, &mut file, 64..128).is_err());
        assert!(read_range(&path, &sums, &mut file, 0..64).is_ok());
    }
}
