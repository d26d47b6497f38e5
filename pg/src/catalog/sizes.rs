//! The size functions psql's `\dt+` and `\l+`, pgAdmin and monitoring queries call
//! (`pg_relation_size`, `pg_table_size`, `pg_indexes_size`, `pg_total_relation_size`,
//! `pg_database_size`, `pg_size_pretty`), answered with the bytes Eddy keeps on disk.
//!
//! What a relation's size counts:
//! - an Eddy table: its live Parquet segments (as the manifest records them) and their
//!   checksum files, plus its share of the WAL. Rows not flushed yet are on disk only in the
//!   WAL, which holds every table's records mixed, so the WAL's bytes are split between the
//!   tables in proportion to the memory their unflushed rows hold;
//! - a table's primary key index: nothing, as segments are stored in key order and there is
//!   no index file; so `pg_indexes_size` is 0 and `pg_total_relation_size` equals
//!   `pg_table_size`;
//! - a continuous aggregate: its checkpoint files (`views/<view id>/`);
//! - system and catalog relations: 0, they are computed, not stored;
//! - an OID that names no relation: NULL, as in PostgreSQL. A name that names none is an
//!   error (42P01), as its cast to `regclass` is in PostgreSQL.
//!
//! `pg_database_size` is every file under the data directory: WAL, segments, catalog,
//! manifest and view checkpoints.
//!
//! The numbers are read once per batch of rows a call evaluates, never per row: the WAL's
//! size and the memtables once, a `stat` of each segment's checksum file for the tables
//! asked about, one walk of a view's directory or of the data directory when asked for.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Builder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::{
    as_decimal128_array, as_float64_array, as_int64_array, as_string_array,
};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, TypeSignature, Volatility,
};
use eddy_storage::Db;
use eddy_storage::manifest::SegmentMeta;

use super::functions::relation_oid;
use super::oids::{DATABASES, OTHER_RELATIONS, hashed_oid, table_oid};
use super::tables::CatalogState;
use crate::error::PgError;

/// The size functions, to register after pg-catalog's (whose `pg_relation_size` and
/// `pg_total_relation_size` take only an `int4` and answer 0).
pub(super) fn udfs(state: Arc<CatalogState>) -> Vec<ScalarUDF> {
    let db = state.db.clone();
    vec![
        relation_size_udf("pg_relation_size", Measure::Fork, state.clone()),
        relation_size_udf("pg_table_size", Measure::Table, state.clone()),
        relation_size_udf("pg_indexes_size", Measure::Indexes, state.clone()),
        relation_size_udf("pg_total_relation_size", Measure::Total, state),
        database_size_udf(db),
        size_pretty_udf(),
    ]
}

/// An error with its SQLSTATE, as the session reports it.
fn pg_error(sqlstate: &'static str, message: String) -> DataFusionError {
    DataFusionError::External(Box::new(PgError::new(sqlstate, message)))
}

/// Whether values of `dt` are text (a relation or database name rather than an OID).
fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// Which size of a relation a function reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// `pg_relation_size(rel [, fork])`: one fork; only `main` has bytes.
    Fork,
    /// `pg_table_size`: the relation without its indexes.
    Table,
    /// `pg_indexes_size`: the indexes on it.
    Indexes,
    /// `pg_total_relation_size`: table and indexes.
    Total,
}

/// What a relation OID holds on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    /// An Eddy table, by its storage id.
    Table(u64),
    /// A continuous aggregate, by its view id.
    View(u64),
    /// Nothing of its own: a primary key index, a system or catalog relation.
    Nothing,
}

/// The relation OIDs the catalog tables list now, with what each holds on disk.
struct Relations {
    by_oid: HashMap<i64, Storage>,
    /// OIDs numbered from `OTHER_RELATIONS` (DataFusion-only and Eddy's own system tables).
    others: Range<i64>,
}

