//! Data leaving the engine: rows refused for being older than a table keeps, whole days dropped
//! once they pass their table's retention, and every segment of a dropped table.
//!
//! Retention works on whole partitions (days), so dropping expired data is a manifest change,
//! never a rewrite of files. Segments that leave the manifest are retired, not deleted: a
//! reader that took its snapshot before keeps reading them until it lets go.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, TimestampNanosecondArray};
use datafusion::arrow::record_batch::RecordBatch;

use crate::engine::Inner;
use crate::error::{Result, StorageError};
use crate::limits::PARTITION_NANOS;
use crate::manifest::{RetiredSegment, SegmentMeta};
use crate::schema::TableSchema;
use crate::segment::SegmentFile;
use crate::time::{describe_span, now_ns, retention_floor, rfc3339};

impl Inner {
    /// The first instant a table still keeps (per its current definition), or `i64::MIN`.
    pub(crate) fn retention_floor_of(&self, schema: &TableSchema) -> i64 {
        let current = self.catalog.get_by_id(schema.def().id);
        let retention = current
            .as_ref()
            .map_or(schema.def().retention_ns, |t| t.def().retention_ns);
        match retention {
            Some(r) => retention_floor(now_ns(), r),
            None => i64::MIN,
        }
    }

    /// Refuses a write with rows in days already dropped: they would vanish at the next
    /// retention pass, after having been acknowledged.
    pub(crate) fn check_retention(&self, schema: &TableSchema, batch: &RecordBatch) -> Result<()> {
        let floor = self.retention_floor_of(schema);
        if floor == i64::MIN {
            return Ok(());
        }
        let oldest = batch
            .column(schema.time_index())
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .and_then(datafusion::arrow::compute::min);
        match oldest {
            Some(t) if t < floor => Err(StorageError::BeyondRetention {
                table: schema.name().to_string(),
                retention: describe_span(
                    self.catalog
                        .get_by_id(schema.def().id)
                        .and_then(|t| t.def().retention_ns)
                        .unwrap_or_default(),
                ),
                floor: rfc3339(floor),
                oldest: rfc3339(t),
            }),
            _ => Ok(()),
        }
    }

    /// Drops the segments of days older than their table's retention.
    pub(crate) fn enforce_retention(&self) -> Result<()> {
        let now = now_ns();
        let floors: BTreeMap<u64, i64> = self
            .catalog
            .tables()
            .iter()
            .filter_map(|t| Some((t.def().id, retention_floor(now, t.def().retention_ns?))))
            .collect();
        if floors.is_empty() {
            return Ok(());
        }
        let _guard = self.flush_lock.lock();
        let expired = |s: &SegmentMeta| {
            floors
                .get(&s.table_id)
                .is_some_and(|&floor| s.partition < floor.div_euclid(PARTITION_NANOS))
        };
        let mut manifest = (*self.state.read().manifest).clone();
        let (gone, kept): (Vec<_>, Vec<_>) = manifest.segments.into_iter().partition(expired);
        if gone.is_empty() {
            return Ok(());
        }
        // Derived state (views) must be saved before the raw rows it was built from go.
        let hook = self.hook.read().clone();
        if let Some(h) = hook {
            h.checkpoint();
        }
        manifest.segments = kept;
        // Listed as retired until their files are gone, so a crash before a held file is
        // deleted leaves garbage the next start knows to remove.
        manifest
            .retired
            .extend(gone.iter().map(RetiredSegment::from));
        manifest.store(&self.config.data_dir)?;
        let retired = {
            let mut st = self.state.write();
            st.manifest = Arc::new(manifest);
            retire(&mut st.files, &gone)
        };
        self.forget_segments(&gone);
        // Files are deleted here unless a running query still reads them.
        drop(retired);
        let rows: u64 = gone.iter().map(|s| s.rows).sum();
        tracing::info!(
            segments = gone.len(),
            rows,
            "dropped segments past retention"
        );
        Ok(())
    }

    /// Drops a table: it leaves the catalog, its buffered rows and segments are deleted.
    pub(crate) fn drop_table(&self, name: &str) -> Result<()> {
        let _guard = self.flush_lock.lock();
        let schema = self
            .catalog
            .get(name)
            .ok_or_else(|| StorageError::TableNotFound(name.to_string()))?;
        let id = schema.def().id;
        let mut manifest = (*self.state.read().manifest).clone();
        let (gone, kept): (Vec<_>, Vec<_>) = manifest
            .segments
            .into_iter()
            .partition(|s| s.table_id == id);
        manifest.segments = kept;
        manifest
            .retired
            .extend(gone.iter().map(RetiredSegment::from));
        // Manifest first: a crash before the catalog change leaves a table without segments,
        // never segments that no table owns.
        manifest.store(&self.config.data_dir)?;
        self.catalog.drop_table(name)?;
        let retired = {
            let mut st = self.state.write();
            if let Some(t) = st.active.tables.remove(&id) {
                st.active.bytes -= t.bytes;
            }
            st.manifest = Arc::new(manifest);
            retire(&mut st.files, &gone)
        };
        self.forget_segments(&gone);
        // Files are deleted here unless a running query still reads them.
        drop(retired);
        Ok(())
    }

    /// Forgets the latest-row summaries, cached footers and decoded columns of segments that left the manifest.
    pub(crate) fn forget_segments(&self, gone: &[SegmentMeta]) {
        let mut cache = self.latest.lock();
        let mut footers = self.segment_metadata.lock();
        let mut decoded = self.decoded.lock();
        for s in gone {
            cache.remove(s.id);
            footers.remove(s.id);
            decoded.remove_segment(s.id);
        }
    }
}

/// Takes the `gone` segments out of the live set and marks them retired; the caller drops the
/// result outside the state lock (dropping may delete files).
fn retire(
    files: &mut BTreeMap<u64, Arc<SegmentFile>>,
    gone: &[SegmentMeta],
) -> Vec<Arc<SegmentFile>> {
    gone.iter()
        .filter_map(|s| files.remove(&s.id))
        .inspect(|f| f.retire())
        .collect()
}
