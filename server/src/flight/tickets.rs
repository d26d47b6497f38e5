//! What the bytes of a ticket or a descriptor's command mean.
//!
//! A Flight SQL client sends protobuf `Any` messages naming a Flight SQL command; a plain
//! Flight client (pyarrow's `FlightClient`, `flight.Ticket(b"SELECT 1")`) sends SQL text.
//! [`classify`] tells them apart before arrow-flight's dispatcher sees them, so an `Any` that
//! names a Flight SQL command but does not decode is the client's error (`InvalidArgument`),
//! and SQL text is never mistaken for a command.
//!
//! The statement tickets this server hands out ([`StatementTicket`]) carry everything needed
//! to answer them: the SQL of a query (planned again when fetched, so any connection and any
//! server restart can fetch it), or the outcome of a statement that already ran. They are not
//! secret: whoever fetches one runs it with their own credentials.

use arrow_flight::sql::{Any, Command};
use prost::Message as _;
use tonic::Status;

use super::endpoints::Slice;

/// The prefix of Flight SQL command type URLs.
const FLIGHT_SQL_TYPE_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

/// The first bytes of every statement handle this server makes (format version 1).
const MAGIC: &[u8] = b"EDDY\x01";

/// What arrived in a ticket or a command descriptor.
#[derive(Debug)]
pub(super) enum Incoming {
    /// A Flight SQL command, decoded.
    FlightSql(Command),
    /// SQL text (plain Flight).
    Sql(String),
}

/// Decodes `bytes` as a Flight SQL command or as SQL text; `what` names them in errors.
pub(super) fn classify(bytes: &[u8], what: &str) -> Result<Incoming, Status> {
    if let Ok(any) = Any::decode(bytes)
        && any.type_url.starts_with(FLIGHT_SQL_TYPE_PREFIX)
    {
        let type_url = any.type_url.clone();
        return Command::try_from(any)
            .map(Incoming::FlightSql)
            .map_err(|e| {
                Status::invalid_argument(format!("{what}: cannot decode {type_url}: {e}"))
            });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        Status::invalid_argument(format!(
            "{what} is neither a Flight SQL command nor UTF-8 SQL text"
        ))
    })?;
    if text.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "{what} is empty: send a Flight SQL command or SQL text"
        )));
    }
    Ok(Incoming::Sql(text.to_string()))
}

/// What a `TicketStatementQuery` handle made by this server asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StatementTicket {
    /// Run this query and stream its rows.
    Query(String),
    /// Run this query on the rows of one time slice of the table it reads (one of several
    /// endpoints; see `endpoints`).
    Slice(String, Slice),
    /// A statement that already ran: `Some(n)` answers one row with the rows it inserted,
    /// `None` answers no rows.
    Done(Option<u64>),
}

impl StatementTicket {
    /// The handle's bytes.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        match self {
            StatementTicket::Query(sql) => {
                out.push(b'Q');
                out.extend_from_slice(sql.as_bytes());
            }
            StatementTicket::Slice(sql, slice) => {
                out.push(b'S');
                out.push(u8::from(slice.lo.is_some()) | (u8::from(slice.hi.is_some()) << 1));
                out.extend_from_slice(&slice.lo.unwrap_or(0).to_le_bytes());
                out.extend_from_slice(&slice.hi.unwrap_or(0).to_le_bytes());
                out.extend_from_slice(sql.as_bytes());
            }
            StatementTicket::Done(None) => out.push(b'D'),
            StatementTicket::Done(Some(n)) => {
                out.push(b'I');
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        out
    }

    /// The ticket of a handle, or `InvalidArgument` for a handle this server did not make.
    pub(super) fn decode(handle: &[u8]) -> Result<StatementTicket, Status> {
        let invalid = || {
            Status::invalid_argument(
                "the statement handle was not made by this server (get a ticket from \
                 GetFlightInfo first)",
            )
        };
        let rest = handle.strip_prefix(MAGIC).ok_or_else(invalid)?;
        match rest.split_first() {
            Some((b'Q', sql)) => std::str::from_utf8(sql)
                .map(|s| StatementTicket::Query(s.to_string()))
                .map_err(|_| invalid()),
            Some((b'S', rest)) => {
                let (&[flags], rest) = rest.split_first_chunk::<1>().ok_or_else(invalid)?;
                let (lo, rest) = rest.split_first_chunk::<8>().ok_or_else(invalid)?;
                let (hi, sql) = rest.split_first_chunk::<8>().ok_or_else(invalid)?;
                if flags > 3 {
                    return Err(invalid());
                }
                let slice = Slice {
                    lo: (flags & 1 != 0).then(|| i64::from_le_bytes(*lo)),
                    hi: (flags & 2 != 0).then(|| i64::from_le_bytes(*hi)),
                };
                let sql = std::str::from_utf8(sql).map_err(|_| invalid())?;
                Ok(StatementTicket::Slice(sql.to_string(), slice))
            }
            Some((b'D', [])) => Ok(StatementTicket::Done(None)),
            Some((b'I', n)) => <[u8; 8]>::try_from(n)
                .map(|n| StatementTicket::Done(Some(u64::from_le_bytes(n))))
                .map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};

    use super::*;

    #[test]
    fn statement_tickets_round_trip_and_foreign_handles_are_refused() {
        for t in [
            StatementTicket::Query("SELECT 1".into()),
            StatementTicket::Done(None),
            StatementTicket::Done(Some(42)),
            StatementTicket::Slice(
                "SELECT * FROM cpu".into(),
                Slice {
                    lo: Some(-5),
                    hi: None,
                },
            ),
            StatementTicket::Slice(
                "SELECT 1".into(),
                Slice {
                    lo: None,
                    hi: Some(i64::MAX),
                },
            ),
        ] {
            assert_eq!(StatementTicket::decode(&t.encode()).expect("decodes"), t);
        }
        assert!(StatementTicket::decode(b"SELECT 1").is_err());
        assert!(StatementTicket::decode(b"EDDY\x01I\x01").is_err());
        assert!(StatementTicket::decode(b"EDDY\x01X").is_err());
        assert!(StatementTicket::decode(b"EDDY\x01S\x01abc").is_err());
    }

    #[test]
    fn commands_sql_text_and_garbage_are_told_apart() {
        let cmd = CommandStatementQuery {
            query: "SELECT 1".into(),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec();
        assert!(matches!(
            classify(&cmd, "ticket"),
            Ok(Incoming::FlightSql(Command::CommandStatementQuery(_)))
        ));
        assert!(matches!(
            classify(b"SELECT 1", "ticket"),
            Ok(Incoming::Sql(s)) if s == "SELECT 1"
        ));
        // A Flight SQL type URL with a value that does not decode.
        let garbage = Any {
            type_url: format!("{FLIGHT_SQL_TYPE_PREFIX}CommandStatementQuery"),
            value: vec![0xff, 0xff, 0xff].into(),
        }
        .encode_to_vec();
        let e = classify(&garbage, "ticket").expect_err("garbage");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(classify(&[0xff, 0xfe, 0x80], "ticket").is_err());
        assert!(classify(b"  ", "ticket").is_err());
    }
}