impl Relations {
    fn now(state: &CatalogState) -> DfResult<Self> {
        let mut by_oid = HashMap::new();
        for t in state.db.catalog().tables() {
            let oid = i64::from(table_oid(&t)?);
            by_oid.insert(oid, Storage::Table(t.def().id));
            // Its primary key index.
            by_oid.insert(oid + 1, Storage::Nothing);
        }
        for v in state.views.list() {
            let id = v.def().id;
            let oid = hashed_oid(b"view:", &id.to_le_bytes());
            by_oid.insert(i64::from(oid), Storage::View(id));
        }
        for (oid, _) in state.system.values() {
            by_oid.entry(i64::from(*oid)).or_insert(Storage::Nothing);
        }
        let first = i64::from(OTHER_RELATIONS);
        Ok(Self {
            by_oid,
            others: first..first + i64::from(state.other_relations()),
        })
    }

    /// What relation `oid` holds, or `None` if no relation has that OID.
    fn get(&self, oid: i64) -> Option<Storage> {
        self.by_oid
            .get(&oid)
            .copied()
            .or_else(|| self.others.contains(&oid).then_some(Storage::Nothing))
    }
}

/// Bytes on disk, each read at most once per call.
struct Disk<'a> {
    db: &'a Db,
    /// Live segments by table id.
    segments: Option<HashMap<u64, Vec<SegmentMeta>>>,
    /// The WAL's bytes, the unflushed memory of each table, and of all tables.
    wal: Option<(u64, HashMap<u64, usize>, usize)>,
    tables: HashMap<u64, u64>,
    views: HashMap<u64, u64>,
}

impl<'a> Disk<'a> {
    fn new(db: &'a Db) -> Self {
        Self {
            db,
            segments: None,
            wal: None,
            tables: HashMap::new(),
            views: HashMap::new(),
        }
    }

    /// Table `id`'s segments and checksum files, and its share of the WAL.
    fn table(&mut self, id: u64) -> DfResult<u64> {
        if let Some(&bytes) = self.tables.get(&id) {
            return Ok(bytes);
        }
        let db = self.db;
        let segments = self.segments.get_or_insert_with(|| {
            let mut by_table: HashMap<u64, Vec<SegmentMeta>> = HashMap::new();
            for s in db.segments() {
                by_table.entry(s.table_id).or_default().push(s);
            }
            by_table
        });
        let dir = &db.config().data_dir;
        let mut bytes = 0u64;
        for s in segments.get(&id).map(Vec::as_slice).unwrap_or_default() {
            let checksums = file_len(&eddy_storage::checksum::sidecar_path(&dir.join(&s.path)))?;
            bytes = bytes.saturating_add(s.bytes).saturating_add(checksums);
        }
        if self.wal.is_none() {
            let wal_bytes = db.wal_bytes().map_err(storage_error)?;
            let held = db.memtable_bytes_by_table();
            let all = held.values().fold(0usize, |a, b| a.saturating_add(*b));
            self.wal = Some((wal_bytes, held, all));
        }
        let share = match &self.wal {
            Some((wal_bytes, held, all)) => match held.get(&id) {
                Some(&mine) if *all > 0 => u128::from(*wal_bytes) * (mine as u128) / (*all as u128),
                _ => 0,
            },
            None => 0,
        };
        let bytes = bytes.saturating_add(u64::try_from(share).unwrap_or(u64::MAX));
        self.tables.insert(id, bytes);
        Ok(bytes)
    }

    /// Continuous aggregate `id`'s checkpoint files, under `views/<id>/` (the layout of
    /// `eddy_query::continuous`'s checkpoints).
    fn view(&mut self, id: u64) -> DfResult<u64> {
        if let Some(&bytes) = self.views.get(&id) {
            return Ok(bytes);
        }
        let dir = self.db.config().data_dir.join("views").join(id.to_string());
        let bytes = eddy_storage::fsutil::dir_bytes(&dir).map_err(storage_error)?;
        self.views.insert(id, bytes);
        Ok(bytes)
    }

