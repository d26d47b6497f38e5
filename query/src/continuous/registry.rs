//! The set of continuous aggregates: definitions in `views.json`, start-up (checkpoint or
//! backfill), the storage commit hook that keeps them current, checkpoints and retention.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use eddy_storage::checksum::FileChecksum;
use eddy_storage::{CommitHook, CommitPrepared, Db, TableSchema};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, CheckpointManifest, SavedChunk, ViewCheckpoint};
use super::state::times;
use super::view::{ContinuousAggregate, PreparedWrite, ViewDef, ViewSource};
use crate::error::{ErrorKind, QueryError, Result};
use crate::metrics::ViewMetrics;

/// All continuous aggregates, persisted in `views.json`; the storage engine's commit hook.
#[derive(Debug)]
pub struct ViewRegistry {
    db: Db,
    path: PathBuf,
    views: RwLock<HashMap<String, Arc<ContinuousAggregate>>>,
    /// Definitions that could not be planned at start (kept so they are not lost).
    broken: Mutex<Vec<ViewDef>>,
    change: tokio::sync::Mutex<()>,
    /// Serializes checkpoints; the last one written or loaded.
    checkpoint: Mutex<Option<CheckpointManifest>>,
    /// Checkpoint time and lag, scraped through [`ViewRegistry::metrics`].
    metrics: ViewMetrics,
}

/// What the registry prepared for one write batch: the batch itself, so views registered
/// between preparation and commit still get their share, and each view's partial states.
struct ViewsPrepared {
    batch: RecordBatch,
    hashes: Vec<u64>,
    views: Vec<(Arc<ContinuousAggregate>, PreparedWrite)>,
}

/// Version of `views.json`. Bump when a change to `ViewDef` would make an older Eddy misread
/// a definition. Version 2: the checksummed envelope (`eddy_storage::format`).
pub const VIEWS_FORMAT_VERSION: u32 = 2;

/// The body of `views.json`: every view's definition, broken ones included.
#[derive(Serialize, Deserialize)]
struct ViewsFile {
    views: Vec<ViewDef>,
}

/// Reads `views.json`. Eddy wrote it as a bare array of definitions before it carried a
/// version; that shape is version 1 and still opens.
fn decode_definitions(path: &Path, bytes: &[u8]) -> Result<Vec<ViewDef>> {
    let unversioned = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'[');
    if unversioned {
        return serde_json::from_slice(bytes)
            .map_err(|e| QueryError::new(ErrorKind::Corrupt, format!("{}: {e}", path.display())));
    }
    let file: ViewsFile = eddy_storage::format::from_json(path, bytes, VIEWS_FORMAT_VERSION)?;
    Ok(file.views)
}

/// The buckets of `view` that rows at `times` of its root table fall into.
fn buckets_of(view: &ContinuousAggregate, times: &[i64]) -> BTreeSet<i64> {
    match view.source() {
        ViewSource::Table(_) => times.iter().map(|&t| view.bucket_of(t)).collect(),
        ViewSource::View(up) => buckets_of(up, times)
            .into_iter()
            .map(|b| view.bucket_of(b))
            .collect(),
    }
}

impl ViewRegistry {
    /// Loads the definitions, restores each view from the last checkpoint (or rebuilds it
    /// from its source), and starts enforcing retention.
    pub async fn open(db: Db) -> Result<Arc<ViewRegistry>> {
        let path = db.config().data_dir.join("views.json");
        let mut defs: Vec<ViewDef> = match std::fs::read(&path) {
            Ok(b) => decode_definitions(&path, &b)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(QueryError::new(
                    ErrorKind::Io,
                    format!("{}: {e}", path.display()),
                ));
            }
        };
        let mut next_id = defs.iter().map(|d| d.id).max().unwrap_or(0);
        for d in defs.iter_mut().filter(|d| d.id == 0) {
            next_id += 1;
            d.id = next_id;
        }
        let dir = checkpoint::views_dir(&db.config().data_dir);
        let saved = checkpoint::load(&dir).or_else(|e| {
            // A checkpoint from a newer Eddy is refused rather than rebuilt over: rebuilding
            // would overwrite it in the older format and lose what the newer one kept.
            if e.kind == ErrorKind::Unsupported {
                return Err(e);
            }
            tracing::error!(error = %e, "cannot read the view checkpoint; views are rebuilt from their sources");
            Ok(None)
        })?;
        let reg = Arc::new(ViewRegistry {
            db: db.clone(),
            path,
            views: RwLock::new(HashMap::new()),
            broken: Mutex::new(Vec::new()),
            change: tokio::sync::Mutex::new(()),
            checkpoint: Mutex::new(saved.clone()),
            metrics: ViewMetrics::default(),
        });
        // Installed here already, although `eddy_ingest::Ingest::new` installs it for writes:
        // while the views are restored, `backfill` saves a checkpoint through the hook, and the
        // flusher keeps the WAL that `restore` reads (and checkpoints before retention drops
        // raw data) only through an installed hook.
        db.set_commit_hook(reg.clone());

