//! Prepared statements: planned once, run many times with parameters bound by `DoPut`.
//!
//! A handle is 16 random bytes naming an entry of a server-wide table; it is not tied to a
//! connection, because Flight clients (JDBC, ADBC) fetch results over other connections than
//! the one that prepared. At most [`PREPARED_STATEMENTS_MAX`](super::PREPARED_STATEMENTS_MAX)
//! (or the configured number) are kept: preparing one more forgets the one used least
//! recently, whose client then gets `NotFound` and prepares again. JDBC prepares every
//! statement, so the table is sized for many clients that never close theirs.
//!
//! Parameters arrive as record batches: column `i` is placeholder `$i+1` (or, for named
//! placeholders `$name`, the column of that name), each row one set of values. A query takes
//! one row; an update runs once per row. Values are converted to the type the statement gives
//! its placeholder (a pyarrow `int64` for a `DOUBLE PRECISION` column).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use eddy_query::Prepared;
use parking_lot::Mutex;
use rand::Rng as _;
use tonic::Status;

use super::status::query_status;

/// Most parameter rows one `DoPut` may bind (each row of an update is one statement run);
/// more rows are refused with a pointer to bulk ingest.
pub const PARAMETER_ROWS_MAX: usize = 10_000;

/// A prepared statement's handle.
pub(super) type Handle = [u8; 16];

/// One prepared statement.
#[derive(Clone)]
pub(super) struct PreparedStatement {
    /// Its text, for `eddy_queries`.
    pub sql: Arc<str>,
    /// Its plan.
    pub prepared: Arc<Prepared>,
    /// The parameter rows bound last, if any.
    pub params: Option<Arc<Vec<ParamValues>>>,
}

/// The prepared statements of the server.
pub(super) struct PreparedStatements {
    max: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    entries: HashMap<Handle, Entry>,
    /// Counts uses, to find the statement used least recently.
    clock: u64,
}

struct Entry {
    statement: PreparedStatement,
    used: u64,
}

impl PreparedStatements {
    /// An empty table holding at most `max` statements (at least one).
    pub(super) fn new(max: usize) -> PreparedStatements {
        PreparedStatements {
            max: max.max(1),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                clock: 0,
            }),
        }
    }

    /// Keeps a statement; returns its handle. Forgets the least recently used one when full.
    pub(super) fn insert(&self, sql: &str, prepared: Prepared) -> Handle {
        let handle: Handle = rand::rng().random();
        let mut inner = self.inner.lock();
        while inner.entries.len() >= self.max {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(h, _)| *h);
            match oldest {
                Some(h) => {
                    inner.entries.remove(&h);
                }
                None => break,
            }
        }
        inner.clock += 1;
        let used = inner.clock;
        inner.entries.insert(
            handle,
            Entry {
                statement: PreparedStatement {
                    sql: Arc::from(sql),
                    prepared: Arc::new(prepared),
                    params: None,
                },
                used,
            },
        );
        handle
    }

    /// The statement of a handle.
    pub(super) fn get(&self, handle: &[u8]) -> Result<PreparedStatement, Status> {
        let key = key(handle)?;
        let mut inner = self.inner.lock();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(&key).ok_or_else(unknown)?;
        entry.used = now;
        Ok(entry.statement.clone())
    }

    /// Binds parameter rows to a statement, replacing those bound before.
    pub(super) fn bind(&self, handle: &[u8], params: Vec<ParamValues>) -> Result<(), Status> {
        let key = key(handle)?;
        let mut inner = self.inner.lock();
        let entry = inner.entries.get_mut(&key).ok_or_else(unknown)?;
        entry.statement.params = Some(Arc::new(params));
        Ok(())
    }

    /// Forgets a statement; closing one already forgotten is not an error.
    pub(super) fn close(&self, handle: &[u8]) -> Result<(), Status> {
        let key = key(handle)?;
        self.inner.lock().entries.remove(&key);
        Ok(())
    }

    /// How many statements are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }
}

fn key(handle: &[u8]) -> Result<Handle, Status> {
    Handle::try_from(handle).map_err(|_| {
        Status::invalid_argument("the prepared statement handle was not made by this server")
    })
}

fn unknown() -> Status {
    Status::not_found(
        "prepared statement not found: it was closed, or forgotten for newer ones (at most \
         prepared_statements_max are kept), or the server restarted; prepare it again",
    )
}

