//! The errors of the formatting functions, with PostgreSQL's messages and a kind each front end
//! maps to its own codes. They are carried as [`QueryError`]s inside `DataFusionError::External`,
//! so the message is never reclassified by its wording (an input value in a message could read
//! like anything).

use datafusion::common::DataFusionError;

use crate::error::{ErrorKind, QueryError};

fn tagged(kind: ErrorKind, message: String) -> DataFusionError {
    DataFusionError::External(Box::new(QueryError::new(kind, message)))
}

/// Input that does not match its template, or a template pattern that does not apply to the
/// value (PostgreSQL's 22007 and 22P02; Eddy has no finer kind than invalid data).
pub(crate) fn invalid(message: impl Into<String>) -> DataFusionError {
    tagged(ErrorKind::InvalidData, message.into())
}

/// A date or time field outside its range (22008).
pub(crate) fn datetime_out_of_range(message: impl Into<String>) -> DataFusionError {
    tagged(ErrorKind::DatetimeOutOfRange, message.into())
}

/// PostgreSQL's message for a field out of range, naming the whole input.
pub(crate) fn field_out_of_range(input: &str) -> DataFusionError {
    datetime_out_of_range(format!("date/time field value out of range: \"{input}\""))
}

/// A number that does not fit (22003).
pub(crate) fn numeric_out_of_range(message: impl Into<String>) -> DataFusionError {
    tagged(ErrorKind::NumericOutOfRange, message.into())
}

/// A number template that breaks the rules for combining its patterns (42601).
pub(crate) fn template_syntax(message: impl Into<String>) -> DataFusionError {
    tagged(ErrorKind::Syntax, message.into())
}

/// A pattern PostgreSQL does not support in this direction (0A000).
pub(crate) fn unsupported(message: impl Into<String>) -> DataFusionError {
    tagged(ErrorKind::Unsupported, message.into())
}

/// A state the code does not expect, such as an argument of a type the signature excludes.
pub(crate) fn internal(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Internal(message.into())
}