        // Plan in dependency order: a view over a view waits for its upstream.
        let mut planned: Vec<Arc<ContinuousAggregate>> = Vec::new();
        let mut waiting = defs;
        loop {
            let before = waiting.len();
            let mut still = Vec::new();
            for def in waiting {
                let lookup = |n: &str| planned.iter().find(|v| v.name() == n).cloned();
                match ContinuousAggregate::plan(&db, def.clone(), &lookup).await {
                    Ok(ca) => planned.push(Arc::new(ca)),
                    Err(e) if e.kind == ErrorKind::TableNotFound => still.push(def),
                    Err(e) => {
                        tracing::error!(view = %def.name, error = %e, "cannot restore view; its definition is kept");
                        reg.broken.lock().push(def);
                    }
                }
            }
            waiting = still;
            if waiting.is_empty() || waiting.len() == before {
                break;
            }
        }
        for def in waiting {
            tracing::error!(view = %def.name, "cannot restore view: its source does not exist; its definition is kept");
            reg.broken.lock().push(def);
        }
        planned.sort_by_key(|v| v.depth());

        let restored = match &saved {
            Some(m) => reg.restore(&dir, m, &planned)?,
            None => Vec::new(),
        };
        for v in &planned {
            reg.views.write().insert(v.name().to_string(), v.clone());
        }
        for v in &planned {
            if restored.iter().any(|r| Arc::ptr_eq(r, v)) {
                v.load_recent_keys(&db)?;
            } else {
                reg.backfill(v.clone(), true).await?;
            }
        }
        reg.persist()?;