/// The placeholders of a statement in binding order (`$1`, `$2`, ... by number, then named
/// ones by name), each with the type the statement gives it, if any.
fn placeholders(prepared: &Prepared) -> Result<Vec<(String, Option<DataType>)>, Status> {
    let Prepared::Plan(plan, _) = prepared else {
        return Ok(Vec::new());
    };
    let types = plan
        .get_parameter_types()
        .map_err(|e| query_status(&e.into()))?;
    let mut ids: Vec<(String, Option<DataType>)> = types.into_iter().collect();
    let number = |id: &str| id.strip_prefix('$').and_then(|n| n.parse::<usize>().ok());
    ids.sort_by(|(a, _), (b, _)| match (number(a), number(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    });
    Ok(ids)
}

/// The parameter schema of a statement: one column per placeholder, named by it, of the type
/// the statement gives it (`Null` when it gives none: any value is taken).
pub(super) fn parameter_schema(prepared: &Prepared) -> Result<SchemaRef, Status> {
    let fields: Vec<Field> = placeholders(prepared)?
        .into_iter()
        .map(|(id, t)| Field::new(id, t.unwrap_or(DataType::Null), true))
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// The parameter values of each row of `batches`, converted to the statement's placeholder
/// types.
pub(super) fn parameter_rows(
    prepared: &Prepared,
    batches: &[RecordBatch],
) -> Result<Vec<ParamValues>, Status> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows > PARAMETER_ROWS_MAX {
        return Err(Status::resource_exhausted(format!(
            "{rows} parameter rows in one bind; the maximum is {PARAMETER_ROWS_MAX} (load data \
             with bulk ingest, CommandStatementIngest, instead)"
        )));
    }
    let placeholders = placeholders(prepared)?;
    let types: HashMap<&str, Option<&DataType>> = placeholders
        .iter()
        .map(|(id, t)| (id.as_str(), t.as_ref()))
        .collect();
    let positional = placeholders.iter().all(|(id, _)| {
        id.strip_prefix('$')
            .is_some_and(|n| n.parse::<usize>().is_ok())
    });
    let mut out = Vec::with_capacity(rows);
    for batch in batches {
        let schema = batch.schema();
        for row in 0..batch.num_rows() {
            let mut values = Vec::with_capacity(batch.num_columns());
            for (i, (field, column)) in schema.fields().iter().zip(batch.columns()).enumerate() {
                let id = if positional {
                    format!("${}", i + 1)
                } else {
                    format!("${}", field.name().trim_start_matches('$'))
                };
                let value = ScalarValue::try_from_array(column.as_ref(), row)
                    .map_err(|e| query_status(&e.into()))?;
                let target = types.get(id.as_str()).copied().flatten();
                let converted = convert((&id, value), target)?;
                values.push((id, converted));
            }
            out.push(if positional {
                ParamValues::from(values.into_iter().map(|(_, v)| v).collect::<Vec<_>>())
            } else {
                ParamValues::from(
                    values
                        .into_iter()
                        .map(|(id, v)| (id.trim_start_matches('$').to_string(), v))
                        .collect::<Vec<_>>(),
                )
            });
        }
    }
    Ok(out)
}

/// `value` as a value of `target` (when the statement gives the placeholder a type).
fn convert(
    (id, value): (&str, ScalarValue),
    target: Option<&DataType>,
) -> Result<ScalarValue, Status> {
    match target {
        Some(t) if *t != value.data_type() && !value.is_null() => value.cast_to(t).map_err(|e| {
            Status::invalid_argument(format!(
                "parameter {id}: {value} ({}) is not a value of type {t}: {e}",
                value.data_type()
            ))
        }),
        Some(t) if *t != value.data_type() => ScalarValue::try_from(t).map_err(|e| {
            Status::invalid_argument(format!("parameter {id}: no null of type {t}: {e}"))
        }),
        _ => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> Prepared {
        Prepared::RefreshView("v".into())
    }

    #[test]
    fn the_least_recently_used_statement_is_forgotten_when_full() {
        let table = PreparedStatements::new(2);
        let a = table.insert("a", statement());
        let b = table.insert("b", statement());
        assert!(table.get(&a).is_ok());
        let c = table.insert("c", statement());
        assert_eq!(table.len(), 2);
        assert!(table.get(&a).is_ok(), "used after b");
        assert_eq!(
            table.get(&b).err().map(|e| e.code()),
            Some(tonic::Code::NotFound)
        );
        assert_eq!(&*table.get(&c).expect("newest").sql, "c");
        table.close(&c).expect("close");
        table.close(&c).expect("close twice");
        assert!(table.get(&c).is_err());
        assert_eq!(
            table.get(b"short").err().map(|e| e.code()),
            Some(tonic::Code::InvalidArgument)
        );
    }

    #[test]
    fn values_take_the_placeholders_type() {
        let v = convert(
            ("$1", ScalarValue::Int64(Some(2))),
            Some(&DataType::Float64),
        )
        .expect("int to double");
        assert_eq!(v, ScalarValue::Float64(Some(2.0)));
        let e = convert(
            ("$2", ScalarValue::Utf8(Some("abc".into()))),
            Some(&DataType::Int64),
        )
        .expect_err("text to bigint");
        assert!(e.message().starts_with("parameter $2"), "{}", e.message());
        let v = convert(("$1", ScalarValue::Null), Some(&DataType::Int64)).expect("null");
        assert_eq!(v, ScalarValue::Int64(None));
    }
}
