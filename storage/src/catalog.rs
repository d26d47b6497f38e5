//! The catalog: table definitions, persisted in `catalog.json` and replaced atomically.
//!
//! Every schema change is made durable before the write that needs it is appended to the WAL,
//! so replay never meets a column the catalog does not know. The file is a checksummed
//! envelope with its `format_version` first, so a damaged catalog is an error naming it and a
//! newer Eddy's catalog is refused by name (see `format.rs`); a catalog from before the
//! envelope (version 1, with or without the field) still opens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StorageError};
use crate::format::{CATALOG_FORMAT_VERSION, from_json_versioned, to_json};
use crate::fsutil::write_atomic;
use crate::schema::{ColumnDef, ColumnKind, TableDef, TableSchema};
use crate::source::SourceDef;

/// Name of the time column of tables created by line protocol.
pub const DEFAULT_TIME_COLUMN: &str = "time";

/// The body of `catalog.json` (its `format_version` is added around it).
#[derive(Serialize, Deserialize, Default)]
struct CatalogFile {
    /// Every id handed out (to tables and sources) is below it.
    next_table_id: u64,
    tables: Vec<TableDef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sources: Vec<SourceDef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    indexes: Vec<IndexDef>,
}

/// A full-text index on a text column (`CREATE INDEX name ON table USING fulltext (column)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// Index name, unique among indexes.
    pub name: String,
    /// The indexed table.
    pub table: String,
    /// The table's incarnation: a table dropped and created again does not inherit it.
    pub table_id: u64,
    /// The indexed column (a string field or a tag).
    pub column: String,
}

/// The set of tables, shared by the write and read paths.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    tables: RwLock<BTreeMap<String, Arc<TableSchema>>>,
    /// Stream sources, by name.
    sources: RwLock<BTreeMap<String, SourceDef>>,
    /// Full-text indexes, by name.
    indexes: RwLock<BTreeMap<String, IndexDef>>,
    /// Serializes changes so that two writers never persist conflicting versions.
    change: Mutex<u64>,
}

