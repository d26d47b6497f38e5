//! COPY over the Postgres protocol. `COPY table FROM STDIN` is a bulk write path: rows are
//! decoded as CopyData arrives and committed through the write path ([`Ingest`]) in batches, so
//! memory stays bounded however large the copy. `COPY table|(query) TO STDOUT` streams a
//! query's rows in text or CSV.
//!
//! This module is the protocol side; the data handling lives in submodules by job: `options`
//! (formats, options, errors), `decoder` (the streaming COPY FROM decoder and its column
//! builders), `text`, `csv` and `binary` (the input formats), `values` (field text to
//! values) and `encode` (COPY TO output).

use std::sync::Arc;

use crate::error::PgError;
use crate::session::{Output, PgSession as QuerySession};
use datafusion::arrow::datatypes::FieldRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName, Query,
    Statement as SqlStatement,
};
use eddy_ingest::Ingest;
use eddy_storage::TableSchema;
use futures::StreamExt;
use pgwire::api::results::CopyResponse;
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;

mod binary;
mod csv;
mod decoder;
mod encode;
mod options;
mod text;
mod values;

pub use self::decoder::CopyDecoder;
pub use self::encode::{encode_header, encode_rows};
pub use self::options::{CopyError, CopyFormat, CopyOptions, check_copy_to, copy_options};

/// Rows decoded before they are committed: large enough to amortize a WAL fsync, small
/// enough to bound memory.
const COPY_BATCH_ROWS: usize = 65_536;

/// What a COPY statement asks for.
#[derive(Debug, Clone)]
pub(crate) enum CopyRequest {
    /// `COPY table [(columns)] FROM STDIN`.
    In {
        table: ObjectName,
        columns: Vec<Ident>,
        options: CopyOptions,
    },
    /// `COPY table [(columns)] TO STDOUT` or `COPY (query) TO STDOUT`.
    Out { query: String, options: CopyOptions },
}

/// A COPY FROM STDIN in progress on a connection.
pub(crate) struct CopyIn {
    ingest: Ingest,
    schema: Arc<TableSchema>,
    decoder: CopyDecoder,
    written: u64,
}

fn sql_error(sqlstate: &'static str, message: impl Into<String>) -> PgError {
    PgError::new(sqlstate, message)
}

/// The COPY request of a statement, if it is one.
pub(crate) fn copy_request(
    stmt: &crate::session::Statement,
) -> Option<Result<CopyRequest, PgError>> {
    let crate::session::Statement::Query(eddy_query::Statement::Sql(DfStatement::Statement(s))) =
        stmt
    else {
        return None;
    };
    let SqlStatement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = s.as_ref()
    else {
        return None;
    };
    Some(request(source, *to, target, options, legacy_options))
}

fn request(
    source: &CopySource,
    to: bool,
    target: &CopyTarget,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<CopyRequest, PgError> {
    match (to, target) {
        (false, CopyTarget::Stdin) | (true, CopyTarget::Stdout) => {}
        (_, CopyTarget::File { .. } | CopyTarget::Program { .. }) => {
            return Err(sql_error(
                "42501",
                "COPY to or from a file or program is disabled: SQL clients may not reach the server's file system; use STDIN or STDOUT",
            ));
        }
        (true, _) => return Err(sql_error("42601", "COPY ... TO supports only STDOUT")),
        (false, _) => return Err(sql_error("42601", "COPY ... FROM supports only STDIN")),
    }
    let options = copy_options(options, legacy).map_err(|e| sql_error("22023", e.to_string()))?;
    if !to {
        let CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            return Err(sql_error(
                "42601",
                "COPY (query) FROM STDIN is not valid; name a table",
            ));
        };
        return Ok(CopyRequest::In {
            table: table_name.clone(),
            columns: columns.clone(),
            options,
        });
    }
    crate::copy::check_copy_to(&options).map_err(|e| sql_error("0A000", e.to_string()))?;
    let query = match source {
        CopySource::Query(q) => query_text(q),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("SELECT {cols} FROM {table_name}")
        }
    };
    Ok(CopyRequest::Out { query, options })
}

fn query_text(q: &Query) -> String {
    q.to_string()
}

/// Name of a table as the catalog stores it (unquoted identifiers fold to lower case).
fn table_name(name: &ObjectName) -> Result<String, PgError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(|i| {
            if i.quote_style.is_some() {
                i.value.clone()
            } else {
                i.value.to_lowercase()
            }
        })
        .collect();
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [s, t] if s == "public" => Ok(t.clone()),
        [d, s, t] if d == "eddy" && s == "public" => Ok(t.clone()),
        _ => Err(sql_error(
            "42P01",
            format!("relation \"{name}\" does not exist"),
        )),
    }
}

