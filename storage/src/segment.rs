//! Parquet segment files: sorted by (tags, time), zstd, dictionary-encoded tags, delta-encoded
//! time, with statistics and page index so any Parquet engine can read and prune them.
//!
//! Each segment has a checksum file beside it (`<id>.parquet.crc`, see `checksum.rs`), written
//! before the segment is renamed into place; every byte read back (a whole segment, a range the
//! query engine asks for, the footer and page index) is verified against it first, so a
//! damaged file is an error naming it, never different data.
//!
//! Segments are immutable once renamed into place; the engine holds them as `Arc<SegmentFile>`
//! so a segment that leaves the manifest is deleted only when its last reader is done.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::errors::{ParquetError, Result as ParquetResult};
use datafusion::parquet::file::metadata::{
    KeyValue, PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader, SortingColumn,
};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use parking_lot::Mutex;

use crate::checksum::{
    BlockChecksums, BlockCrcWriter, decode_parquet, read_range, read_segment_bytes, sidecar_path,
};
use crate::dedup::conform;
use crate::error::{IoContext, Result, StorageError};
use crate::fsutil::{remove_if_present, sync_dir};
use crate::limits::{
    COMPACTED_DATA_PAGE_ROWS_MAX, DATA_PAGE_ROWS_MAX, ROW_GROUP_ROWS_MAX,
    SEGMENT_CHECKSUM_BLOCK_BYTES, SEGMENT_READ_BATCH_ROWS, SEGMENT_ZSTD_LEVEL,
};
use crate::manifest::SegmentMeta;
use crate::schema::{ColumnKind, FieldType, TableSchema};
use crate::segment_tags::{SegmentTagIndex, TAG_INDEX_KEY, TagIndexBuilder};
use crate::tag_index::TagSelection;
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};

/// A live segment file as the engine and its readers hold it (`Arc<SegmentFile>`). A segment
/// that leaves the manifest (retention, `DROP TABLE`) is retired, and its file is deleted when
/// the last holder lets go: a query that took a snapshot before keeps reading the file instead
/// of failing half-way. A crash with retired files still held leaves them behind; the manifest
/// lists them as retired, and the next start deletes them.
#[derive(Debug)]
pub struct SegmentFile {
    /// Absolute path.
    pub path: PathBuf,
    /// Its metadata.
    pub meta: SegmentMeta,
    retired: AtomicBool,
    /// When this process made it live (flushed, compacted, or found at start).
    created: std::time::Instant,
    /// The block checksums, loaded by the first verified read (segments never change).
    checksums: OnceLock<Arc<BlockChecksums>>,
    /// The tag index from the footer, decoded by the first scan that can use it.
    tag_index: OnceLock<Option<Arc<SegmentTagIndex>>>,
    /// Full-text indexes opened by scans, by column.
    text_indexes: Mutex<crate::text_index::OpenTextIndexes>,
}

impl SegmentFile {
    /// A live segment at `path`.
    pub(crate) fn new(path: PathBuf, meta: SegmentMeta) -> Self {
        Self {
            path,
            meta,
            retired: AtomicBool::new(false),
            created: std::time::Instant::now(),
            checksums: OnceLock::new(),
            tag_index: OnceLock::new(),
            text_indexes: Mutex::new(Default::default()),
        }
    }

    /// Full-text indexes opened by scans.
    pub(crate) fn text_indexes(&self) -> &Mutex<crate::text_index::OpenTextIndexes> {
        &self.text_indexes
    }

