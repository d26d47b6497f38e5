//! Fuzz target of the line-protocol parser: the body of `fuzz/fuzz_targets/line_protocol.rs`
//! (the coverage-guided long pass, `scripts/fuzz.sh`) and of the short pass in the test suite
//! (`tests/e2e/fuzz_corpus.rs`), which replays the corpus and mutations of it.
//!
//! The contract is that [`line_protocol`] returns normally for every input: a panic is either
//! a panic in the parser or the batch builder, or a broken invariant asserted here (every line
//! is accepted or rejected exactly once, by its number; a coarser precision never accepts a
//! line that nanoseconds reject; the batches built match the schema the write path would make).
//! It runs the write path as far as it goes without a storage engine: `parse`, then
//! `batch::build` against an empty catalog and against one that already has tables, then the
//! Arrow batches. Retention and the durable write need a `Db` and are not reached.
//!
//! Not a public API: it exists for the fuzzers and may change with them.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use datafusion::arrow::array::Array;
use eddy_storage::schema::validate_name;
use eddy_storage::{
    Catalog, ColumnDef, ColumnKind, DEFAULT_TIME_COLUMN, FieldType, TableDef, TableSchema,
};

use crate::lineproto::batch::{self, LineBatches};
use crate::lineproto::{self, LINE_BYTES_MAX, ParsedLines, Precision, Value};

/// The time given to lines without a timestamp: 2024-01-01 00:00:00 UTC.
const NOW_NS: i64 = 1_704_067_200_000_000_000;

/// Every precision with its length in nanoseconds.
const PRECISIONS: [(Precision, i64); 6] = [
    (Precision::Nanosecond, 1),
    (Precision::Microsecond, 1_000),
    (Precision::Millisecond, 1_000_000),
    (Precision::Second, 1_000_000_000),
    (Precision::Minute, 60_000_000_000),
    (Precision::Hour, 3_600_000_000_000),
];

/// Parses `data` as a line-protocol request body with every precision and builds its batches;
/// panics only on a bug.
pub fn line_protocol(data: &[u8]) {
    let expected = lines_to_judge(data);
    let by_ns = lineproto::parse(data, Precision::Nanosecond, NOW_NS);
    check_parsed(&by_ns, &expected, "ns");
    for (precision, unit_ns) in &PRECISIONS[1..] {
        let parsed = lineproto::parse(data, *precision, NOW_NS);
        check_parsed(&parsed, &expected, &format!("{precision:?}"));
        check_scaled(&by_ns, &parsed, *unit_ns);
    }
    // The batch builder against a catalog that knows nothing, then against one with tables
    // whose columns the input may conflict with (and one whose time column is not `time`).
    let empty = empty_catalog();
    check_built(
        lineproto::parse(data, Precision::Nanosecond, NOW_NS),
        &expected,
        empty,
    );
    if let Some(known) = known_catalog() {
        check_built(
            lineproto::parse(data, Precision::Second, NOW_NS),
            &expected,
            known,
        );
    }
}

/// Line numbers (1-based) of the lines the parser must judge: not blank, not a comment.
fn lines_to_judge(data: &[u8]) -> Vec<usize> {
    data.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, raw)| {
            let raw: &[u8] = raw;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let start = raw.iter().take_while(|c| c.is_ascii_whitespace()).count();
            raw.get(start).is_some_and(|&c| c != b'#')
        })
        .map(|(i, _)| i + 1)
        .collect()
}