    /// What `storage` holds on disk, in bytes.
    fn of(&mut self, storage: Storage) -> DfResult<i64> {
        let bytes = match storage {
            Storage::Table(id) => self.table(id)?,
            Storage::View(id) => self.view(id)?,
            Storage::Nothing => 0,
        };
        Ok(i64::try_from(bytes).unwrap_or(i64::MAX))
    }
}

fn storage_error(e: eddy_storage::StorageError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The length of a file; 0 if it is not there (taken out meanwhile, or never written).
fn file_len(path: &Path) -> DfResult<u64> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(pg_error("58030", format!("{}: {e}", path.display()))),
    }
}

/// The relation OIDs an argument names, row by row: OIDs as they are (`c.oid`, any integer
/// type); text as PostgreSQL reads `regclass` input: digits are an OID, anything else a
/// possibly qualified, possibly quoted name (`cpu`, `public.cpu`, `"My Table"`).
fn relation_oids(state: &CatalogState, arg: &ArrayRef) -> DfResult<Vec<Option<i64>>> {
    if !is_text(arg.data_type()) {
        let oids = cast(arg, &DataType::Int64)?;
        return Ok(as_int64_array(&oids)?.iter().collect());
    }
    let names = cast(arg, &DataType::Utf8)?;
    as_string_array(&names)?
        .iter()
        .map(|name| name.map(|n| named_relation(state, n)).transpose())
        .collect()
}

/// The OID of the relation `name` names (an OID in digits, or a name).
fn named_relation(state: &CatalogState, name: &str) -> DfResult<i64> {
    let digits = name.trim();
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits.parse::<u32>().map(i64::from).map_err(|_| {
            pg_error(
                "22003",
                format!("value \"{digits}\" is out of range for type oid"),
            )
        });
    }
    relation_oid(state, name)
        .map(i64::from)
        .ok_or_else(|| pg_error("42P01", format!("relation \"{name}\" does not exist")))
}

/// Bytes of fork `fork` (`None`: `main`) of a relation that holds `storage`, by `measure`.
fn measured(
    disk: &mut Disk<'_>,
    measure: Measure,
    storage: Storage,
    fork: Option<&str>,
) -> DfResult<i64> {
    match (measure, fork) {
        (Measure::Indexes, _) => Ok(0),
        (_, None | Some("main")) => disk.of(storage),
        // The free space map, visibility map and init fork: Eddy has none of them.
        (_, Some("fsm" | "vm" | "init")) => Ok(0),
        (_, Some(other)) => Err(pg_error(
            "22023",
            format!(
                "invalid fork name \"{other}\": valid fork names are \"main\", \"fsm\", \"vm\", and \"init\""
            ),
        )),
    }
}

/// `name(relation)` (and for `pg_relation_size`, `name(relation, fork)`): bytes as
/// `measure` counts them; NULL for a NULL argument or an OID no relation has.
fn relation_size_udf(name: &'static str, measure: Measure, state: Arc<CatalogState>) -> ScalarUDF {
    let arities = match measure {
        Measure::Fork => vec![TypeSignature::Any(1), TypeSignature::Any(2)],
        _ => vec![TypeSignature::Any(1)],
    };
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        name,
        // Sizes change between calls: never folded into a plan.
        Signature::one_of(arities, Volatility::Volatile),
        DataType::Int64,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let Some(relations) = arrays.first() else {
                return Err(DataFusionError::Plan(format!("{name} takes a relation")));
            };
            let oids = relation_oids(&state, relations)?;
            let forks = arrays
                .get(1)
                .map(|f| cast(f, &DataType::Utf8))
                .transpose()?;
            let forks = forks.as_ref().map(|f| as_string_array(f)).transpose()?;
            let known = Relations::now(&state)?;
            let mut disk = Disk::new(&state.db);
            let mut out = Int64Builder::with_capacity(oids.len());
            for (row, oid) in oids.into_iter().enumerate() {
                let fork = match forks {
                    Some(f) if f.is_null(row) => {
                        out.append_null();
                        continue;
                    }
                    Some(f) => Some(f.value(row)),
                    None => None,
                };
                match oid.and_then(|o| known.get(o)) {
                    Some(storage) => out.append_value(measured(&mut disk, measure, storage, fork)?),
                    None => out.append_null(),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ))
}

