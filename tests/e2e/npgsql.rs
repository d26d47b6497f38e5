//! The type loading Npgsql (.NET, used by Power BI) runs on every new connection, verbatim
//! from its PostgresDatabaseInfo (range and multirange support on, as for a PostgreSQL 14+
//! server, table composites off): one simple query of four statements. Npgsql refuses to
//! open the connection if any of them fails, and maps result columns through the types it
//! loaded, so the answers are checked as Npgsql reads them. No .NET runtime is available to
//! run Npgsql itself here (see docs/clients.md).

use std::collections::HashMap;

use tokio_postgres::SimpleQueryMessage;

use crate::common::{Server, data_dir};

/// Npgsql's batch, as it builds it for this server.
const LOAD_TYPES: &str = include_str!("npgsql_types.sql");

/// The rows of each statement's result, in order.
fn results(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Vec<Option<String>>>> {
    let mut out = Vec::new();
    let mut rows = Vec::new();
    for m in msgs {
        match m {
            SimpleQueryMessage::Row(r) => {
                rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            SimpleQueryMessage::CommandComplete(_) => out.push(std::mem::take(&mut rows)),
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npgsql_type_loading_succeeds_with_the_types_it_needs() {
    let dir = data_dir();
    let srv = Server::start(dir.path());
    // A table: its row type is a table composite, which Npgsql does not load by default.
    srv.psql("CREATE TABLE npg (time TIMESTAMP NOT NULL, host TEXT, v DOUBLE PRECISION)");
    let c = srv.pg().await;
    let msgs = c
        .simple_query(LOAD_TYPES)
        .await
        .unwrap_or_else(|e| panic!("Npgsql's type loading failed: {e:?}"));
    let results = results(&msgs);
    assert_eq!(results.len(), 4, "one result per statement");

    let version = results[0][0][0].as_deref().expect("version");
    assert!(version.starts_with("PostgreSQL 16"), "{version}");

    // (nspname, oid, typname, typtype, typnotnull, elemtypoid), as Npgsql parses them.
    let mut by_oid: HashMap<u32, (String, String)> = HashMap::new();
    let mut last_rank = 0;
    for row in &results[1] {
        let text = |i: usize| row[i].clone().unwrap_or_else(|| panic!("NULL in {row:?}"));
        let oid: u32 = text(1).parse().expect("oid is an unsigned number");
        let (name, typtype) = (text(2), text(3));
        assert!(
            matches!(text(4).as_str(), "t" | "f"),
            "typnotnull as Npgsql reads it: {row:?}"
        );
        let rank = match typtype.as_str() {
            "b" | "e" | "p" => 0,
            "r" => 1,
            "m" => 2,
            "c" => 3,
            "d" => 4,
            "a" => 5,
            other => panic!("typtype {other} Npgsql does not know: {row:?}"),
        };
        assert!(rank >= last_rank, "rows out of Npgsql's order at {row:?}");
        last_rank = rank;
        assert_ne!(typtype, "c", "a table's row type was loaded: {row:?}");
        if typtype == "p" {
            assert!(matches!(name.as_str(), "record" | "void"), "{row:?}");
        }
        if matches!(typtype.as_str(), "a" | "r" | "m") {
            // Npgsql resolves the element (or subtype) among the rows it has read already.
            let elem: u32 = row[5]
                .as_deref()
                .unwrap_or_else(|| panic!("no element type: {row:?}"))
                .parse()
                .expect("elemtypoid is a number");
            assert!(
                by_oid.contains_key(&elem),
                "element {elem} not loaded before {row:?}"
            );
        }
        assert!(
            by_oid.insert(oid, (name.clone(), typtype)).is_none(),
            "oid {oid} twice"
        );
    }
    for (oid, name, typtype) in [
        (16, "bool", "b"),
        (17, "bytea", "b"),
        (20, "int8", "b"),
        (23, "int4", "b"),
        (25, "text", "b"),
        (701, "float8", "b"),
        (1043, "varchar", "b"),
        (1082, "date", "b"),
        (1114, "timestamp", "b"),
        (1184, "timestamptz", "b"),
        (1700, "numeric", "b"),
        (2249, "record", "p"),
        (2278, "void", "p"),
        (1007, "_int4", "a"),
        (1009, "_text", "a"),
        (1022, "_float8", "a"),
        (1115, "_timestamp", "a"),
    ] {
        assert_eq!(
            by_oid.get(&oid),
            Some(&(name.to_string(), typtype.to_string())),
            "type {oid}"
        );
    }
    assert!(
        results[2].is_empty(),
        "free-standing composites: {:?}",
        results[2]
    );
    assert!(results[3].is_empty(), "enum labels: {:?}", results[3]);
}