    /// The segment's tag index (see `segment_tags.rs`), decoded from its verified footer
    /// (taken from `cache`) once; `None` for a segment written without one (by an older Eddy,
    /// or with no indexable tag) or whose index this version cannot read, which is then
    /// scanned without it. A failed read is the caller's to report and is tried again next time.
    pub(crate) fn tag_index(
        &self,
        cache: &Mutex<MetadataCache>,
    ) -> Result<Option<Arc<SegmentTagIndex>>> {
        if let Some(index) = self.tag_index.get() {
            return Ok(index.clone());
        }
        let metadata = cached_metadata(self, cache)?;
        let text = metadata
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == TAG_INDEX_KEY))
            .and_then(|kv| kv.value.as_deref());
        let index = match text.map(SegmentTagIndex::decode) {
            None => None,
            Some(Ok(index)) if index.rows() == self.meta.rows => Some(Arc::new(index)),
            Some(Ok(index)) => {
                tracing::warn!(file = %self.path.display(), rows = index.rows(), expected = self.meta.rows, "tag index covers another row count: scanned without it");
                None
            }
            Some(Err(reason)) => {
                tracing::warn!(file = %self.path.display(), %reason, "unreadable tag index: scanned without it");
                None
            }
        };
        let _ = self.tag_index.set(index.clone());
        Ok(index)
    }

    /// When this process made the segment live (at start for segments found then).
    pub fn created(&self) -> std::time::Instant {
        self.created
    }

    /// Marks the segment as gone from the manifest: the last holder deletes the file.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether the segment has left the manifest.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// The segment's block checksums (loaded once), after checking that the file on disk has
    /// the length they cover.
    pub fn checksums(&self) -> Result<Arc<BlockChecksums>> {
        if let Some(sums) = self.checksums.get() {
            return Ok(sums.clone());
        }
        let sums = BlockChecksums::load(&self.path)?;
        let len = fs::metadata(&self.path).at(&self.path)?.len();
        sums.check_len(&self.path, len)?;
        let sums = Arc::new(sums);
        let _ = self.checksums.set(sums.clone());
        Ok(sums)
    }

    /// Reads byte ranges of the segment, each after verifying every block it touches.
    pub fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let sums = self.checksums()?;
        let mut file = File::open(&self.path).at(&self.path)?;
        ranges
            .iter()
            .map(|r| read_range(&self.path, &sums, &mut file, r.clone()))
            .collect()
    }

    /// The segment's footer and page index, read through verified blocks.
    pub fn read_metadata(&self) -> Result<ParquetMetaData> {
        read_metadata(&self.path, &*self.checksums()?)
    }

    /// Every row of the segment, verified, conformed to `schema`.
    pub fn read(&self, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
        read_segment(&self.path, schema)
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        if !*self.retired.get_mut() {
            return;
        }
        // The segment first: a checksum file without its segment is harmless, and the
        // manifest keeps the segment listed as retired until both are gone.
        for path in [self.path.clone(), sidecar_path(&self.path)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove retired segment")
                }
            }
        }
        // Its full-text indexes last: they are worthless without it (and swept at start).
        let fts = crate::text_index::text_root(&self.path);
        if fts.exists()
            && let Err(e) = fs::remove_dir_all(&fts)
        {
            tracing::warn!(dir = %fts.display(), error = %e, "cannot remove a retired segment's full-text indexes");
        }
    }
}

/// The footer and page index of a segment of `sums.file_len()` bytes, read through verified
/// blocks from the end of the file: first the last block, then as much as the footer says it
/// needs.
fn read_metadata(path: &Path, sums: &BlockChecksums) -> Result<ParquetMetaData> {
    let len = sums.file_len();
    let mut file = File::open(path).at(path)?;
    let mut tail = sums.block_bytes().min(len);
    loop {
        let bytes = read_range(path, sums, &mut file, len - tail..len)?;
        let mut reader =
            ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Optional);
        match reader.try_parse_sized(&bytes, len) {
            Ok(()) => {
                return reader.finish().map_err(|e| StorageError::Corrupt {
                    path: path.to_path_buf(),
                    offset: len - tail,
                    reason: format!("cannot read its footer: {e}"),
                });
            }
            Err(ParquetError::NeedMoreData(needed))
                if needed as u64 > tail && needed as u64 <= len =>
            {
                tail = needed as u64;
            }
            Err(e) => {
                return Err(StorageError::Corrupt {
                    path: path.to_path_buf(),
                    offset: len - tail,
                    reason: format!("cannot read its footer: {e}"),
                });
            }
        }
    }
}

/// Footers and page indexes of segments, verified once and kept in an LRU under a memory
/// budget, so planning a query does not read them again.
#[derive(Debug)]
pub(crate) struct MetadataCache {
    budget: usize,
    bytes: usize,
    tick: u64,
    /// Segment id → (last use, size, metadata).
    entries: HashMap<u64, (u64, usize, Arc<ParquetMetaData>)>,
    /// Last use → segment id, oldest first.
    order: BTreeMap<u64, u64>,
}

