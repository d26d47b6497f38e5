//! Every limit and tuning constant of the storage engine, in one place.
//!
//! A limit that hides in the module that enforces it is a limit nobody reviews. Each constant
//! here says what it trades, so changing one is a decision made with its cost in view. The
//! engine's configurable limits ([`crate::StorageConfig`]) take their defaults from here; the
//! rest are fixed because they shape files on disk or the engine's threads.

/// Width of a time partition (one UTC day), in nanoseconds: narrower partitions let retention
/// drop data more precisely but write more, smaller segment files per table.
pub const PARTITION_NANOS: i64 = 86_400_000_000_000;

/// Columns a table may have: more columns means wider rows in every memtable batch and
/// Parquet footer; the cap stops a runaway schema-on-write client from growing one forever.
pub const COLUMNS_PER_TABLE_MAX: usize = 1024;

/// Longest table or column name, in bytes: long enough for generated names, short enough to be
/// a directory name (255 bytes on common file systems) once encoded.
pub const NAME_BYTES_MAX: usize = 255;

/// Default size at which a WAL file is closed and a new one started: larger files mean fewer
/// file creations and fsyncs of the directory, smaller ones free disk sooner after a flush.
pub const DEFAULT_WAL_SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Default memory all memtables may hold before writers wait for flushes (backpressure):
/// more absorbs longer bursts, at the cost of memory and of WAL to replay after a crash.
pub const DEFAULT_MEMTABLE_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Default memtable size that triggers a flush: larger flushes write fewer, larger segments
/// (better for scans) but hold more memory and replay more WAL after a crash.
pub const DEFAULT_MEMTABLE_FLUSH_BYTES: usize = 128 * 1024 * 1024;

/// Default age of the oldest unflushed write that triggers a flush: longer means fewer small
/// segments from slow tables, shorter means less WAL to replay and earlier Parquet visibility.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 300_000;

/// Default memory for decoded columns of recently scanned segments: a day of TSBS cpu data
/// from 100 hosts (864,000 rows, ten fields) takes about 100 MiB decoded.
pub const DEFAULT_DECODED_CACHE_BYTES: usize = 512 * 1024 * 1024;

/// Default memory for per-segment latest-row summaries: more keeps more segments answerable
/// without reading their files again.
pub const DEFAULT_LATEST_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Most write requests one group commit takes: larger groups share one fsync among more
/// writers, but a group holds the state lock while it is applied, delaying readers.
pub const COMMIT_GROUP_REQUESTS_MAX: usize = 4096;

/// How often an idle committer wakes (in `Always` sync mode) to notice shutdown: shorter wakes
/// more often for nothing, longer delays nothing that matters.
pub const COMMITTER_IDLE_WAKE_MS: u64 = 1000;

/// How long a writer held back by backpressure waits before it checks memory again (it is
/// also woken by every flush): shorter polls more, longer risks a missed wake-up costing more.
pub const BACKPRESSURE_RECHECK_MS: u64 = 200;

/// How often the flusher wakes without being asked, to check flush age and retention:
/// shorter reacts sooner to `flush_interval_ms` and expired days, at the cost of idle wake-ups.
pub const FLUSHER_WAKE_MS: u64 = 1000;

/// First pause after a failed flush before retrying; it doubles with every failure in a row
/// up to [`FLUSH_RETRY_DELAY_MAX_MS`]: short enough that a freed disk is used within a
/// second, while the data stays safe in memory and WAL meanwhile.
pub const FLUSH_RETRY_DELAY_MIN_MS: u64 = 500;

/// Longest pause between retries of a failing flush (or of another failing background write:
/// retention's manifest, a view checkpoint): keeps a persistent failure (disk full) from
/// spinning a core or filling the log, at the cost of noticing freed space up to this late
/// (a WAL append that works again wakes the flusher at once).
pub const FLUSH_RETRY_DELAY_MAX_MS: u64 = 30_000;

/// At most one log line per this interval for a failure that repeats with every request (WAL
/// appends refused on a full disk): enough to see it, not a line per write.
pub const FAILURE_LOG_INTERVAL_MS: u64 = 10_000;

/// Largest WAL record accepted on replay; a larger length is a torn or corrupt frame. Bounds
/// the memory one bad length can make replay allocate, and caps one write batch's size.
pub const WAL_RECORD_BYTES_MAX: usize = 1 << 30;

/// zstd level of WAL records: the WAL is on the write path, so speed wins over ratio.
pub const WAL_ZSTD_LEVEL: i32 = 1;