/// Every line to judge is either accepted or rejected, once, in order; good lines are sane.
fn check_parsed(parsed: &ParsedLines<'_>, expected: &[usize], what: &str) {
    let good: Vec<usize> = parsed.lines.iter().map(|l| l.line).collect();
    let bad: Vec<usize> = parsed.errors.iter().map(|e| e.line).collect();
    assert!(
        good.windows(2).all(|w| w[0] < w[1]),
        "{what}: accepted lines out of order: {good:?}"
    );
    assert!(
        bad.windows(2).all(|w| w[0] < w[1]),
        "{what}: rejected lines out of order: {bad:?}"
    );
    let mut judged: Vec<usize> = good.iter().chain(&bad).copied().collect();
    judged.sort_unstable();
    assert_eq!(
        judged, expected,
        "{what}: each non-blank, non-comment line must be accepted or rejected exactly once"
    );
    for e in &parsed.errors {
        assert!(
            !e.message.is_empty(),
            "{what}: line {} rejected without a reason",
            e.line
        );
    }
    for line in &parsed.lines {
        assert!(
            !line.measurement.is_empty(),
            "{what}: line {}: empty measurement accepted",
            line.line
        );
        assert!(
            !line.fields.is_empty(),
            "{what}: line {}: line without fields accepted",
            line.line
        );
        for (k, v) in &line.tags {
            assert!(
                !k.is_empty() && !v.is_empty(),
                "{what}: line {}: empty tag key or value accepted",
                line.line
            );
            assert!(k != DEFAULT_TIME_COLUMN, "{what}: tag \"time\" accepted");
        }
        for (k, v) in &line.fields {
            assert!(!k.is_empty(), "{what}: line {}: empty field key", line.line);
            assert!(k != DEFAULT_TIME_COLUMN, "{what}: field \"time\" accepted");
            match v {
                Value::Float(x) => assert!(x.is_finite(), "{what}: non-finite float {x}"),
                Value::Str(_) | Value::EscapedStr(_) => {
                    let s = v.string().expect("a string value has a string");
                    assert!(
                        s.len() <= LINE_BYTES_MAX,
                        "{what}: string longer than its line"
                    );
                }
                Value::Int(_) | Value::UInt(_) | Value::Bool(_) => {}
            }
        }
    }
}

/// A line accepted with a coarser precision is accepted in nanoseconds, and its time is the
/// nanosecond reading scaled (or the request's time for both when it has no timestamp).
fn check_scaled(by_ns: &ParsedLines<'_>, coarse: &ParsedLines<'_>, unit_ns: i64) {
    let mut ns_lines = by_ns.lines.iter().peekable();
    for line in &coarse.lines {
        while ns_lines.peek().is_some_and(|l| l.line < line.line) {
            ns_lines.next();
        }
        let ns = ns_lines
            .peek()
            .filter(|l| l.line == line.line)
            .unwrap_or_else(|| {
                panic!(
                    "line {} accepted at {unit_ns} ns precision but rejected in nanoseconds",
                    line.line
                )
            });
        let scaled = ns.time_ns.checked_mul(unit_ns);
        assert!(
            scaled == Some(line.time_ns) || (ns.time_ns == NOW_NS && line.time_ns == NOW_NS),
            "line {}: time {} at {unit_ns} ns precision, {} in nanoseconds",
            line.line,
            line.time_ns,
            ns.time_ns
        );
        assert_eq!(
            (&ns.measurement, &ns.tags, ns.fields.len()),
            (&line.measurement, &line.tags, line.fields.len()),
            "line {}: the precision changed more than the time",
            line.line
        );
    }
}

/// Schema on write as `Ingest::write_lp` does it, without persisting anything: every parsed
/// line ends in exactly one table or one error, and each table's batch has the columns and
/// rows the write path would hand to storage.
fn check_built(parsed: ParsedLines<'_>, expected: &[usize], catalog: &Catalog) {
    let parsed_ok = parsed.lines.len();
    let parse_errors = parsed.errors.len();
    let built: LineBatches = batch::build(parsed, catalog);
    let errors: Vec<usize> = built.errors.iter().map(|e| e.line).collect();
    assert!(
        errors.windows(2).all(|w| w[0] < w[1]),
        "build: errors not in line order: {errors:?}"
    );
    assert!(
        built.errors.len() >= parse_errors,
        "build: lost syntax errors"
    );
    assert_eq!(
        built.lines_ok + (built.errors.len() - parse_errors),
        parsed_ok,
        "build: every parsed line is either built or rejected"
    );
    let mut judged: Vec<usize> = errors.clone();
    let mut rows = 0;
    let mut names = HashSet::new();
    for t in &built.tables {
        assert!(
            names.insert(t.table.clone()),
            "build: table {} twice",
            t.table
        );
        rows += t.lines.len();
        judged.extend(&t.lines);
    }
    assert_eq!(rows, built.lines_ok, "build: rows per table add up");
    judged.sort_unstable();
    assert_eq!(
        judged, expected,
        "build: each line is written or rejected exactly once"
    );
    for rows in built.tables {
        let schema = schema_on_write(catalog, &rows.table, &rows.columns);
        let lines = rows.lines.len();
        let table = rows.table.clone();
        let batch = rows
            .into_batch(&schema)
            .unwrap_or_else(|e| panic!("build: table {table}: batch refused: {e}"));
        assert_eq!(
            batch.num_rows(),
            lines,
            "build: table {table}: one row per line"
        );
        let time = batch.column(0);
        assert_eq!(time.null_count(), 0, "build: table {table}: a NULL time");
        for field in batch.schema_ref().fields().iter().skip(1) {
            let (_, def) = schema.column(field.name()).unwrap_or_else(|| {
                panic!(
                    "build: table {table}: column {} not in its schema",
                    field.name()
                )
            });
            assert_eq!(
                &def.kind.data_type(),
                field.data_type(),
                "build: table {table}: column {} has the wrong type",
                field.name()
            );
        }
    }
}