impl MetadataCache {
    /// An empty cache holding at most `budget` bytes (and always the newest entry).
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            bytes: 0,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn get(&mut self, id: u64) -> Option<Arc<ParquetMetaData>> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(&id)?;
        self.order.remove(&entry.0);
        entry.0 = tick;
        self.order.insert(tick, id);
        Some(entry.2.clone())
    }

    fn insert(&mut self, id: u64, metadata: Arc<ParquetMetaData>) {
        self.remove(id);
        self.tick += 1;
        let size = metadata.memory_size();
        self.entries.insert(id, (self.tick, size, metadata));
        self.order.insert(self.tick, id);
        self.bytes += size;
        while self.bytes > self.budget && self.entries.len() > 1 {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, size, _)) = self.entries.remove(&victim) {
                self.bytes -= size;
            }
        }
    }

    /// Forgets segment `id` (it left the manifest).
    pub(crate) fn remove(&mut self, id: u64) {
        if let Some((tick, size, _)) = self.entries.remove(&id) {
            self.order.remove(&tick);
            self.bytes -= size;
        }
    }
}

/// The verified footer and page index of `file`: from `cache`, or read and cached.
pub(crate) fn cached_metadata(
    file: &SegmentFile,
    cache: &Mutex<MetadataCache>,
) -> Result<Arc<ParquetMetaData>> {
    if let Some(metadata) = cache.lock().get(file.meta.id) {
        return Ok(metadata);
    }
    let metadata = Arc::new(file.read_metadata()?);
    cache.lock().insert(file.meta.id, metadata.clone());
    Ok(metadata)
}

/// Parquet's synchronous reader over one segment, for reads inside storage that want part of
/// it (a time range, some pages, one column): like [`SegmentReader`], every range it hands
/// out was read in whole checksum blocks and verified, and nothing else is read. The last
/// span read is kept, as consecutive pages of a column usually share a block.
pub(crate) struct VerifiedChunks {
    path: PathBuf,
    sums: Arc<BlockChecksums>,
    file: Mutex<File>,
    last: Mutex<Option<(Range<u64>, Bytes)>>,
    read: Arc<AtomicU64>,
    /// The storage error of the last failed read: Parquet's synchronous reader passes errors
    /// on as text, so the caller takes the typed error (an I/O error stays one) from here.
    pub(crate) failure: Arc<Mutex<Option<StorageError>>>,
}

impl VerifiedChunks {
    /// A reader of `file`'s verified bytes.
    pub(crate) fn open(file: &SegmentFile) -> Result<Self> {
        Ok(Self {
            path: file.path.clone(),
            sums: file.checksums()?,
            file: Mutex::new(File::open(&file.path).at(&file.path)?),
            last: Mutex::new(None),
            read: Default::default(),
            failure: Default::default(),
        })
    }

    /// `range` of the file, verified.
    fn bytes(&self, range: Range<u64>) -> Result<Bytes> {
        if let Some((span, data)) = &*self.last.lock()
            && span.start <= range.start
            && range.end <= span.end
        {
            let from = (range.start - span.start) as usize;
            return Ok(data.slice(from..from + (range.end - range.start) as usize));
        }
        let span = self.sums.aligned(&self.path, &range)?;
        let data = read_range(&self.path, &self.sums, &mut self.file.lock(), span.clone())?;
        self.read
            .fetch_add(span.end - span.start, Ordering::Relaxed);
        let from = (range.start - span.start) as usize;
        let out = data.slice(from..from + (range.end - range.start) as usize);
        *self.last.lock() = Some((span, data));
        Ok(out)
    }
}

impl datafusion::parquet::file::reader::Length for VerifiedChunks {
    fn len(&self) -> u64 {
        self.sums.file_len()
    }
}

impl datafusion::parquet::file::reader::ChunkReader for VerifiedChunks {
    type T = VerifiedRead;