impl CopyIn {
    /// Starts a COPY FROM STDIN into an existing table; returns the state and the response
    /// that asks the client for data.
    pub(crate) fn start(
        ingest: &Ingest,
        table: &ObjectName,
        columns: &[Ident],
        options: CopyOptions,
    ) -> Result<(CopyIn, CopyResponse), PgError> {
        let name = table_name(table)?;
        let schema = ingest.catalog().get(&name).ok_or_else(|| {
            sql_error(
                "42P01",
                format!("relation \"{name}\" does not exist (COPY writes into an existing table; create it with CREATE TABLE or by writing line protocol)"),
            )
        })?;
        let arrow = schema.arrow_schema();
        let fields: Vec<FieldRef> = if columns.is_empty() {
            arrow.fields().iter().cloned().collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    let n = if c.quote_style.is_some() {
                        c.value.clone()
                    } else {
                        c.value.to_lowercase()
                    };
                    arrow
                        .field_with_name(&n)
                        .map(|f| Arc::new(f.clone()))
                        .map_err(|_| {
                            sql_error(
                                "42703",
                                format!("column \"{n}\" of relation \"{name}\" does not exist"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?
        };
        let ncols = fields.len();
        let format = match options.format {
            CopyFormat::Binary => 1,
            _ => 0,
        };
        let decoder =
            CopyDecoder::try_new(options, fields).map_err(|e| sql_error("0A000", e.to_string()))?;
        Ok((
            CopyIn {
                ingest: ingest.clone(),
                schema,
                decoder,
                written: 0,
            },
            CopyResponse::new(format, ncols, futures::stream::empty()),
        ))
    }

    /// Takes a chunk of data; commits full batches.
    pub(crate) async fn data(&mut self, data: &[u8]) -> Result<(), PgError> {
        self.decoder.push(data).map_err(|e| self.decode_error(e))?;
        while self.decoder.rows_buffered() >= COPY_BATCH_ROWS {
            let batch = self
                .decoder
                .take_batch()
                .map_err(|e| self.decode_error(e))?;
            self.write(batch).await?;
        }
        Ok(())
    }

    /// The end of the data: commits the rest; returns the rows written.
    pub(crate) async fn done(&mut self) -> Result<u64, PgError> {
        let rest = self.decoder.finish().map_err(|e| self.decode_error(e))?;
        self.write(rest).await?;
        Ok(self.written)
    }

    async fn write(&mut self, batch: Option<RecordBatch>) -> Result<(), PgError> {
        let Some(batch) = batch else {
            return Ok(());
        };
        let n = self
            .ingest
            .write_batch(&self.schema, batch)
            .await
            .map_err(|e| self.partial(PgError::from(e)))?;
        self.written += n;
        Ok(())
    }

    fn decode_error(&self, e: crate::copy::CopyError) -> PgError {
        self.partial(sql_error("22P02", e.to_string()))
    }

    /// Says how much of the copy was committed before an error: rows are committed in
    /// batches as they arrive, like line-protocol writes.
    fn partial(&self, mut e: PgError) -> PgError {
        if self.written > 0 {
            e.message = format!(
                "{} ({} rows before it were written)",
                e.message, self.written
            );
        }
        e
    }
}

/// Runs the query of a COPY TO STDOUT and streams its rows, one CopyData per row.
pub(crate) async fn copy_out(
    session: &QuerySession,
    query: &str,
    options: CopyOptions,
) -> Result<CopyResponse, PgError> {
    let mut stmts = crate::session::parse(query)?;
    if stmts.len() != 1 {
        return Err(sql_error("42601", "COPY takes one query"));
    }
    let prepared = session.prepare(stmts.remove(0)).await?;
    let Output::Rows { schema, stream } = session.execute(&prepared, None).await? else {
        return Err(sql_error(
            "42601",
            "COPY (query) needs a query that returns rows",
        ));
    };
    let ncols = schema.fields().len();
    let mut header = Vec::new();
    if options.header && matches!(options.format, CopyFormat::Csv) {
        encode_header(&schema, &options, &mut header);
    }
    let options = Arc::new(options);
    // pgwire's COPY tag counts CopyData messages, so the header travels with the first row
    // (a result without rows still sends it, and then reports one row).
    let header = Arc::new(parking_lot::Mutex::new(
        (!header.is_empty()).then_some(header),
    ));
    let leftover = header.clone();
    let rows = stream
        .map(move |rb| {
            let rows: Vec<PgWireResult<CopyData>> = match rb {
                Ok(rb) => (0..rb.num_rows())
                    .map(|i| {
                        let mut line = header.lock().take().unwrap_or_default();
                        encode_rows(&rb.slice(i, 1), &options, &mut line);
                        Ok(CopyData::new(line.into()))
                    })
                    .collect(),
                Err(e) => vec![Err(crate::wire::user_error(e.into()))],
            };
            futures::stream::iter(rows)
        })
        .flatten();
    let tail = futures::stream::once(async move { leftover.lock().take() })
        .filter_map(|h| async move { h.map(|h| Ok(CopyData::new(h.into()))) });
    Ok(CopyResponse::new(0, ncols, rows.chain(tail)))
}

/// Helpers shared by the unit tests of the format modules.
#[cfg(test)]
mod test_support {
    use std::sync::Arc;

    use datafusion::arrow::array::RecordBatch;
    use datafusion::arrow::datatypes::{DataType, Field, FieldRef};

    use super::{CopyDecoder, CopyError, CopyOptions};

    /// 2024-01-01 00:00:00 UTC in nanoseconds since the Unix epoch.
    pub(super) const NS_2024: i64 = 1_704_067_200_000_000_000;

    pub(super) fn field(name: &str, data_type: DataType) -> FieldRef {
        Arc::new(Field::new(name, data_type, true))
    }

    pub(super) fn decode_all(
        options: CopyOptions,
        fields: Vec<FieldRef>,
        data: &[u8],
        chunk: usize,
    ) -> RecordBatch {
        let mut decoder = CopyDecoder::try_new(options, fields).expect("supported types");
        for piece in data.chunks(chunk) {
            decoder.push(piece).expect("push");
        }
        decoder.finish().expect("finish").expect("rows")
    }

    pub(super) fn decode_err(
        options: CopyOptions,
        fields: Vec<FieldRef>,
        data: &[u8],
    ) -> CopyError {
        let mut decoder = CopyDecoder::try_new(options, fields).expect("supported types");
        match decoder.push(data) {
            Err(e) => e,
            Ok(()) => decoder.finish().expect_err("should fail"),
        }
    }
}
