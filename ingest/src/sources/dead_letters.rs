//! `eddy_dead_letters`: messages a source could not (wholly) turn into rows, kept as rows of an
//! ordinary table, written in the same atomic commit as the batch they came with, so a dead
//! letter is recorded exactly once too. It can be queried, given a retention, or dropped.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use eddy_storage::{ColumnDef, ColumnKind, FieldType, StorageError, WritePart};

use crate::sources::decode::Message;
use crate::{Ingest, IngestError};

/// The table dead letters go to.
pub const DEAD_LETTERS_TABLE: &str = "eddy_dead_letters";

/// One dead letter.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The source's name.
    pub source: &'a str,
    /// The message.
    pub message: &'a Message,
    /// Why it was refused.
    pub error: &'a str,
}

/// The rows of `letters` as a write part; `received_ns` is the batch's arrival time, made
/// unique per letter so that no two share a key.
pub fn part(
    ingest: &Ingest,
    letters: &[DeadLetter<'_>],
    received_ns: i64,
    payload_bytes_max: usize,
) -> Result<WritePart, IngestError> {
    let schema = ensure_table(ingest)?;
    part_of(schema, letters, received_ns, payload_bytes_max)
}

/// Creates `eddy_dead_letters` if it does not exist (when the first source is created, so it
/// can be queried before anything went wrong).
pub fn ensure_table(ingest: &Ingest) -> Result<Arc<eddy_storage::TableSchema>, IngestError> {
    let columns = [
        ColumnDef::new("time", ColumnKind::Time),
        ColumnDef::new("source", ColumnKind::Tag),
        ColumnDef::new("partition", ColumnKind::Tag),
        ColumnDef::new("offset", ColumnKind::Field(FieldType::Integer)),
        ColumnDef::new("error", ColumnKind::Field(FieldType::String)),
        ColumnDef::new("payload", ColumnKind::Field(FieldType::String)),
        ColumnDef::new("payload_bytes", ColumnKind::Field(FieldType::Integer)),
    ];
    ingest
        .catalog()
        .ensure_columns(DEAD_LETTERS_TABLE, &columns)
        .map_err(|e| IngestError::storage(DEAD_LETTERS_TABLE, e))
}

fn part_of(
    schema: Arc<eddy_storage::TableSchema>,
    letters: &[DeadLetter<'_>],
    received_ns: i64,
    payload_bytes_max: usize,
) -> Result<WritePart, IngestError> {
    let time_name = schema.time_column().to_string();
    let arrow = Arc::new(Schema::new(vec![
        Field::new(&time_name, eddy_storage::schema::time_data_type(), false),
        Field::new("source", DataType::Utf8, true),
        Field::new("partition", DataType::Utf8, true),
        Field::new("offset", DataType::Int64, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("payload", DataType::Utf8, true),
        Field::new("payload_bytes", DataType::Int64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from_iter_values(
            (0..letters.len() as i64).map(|i| received_ns.saturating_add(i)),
        )),
        Arc::new(StringArray::from_iter_values(
            letters.iter().map(|l| l.source),
        )),
        Arc::new(StringArray::from_iter_values(
            letters.iter().map(|l| l.message.partition.as_str()),
        )),
        Arc::new(Int64Array::from_iter(
            letters.iter().map(|l| l.message.offset),
        )),
        Arc::new(StringArray::from_iter_values(
            letters.iter().map(|l| l.error),
        )),
        Arc::new(StringArray::from_iter_values(
            letters
                .iter()
                .map(|l| cut(&l.message.payload, payload_bytes_max)),
        )),
        Arc::new(Int64Array::from_iter_values(
            letters.iter().map(|l| l.message.payload.len() as i64),
        )),
    ];
    let batch = RecordBatch::try_new(arrow, columns)
        .map_err(|e| IngestError::storage(DEAD_LETTERS_TABLE, StorageError::from(e)))?;
    Ok(WritePart { schema, batch })
}

/// The payload as text, cut to at most `max` bytes at a character boundary (invalid UTF-8
/// replaced).
fn cut(payload: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(max)]).into_owned();
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn payloads_are_cut_at_character_boundaries() {
        assert_eq!(cut(b"abcdef", 3), "abc");
        assert_eq!(cut("é".repeat(4).as_bytes(), 3), "é");
        assert_eq!(cut(&[0xff, b'a'], 10), "\u{fffd}a");
    }
}