    // Parquet reads page headers through this when a column has no offset index (segments
    // of older versions); the header's length is unknown, so blocks are read as consumed.
    fn get_read(&self, start: u64) -> ParquetResult<VerifiedRead> {
        let file = self
            .file
            .lock()
            .try_clone()
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(VerifiedRead {
            path: self.path.clone(),
            sums: self.sums.clone(),
            file,
            pos: start,
            buffered: Bytes::new(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> ParquetResult<Bytes> {
        let end = start
            .checked_add(length as u64)
            .filter(|end| *end <= self.sums.file_len())
            .ok_or_else(|| {
                ParquetError::External(Box::new(StorageError::Corrupt {
                    path: self.path.clone(),
                    offset: start,
                    reason: format!("a read of {length} bytes runs past the end of the file"),
                }))
            })?;
        self.bytes(start..end).map_err(|e| {
            let text = e.to_string();
            *self.failure.lock() = Some(e);
            ParquetError::General(text)
        })
    }
}

/// A sequential reader of a segment's verified bytes from some offset on, one checksum block
/// at a time.
pub(crate) struct VerifiedRead {
    path: PathBuf,
    sums: Arc<BlockChecksums>,
    file: File,
    pos: u64,
    buffered: Bytes,
}

impl std::io::Read for VerifiedRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use bytes::Buf;
        if self.buffered.is_empty() {
            let len = self.sums.file_len();
            if self.pos >= len {
                return Ok(0);
            }
            let block = self.sums.block_bytes();
            let end = ((self.pos / block + 1) * block).min(len);
            self.buffered = read_range(&self.path, &self.sums, &mut self.file, self.pos..end)
                .map_err(std::io::Error::other)?;
            self.pos = end;
        }
        let n = out.len().min(self.buffered.len());
        out[..n].copy_from_slice(&self.buffered[..n]);
        self.buffered.advance(n);
        Ok(n)
    }
}

/// What a [`partial_reader`] has read: the bytes, and the storage error of a failed read.
pub(crate) struct ChunkReads {
    pub(crate) bytes: Arc<AtomicU64>,
    pub(crate) failure: Arc<Mutex<Option<StorageError>>>,
}

impl ChunkReads {
    /// The storage error behind a failed decode (a damaged block stays `Corrupt`, an I/O
    /// error stays `Io`), or `otherwise` when no read failed.
    pub(crate) fn error_or(&self, otherwise: StorageError) -> StorageError {
        self.failure.lock().take().unwrap_or(otherwise)
    }
}

/// A synchronous Parquet reader of `file` that reads only the verified ranges it needs, with
/// the footer and page index from `cache`, and what it has read from the file.
pub(crate) fn partial_reader(
    file: &SegmentFile,
    cache: &Mutex<MetadataCache>,
) -> Result<(
    datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder<VerifiedChunks>,
    ChunkReads,
)> {
    use datafusion::parquet::arrow::arrow_reader::{
        ArrowReaderMetadata, ParquetRecordBatchReaderBuilder,
    };
    let metadata = cached_metadata(file, cache)?;
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let metadata =
        ArrowReaderMetadata::try_new(metadata, options).map_err(|e| StorageError::Corrupt {
            path: file.path.clone(),
            offset: 0,
            reason: format!("cannot read its schema: {e}"),
        })?;
    let chunks = VerifiedChunks::open(file)?;
    let reads = ChunkReads {
        bytes: chunks.read.clone(),
        failure: chunks.failure.clone(),
    };
    Ok((
        ParquetRecordBatchReaderBuilder::new_with_metadata(chunks, metadata),
        reads,
    ))
}

/// Parquet's asynchronous reader over one segment (what the query engine scans through):
/// every range it hands out was read in whole blocks and verified, and the footer and page
/// index come through the same verified reads. A damaged block fails the read with
/// [`StorageError::Corrupt`] naming the segment, wrapped in `ParquetError::External`.
pub struct SegmentReader {
    file: Arc<SegmentFile>,
    cache: Arc<Mutex<MetadataCache>>,
    on_read: Option<Box<dyn Fn(u64) + Send + Sync>>,
}

impl std::fmt::Debug for SegmentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentReader")
            .field("path", &self.file.path)
            .finish()
    }
}

type ReadFuture<'a, T> = Pin<Box<dyn Future<Output = ParquetResult<T>> + Send + 'a>>;

impl SegmentReader {
    /// A reader of `file` sharing the engine's metadata cache.
    pub(crate) fn new(file: Arc<SegmentFile>, cache: Arc<Mutex<MetadataCache>>) -> Self {
        Self {
            file,
            cache,
            on_read: None,
        }
    }

    /// Calls `f` with the number of bytes asked for on every data read (for scan metrics).
    pub fn on_read(mut self, f: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.on_read = Some(Box::new(f));
        self
    }

    /// The segment read.
    pub fn file(&self) -> &Arc<SegmentFile> {
        &self.file
    }

    fn count(&self, bytes: u64) {
        if let Some(f) = &self.on_read {
            f(bytes);
        }
    }
}