        let weak = Arc::downgrade(&reg);
        tokio::spawn(enforce_retention_periodically(weak));
        Ok(reg)
    }

    /// Restores views from a checkpoint and marks the buckets written after it; returns the
    /// views restored (the others are rebuilt from their sources).
    fn restore(
        &self,
        dir: &Path,
        m: &CheckpointManifest,
        planned: &[Arc<ContinuousAggregate>],
    ) -> Result<Vec<Arc<ContinuousAggregate>>> {
        let mut restored = Vec::new();
        for v in planned {
            let Some(vc) = m
                .views
                .iter()
                .find(|c| c.id == v.def().id && c.name == v.name() && c.query == v.def().query)
            else {
                continue;
            };
            let mut chunks = Vec::new();
            let mut ok = true;
            for c in &vc.chunks {
                match checkpoint::read_chunk(dir, c, v.state_schema()) {
                    Ok(states) => chunks.push((c.start, c.file.clone(), states)),
                    Err(e) => {
                        tracing::error!(view = %v.name(), error = %e, "cannot read a view checkpoint file; rebuilding the view");
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                v.restore(chunks, &vc.dirty);
                restored.push(v.clone());
            }
        }
        if restored.is_empty() {
            return Ok(restored);
        }
        // Writes committed after the checkpoint are in the WAL: recompute their buckets.
        let complete = self.db.scan_wal(m.position, |table_id, batch| {
            for v in &restored {
                let root = v.root_table();
                if root.def().id != table_id {
                    continue;
                }
                let Ok(i) = batch.schema().index_of(root.time_column()) else {
                    continue;
                };
                v.mark_dirty(buckets_of(v, times(batch, i)));
            }
        })?;
        if !complete {
            tracing::warn!(
                position = m.position,
                "the WAL no longer reaches back to the view checkpoint; views are rebuilt from their sources"
            );
            for v in &restored {
                v.reset();
            }
            restored.clear();
        }
        tracing::info!(
            views = restored.len(),
            position = m.position,
            "restored views from checkpoint"
        );
        Ok(restored)
    }

    /// The view of that name.
    pub fn get(&self, name: &str) -> Option<Arc<ContinuousAggregate>> {
        self.views.read().get(name).cloned()
    }

    /// All views, by name.
    pub fn list(&self) -> Vec<Arc<ContinuousAggregate>> {
        let mut v: Vec<_> = self.views.read().values().cloned().collect();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        v
    }

    /// The views' metrics, to register with the node's Prometheus registry.
    pub fn metrics(&self) -> &ViewMetrics {
        &self.metrics
    }

    /// Sets the view metrics read from state (checkpoint lag, number of views) to their
    /// values now; called when metrics are scraped.
    pub fn refresh_metrics(&self) {
        let views = self.views.read().len();
        // A checkpoint holds the lock while it writes: a scrape then keeps the last values
        // rather than wait for it.
        let Some(last) = self.checkpoint.try_lock() else {
            return;
        };
        let position = last.as_ref().map_or(0, |m| m.position);
        drop(last);
        // With no views there is nothing to replay into them, whatever the checkpoint says.
        let lag = if views == 0 {
            0
        } else {
            self.db.applied_seq().saturating_sub(position)
        };
        self.metrics.set_state(lag, views);
    }

    /// Creates a view and fills it from existing data (in the background for a table).
    pub async fn create(&self, mut def: ViewDef, if_not_exists: bool) -> Result<()> {
        let _change = self.change.lock().await;
        if def.name == crate::catalog::VIEWS_TABLE {
            return Err(QueryError::new(
                ErrorKind::AlreadyExists,
                format!("\"{}\" is the system table of views", def.name),
            ));
        }
        if def.name == crate::running::QUERIES_TABLE {
            return Err(QueryError::new(
                ErrorKind::AlreadyExists,
                format!("\"{}\" is the system table of running statements", def.name),
            ));
        }
        let broken = self.broken.lock().iter().any(|d| d.name == def.name);
        if broken || self.get(&def.name).is_some() || self.db.catalog().get(&def.name).is_some() {
            if if_not_exists {
                return Ok(());
            }
            return Err(QueryError::new(
                ErrorKind::AlreadyExists,
                format!("relation \"{}\" already exists", def.name),
            ));
        }
        def.id = eddy_storage::time::now_ns().max(1) as u64;
        let name = def.name.clone();
        let ca = Arc::new(ContinuousAggregate::plan(&self.db, def, &|n| self.get(n)).await?);
        self.backfill(ca, false).await?;
        if let Err(e) = self.persist() {
            // Not in views.json, so not a view after a restart: forget it now too, so that
            // the statement can be run again once the cause (a full disk) is gone.
            self.views.write().remove(&name);
            return Err(e);
        }
        Ok(())
    }

    /// Registers a view and fills its state: from a table snapshot (waiting for it when
    /// `wait`), or, over a view, from the upstream's rows under the commit barrier.
    async fn backfill(&self, ca: Arc<ContinuousAggregate>, wait: bool) -> Result<()> {
        let snapshot = match ca.source() {
            ViewSource::Table(t) => {
                let _barrier = self.db.commit_barrier();
                self.views.write().insert(ca.name().to_string(), ca.clone());
                self.db.snapshot_of(t)
            }
            ViewSource::View(_) => {
                {
                    let _barrier = self.db.commit_barrier();
                    ca.backfill(&self.db, None)?;
                    self.views.write().insert(ca.name().to_string(), ca.clone());
                }
                let db = self.db.clone();
                let _ = tokio::task::spawn_blocking(move || db.checkpoint_hook()).await;
                return Ok(());
            }
        };
        let db = self.db.clone();
        let task = {
            let ca = ca.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = ca.backfill(&db, Some(snapshot)) {
                    tracing::error!(view = %ca.name(), error = %e, "backfill failed");
                    return;
                }
                // Saved at once, so the view no longer depends on raw rows retention may drop.
                db.checkpoint_hook();
            })
        };
        if wait {
            let _ = task.await;
        }
        Ok(())
    }

    /// Views reading from the view `name`.
    fn view_dependents(&self, name: &str) -> Vec<Arc<ContinuousAggregate>> {
        self.views
            .read()
            .values()
            .filter(|v| matches!(v.source(), ViewSource::View(u) if u.name() == name))
            .cloned()
            .collect()
    }

    /// Drops a view.
    pub async fn drop_view(&self, name: &str, if_exists: bool) -> Result<()> {
        let _change = self.change.lock().await;
        let deps = self.view_dependents(name);
        if !deps.is_empty() {
            let names: Vec<&str> = deps.iter().map(|v| v.name()).collect();
            return Err(QueryError::new(
                ErrorKind::HasDependents,
                format!(
                    "cannot drop materialized view \"{name}\": materialized view(s) {} depend on it; drop them first",
                    names.join(", ")
                ),
            ));
        }
        let unbroken: Vec<ViewDef> = {
            let mut b = self.broken.lock();
            let (gone, kept): (Vec<ViewDef>, Vec<ViewDef>) = std::mem::take(&mut *b)
                .into_iter()
                .partition(|d| d.name == name);
            *b = kept;
            gone
        };
        let removed = self.views.write().remove(name);
        if removed.is_none() && unbroken.is_empty() && !if_exists {
            return Err(QueryError::new(
                ErrorKind::TableNotFound,
                format!("materialized view \"{name}\" does not exist"),
            ));
        }
        if let Err(e) = self.persist() {
            // Still in views.json: keep it, so that the statement can be run again once the
            // cause (a full disk) is gone.
            if let Some(v) = removed {
                self.views.write().insert(name.to_string(), v);
            }
            self.broken.lock().extend(unbroken);
            return Err(e);
        }
        Ok(())
    }

    /// Recomputes a view, and the views over it, from their sources (repair).
    pub async fn refresh(&self, name: &str) -> Result<()> {
        let _change = self.change.lock().await;
        let old = self.get(name).ok_or_else(|| {
            QueryError::new(
                ErrorKind::TableNotFound,
                format!("materialized view \"{name}\" does not exist"),
            )
        })?;
        let mut queue = vec![old];
        while let Some(old) = queue.pop() {
            let ca = Arc::new(
                ContinuousAggregate::plan(&self.db, old.def().clone(), &|n| self.get(n)).await?,
            );
            self.backfill(ca, true).await?;
            // Views over the old incarnation now re-plan over the new one.
            queue.extend(self.view_dependents(old.name()));
        }
        Ok(())
    }

    /// Names of views reading from a table.
    pub fn dependents(&self, table: &str) -> Vec<String> {
        self.views
            .read()
            .values()
            .filter(|v| matches!(v.source(), ViewSource::Table(t) if t.name() == table))
            .map(|v| v.name().to_string())
            .collect()
    }

    fn persist(&self) -> Result<()> {
        let mut defs: Vec<ViewDef> = self.list().iter().map(|v| v.def().clone()).collect();
        defs.extend(self.broken.lock().iter().cloned());
        let path = Path::new(&self.path);
        let bytes = eddy_storage::format::to_json(
            path,
            &ViewsFile { views: defs },
            VIEWS_FORMAT_VERSION,
            true,
        )?;
        eddy_storage::fsutil::write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Saves every view's changed chunks and a manifest; returns the WAL position covered.
    fn write_checkpoint(&self) -> Result<u64> {
        let mut last = self.checkpoint.lock();
        let (position, copies) = {
            let _barrier = self.db.commit_barrier();
            let position = self.db.applied_seq();
            let copies: Vec<_> = self
                .list()
                .into_iter()
                .map(|v| {
                    let c = v.copy_for_checkpoint();
                    (v, c)
                })
                .collect();
            (position, copies)
        };
        // The checkpoint may not get ahead of what the WAL holds durably.
        self.db.sync_wal()?;
        let dir = checkpoint::views_dir(&self.db.config().data_dir);
        let number = last.as_ref().map_or(0, |m| m.number) + 1;
        // Chunk files kept from the last checkpoint keep the checksum it recorded.
        let known: HashMap<String, FileChecksum> = last
            .iter()
            .flat_map(|m| m.views.iter().flat_map(|v| v.chunks.iter()))
            .filter_map(|c| Some((c.file.clone(), c.checksum?)))
            .collect();
        let mut manifest = CheckpointManifest {
            number,
            position,
            views: Vec::new(),
        };
        for (v, copy) in copies {
            let Some((chunks, dirty)) = copy else {
                continue;
            };
            let mut saved = Vec::with_capacity(chunks.len());
            for c in chunks {
                let (file, checksum) = match c.saved {
                    Some(f) => {
                        let checksum = match known.get(&f) {
                            Some(sum) => *sum,
                            None => checkpoint::chunk_checksum(&dir, &f)?,
                        };
                        (f, checksum)
                    }
                    None => {
                        let reduced = v.reduce(c.states)?;
                        let rel = format!("{}/{}_{number}.parquet", v.def().id, c.start);
                        let checksum =
                            checkpoint::write_chunk(&dir, &rel, v.state_schema(), &reduced)?;
                        v.mark_saved(c.start, c.version, &rel, reduced);
                        (rel, checksum)
                    }
                };
                saved.push(SavedChunk {
                    start: c.start,
                    file,
                    checksum: Some(checksum),
                });
            }
            manifest.views.push(ViewCheckpoint {
                id: v.def().id,
                name: v.name().to_string(),
                query: v.def().query.clone(),
                dirty,
                chunks: saved,
            });
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| QueryError::new(ErrorKind::Io, format!("{}: {e}", dir.display())))?;
        checkpoint::store(&dir, &manifest)?;
        checkpoint::remove_unreferenced(&dir, &manifest);
        *last = Some(manifest);
        Ok(position)
    }

    fn enforce_retention(&self, now_ns: i64) {
        for v in self.list() {
            v.enforce_retention(now_ns);
        }
    }
}