/// `pg_database_size(name | oid)`: every file under the data directory, for the databases
/// `pg_database` lists (any name a client connects with reaches Eddy's one database);
/// another name is an error (3D000), another OID NULL, as in PostgreSQL.
fn database_size_udf(db: Db) -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "pg_database_size",
        Signature::any(1, Volatility::Volatile),
        DataType::Int64,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let Some(arg) = arrays.first() else {
                return Err(DataFusionError::Plan(
                    "pg_database_size takes a database".to_string(),
                ));
            };
            let mut total: Option<i64> = None;
            let mut size = || -> DfResult<i64> {
                if let Some(t) = total {
                    return Ok(t);
                }
                let bytes = db.disk_bytes().map_err(storage_error)?;
                let t = i64::try_from(bytes).unwrap_or(i64::MAX);
                total = Some(t);
                Ok(t)
            };
            let mut out = Int64Builder::with_capacity(arg.len());
            if is_text(arg.data_type()) {
                let names = cast(arg, &DataType::Utf8)?;
                for name in as_string_array(&names)?.iter() {
                    match name {
                        None => out.append_null(),
                        Some(n) if DATABASES.iter().any(|(_, d)| *d == n) => {
                            out.append_value(size()?)
                        }
                        Some(n) => {
                            return Err(pg_error(
                                "3D000",
                                format!("database \"{n}\" does not exist"),
                            ));
                        }
                    }
                }
            } else {
                let oids = cast(arg, &DataType::Int64)?;
                for oid in as_int64_array(&oids)?.iter() {
                    match oid {
                        Some(o) if DATABASES.iter().any(|(d, _)| i64::from(*d) == o) => {
                            out.append_value(size()?)
                        }
                        _ => out.append_null(),
                    }
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ))
}

/// `pg_size_pretty(bigint | numeric)`: a size with a unit, exactly as PostgreSQL prints it.
/// Integers of any width, decimals, floats and numeric text are taken.
fn size_pretty_udf() -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "pg_size_pretty",
        Signature::any(1, Volatility::Immutable),
        DataType::Utf8,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let Some(arg) = arrays.first() else {
                return Err(DataFusionError::Plan(
                    "pg_size_pretty takes a size".to_string(),
                ));
            };
            let texts = pretty_texts(arg)?;
            let mut out = StringBuilder::with_capacity(texts.len(), texts.len() * 8);
            for t in texts {
                out.append_option(t);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ))
}

/// `pg_size_pretty` of each value of `arg`.
fn pretty_texts(arg: &ArrayRef) -> DfResult<Vec<Option<String>>> {
    use DataType::*;
    match arg.data_type() {
        Null => Ok(vec![None; arg.len()]),
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => {
            let sizes = cast(arg, &Int64)?;
            Ok(as_int64_array(&sizes)?
                .iter()
                .map(|s| s.map(|s| pretty_bytes(i128::from(s))))
                .collect())
        }
        Decimal128(_, scale) => as_decimal128_array(arg)?
            .iter()
            .map(|s| s.map(|s| pretty_decimal(s, *scale)).transpose())
            .collect(),
        // Beyond `bigint`: as a decimal of scale 0, which holds every u64.
        UInt64 | Decimal256(..) => {
            let decimals = cast(arg, &Decimal128(38, 0))?;
            pretty_texts(&decimals)
        }
        Float16 | Float32 | Float64 => {
            let sizes = cast(arg, &Float64)?;
            as_float64_array(&sizes)?
                .iter()
                .map(|s| s.map(pretty_float).transpose())
                .collect()
        }
        dt if is_text(dt) => {
            let texts = cast(arg, &Utf8)?;
            as_string_array(&texts)?
                .iter()
                .map(|s| s.map(pretty_numeric_text).transpose())
                .collect()
        }
        other => Err(pg_error(
            "42883",
            format!("function pg_size_pretty({other}) does not exist"),
        )),
    }
}