/// Runs a blocking file read off the async workers (inline when polled outside a Tokio
/// runtime); a storage error travels inside `ParquetError::External` so callers can find it
/// again.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> ParquetResult<T> {
    let done = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(f)
            .await
            .map_err(|e| ParquetError::External(Box::new(e)))?,
        Err(_) => f(),
    };
    done.map_err(|e| ParquetError::External(Box::new(e)))
}

impl AsyncFileReader for SegmentReader {
    fn get_bytes(&mut self, range: Range<u64>) -> ReadFuture<'_, Bytes> {
        self.count(range.end.saturating_sub(range.start));
        let file = self.file.clone();
        Box::pin(async move {
            let mut read = blocking(move || file.read_ranges(&[range])).await?;
            Ok(read.pop().unwrap_or_default())
        })
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> ReadFuture<'_, Vec<Bytes>> {
        self.count(ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum());
        let file = self.file.clone();
        Box::pin(async move { blocking(move || file.read_ranges(&ranges)).await })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> ReadFuture<'a, Arc<ParquetMetaData>> {
        // Always with the page index: it is part of what is cached, so a later need for it
        // costs no read.
        let file = self.file.clone();
        let cache = self.cache.clone();
        Box::pin(async move {
            let id = file.meta.id;
            let cached = cache.lock().get(id);
            if let Some(metadata) = cached {
                return Ok(metadata);
            }
            blocking(move || cached_metadata(&file, &cache)).await
        })
    }
}

/// Writes `batch` (sorted and deduplicated) to `path` durably: a temporary file is written and
/// fsynced, its block checksums are stored beside it (`<path>.crc`), then it is renamed into
/// place. Returns the file size. On failure its temporary files are removed (a full disk
/// needs their space back), and the error is [`StorageError::DiskFull`] even when Parquet
/// wrapped the I/O error. Files under their final names are left to the caller: whether they
/// may go depends on what the manifest on disk names.
pub fn write_segment(path: &Path, table: &TableSchema, batch: &RecordBatch) -> Result<u64> {
    let mut writer = SegmentWriter::create(path, table, SegmentStyle::Flushed)?;
    writer.write(batch)?;
    writer.finish()
}

/// What a segment is written for, which decides its layout (see [`writer_properties`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentStyle {
    /// Written by a flush, on the write path's clock: cheap to write.
    Flushed,
    /// Written by compaction in the background, read for a long time: dense.
    Compacted,
}

/// A segment written batch by batch (rows in key order, each key once), made durable and
/// renamed into place by [`SegmentWriter::finish`]. Dropped unfinished, it removes its
/// temporary file.
pub struct SegmentWriter {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<ArrowWriter<BlockCrcWriter<File>>>,
    schema: SchemaRef,
    tags: TagIndexBuilder,
}

impl SegmentWriter {
    /// Starts the segment `path` of `table` (its parent directory is created).
    pub fn create(path: &Path, table: &TableSchema, style: SegmentStyle) -> Result<Self> {
        let tmp = path.with_extension("parquet.tmp");
        let mut this = Self {
            path: path.to_path_buf(),
            tmp,
            writer: None,
            schema: table.arrow_schema().clone(),
            tags: TagIndexBuilder::new(table),
        };
        let started = (|| {
            let dir = path.parent().unwrap_or(Path::new("."));
            fs::create_dir_all(dir).at(dir)?;
            let file = File::create(&this.tmp).at(&this.tmp)?;
            let counted = BlockCrcWriter::new(file, SEGMENT_CHECKSUM_BLOCK_BYTES);
            let props = writer_properties(table, style)?;
            Ok(ArrowWriter::try_new(
                counted,
                this.schema.clone(),
                Some(props),
            )?)
        })();
        match started {
            Ok(w) => {
                this.writer = Some(w);
                Ok(this)
            }
            Err(e) => Err(this.failed(e)),
        }
    }