/// Every second: drops expired buckets, and finalizes views that went idle.
async fn enforce_retention_periodically(reg: Weak<ViewRegistry>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(reg) = reg.upgrade() else {
            return;
        };
        reg.enforce_retention(eddy_storage::time::now_ns());
        let (views, db) = (reg.list(), reg.db.clone());
        drop(reg);
        let _ = tokio::task::spawn_blocking(move || {
            for v in views {
                v.warm(&db);
            }
        })
        .await;
    }
}

impl CommitHook for ViewRegistry {
    fn prepare(
        &self,
        table: &Arc<TableSchema>,
        batch: &RecordBatch,
        series_hashes: &[u64],
    ) -> Option<CommitPrepared> {
        let views: Vec<Arc<ContinuousAggregate>> = self
            .views
            .read()
            .values()
            .filter(|v| matches!(v.source(), ViewSource::Table(t) if t.def().id == table.def().id))
            .cloned()
            .collect();
        let views = views
            .into_iter()
            .map(|v| {
                let p = v.prepare(batch, series_hashes);
                (v, p)
            })
            .collect();
        Some(Box::new(ViewsPrepared {
            batch: batch.clone(),
            hashes: series_hashes.to_vec(),
            views,
        }))
    }

    fn apply(&self, table_id: u64, prepared: CommitPrepared) {
        let Ok(prepared) = prepared.downcast::<ViewsPrepared>() else {
            return;
        };
        let ViewsPrepared {
            batch,
            hashes,
            mut views,
        } = *prepared;
        let (direct, derived): (Vec<_>, Vec<_>) = self
            .views
            .read()
            .values()
            .filter(|v| v.root_table().def().id == table_id)
            .cloned()
            .partition(|v| matches!(v.source(), ViewSource::Table(_)));
        for v in direct {
            // A view registered after this write was prepared derives its share now; views
            // dropped or replaced meanwhile are skipped.
            let p = match views.iter().position(|(pv, _)| Arc::ptr_eq(pv, &v)) {
                Some(i) => views.swap_remove(i).1,
                None => v.prepare(&batch, &hashes),
            };
            v.apply(p);
        }
        if let Some(first) = derived.first() {
            let root = first.root_table();
            let times = times(&batch, root.time_index());
            for v in derived {
                v.mark_dirty(buckets_of(&v, times));
            }
        }
    }

    fn checkpoint(&self) -> Option<u64> {
        let started = std::time::Instant::now();
        match self.write_checkpoint() {
            Ok(p) => {
                self.metrics.checkpointed(started);
                Some(p)
            }
            Err(e) => {
                self.metrics.checkpoint_failed();
                tracing::error!(error = %e, "view checkpoint failed; the WAL is kept from the last one");
                self.checkpoint.lock().as_ref().map(|m| m.position)
            }
        }
    }
}