/// The schema `Catalog::ensure_columns` would make for these columns, built in memory.
fn schema_on_write(catalog: &Catalog, table: &str, columns: &[ColumnDef]) -> TableSchema {
    validate_name(table).unwrap_or_else(|r| panic!("build: invalid table name kept: {r}"));
    let mut def = match catalog.get(table) {
        Some(t) => t.def().clone(),
        None => TableDef {
            id: 1,
            name: table.to_string(),
            columns: vec![ColumnDef::new(DEFAULT_TIME_COLUMN, ColumnKind::Time)],
            retention_ns: None,
        },
    };
    for c in columns {
        match def.columns.iter().find(|d| d.name == c.name) {
            Some(d) => assert_eq!(
                d.kind, c.kind,
                "build: column {} of {table} planned with a kind that conflicts",
                c.name
            ),
            None => def.columns.push(c.clone()),
        }
    }
    TableSchema::new(def)
        .unwrap_or_else(|e| panic!("build: table {table}: the catalog would refuse it: {e}"))
}

/// A catalog with no tables. Opening one where no `catalog.json` exists reads nothing and
/// writes nothing.
fn empty_catalog() -> &'static Catalog {
    static EMPTY: OnceLock<Catalog> = OnceLock::new();
    EMPTY.get_or_init(|| {
        Catalog::open(&scratch_dir("empty")).expect("a missing catalog opens empty")
    })
}

/// A catalog with tables the seeds write to: `cpu` (tags `host`, `region`; one field of each
/// type) and `sql_made` (time column `ts`, as `CREATE TABLE` may name it). Made once in a
/// scratch directory that is removed at once; the catalog stays in memory. `None` if the
/// temporary directory is not writable.
fn known_catalog() -> Option<&'static Catalog> {
    static KNOWN: OnceLock<Option<Catalog>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            let dir = scratch_dir("known");
            std::fs::create_dir_all(&dir).ok()?;
            let made = (|| {
                let catalog = Catalog::open(&dir).ok()?;
                let field = |name: &str, t: FieldType| ColumnDef::new(name, ColumnKind::Field(t));
                catalog
                    .ensure_columns(
                        "cpu",
                        &[
                            ColumnDef::new("host", ColumnKind::Tag),
                            ColumnDef::new("region", ColumnKind::Tag),
                            field("usage", FieldType::Float),
                            field("count", FieldType::Integer),
                            field("ucount", FieldType::UInteger),
                            field("ok", FieldType::Boolean),
                            field("msg", FieldType::String),
                        ],
                    )
                    .ok()?;
                catalog
                    .create_table(
                        TableDef {
                            id: 0,
                            name: "sql_made".to_string(),
                            columns: vec![
                                ColumnDef::new("ts", ColumnKind::Time),
                                ColumnDef::new("host", ColumnKind::Tag),
                                field("v", FieldType::Float),
                            ],
                            retention_ns: None,
                        },
                        false,
                    )
                    .ok()?;
                Some(catalog)
            })();
            let _ = std::fs::remove_dir_all(&dir);
            made
        })
        .as_ref()
}

fn scratch_dir(what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("eddy-fuzz-{what}-{}-{nanos}", std::process::id()))
}