    /// Appends rows (in the table schema, after every row written so far in key order).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(StorageError::ShutDown(format!(
                "{} failed already",
                self.tmp.display()
            )));
        };
        let conformed = conform(batch, &self.schema);
        let tags = &mut self.tags;
        let written = conformed.and_then(|b| {
            writer.write(&b)?;
            tags.add(&b);
            Ok(())
        });
        written.map_err(|e| self.failed(e))
    }

    /// Closes the file, fsyncs it, stores its checksums and renames it into place. Returns
    /// the file size.
    pub fn finish(mut self) -> Result<u64> {
        let Some(mut writer) = self.writer.take() else {
            return Err(StorageError::ShutDown(format!(
                "{} failed already",
                self.tmp.display()
            )));
        };
        let tags = std::mem::take(&mut self.tags);
        if let Some(index) = tags.encode() {
            writer.append_key_value_metadata(KeyValue::new(TAG_INDEX_KEY.to_string(), index));
        }
        let done = (|| {
            let (file, sums) = writer.into_inner()?.finish();
            file.sync_all().at(&self.tmp)?;
            let bytes = file.metadata().at(&self.tmp)?.len();
            drop(file);
            sums.check_len(&self.tmp, bytes)?;
            // The checksums are in place before the segment is: a segment under its final
            // name always has them. A crash in between leaves a checksum file whose segment id
            // the manifest has not handed out yet (or lists as compacting), which the next
            // start removes.
            sums.store(&self.path)?;
            fs::rename(&self.tmp, &self.path).at(&self.path)?;
            let dir = self.path.parent().unwrap_or(Path::new("."));
            sync_dir(dir)?;
            Ok(bytes)
        })();
        done.map_err(|e| self.failed(e))
    }

    /// Removes the temporary file after `e` and names a full disk as such.
    fn failed(&mut self, e: StorageError) -> StorageError {
        self.writer = None;
        remove_if_present(&self.tmp);
        e.or_disk_full(&self.tmp)
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            remove_if_present(&self.tmp);
        }
    }
}

/// The Parquet layout of a segment: sorted by (tags, time), zstd, statistics and page index,
/// time delta-encoded; see [`SegmentStyle`] for what differs.
fn writer_properties(table: &TableSchema, style: SegmentStyle) -> Result<WriterProperties> {
    let mut sorting: Vec<SortingColumn> = table
        .tag_indices()
        .iter()
        .map(|&i| SortingColumn {
            column_idx: i as i32,
            descending: false,
            nulls_first: true,
        })
        .collect();
    sorting.push(SortingColumn {
        column_idx: table.time_index() as i32,
        descending: false,
        nulls_first: false,
    });
    let page_rows = match style {
        SegmentStyle::Flushed => DATA_PAGE_ROWS_MAX,
        SegmentStyle::Compacted => COMPACTED_DATA_PAGE_ROWS_MAX,
    };
    let time_path = ColumnPath::from(table.time_column());
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(SEGMENT_ZSTD_LEVEL)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS_MAX))
        // Small pages let the page index narrow a lookup of one series to a few thousand
        // rows; the default (20,000) made a point query decode 40,000.
        .set_data_page_row_count_limit(page_rows)
        .set_sorting_columns(Some(sorting))
        .set_column_dictionary_enabled(time_path.clone(), false)
        .set_column_encoding(time_path, Encoding::DELTA_BINARY_PACKED);
    // Field encodings, by measurement on TSBS data (docs/benchmarks.md): integers sorted by
    // series change by small steps, which delta encoding stores in a few bits (half the size
    // of a dictionary); floats compress better split by byte, but only once pages are large.
    for c in &table.def().columns {
        let path = ColumnPath::from(c.name.as_str());
        let encoding = match (c.kind, style) {
            (ColumnKind::Field(FieldType::Integer | FieldType::UInteger), _) => {
                Encoding::DELTA_BINARY_PACKED
            }
            (ColumnKind::Field(FieldType::Float), SegmentStyle::Compacted) => {
                Encoding::BYTE_STREAM_SPLIT
            }
            _ => continue,
        };
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, encoding);
    }
    Ok(props.build())
}

/// What [`read_segment_range`] read: the rows, and how many bytes of the file it read for
/// them.
#[derive(Debug)]
pub struct SegmentRange {
    /// The rows, conformed to the schema asked for.
    pub batches: Vec<RecordBatch>,
    /// Bytes read from the file (whole checksum blocks, footer excluded when cached).
    pub bytes_read: u64,
}