/// A unit of `pg_size_pretty` (PostgreSQL's `size_pretty_units`, `dbsize.c`).
struct Unit {
    name: &'static str,
    /// The value (in half units of this unit when `round`) must be below this to be
    /// printed in this unit.
    limit: u128,
    /// Whether the value is rounded half away from zero when printed in this unit.
    round: bool,
    /// log2 of the bytes in one of this unit.
    bits: u32,
}

static UNITS: [Unit; 6] = [
    Unit {
        name: "bytes",
        limit: 10 * 1024,
        round: false,
        bits: 0,
    },
    Unit {
        name: "kB",
        limit: 20 * 1024 - 1,
        round: true,
        bits: 10,
    },
    Unit {
        name: "MB",
        limit: 20 * 1024 - 1,
        round: true,
        bits: 20,
    },
    Unit {
        name: "GB",
        limit: 20 * 1024 - 1,
        round: true,
        bits: 30,
    },
    Unit {
        name: "TB",
        limit: 20 * 1024 - 1,
        round: true,
        bits: 40,
    },
    Unit {
        name: "PB",
        limit: 20 * 1024 - 1,
        round: true,
        bits: 50,
    },
];

/// PostgreSQL's `pg_size_pretty` of a whole number of bytes: a unit is used once the value
/// reaches 10 of it (10240 bytes is `10 kB`), shown rounded half away from zero; negative
/// sizes are shown the same way with a sign. The steps divide with truncation toward zero,
/// keeping one extra bit for the rounding, as PostgreSQL does (so the boundaries match its
/// output exactly, not a division by 1024 rounded once).
fn pretty_bytes(mut size: i128) -> String {
    let mut units = UNITS.iter().peekable();
    while let Some(unit) = units.next() {
        match units.peek() {
            Some(next) if size.unsigned_abs() >= unit.limit => {
                let shift = next.bits + u32::from(unit.round) - unit.bits - u32::from(next.round);
                size /= 1i128 << shift;
            }
            _ => {
                if unit.round {
                    // PostgreSQL's `half_rounded`: half away from zero.
                    size = (size + if size < 0 { -1 } else { 1 }) / 2;
                }
                return format!("{size} {}", unit.name);
            }
        }
    }
    // UNITS is not empty: the last unit always prints.
    format!("{size} bytes")
}

/// `pg_size_pretty(numeric)` of `unscaled × 10^-scale`: below 10240 bytes the value is
/// printed as it is, fraction and all; from there on in whole units, as for integers.
fn pretty_decimal(unscaled: i128, scale: i8) -> DfResult<String> {
    let out_of_range = || pg_error("22003", "value out of range for pg_size_pretty".to_string());
    let digits = u32::from(scale.unsigned_abs());
    let factor = 10i128.checked_pow(digits).ok_or_else(out_of_range)?;
    if scale <= 0 {
        return Ok(pretty_bytes(
            unscaled.checked_mul(factor).ok_or_else(out_of_range)?,
        ));
    }
    let below = 10_240i128
        .checked_mul(factor)
        .is_none_or(|limit| unscaled.unsigned_abs() < limit.unsigned_abs());
    if below {
        return Ok(format!("{} bytes", decimal_text(unscaled, digits)));
    }
    Ok(pretty_bytes(unscaled / factor))
}

/// `unscaled × 10^-scale` written out with `scale` fraction digits, as numeric prints it.
fn decimal_text(unscaled: i128, scale: u32) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    let Ok(scale) = usize::try_from(scale) else {
        return format!("{sign}{digits}");
    };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// `pg_size_pretty` of a float, read as the numeric it prints as.
fn pretty_float(size: f64) -> DfResult<String> {
    if !size.is_finite() {
        return Err(pg_error("22003", format!("cannot show {size} as a size")));
    }
    if size.abs() < 10_240.0 {
        return Ok(format!("{size} bytes"));
    }
    // Saturating: past i128 it is thousands of PB anyway.
    Ok(pretty_bytes(size.trunc() as i128))
}