/// zstd level of Parquet segments: measured on TSBS data, levels up to 19 shrink delta-encoded
/// segments by under 1% at up to twice the write time, so the cheap level stays.
pub const SEGMENT_ZSTD_LEVEL: i32 = 3;

/// Rows per Parquet data page in segments written by compaction: larger pages compress better
/// (TSBS data: 0.50 bytes per value at 4,096 rows, 0.46 at 16,384, 0.45 at 65,536) while a
/// day of one series at 10 s readings (8,640 rows) still spans at most two pages.
pub const COMPACTED_DATA_PAGE_ROWS_MAX: usize = 16 * 1024;

/// Rows per Parquet row group: larger groups compress better, smaller ones let statistics
/// prune a scan more finely.
pub const ROW_GROUP_ROWS_MAX: usize = 256 * 1024;

/// Rows per Parquet data page (checked every write batch of 1,024 rows): small pages let the
/// page index narrow a one-series lookup to a few thousand rows, at some cost in page headers.
pub const DATA_PAGE_ROWS_MAX: usize = 4096;

/// Rows per batch when a segment is read back whole: larger batches mean fewer, bigger
/// allocations; smaller ones bound the memory of one step.
pub const SEGMENT_READ_BATCH_ROWS: usize = 64 * 1024;

/// Bytes covered by one CRC-32 of a segment's checksum file (`<id>.parquet.crc`): every read
/// of segment bytes reads and verifies whole blocks. Smaller blocks make a point query read
/// and checksum fewer bytes beyond the pages it needs; larger ones make the checksum file
/// smaller (4 bytes per block: 64 KiB blocks cost 0.006% of the segment).
pub const SEGMENT_CHECKSUM_BLOCK_BYTES: u32 = 64 * 1024;

/// Memory for the verified footers and page indexes of segments that queries opened (an LRU
/// by segment): more lets more segments be planned without reading their footers again, at
/// the cost of memory that grows with the number of segments queried.
pub const SEGMENT_METADATA_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Flushed (level 0) segments a partition may pile up before compaction merges them whatever
/// their size: more means less rewriting of a growing partition, fewer means fewer files a
/// query of the partition must merge.
pub const COMPACTION_FLUSHED_SEGMENTS_MAX: usize = 8;

/// Highest level recorded for a compacted segment (levels only count rewrites, for operators).
pub const COMPACTION_LEVEL_MAX: u32 = 32;

/// Memory for the decoded batches a compaction holds (one per input segment): the batch size
/// is this divided among the inputs, within the two bounds below.
pub const COMPACTION_INPUT_MEMORY_BYTES: usize = 64 * 1024 * 1024;

/// Fewest rows per batch a compaction reads from an input: below this, per-batch overhead
/// dominates (a partition with thousands of segments then takes more memory than the budget).
pub const COMPACTION_BATCH_ROWS_MIN: usize = 1024;

/// Most rows per batch a compaction reads from an input and writes to its output.
pub const COMPACTION_BATCH_ROWS_MAX: usize = 64 * 1024;

/// How often an idle compactor looks for quiet partitions (it is also woken by every flush).
pub const COMPACTOR_WAKE_MS: u64 = 1000;

/// Default time a partition must go without a new segment before compaction merges it into
/// one segment whatever its size: shorter makes a dense store sooner after a load, at the
/// price of rewriting a partition that still receives the odd late write.
pub const DEFAULT_COMPACTION_QUIET_MS: u64 = 60_000;

/// Rows per granule of a segment's tag index: the unit the index selects. Small enough to skip
/// pages inside a row group, large enough that a series costs a few bits.
pub const TAG_INDEX_GRANULE_ROWS: u64 = 1024;

/// Distinct values of one tag column in one segment above which the column is not indexed
/// there (its page statistics still prune; a million-series segment would make a footer of
/// tens of MiB otherwise).
pub const TAG_INDEX_VALUES_MAX: usize = 65_536;

/// Largest encoded tag index kept in a segment footer; columns with the most values are left
/// out until the index fits.
pub const TAG_INDEX_BYTES_MAX: usize = 4 * 1024 * 1024;

/// How often the full-text indexer looks for segments without their index when nothing
/// woke it (flushes, compactions and `CREATE INDEX` do).
pub const TEXT_INDEXER_WAKE_MS: u64 = 2000;

/// How long the full-text indexer waits before it tries again to build an index whose build
/// failed (the segment is read without it meanwhile).
pub const TEXT_INDEX_RETRY_SECS: u64 = 300;