/// The rows of a segment with time in `[lo, hi]` (and, with a tag selection, in pages that
/// may hold a selected value), verified, conformed to `schema` (with `columns`, only those are
/// read, and the others are null). Only the pages needed are
/// read from the file: the selected tags' and the time column first, then the other columns
/// for the rows they keep;
/// the footer and page index come from `cache`. A range of a large segment then costs a
/// fraction of reading it whole.
pub(crate) fn read_segment_range(
    file: &SegmentFile,
    cache: &Mutex<MetadataCache>,
    schema: &SchemaRef,
    time_column: &str,
    (lo, hi): (i64, i64),
    tags: &TagSelection,
    columns: Option<&[String]>,
) -> Result<SegmentRange> {
    use datafusion::arrow::array::{AsArray, BooleanArray};
    use datafusion::arrow::datatypes::TimestampNanosecondType;
    use datafusion::parquet::arrow::ProjectionMask;
    use datafusion::parquet::arrow::arrow_reader::{ArrowPredicate, ArrowPredicateFn, RowFilter};
    let path = &file.path;
    let whole = |path: &Path| -> Result<SegmentRange> {
        Ok(SegmentRange {
            batches: read_segment(path, schema)?,
            bytes_read: file.meta.bytes,
        })
    };
    if lo == i64::MIN && hi == i64::MAX && tags.is_empty() && columns.is_none() {
        return whole(path);
    }
    let undecodable = |e: &dyn std::fmt::Display| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: format!("cannot decode: {e}"),
    };
    let (mut builder, reads) = partial_reader(file, cache)?;
    // Pages whose tag statistics rule out every selected value are not decoded (the caller
    // still filters the rows it gets by tag).
    if let Some(pages) = tag_pages(builder.metadata(), tags) {
        // Row groups without a selected row are left out, not skipped: skipping still reads
        // and decodes every dictionary page of a row group.
        let (groups, selection) = by_row_group(builder.metadata(), pages);
        if groups.is_empty() {
            return Ok(SegmentRange {
                batches: Vec::new(),
                bytes_read: reads.bytes.load(Ordering::Relaxed),
            });
        }
        builder = builder
            .with_row_groups(groups)
            .with_row_selection(selection);
    }
    let Some(time_leaf) = leaf_of(builder.parquet_schema(), time_column) else {
        return whole(path);
    };
    // The selected tags first: a page holds many series, and only the rows of the selected
    // ones are decoded in the other columns.
    let mut filters: Vec<Box<dyn ArrowPredicate>> = Vec::new();
    for (column, values) in &tags.any_of {
        let Some(leaf) = leaf_of(builder.parquet_schema(), column) else {
            // Null in every row of this segment: the caller's filter drops them all.
            continue;
        };
        let mask = ProjectionMask::leaves(builder.parquet_schema(), [leaf]);
        let values = values.clone();
        filters.push(Box::new(ArrowPredicateFn::new(
            mask,
            move |batch: RecordBatch| crate::tag_index::any_of_mask(batch.column(0), &values),
        )));
    }
    let mask = ProjectionMask::leaves(builder.parquet_schema(), [time_leaf]);
    let in_range = ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
        let Some(time) = batch
            .column(0)
            .as_primitive_opt::<TimestampNanosecondType>()
        else {
            return Ok(BooleanArray::from(vec![true; batch.num_rows()]));
        };
        Ok(time.iter().map(|t| t.map(|t| t >= lo && t <= hi)).collect())
    });
    if lo != i64::MIN || hi != i64::MAX {
        filters.push(Box::new(in_range));
    }
    if let Some(columns) = columns {
        let roots: Vec<usize> = builder
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| columns.iter().any(|c| c == f.name()))
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder = builder.with_projection(mask);
    }
    let reader = builder
        .with_row_filter(RowFilter::new(filters))
        .with_batch_size(SEGMENT_READ_BATCH_ROWS)
        .build()
        .map_err(|e| reads.error_or(undecodable(&e)))?;
    let mut batches = Vec::new();
    for b in reader {
        let b = b.map_err(|e| reads.error_or(undecodable(&e)))?;
        if b.num_rows() > 0 {
            batches.push(conform(&b, schema)?);
        }
    }
    Ok(SegmentRange {
        batches,
        bytes_read: reads.bytes.load(Ordering::Relaxed),
    })
}

