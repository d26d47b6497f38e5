//! `FETCH`, `MOVE` and `CLOSE` on portals made by the extended protocol's Bind. PostgreSQL
//! keeps SQL cursors and protocol portals in one namespace, and drivers rely on it: asyncpg's
//! `Cursor.forward(n)` binds a named portal, then sends `MOVE FORWARD n portal` as a simple
//! query. A portal's rows are a forward-only stream of rows already encoded in the formats Bind
//! chose, so only forward moves are possible, and `FETCH` only from a portal in text format.

use std::any::Any;
use std::ops::DerefMut;
use std::sync::Arc;

use crate::cursor::command::{ALL, CursorCommand, Direction};
use crate::error::PgError;
use futures::StreamExt;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, MemPortalStore, PortalStore};
use pgwire::error::PgWireResult;

use crate::cancel;
use crate::wire::{PgConnection, PgStatement, user_error};

/// The protocol portal `name` of this connection, unless a SQL cursor of that name exists
/// (which `DECLARE` made, and which the session owns).
pub(super) fn find<S: PortalStore>(
    conn: &PgConnection,
    store: &S,
    name: &str,
) -> Option<Arc<Portal<PgStatement>>> {
    if conn.session.cursor_schema(name).is_some() {
        return None;
    }
    // The simple-query handler sees the store with a generic statement type; it is always
    // the store of this connection's extended-protocol statements.
    let store: &dyn Any = store;
    match store
        .downcast_ref::<MemPortalStore<PgStatement>>()?
        .get_portal(name)?
    {
        Entry::Value(p) => Some(p),
        Entry::Empty => None,
    }
}

/// Runs `FETCH` or `MOVE` on a protocol portal, starting it first if only Bind has run.
pub(super) async fn fetch(
    conn: &PgConnection,
    portal: &Portal<PgStatement>,
    command: &CursorCommand,
    interrupt: cancel::Interrupt,
) -> PgWireResult<Response> {
    let name = &portal.name;
    let take = match command.direction {
        Direction::Forward(n) => n,
        Direction::Relative(n) if n > 0 => n.unsigned_abs(),
        _ => {
            return Err(user_error(PgError::new(
                "55000",
                format!(
                    "portal \"{name}\" made by Bind can only move forward \
                     (NEXT, FORWARD n, FORWARD ALL, RELATIVE n with n > 0)"
                ),
            )));
        }
    };
    if !command.move_only && has_binary_column(&portal.result_column_format) {
        return Err(user_error(PgError::new(
            "0A000",
            format!(
                "FETCH from portal \"{name}\": Bind asked for binary results, which FETCH \
                 cannot return; use Execute, or MOVE"
            ),
        )));
    }
    if matches!(*portal.state().lock().await, PortalExecutionState::Initial) {
        if !conn.returns_rows(&portal.statement.statement) {
            return Err(user_error(PgError::new(
                "24000",
                format!("portal \"{name}\" does not return rows"),
            )));
        }
        match conn.run_portal(portal, interrupt).await? {
            Response::Query(rows) => portal.start(rows).await,
            _ => {
                return Err(user_error(PgError::new(
                    "24000",
                    format!("portal \"{name}\" does not return rows"),
                )));
            }
        }
    }
    let relative = matches!(command.direction, Direction::Relative(_));
    if command.move_only {
        let moved = skip(portal, take).await?;
        let count = if relative {
            u64::from(moved == take)
        } else {
            moved
        };
        return Ok(Response::Execution(
            Tag::new("MOVE").with_rows(usize::try_from(count).unwrap_or(usize::MAX)),
        ));
    }
    let rows = if relative {
        // RELATIVE n: skip n - 1 rows and return the one after, if there is one.
        let skipped = skip(portal, take - 1).await?;
        if skipped < take - 1 {
            QueryResponse::new(Arc::new(Vec::new()), futures::stream::empty())
        } else {
            portal.fetch(1).await?.response
        }
    } else {
        // pgwire reads "0 rows" as "every row".
        let n = if take == ALL {
            0
        } else {
            usize::try_from(take).unwrap_or(0)
        };
        portal.fetch(n).await?.response
    };
    // A finished portal answers with no columns; PostgreSQL still describes them.
    let mut rows = if rows.row_schema().is_empty() {
        let fields = conn.parser.get_result_schema(
            &portal.statement.statement,
            Some(&portal.result_column_format),
        )?;
        QueryResponse::new(Arc::new(fields), futures::stream::empty())
    } else {
        rows
    };
    rows.set_command_tag("FETCH");
    Ok(Response::Query(rows))
}

/// Reads up to `n` rows of a started portal without keeping them; returns how many it read.
async fn skip(portal: &Portal<PgStatement>, n: u64) -> PgWireResult<u64> {
    let state = portal.state();
    let mut state = state.lock().await;
    let PortalExecutionState::Suspended(response) = state.deref_mut() else {
        return Ok(0);
    };
    let rows = response.data_rows();
    let mut moved = 0;
    while moved < n {
        match rows.next().await {
            Some(row) => {
                row?;
                moved += 1;
            }
            None => {
                *state = PortalExecutionState::Finished;
                break;
            }
        }
    }
    Ok(moved)
}

fn has_binary_column(format: &Format) -> bool {
    match format {
        Format::UnifiedText => false,
        Format::UnifiedBinary => true,
        Format::Individual(codes) => codes.iter().any(|&c| c != 0),
    }
}
