//! Plain Arrow Flight, for clients that speak Flight without Flight SQL (pyarrow's
//! `FlightClient`, arrow-rs's `FlightClient`): a ticket or a command descriptor may be SQL
//! text, a path descriptor names a table (`[table]`, `[schema, table]` or
//! `[catalog, schema, table]`), and `ListFlights` lists every table with its schema, its path
//! and a ticket that reads it whole. `DoPut` to a path writes the table (see `ingest`).

use arrow_flight::{FlightDescriptor, FlightInfo};
use eddy_query::QueryEngine;
use tonic::Status;

use super::ingest::path_table;
use super::metadata;
use super::service::flight_info;

/// SQL that reads a whole table.
fn select_all(table: &str) -> String {
    format!("SELECT * FROM \"{}\"", table.replace('"', "\"\""))
}

/// The `FlightInfo` of the table a path descriptor names: its schema, and a ticket (SQL text)
/// that reads all its rows.
pub(super) async fn path_info(
    engine: &QueryEngine,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    let table = path_table(&descriptor.path)?;
    table_info(engine, &table, descriptor).await
}

/// The `FlightInfo` of table `table`.
async fn table_info(
    engine: &QueryEngine,
    table: &str,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    let schema = metadata::table_schema(engine, table)
        .await
        .ok_or_else(|| Status::not_found(format!("table \"{table}\" does not exist")))?;
    flight_info(&schema, descriptor, select_all(table).into_bytes())
}

/// The Arrow schema of the table a path descriptor names.
pub(super) async fn path_schema(
    engine: &QueryEngine,
    descriptor: &FlightDescriptor,
) -> Result<datafusion::arrow::datatypes::SchemaRef, Status> {
    let table = path_table(&descriptor.path)?;
    metadata::table_schema(engine, &table)
        .await
        .ok_or_else(|| Status::not_found(format!("table \"{table}\" does not exist")))
}

/// One `FlightInfo` per table, view and system table, by name. The criteria are ignored.
pub(super) async fn list_flights(engine: &QueryEngine) -> Vec<Result<FlightInfo, Status>> {
    let mut tables = metadata::listed(engine);
    tables.sort();
    let mut out = Vec::with_capacity(tables.len());
    for (name, _) in tables {
        let descriptor = FlightDescriptor::new_path(vec![name.clone()]);
        match table_info(engine, &name, descriptor).await {
            Ok(info) => out.push(Ok(info)),
            // Dropped while listing.
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => out.push(Err(e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_quoted() {
        assert_eq!(select_all("cpu"), "SELECT * FROM \"cpu\"");
        assert_eq!(select_all("a\"b"), "SELECT * FROM \"a\"\"b\"");
    }
}