/// The rows of a segment in pages whose statistics (the page index) allow one of the selected
/// values of every selected tag column; `None` when there is nothing to narrow by.
fn tag_pages(metadata: &ParquetMetaData, tags: &TagSelection) -> Option<RowSelection> {
    use datafusion::parquet::file::page_index::column_index::ColumnIndexMetaData;
    let (columns, offsets) = (metadata.column_index()?, metadata.offset_index()?);
    let leaves = metadata.file_metadata().schema_descr();
    let total = metadata.file_metadata().num_rows().max(0) as u64;
    let mut selection: Option<RowSelection> = None;
    for (column, values) in &tags.any_of {
        // A tag the segment predates is null in all its rows: the caller's filter drops them.
        let Some(leaf) = leaf_of(leaves, column) else {
            continue;
        };
        // Kept rows, as ranges over the whole file.
        let mut keep: Vec<Range<u64>> = Vec::new();
        let mut group_start = 0u64;
        for rg in 0..metadata.num_row_groups() {
            let rows = metadata.row_group(rg).num_rows().max(0) as u64;
            let whole = group_start..group_start + rows;
            let first = keep.len();
            if let (Some(ColumnIndexMetaData::BYTE_ARRAY(index)), Some(pages)) = (
                columns.get(rg).and_then(|c| c.get(leaf)),
                offsets.get(rg).and_then(|o| o.get(leaf)),
            ) {
                let pages = pages.page_locations();
                let mut tiled = 0u64;
                for (p, page) in pages.iter().enumerate() {
                    let start = (page.first_row_index.max(0) as u64).min(rows);
                    let end = pages
                        .get(p + 1)
                        .map_or(rows, |n| (n.first_row_index.max(0) as u64).min(rows));
                    tiled += end.saturating_sub(start);
                    let may_hold = !index.is_null_page(p)
                        && match (index.min_value(p), index.max_value(p)) {
                            (Some(min), Some(max)) => values
                                .iter()
                                .any(|v| min <= v.as_bytes() && v.as_bytes() <= max),
                            _ => true,
                        };
                    if may_hold && end > start {
                        keep.push(group_start + start..group_start + end);
                    }
                }
                // Pages that do not tile the row group (never written so): read it all.
                if tiled != rows {
                    keep.truncate(first);
                    keep.push(whole);
                }
            } else {
                keep.push(whole);
            }
            group_start += rows;
        }
        let s = row_selection(keep.into_iter(), total);
        selection = Some(match selection {
            Some(a) => a.intersection(&s),
            None => s,
        });
    }
    selection
}

/// The leaf column of a segment's (flat) Parquet schema named `name`.
fn leaf_of(
    schema: &datafusion::parquet::schema::types::SchemaDescriptor,
    name: &str,
) -> Option<usize> {
    schema.columns().iter().position(|c| c.name() == name)
}

/// The row groups in which `selection` (over the whole file) selects a row, and the selection
/// over those row groups' rows only.
fn by_row_group(
    metadata: &ParquetMetaData,
    mut selection: RowSelection,
) -> (Vec<usize>, RowSelection) {
    let mut groups = Vec::new();
    let mut selectors: Vec<RowSelector> = Vec::new();
    for rg in 0..metadata.num_row_groups() {
        let rows = metadata.row_group(rg).num_rows().max(0) as usize;
        let head = selection.split_off(rows);
        if head.selects_any() {
            groups.push(rg);
            selectors.extend(head.iter().copied());
        }
    }
    (groups, RowSelection::from(selectors))
}

/// A selection of `total` rows that reads the given ascending, disjoint ranges of them.
pub fn row_selection(ranges: impl Iterator<Item = Range<u64>>, total: u64) -> RowSelection {
    let mut selectors = Vec::new();
    let mut at = 0u64;
    for r in ranges {
        let (start, end) = (r.start.min(total), r.end.min(total));
        if start > at {
            selectors.push(RowSelector::skip((start - at) as usize));
        }
        if end > start.max(at) {
            selectors.push(RowSelector::select((end - start.max(at)) as usize));
            at = end;
        }
    }
    if total > at {
        selectors.push(RowSelector::skip((total - at) as usize));
    }
    RowSelection::from(selectors)
}

/// Reads a whole segment, conformed to `schema` (columns added since it was written are null),
/// after verifying every block against its checksum file. A damaged segment (or a missing
/// checksum file) is [`StorageError::Corrupt`] naming it.
pub fn read_segment(path: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let data = read_segment_bytes(path)?;
    decode_parquet(path, data)?
        .iter()
        .map(|b| conform(b, schema))
        .collect()
}
