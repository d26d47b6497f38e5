//! The gRPC status of each query error kind: the one place Flight maps Eddy's neutral error
//! kinds to its own codes, as the Postgres front end maps them to SQLSTATEs and HTTP to
//! statuses. The message is the error's own text, which names the offending object.

use eddy_query::{ErrorKind, QueryError};
use tonic::{Code, Status};

/// The status a client gets for a query error.
pub(super) fn query_status(e: &QueryError) -> Status {
    Status::new(code(e.kind), e.message.clone())
}

/// The gRPC code of an error kind: the statement's fault is `InvalidArgument` (or `NotFound`,
/// `AlreadyExists`), a limit `ResourceExhausted`, the server's state `Unavailable`, a bug or
/// damaged data `Internal`.
pub(super) fn code(kind: ErrorKind) -> Code {
    use ErrorKind as K;
    match kind {
        K::Syntax
        | K::ColumnNotFound
        | K::FunctionNotFound
        | K::AmbiguousColumn
        | K::DuplicateColumn
        | K::TypeMismatch
        | K::NullValue
        | K::InvalidDefinition
        | K::BeyondRetention
        | K::InvalidParameter
        | K::InvalidData
        | K::InvalidTextRepresentation
        | K::DivisionByZero
        | K::InvalidEscapeSequence
        | K::NumericOutOfRange
        | K::DatetimeOutOfRange
        | K::Grouping
        | K::Plan
        | K::TooComplex => Code::InvalidArgument,
        K::TableNotFound | K::SchemaNotFound | K::ObjectNotFound => Code::NotFound,
        K::AlreadyExists => Code::AlreadyExists,
        K::HasDependents => Code::FailedPrecondition,
        K::PermissionDenied => Code::PermissionDenied,
        K::Unsupported => Code::Unimplemented,
        K::LimitExceeded | K::ResourcesExhausted => Code::ResourceExhausted,
        K::Cancelled => Code::Cancelled,
        K::ShuttingDown | K::Io | K::DiskFull => Code::Unavailable,
        K::Corrupt | K::Internal => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_faults_are_the_clients_and_server_states_are_unavailable() {
        assert_eq!(code(ErrorKind::Syntax), Code::InvalidArgument);
        assert_eq!(code(ErrorKind::TableNotFound), Code::NotFound);
        assert_eq!(code(ErrorKind::AlreadyExists), Code::AlreadyExists);
        assert_eq!(code(ErrorKind::Unsupported), Code::Unimplemented);
        assert_eq!(code(ErrorKind::ResourcesExhausted), Code::ResourceExhausted);
        assert_eq!(code(ErrorKind::DiskFull), Code::Unavailable);
        assert_eq!(code(ErrorKind::Internal), Code::Internal);
        let s = query_status(&QueryError::new(
            ErrorKind::TableNotFound,
            "table \"x\" not found",
        ));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "table \"x\" not found");
    }
}