impl Catalog {
    /// Loads the catalog from `dir/catalog.json`, or starts an empty one (not written until
    /// the first change). [`Db::open`](crate::Db::open) does not use this: it refuses a
    /// missing catalog where data exists.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(match Self::read(dir)? {
            Some((catalog, _)) => catalog,
            None => Self::from_file(dir.join("catalog.json"), CatalogFile::default())?,
        })
    }

    /// Reads `dir/catalog.json` and the format version it was written in; `None` if there is
    /// no such file.
    pub(crate) fn read(dir: &Path) -> Result<Option<(Self, u32)>> {
        let path = Self::path(dir);
        let (file, version): (CatalogFile, u32) = match std::fs::read(&path) {
            Ok(bytes) => from_json_versioned(&path, &bytes, CATALOG_FORMAT_VERSION)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&path),
        };
        Ok(Some((Self::from_file(path, file)?, version)))
    }

    /// Path of the catalog in a data directory.
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join("catalog.json")
    }

    fn from_file(path: PathBuf, file: CatalogFile) -> Result<Self> {
        let mut tables = BTreeMap::new();
        for def in file.tables {
            let schema = TableSchema::new(def)?;
            tables.insert(schema.name().to_string(), Arc::new(schema));
        }
        let sources = file
            .sources
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let indexes = file
            .indexes
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect();
        Ok(Self {
            path,
            tables: RwLock::new(tables),
            sources: RwLock::new(sources),
            indexes: RwLock::new(indexes),
            change: Mutex::new(file.next_table_id.max(1)),
        })
    }

    /// The id the next new table gets; every table id ever handed out is below it.
    pub fn next_table_id(&self) -> u64 {
        *self.change.lock()
    }

    /// Writes the catalog as it is (a new data directory's empty catalog, or an older file
    /// rewritten in today's format).
    pub(crate) fn store(&self) -> Result<()> {
        let next_id = self.change.lock();
        let tables = self.tables.read().clone();
        self.persist(&tables, *next_id)
    }

    /// The table of that name.
    pub fn get(&self, name: &str) -> Option<Arc<TableSchema>> {
        self.tables.read().get(name).cloned()
    }

    /// The table incarnation with that id.
    pub fn get_by_id(&self, id: u64) -> Option<Arc<TableSchema>> {
        self.tables
            .read()
            .values()
            .find(|t| t.def().id == id)
            .cloned()
    }

    /// Names of all tables, sorted.
    pub fn names(&self) -> Vec<String> {
        self.tables.read().keys().cloned().collect()
    }

    /// All tables, sorted by name.
    pub fn tables(&self) -> Vec<Arc<TableSchema>> {
        self.tables.read().values().cloned().collect()
    }

    /// Creates a table from a definition (its `id` is assigned here). With `if_not_exists`, an
    /// existing table of that name is returned unchanged.
    pub fn create_table(&self, mut def: TableDef, if_not_exists: bool) -> Result<Arc<TableSchema>> {
        let mut next_id = self.change.lock();
        if let Some(t) = self.get(&def.name) {
            return if if_not_exists {
                Ok(t)
            } else {
                Err(StorageError::TableExists(def.name))
            };
        }
        def.id = *next_id;
        let schema = Arc::new(TableSchema::new(def)?);
        let mut tables = self.tables.read().clone();
        tables.insert(schema.name().to_string(), schema.clone());
        self.persist(&tables, *next_id + 1)?;
        *next_id += 1;
        *self.tables.write() = tables;
        Ok(schema)
    }

    /// Makes sure `table` exists with all of `columns` (schema on write): a missing table is
    /// created with a `time` column, missing columns are appended. A column that exists with
    /// another kind or type is an error naming it.
    pub fn ensure_columns(&self, table: &str, columns: &[ColumnDef]) -> Result<Arc<TableSchema>> {
        if let Some(t) = self.get(table)
            && Self::missing(&t, columns)?.is_empty()
        {
            return Ok(t);
        }
        let mut next_id = self.change.lock();
        let mut tables = self.tables.read().clone();
        let (def, new_id) = match tables.get(table) {
            Some(t) => {
                let missing = Self::missing(t, columns)?;
                if missing.is_empty() {
                    return Ok(t.clone());
                }
                let mut def = t.def().clone();
                def.columns.extend(missing);
                (def, *next_id)
            }
            None => {
                let mut cols = vec![ColumnDef::new(DEFAULT_TIME_COLUMN, ColumnKind::Time)];
                cols.extend(
                    columns
                        .iter()
                        .filter(|c| c.name != DEFAULT_TIME_COLUMN)
                        .cloned(),
                );
                let def = TableDef {
                    id: *next_id,
                    name: table.to_string(),
                    columns: cols,
                    retention_ns: None,
                };
                (def, *next_id + 1)
            }
        };
        let schema = Arc::new(TableSchema::new(def)?);
        tables.insert(table.to_string(), schema.clone());
        self.persist(&tables, new_id)?;
        *next_id = new_id;
        *self.tables.write() = tables;
        Ok(schema)
    }

    /// Sets (or with `None` clears) how long a table keeps its rows.
    pub fn set_retention(&self, name: &str, retention_ns: Option<i64>) -> Result<Arc<TableSchema>> {
        let next_id = self.change.lock();
        let mut tables = self.tables.read().clone();
        let t = tables
            .get(name)
            .ok_or_else(|| StorageError::TableNotFound(name.to_string()))?;
        let mut def = t.def().clone();
        def.retention_ns = retention_ns;
        let schema = Arc::new(TableSchema::new(def)?);
        tables.insert(name.to_string(), schema.clone());
        self.persist(&tables, *next_id)?;
        *self.tables.write() = tables;
        Ok(schema)
    }

    /// Removes a table from the catalog.
    pub fn drop_table(&self, name: &str) -> Result<Arc<TableSchema>> {
        let next_id = self.change.lock();
        let mut tables = self.tables.read().clone();
        let removed = tables
            .remove(name)
            .ok_or_else(|| StorageError::TableNotFound(name.to_string()))?;
        let mut indexes = self.indexes.read().clone();
        indexes.retain(|_, i| i.table != name);
        let sources = self.sources.read().clone();
        self.persist_all(&tables, &sources, &indexes, *next_id)?;
        *self.tables.write() = tables;
        *self.indexes.write() = indexes;
        Ok(removed)
    }

    /// Every stream source, sorted by name.
    pub fn sources(&self) -> Vec<SourceDef> {
        self.sources.read().values().cloned().collect()
    }

    /// The source of that name.
    pub fn source(&self, name: &str) -> Option<SourceDef> {
        self.sources.read().get(name).cloned()
    }

    /// Adds a source (its `id` is assigned here, from the same counter as table ids, so an id
    /// never names two incarnations). With `if_not_exists`, an existing source of that name is
    /// returned unchanged.
    pub fn create_source(&self, mut def: SourceDef, if_not_exists: bool) -> Result<SourceDef> {
        let mut next_id = self.change.lock();
        if let Some(s) = self.source(&def.name) {
            return if if_not_exists {
                Ok(s)
            } else {
                Err(StorageError::SourceExists(def.name))
            };
        }
        def.id = *next_id;
        let mut sources = self.sources.read().clone();
        sources.insert(def.name.clone(), def.clone());
        let tables = self.tables.read().clone();
        self.persist_with(&tables, &sources, *next_id + 1)?;
        *next_id += 1;
        *self.sources.write() = sources;
        Ok(def)
    }

    /// Removes a source.
    pub fn drop_source(&self, name: &str) -> Result<SourceDef> {
        let next_id = self.change.lock();
        let mut sources = self.sources.read().clone();
        let removed = sources
            .remove(name)
            .ok_or_else(|| StorageError::SourceNotFound(name.to_string()))?;
        let tables = self.tables.read().clone();
        self.persist_with(&tables, &sources, *next_id)?;
        *self.sources.write() = sources;
        Ok(removed)
    }

    /// Pauses or resumes a source (kept across restarts).
    pub fn set_source_paused(&self, name: &str, paused: bool) -> Result<SourceDef> {
        let next_id = self.change.lock();
        let mut sources = self.sources.read().clone();
        let s = sources
            .get_mut(name)
            .ok_or_else(|| StorageError::SourceNotFound(name.to_string()))?;
        s.paused = paused;
        let changed = s.clone();
        let tables = self.tables.read().clone();
        self.persist_with(&tables, &sources, *next_id)?;
        *self.sources.write() = sources;
        Ok(changed)
    }

    /// Every full-text index, sorted by name.
    pub fn indexes(&self) -> Vec<IndexDef> {
        self.indexes.read().values().cloned().collect()
    }

    /// The full-text indexes of a table.
    pub fn indexes_of(&self, table: &str) -> Vec<IndexDef> {
        self.indexes
            .read()
            .values()
            .filter(|i| i.table == table)
            .cloned()
            .collect()
    }

    /// Adds a full-text index on a text column (a string field or a tag) of an existing
    /// table; one per column. With `if_not_exists`, an existing index of that name is
    /// returned unchanged.
    pub fn create_index(
        &self,
        name: &str,
        table: &str,
        column: &str,
        if_not_exists: bool,
    ) -> Result<IndexDef> {
        let next_id = self.change.lock();
        if let Some(i) = self.indexes.read().get(name) {
            return if if_not_exists {
                Ok(i.clone())
            } else {
                Err(StorageError::IndexExists(name.to_string()))
            };
        }
        crate::schema::validate_name(name).map_err(|reason| StorageError::InvalidSchema {
            table: table.to_string(),
            reason: format!("index name: {reason}"),
        })?;
        let schema = self
            .get(table)
            .ok_or_else(|| StorageError::TableNotFound(table.to_string()))?;
        let invalid = |reason: String| StorageError::InvalidSchema {
            table: table.to_string(),
            reason,
        };
        match schema.column(column) {
            None => return Err(invalid(format!("column \"{column}\" does not exist"))),
            Some((_, c)) => match c.kind {
                ColumnKind::Tag | ColumnKind::Field(crate::schema::FieldType::String) => {}
                _ => {
                    return Err(invalid(format!(
                        "a full-text index needs a text column; \"{column}\" is {}",
                        c.kind.describe()
                    )));
                }
            },
        }
        if let Some(other) = self
            .indexes_of(table)
            .into_iter()
            .find(|i| i.column == column)
        {
            return Err(invalid(format!(
                "column \"{column}\" already has the full-text index \"{}\"",
                other.name
            )));
        }
        let def = IndexDef {
            name: name.to_string(),
            table: table.to_string(),
            table_id: schema.def().id,
            column: column.to_string(),
        };
        let mut indexes = self.indexes.read().clone();
        indexes.insert(name.to_string(), def.clone());
        let tables = self.tables.read().clone();
        let sources = self.sources.read().clone();
        self.persist_all(&tables, &sources, &indexes, *next_id)?;
        *self.indexes.write() = indexes;
        Ok(def)
    }

    /// Removes a full-text index.
    pub fn drop_index(&self, name: &str) -> Result<IndexDef> {
        let next_id = self.change.lock();
        let mut indexes = self.indexes.read().clone();
        let removed = indexes
            .remove(name)
            .ok_or_else(|| StorageError::IndexNotFound(name.to_string()))?;
        let tables = self.tables.read().clone();
        let sources = self.sources.read().clone();
        self.persist_all(&tables, &sources, &indexes, *next_id)?;
        *self.indexes.write() = indexes;
        Ok(removed)
    }

    /// Columns of `wanted` that `table` lacks; an error if one exists with another kind.
    fn missing(table: &TableSchema, wanted: &[ColumnDef]) -> Result<Vec<ColumnDef>> {
        let mut out = Vec::new();
        for c in wanted {
            match table.column(&c.name) {
                Some((_, existing)) if existing.kind == c.kind => {}
                // Line protocol names its time column `time`; a DDL table may call it otherwise.
                None if c.kind == ColumnKind::Time => {}
                Some((_, existing)) => {
                    return Err(StorageError::TypeConflict {
                        table: table.name().to_string(),
                        column: c.name.clone(),
                        expected: existing.kind.describe(),
                        found: c.kind.describe(),
                    });
                }
                None => out.push(c.clone()),
            }
        }
        Ok(out)
    }

    fn persist(
        &self,
        tables: &BTreeMap<String, Arc<TableSchema>>,
        next_table_id: u64,
    ) -> Result<()> {
        let sources = self.sources.read().clone();
        self.persist_with(tables, &sources, next_table_id)
    }

    fn persist_with(
        &self,
        tables: &BTreeMap<String, Arc<TableSchema>>,
        sources: &BTreeMap<String, SourceDef>,
        next_table_id: u64,
    ) -> Result<()> {
        let indexes = self.indexes.read().clone();
        self.persist_all(tables, sources, &indexes, next_table_id)
    }

    fn persist_all(
        &self,
        tables: &BTreeMap<String, Arc<TableSchema>>,
        sources: &BTreeMap<String, SourceDef>,
        indexes: &BTreeMap<String, IndexDef>,
        next_table_id: u64,
    ) -> Result<()> {
        let file = CatalogFile {
            next_table_id,
            tables: tables.values().map(|t| t.def().clone()).collect(),
            sources: sources.values().cloned().collect(),
            indexes: indexes.values().cloned().collect(),
        };
        let bytes = to_json(&self.path, &file, CATALOG_FORMAT_VERSION, true)?;
        write_atomic(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::FieldType;

    #[test]
    fn a_catalog_without_a_version_opens_as_version_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The exact shape Eddy wrote before catalogs carried a version.
        let today = r#"{
  "next_table_id": 3,
  "tables": [
    {
      "id": 1,
      "name": "cpu",
      "columns": [
        { "name": "time", "kind": "time" },
        { "name": "host", "kind": "tag" },
        { "name": "usage", "kind": "field", "type": "float" },
        { "name": "count", "kind": "field", "type": "uinteger" }
      ],
      "retention_ns": 604800000000000
    },
    {
      "id": 2,
      "name": "events",
      "columns": [
        { "name": "ts", "kind": "time" },
        { "name": "ok", "kind": "field", "type": "boolean" }
      ]
    }
  ]
}"#;
        std::fs::write(dir.path().join("catalog.json"), today).expect("write");
        let catalog = Catalog::open(dir.path()).expect("open");
        assert_eq!(catalog.names(), ["cpu", "events"]);
        let cpu = catalog.get("cpu").expect("cpu");
        assert_eq!(cpu.def().id, 1);
        assert_eq!(cpu.def().retention_ns, Some(604_800_000_000_000));
        assert_eq!(
            cpu.columns()[2],
            ColumnDef::new("usage", ColumnKind::Field(FieldType::Float))
        );
        assert_eq!(
            cpu.columns()[3],
            ColumnDef::new("count", ColumnKind::Field(FieldType::UInteger))
        );
        let events = catalog.get("events").expect("events");
        assert_eq!(events.time_column(), "ts");
        assert_eq!(events.def().retention_ns, None);

        // The next change writes the version, and ids carry on from the file.
        let t = catalog
            .ensure_columns("mem", &[ColumnDef::new("host", ColumnKind::Tag)])
            .expect("create");
        assert_eq!(t.def().id, 3);
        let text = std::fs::read_to_string(dir.path().join("catalog.json")).expect("read");
        assert!(
            text.trim_start()
                .starts_with("{\n  \"format_version\": 2,\n  \"crc32\": "),
            "{text}"
        );
        let again = Catalog::open(dir.path()).expect("reopen");
        assert_eq!(again.names(), ["cpu", "events", "mem"]);
    }

    #[test]
    fn a_catalog_from_a_newer_eddy_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let newer = format!(
            r#"{{"format_version":{},"tables":{{"a":"shape this Eddy does not know"}}}}"#,
            CATALOG_FORMAT_VERSION + 1
        );
        std::fs::write(dir.path().join("catalog.json"), newer).expect("write");
        let err = Catalog::open(dir.path()).expect_err("newer");
        assert!(
            matches!(err, StorageError::UnsupportedFormat { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("catalog.json"), "{msg}");
        assert!(msg.contains("written by a newer Eddy"), "{msg}");
        assert!(
            msg.contains(&format!(
                "format version {}, this Eddy reads up to {CATALOG_FORMAT_VERSION}",
                CATALOG_FORMAT_VERSION + 1
            )),
            "{msg}"
        );
    }

    #[test]
    fn a_damaged_catalog_is_an_error_naming_it_never_other_tables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open(dir.path()).expect("open");
        catalog
            .ensure_columns("cpu", &[ColumnDef::new("host", ColumnKind::Tag)])
            .expect("create");
        let path = dir.path().join("catalog.json");
        let good = std::fs::read(&path).expect("read");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x08;
            std::fs::write(&path, &bad).expect("write");
            match Catalog::read(dir.path()) {
                Err(e) => assert!(e.to_string().contains("catalog.json"), "{e}"),
                // Layout whitespace changed into other whitespace reads the same tables.
                Ok(Some((c, _))) => {
                    assert_eq!(c.names(), ["cpu"], "byte {i}");
                    assert_eq!(c.next_table_id(), 2, "byte {i}");
                }
                Ok(None) => panic!("catalog vanished"),
            }
        }
    }
}
