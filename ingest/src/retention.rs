//! Retention on the line-protocol path: rows older than what a table keeps are rejected line
//! by line (the rest of the request is written), where a bulk write is refused whole by the
//! storage engine.

use datafusion::arrow::array::{Array, BooleanArray, TimestampNanosecondArray};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use eddy_storage::{Db, TableSchema};

use crate::lineproto::LineError;

/// Removes the rows older than the table's retention, reporting their lines in `errors`;
/// returns the rest of the batch and the lines of its rows.
pub(crate) fn drop_expired(
    db: &Db,
    schema: &TableSchema,
    batch: RecordBatch,
    lines: Vec<usize>,
    errors: &mut Vec<LineError>,
) -> Result<(RecordBatch, Vec<usize>), ArrowError> {
    let floor = db.retention_floor(schema);
    if floor == i64::MIN {
        return Ok((batch, lines));
    }
    // By name: a line-protocol batch puts time first whatever the table's column order.
    let time = batch.schema().index_of(schema.time_column())?;
    let Some(times) = batch
        .column(time)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
    else {
        return Err(ArrowError::SchemaError(format!(
            "time column \"{}\" of table \"{}\" is not a nanosecond timestamp",
            schema.time_column(),
            schema.name()
        )));
    };
    if times.values().iter().all(|&t| t >= floor) {
        return Ok((batch, lines));
    }
    let keep: BooleanArray = times.values().iter().map(|&t| Some(t >= floor)).collect();
    let retention = schema
        .def()
        .retention_ns
        .or_else(|| {
            db.catalog()
                .get(schema.name())
                .and_then(|t| t.def().retention_ns)
        })
        .unwrap_or_default();
    let message = format!(
        "table \"{}\" keeps {}: rows before {} are rejected",
        schema.name(),
        eddy_storage::time::describe_span(retention),
        eddy_storage::time::rfc3339(floor)
    );
    let mut kept_lines = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        if keep.value(i) {
            kept_lines.push(line);
        } else {
            errors.push(LineError {
                line,
                message: message.clone(),
            });
        }
    }
    let batch = datafusion::arrow::compute::filter_record_batch(&batch, &keep)?;
    Ok((batch, kept_lines))
}