/// `pg_size_pretty` of a number written as text (`'10240'`, `'1.5'`, `'-20'`).
fn pretty_numeric_text(text: &str) -> DfResult<String> {
    let (unscaled, scale) = parse_decimal(text).ok_or_else(|| {
        pg_error(
            "22P02",
            format!("invalid input syntax for type numeric: \"{text}\""),
        )
    })?;
    pretty_decimal(unscaled, scale)
}

/// `[+-]digits[.digits]` as an unscaled integer and its scale; `None` if it is not one or
/// has more digits than a decimal holds.
fn parse_decimal(text: &str) -> Option<(i128, i8)> {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (whole, fraction) = t.split_once('.').unwrap_or((t, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let scale = i8::try_from(fraction.len()).ok().filter(|s| *s <= 38)?;
    let mut unscaled: i128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        unscaled = unscaled
            .checked_mul(10)?
            .checked_add(i128::from(b - b'0'))?;
    }
    Some((if negative { -unscaled } else { unscaled }, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL 15's `pg_size_pretty(bigint)` of these values, boundaries of every unit
    /// and of its rounding, both signs.
    const POSTGRESQL: &[(i64, &str)] = &[
        (0, "0 bytes"),
        (1, "1 bytes"),
        (-1, "-1 bytes"),
        (10239, "10239 bytes"),
        (10240, "10 kB"),
        (-10239, "-10239 bytes"),
        (-10240, "-10 kB"),
        (10751, "10 kB"),
        (10752, "11 kB"),
        (-10751, "-10 kB"),
        (-10752, "-11 kB"),
        (11263, "11 kB"),
        (11264, "11 kB"),
        (1572863, "1536 kB"),
        (1572864, "1536 kB"),
        (10485247, "10239 kB"),
        (10485248, "10 MB"),
        (-10485247, "-10239 kB"),
        (-10485248, "-10 MB"),
        (1073741823, "1024 MB"),
        (1073741824, "1024 MB"),
        (10736893951, "10239 MB"),
        (10736893952, "10 GB"),
        (-10736893952, "-10 GB"),
        (21474836480, "20 GB"),
        (10994579406847, "10239 GB"),
        (10994579406848, "10 TB"),
        (-10994579406848, "-10 TB"),
        (1125899906842624, "1024 TB"),
        (11258449312612351, "10239 TB"),
        (11258449312612352, "10 PB"),
        (-11258449312612352, "-10 PB"),
        (22517998136852480, "20 PB"),
        (i64::MAX, "8192 PB"),
        (i64::MIN, "-8192 PB"),
        (i64::MIN + 1, "-8192 PB"),
    ];

    #[test]
    fn size_pretty_matches_postgresql_at_every_boundary() {
        for &(bytes, want) in POSTGRESQL {
            assert_eq!(pretty_bytes(i128::from(bytes)), want, "{bytes}");
        }
    }

    #[test]
    fn size_pretty_of_numeric_keeps_small_fractions() {
        // PostgreSQL 15's `pg_size_pretty(numeric)`.
        for (text, want) in [
            ("1.5", "1.5 bytes"),
            ("10.50", "10.50 bytes"),
            ("-1.5", "-1.5 bytes"),
            ("0.0", "0.0 bytes"),
            ("10239.99", "10239.99 bytes"),
            ("10240.0", "10 kB"),
            ("10240.5", "10 kB"),
            ("-10239.5", "-10239.5 bytes"),
            ("10751.9", "10 kB"),
            ("10752.0", "11 kB"),
            ("9223372036854775808", "8192 PB"),
            (
                "99999999999999999999999999999999999999",
                "88817841970012523233891 PB",
            ),
            (
                "-99999999999999999999999999999999999999",
                "-88817841970012523233891 PB",
            ),
            ("123456789012345678901234.5678", "109651656 PB"),
        ] {
            assert_eq!(pretty_numeric_text(text).expect(text), want, "{text}");
        }
        assert_eq!(pretty_decimal(5, 2).expect("0.05"), "0.05 bytes");
        assert_eq!(pretty_decimal(1024, -1).expect("10240"), "10 kB");
        for bad in ["", "abc", "1.2.3", "-", ".", "1e3"] {
            assert!(pretty_numeric_text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn size_pretty_of_floats_reads_them_as_numeric() {
        assert_eq!(pretty_float(1.5).expect("1.5"), "1.5 bytes");
        assert_eq!(pretty_float(10240.0).expect("10240"), "10 kB");
        assert_eq!(pretty_float(-10752.0).expect("-10752"), "-11 kB");
        assert!(pretty_float(f64::NAN).is_err());
    }

    #[test]
    fn decimals_print_with_their_scale() {
        assert_eq!(decimal_text(0, 1), "0.0");
        assert_eq!(decimal_text(-15, 1), "-1.5");
        assert_eq!(decimal_text(1050, 2), "10.50");
        assert_eq!(decimal_text(7, 0), "7");
        assert_eq!(parse_decimal("+10.50"), Some((1050, 2)));
        assert_eq!(parse_decimal("-.5"), Some((-5, 1)));
        assert_eq!(parse_decimal("7."), Some((7, 0)));
    }

    #[tokio::test]
    async fn a_table_is_its_segments_their_checksums_and_its_wal_share() {
        use datafusion::arrow::array::{Float64Array, StringArray, TimestampNanosecondArray};
        use datafusion::arrow::record_batch::RecordBatch;
        use eddy_storage::{ColumnDef, ColumnKind, FieldType, StorageConfig, TableDef};

        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = StorageConfig::new(dir.path());
        // Only the test flushes.
        config.flush_interval_ms = 3_600_000;
        let db = Db::open(config).expect("open");
        let def = TableDef {
            id: 0,
            name: "m".into(),
            columns: vec![
                ColumnDef::new("time", ColumnKind::Time),
                ColumnDef::new("host", ColumnKind::Tag),
                ColumnDef::new("v", ColumnKind::Field(FieldType::Float)),
            ],
            retention_ns: None,
        };
        let table = db.catalog().create_table(def, false).expect("create");
        let id = table.def().id;
        let rows = RecordBatch::try_new(
            table.arrow_schema().clone(),
            vec![
                Arc::new(TimestampNanosecondArray::from(vec![1_i64, 2])),
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Float64Array::from(vec![1.0, 2.0])),
            ],
        )
        .expect("batch");
        db.write("m", rows).await.expect("write");
        // Unflushed, and the only table with rows: the whole WAL is its share.
        let wal = db.wal_bytes().expect("wal");
        assert!(wal > 0);
        assert_eq!(Disk::new(&db).table(id).expect("size"), wal);

        db.flush().expect("flush");
        // Flushed: its segments and their checksum files, all there is under data/.
        let files =
            eddy_storage::fsutil::dir_bytes(&db.config().data_dir.join("data")).expect("walk");
        assert!(files > db.segments().iter().map(|s| s.bytes).sum::<u64>());
        let mut disk = Disk::new(&db);
        assert_eq!(disk.table(id).expect("size"), files);
        let table = Storage::Table(id);
        let size = i64::try_from(files).expect("small");
        assert_eq!(
            measured(&mut disk, Measure::Fork, table, None).expect("main"),
            size
        );
        assert_eq!(
            measured(&mut disk, Measure::Fork, table, Some("main")).expect("main"),
            size
        );
        assert_eq!(
            measured(&mut disk, Measure::Fork, table, Some("fsm")).expect("fsm"),
            0
        );
        assert!(measured(&mut disk, Measure::Fork, table, Some("bogus")).is_err());
        assert_eq!(
            measured(&mut disk, Measure::Total, table, None).expect("total"),
            size
        );
        assert_eq!(
            measured(&mut disk, Measure::Indexes, table, None).expect("indexes"),
            0
        );
        assert_eq!(
            measured(&mut disk, Measure::Table, Storage::Nothing, None).expect("none"),
            0
        );
        // A view without checkpoints yet has no files.
        assert_eq!(disk.view(42).expect("view"), 0);
        db.close().expect("close");
    }
}
