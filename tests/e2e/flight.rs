//! Arrow Flight SQL with arrow-rs's own client over a real gRPC channel: queries answered as
//! exact batches with one endpoint, a large result streamed, a client that goes away (its
//! query stops), prepared statements with parameters, updates (DDL, INSERT) with their
//! counts, every metadata command checked against the spec's schema, bulk ingest (create,
//! append, type errors naming the column and both types) read back over the Postgres
//! protocol, plain Flight (SQL tickets, paths, ListFlights, GetSchema), authentication, the
//! calls Grafana's Flight SQL data source makes, and malformed input.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetPrimaryKeys, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandStatementIngest, SqlInfo, TableDefinitionOptions,
    TableExistsOption, TableNotExistOption,
};
use arrow_flight::{Criteria, FlightData, FlightDescriptor, FlightInfo, IpcMessage, Ticket};
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, DictionaryArray, Float64Array, Int32Array, Int64Array,
    StringArray, TimestampMicrosecondArray, TimestampNanosecondArray, UInt32Array, UnionArray,
};
use datafusion::arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::{StreamExt, TryStreamExt};
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{Server, data_dir, free_port, refused_with};

type Client = FlightSqlServiceClient<Channel>;

/// Line protocol for a `weather` table: two stations, two hours.
const WEATHER: &str = concat!(
    "weather,station=oslo temp=-3.5,rain=1i,ok=true 1704067200000000000\n",
    "weather,station=bergen temp=4.5,rain=12i,ok=false 1704070800000000000\n",
);

/// 2024-01-01T00:00:00Z in nanoseconds.
const T0_NS: i64 = 1_704_067_200_000_000_000;

/// A Flight SQL client of `s`, without credentials.
async fn connect(s: &Server) -> Client {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", s.flight))
        .expect("a URI")
        .connect()
        .await
        .expect("connect to Flight SQL");
    FlightSqlServiceClient::new(channel)
}

/// The batches of the one endpoint of `info`.
async fn fetch(c: &mut Client, info: &FlightInfo) -> Vec<RecordBatch> {
    assert_eq!(info.endpoint.len(), 1, "one endpoint: {info:?}");
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    c.do_get(ticket)
        .await
        .expect("DoGet")
        .try_collect()
        .await
        .expect("the batches")
}

/// Runs a query and returns its batches.
async fn query(c: &mut Client, sql: &str) -> Vec<RecordBatch> {
    let info = c
        .execute(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    fetch(c, &info).await
}

/// Each row as its values displayed by arrow-rs (a null as an empty string).
fn rows_of(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for b in batches {
        let columns: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for i in 0..b.num_rows() {
            rows.push(columns.iter().map(|c| c.value(i).to_string()).collect());
        }
    }
    rows
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|v| v.to_string()).collect())
        .collect()
}

/// The gRPC status of a client error.
fn status(e: FlightError) -> tonic::Status {
    match e {
        FlightError::Tonic(s) => *s,
        other => panic!("not a gRPC status: {other}"),
    }
}

/// Field names and types of a schema.
fn columns(schema: &Schema) -> Vec<(String, DataType)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect()
}

fn named(cols: &[(&str, DataType)]) -> Vec<(String, DataType)> {
    cols.iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect()
}

/// The batches of a metadata command, checked to carry the schema its `FlightInfo` announced.
async fn metadata(c: &mut Client, info: FlightInfo) -> RecordBatch {
    let announced = info
        .clone()
        .try_decode_schema()
        .expect("the announced schema");
    let batches = fetch(c, &info).await;
    // An empty answer may come as the schema alone (arrow-flight's encoder sends no empty
    // batch).
    if batches.is_empty() {
        return RecordBatch::new_empty(Arc::new(announced));
    }
    assert_eq!(batches.len(), 1, "one batch answering {announced:?}");
    let batch = batches.into_iter().next().expect("a batch");
    assert_eq!(
        batch.schema().as_ref(),
        &announced,
        "the schema matches FlightInfo's"
    );
    batch
}

fn string_column(batch: &RecordBatch, name: &str) -> Vec<String> {
    let column = batch.column_by_name(name).expect(name);
    let values = column
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("a string column");
    values
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect()
}

/// The path of a `FlightInfo`'s descriptor.
fn path_of(info: &FlightInfo) -> Vec<String> {
    info.flight_descriptor
        .as_ref()
        .map(|d| d.path.clone())
        .unwrap_or_default()
}

/// A protobuf length-delimited field (wire type 2).
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    let mut len = bytes.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
    out
}

/// A protobuf `Any` of `type_url` holding `value`, encoded by hand (as a client may send it).
fn any(type_url: &str, value: &[u8]) -> Vec<u8> {
    let mut out = field(1, type_url.as_bytes());
    out.extend(field(2, value));
    out
}

/// `record_count` of an encoded `DoPutUpdateResult` (field 1, a varint).
fn record_count(app_metadata: &[u8]) -> i64 {
    assert_eq!(app_metadata.first(), Some(&0x08), "{app_metadata:?}");
    let mut n: u64 = 0;
    for (i, b) in app_metadata[1..].iter().enumerate() {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    n as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_answer_exact_batches_with_one_endpoint() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let (st, body) = s.write_lp(WEATHER).await;
    assert_eq!(st, 204, "{body}");
    let mut c = connect(&s).await;

    let sql = "SELECT station, time, temp, rain, ok FROM weather ORDER BY time";
    let info = c
        .execute(sql.to_string(), None)
        .await
        .expect("GetFlightInfo");
    let announced = info.clone().try_decode_schema().expect("a schema");
    assert_eq!(
        columns(&announced),
        named(&[
            ("station", DataType::Utf8),
            ("time", DataType::Timestamp(TimeUnit::Nanosecond, None)),
            ("temp", DataType::Float64),
            ("rain", DataType::Int64),
            ("ok", DataType::Boolean),
        ])
    );
    let batches = fetch(&mut c, &info).await;
    assert_eq!(columns(&batches[0].schema()), columns(&announced));
    assert_eq!(
        rows_of(&batches),
        strings(&[
            &["oslo", "2024-01-01T00:00:00", "-3.5", "1", "true"],
            &["bergen", "2024-01-01T01:00:00", "4.5", "12", "false"],
        ])
    );
    // The ticket can be fetched again, from another connection.
    let mut other = connect(&s).await;
    assert_eq!(rows_of(&fetch(&mut other, &info).await).len(), 2);

    // Values computed in SQL, and an empty result with its schema.
    let batches = query(&mut c, "SELECT 1 + 1 AS two, 'a' || 'b' AS ab").await;
    assert_eq!(rows_of(&batches), strings(&[&["2", "ab"]]));
    let info = c
        .execute("SELECT station FROM weather WHERE temp > 100".into(), None)
        .await
        .expect("GetFlightInfo");
    let batches = fetch(&mut c, &info).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);

    // Errors carry the kind as a gRPC code and a message naming the object.
    let e = status(
        c.execute("SELECT nope FROM weather".into(), None)
            .await
            .expect_err("no such column"),
    );
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("nope"), "{e}");
    let e = status(
        c.execute("SELECT * FROM missing".into(), None)
            .await
            .expect_err("no such table"),
    );
    assert_eq!(e.code(), Code::NotFound, "{e}");
    assert!(e.message().contains("missing"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_streams_in_many_messages() {
    const ROWS: i64 = 2_000_000;
    let dir = data_dir();
    let s = Server::start(dir.path());
    let mut c = connect(&s).await;
    let info = c
        .execute(
            format!("SELECT x FROM generate_series(1, {ROWS}) AS t(x)"),
            None,
        )
        .await
        .expect("GetFlightInfo");
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let mut stream = c.do_get(ticket).await.expect("DoGet");
    let (mut rows, mut sum, mut batches) = (0i64, 0i64, 0usize);
    while let Some(batch) = stream.next().await {
        let batch = batch.expect("a batch");
        let x = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("bigint");
        rows += x.len() as i64;
        sum += x.iter().map(|v| v.unwrap_or(0)).sum::<i64>();
        batches += 1;
    }
    assert_eq!(rows, ROWS);
    assert_eq!(sum, ROWS * (ROWS + 1) / 2);
    assert!(batches > 10, "{batches} batches: the result streams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_its_query() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let pg = s.pg().await;
    // Ten billion rows: it would run for hours if nothing stopped it.
    let huge = "SELECT a.x, b.y FROM generate_series(1, 100000) AS a(x) \
                CROSS JOIN generate_series(1, 100000) AS b(y)";
    let listed = "SELECT query FROM eddy_queries WHERE protocol = 'flight'";
    let mut c = connect(&s).await;
    let info = c
        .execute(huge.to_string(), None)
        .await
        .expect("GetFlightInfo");
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let mut stream = c.do_get(ticket).await.expect("DoGet");
    let mut received = 0usize;
    while received < 100_000 {
        let batch = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("rows within 60 s")
            .expect("the stream goes on")
            .expect("a batch");
        received += batch.num_rows();
    }
    // Listed while its rows stream.
    let rows = pg.query(listed, &[]).await.expect("eddy_queries");
    let queries: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(queries, [huge]);

    drop(stream);
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pg
        .query(listed, &[])
        .await
        .expect("eddy_queries")
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the query is still listed 10 s after its client went away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = connect(&s).await;
    assert_eq!(
        rows_of(&query(&mut c, "SELECT 1 AS one").await),
        strings(&[&["1"]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_prepared_statements_with_parameters() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let mut c = connect(&s).await;

    // DDL reports 0 rows, INSERT the rows it wrote.
    let n = c
        .execute_update(
            "CREATE TABLE weather (ts TIMESTAMP NOT NULL, station TEXT, \
             temp DOUBLE PRECISION, PRIMARY KEY (station, ts))"
                .into(),
            None,
        )
        .await
        .expect("CREATE TABLE");
    assert_eq!(n, 0);
    let n = c
        .execute_update(
            "INSERT INTO weather VALUES ('2024-01-01T00:00:00', 'oslo', -3.5), \
             ('2024-01-01T01:00:00', 'bergen', 4.5)"
                .into(),
            None,
        )
        .await
        .expect("INSERT");
    assert_eq!(n, 2);
    let e = status(
        c.execute_update("CREATE TABLE weather (ts TIMESTAMP NOT NULL)".into(), None)
            .await
            .expect_err("exists"),
    );
    assert_eq!(e.code(), Code::AlreadyExists, "{e}");

    // A query with a parameter: its type is the one the statement gives it.
    let mut p = c
        .prepare(
            "SELECT station, temp FROM weather WHERE temp > $1 ORDER BY temp".into(),
            None,
        )
        .await
        .expect("prepare");
    assert_eq!(
        columns(p.parameter_schema().expect("parameters")),
        named(&[("$1", DataType::Float64)])
    );
    assert_eq!(
        columns(p.dataset_schema().expect("dataset")),
        named(&[("station", DataType::Utf8), ("temp", DataType::Float64)])
    );
    let param = |v: i64| {
        RecordBatch::try_from_iter([("$1", Arc::new(Int64Array::from(vec![v])) as ArrayRef)])
            .expect("a parameter batch")
    };
    p.set_parameters(param(0)).expect("bind");
    let info = p.execute().await.expect("execute");
    assert_eq!(
        rows_of(&fetch(&mut c, &info).await),
        strings(&[&["bergen", "4.5"]])
    );
    p.set_parameters(param(-10)).expect("bind");
    let info = p.execute().await.expect("execute");
    assert_eq!(
        rows_of(&fetch(&mut c, &info).await),
        strings(&[&["oslo", "-3.5"], &["bergen", "4.5"]])
    );
    p.close().await.expect("close");

    // A prepared INSERT runs once per parameter row.
    let mut insert = c
        .prepare(
            "INSERT INTO weather (ts, station, temp) VALUES ($1, $2, $3)".into(),
            None,
        )
        .await
        .expect("prepare INSERT");
    let rows = RecordBatch::try_from_iter([
        (
            "$1",
            Arc::new(TimestampNanosecondArray::from(vec![
                T0_NS + 7_200_000_000_000,
                T0_NS + 10_800_000_000_000,
            ])) as ArrayRef,
        ),
        (
            "$2",
            Arc::new(StringArray::from(vec!["tromso", "bodo"])) as ArrayRef,
        ),
        (
            "$3",
            Arc::new(Float64Array::from(vec![-9.0, -1.0])) as ArrayRef,
        ),
    ])
    .expect("parameter rows");
    insert.set_parameters(rows).expect("bind");
    assert_eq!(insert.execute_update().await.expect("prepared INSERT"), 2);
    insert.close().await.expect("close");
    let batches = query(&mut c, "SELECT count(*) AS n, min(temp) AS lo FROM weather").await;
    assert_eq!(rows_of(&batches), strings(&[&["4", "-9.0"]]));

    // DDL through the query command (as JDBC and ADBC send it) runs when asked for.
    let info = c
        .execute(
            "CREATE TABLE other (time TIMESTAMP NOT NULL, v DOUBLE PRECISION)".into(),
            None,
        )
        .await
        .expect("DDL as a query");
    assert!(fetch(&mut c, &info).await.iter().all(|b| b.num_rows() == 0));
    let pg = s.pg().await;
    let n: i64 = pg
        .query_one("SELECT count(*) FROM other", &[])
        .await
        .expect("the table exists")
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_commands_answer_the_spec_schemas() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let mut c = connect(&s).await;
    for sql in [
        "CREATE TABLE cpu (time TIMESTAMP NOT NULL, hostname TEXT, \
         usage_user DOUBLE PRECISION, PRIMARY KEY (hostname, time))",
        "INSERT INTO cpu VALUES ('2024-01-01T00:00:00', 'host_b', 1.5), \
         ('2024-01-01T00:01:00', 'host_a', 2.5)",
        "CREATE MATERIALIZED VIEW cpu_1m AS SELECT time_bucket('1 minute', time) AS bucket, \
         hostname, avg(usage_user) AS usage FROM cpu GROUP BY 1, 2",
    ] {
        c.execute_update(sql.into(), None)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    let info = c.get_catalogs().await.expect("GetCatalogs");
    let batch = metadata(&mut c, info).await;
    assert_eq!(string_column(&batch, "catalog_name"), ["eddy"]);

    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .expect("GetDbSchemas");
    let batch = metadata(&mut c, info).await;
    assert_eq!(string_column(&batch, "catalog_name"), ["eddy"]);
    assert_eq!(string_column(&batch, "db_schema_name"), ["public"]);

    let info = c.get_table_types().await.expect("GetTableTypes");
    let batch = metadata(&mut c, info).await;
    assert_eq!(
        string_column(&batch, "table_type"),
        ["BASE TABLE", "SYSTEM TABLE", "VIEW"]
    );

    // Every table, view and system table.
    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: false,
        })
        .await
        .expect("GetTables");
    let batch = metadata(&mut c, info).await;
    assert_eq!(batch.num_columns(), 4);
    let names = string_column(&batch, "table_name");
    let types = string_column(&batch, "table_type");
    let listed: Vec<(String, String)> = names.into_iter().zip(types).collect();
    for (name, kind) in [
        ("cpu", "BASE TABLE"),
        ("cpu_1m", "VIEW"),
        ("eddy_queries", "SYSTEM TABLE"),
        ("eddy_views", "SYSTEM TABLE"),
        ("eddy_sources", "SYSTEM TABLE"),
        ("eddy_segments", "SYSTEM TABLE"),
        ("eddy_indexes", "SYSTEM TABLE"),
    ] {
        assert!(
            listed.contains(&(name.to_string(), kind.to_string())),
            "{name} ({kind}) in {listed:?}"
        );
    }

    // One table with its Arrow schema, as Grafana asks for a table's columns.
    let info = c
        .get_tables(CommandGetTables {
            catalog: Some("eddy".into()),
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("cpu%".into()),
            table_types: vec!["BASE TABLE".into()],
            include_schema: true,
        })
        .await
        .expect("GetTables with schemas");
    let batch = metadata(&mut c, info).await;
    assert_eq!(string_column(&batch, "table_name"), ["cpu"]);
    let schemas = batch
        .column_by_name("table_schema")
        .expect("table_schema")
        .as_any()
        .downcast_ref::<BinaryArray>()
        .expect("binary");
    let schema =
        Schema::try_from(IpcMessage(schemas.value(0).to_vec().into())).expect("an IPC schema");
    assert_eq!(
        columns(&schema),
        named(&[
            ("time", DataType::Timestamp(TimeUnit::Nanosecond, None)),
            ("hostname", DataType::Utf8),
            ("usage_user", DataType::Float64),
        ])
    );
    // The view's schema is what a query of it answers.
    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("cpu_1m".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .expect("GetTables of the view");
    let batch = metadata(&mut c, info).await;
    let schemas = batch
        .column_by_name("table_schema")
        .expect("table_schema")
        .as_any()
        .downcast_ref::<BinaryArray>()
        .expect("binary");
    let view = Schema::try_from(IpcMessage(schemas.value(0).to_vec().into())).expect("schema");
    let queried = query(&mut c, "SELECT * FROM cpu_1m").await;
    assert_eq!(columns(&view), columns(&queried[0].schema()));

    // The primary key: tags, then time.
    let info = c
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "cpu".into(),
        })
        .await
        .expect("GetPrimaryKeys");
    let batch = metadata(&mut c, info).await;
    assert_eq!(string_column(&batch, "column_name"), ["hostname", "time"]);
    let seq = batch
        .column_by_name("key_sequence")
        .expect("key_sequence")
        .as_any()
        .downcast_ref::<Int32Array>()
        .expect("int");
    assert_eq!(seq.values().to_vec(), [1, 2]);

    let info = c
        .get_exported_keys(CommandGetExportedKeys {
            catalog: None,
            db_schema: None,
            table: "cpu".into(),
        })
        .await
        .expect("GetExportedKeys");
    let batch = metadata(&mut c, info).await;
    assert_eq!((batch.num_rows(), batch.num_columns()), (0, 13));

    let info = c
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .expect("GetXdbcTypeInfo");
    let batch = metadata(&mut c, info).await;
    let mut type_names = string_column(&batch, "type_name");
    type_names.sort();
    assert_eq!(
        type_names,
        [
            "BIGINT",
            "BIGINT UNSIGNED",
            "BOOLEAN",
            "DOUBLE PRECISION",
            "TEXT",
            "TIMESTAMP"
        ]
    );

    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::SqlIdentifierQuoteChar,
        ])
        .await
        .expect("GetSqlInfo");
    let batch = metadata(&mut c, info).await;
    let names = batch
        .column(0)
        .as_any()
        .downcast_ref::<UInt32Array>()
        .expect("info_name");
    let values = batch
        .column(1)
        .as_any()
        .downcast_ref::<UnionArray>()
        .expect("a dense union");
    let text = |i: usize| {
        let v = values.value(i);
        v.as_any()
            .downcast_ref::<StringArray>()
            .expect("a string value")
            .value(0)
            .to_string()
    };
    assert_eq!(names.values().to_vec(), [0, 504]);
    assert_eq!(text(0), "eddy");
    assert_eq!(text(1), "\"");
}

/// A batch of sensor readings: `host` dictionary-encoded (a tag), time in microseconds UTC.
fn sensors(hosts: &[&str], minutes: &[i64], temps: &[f64], n: &[i32]) -> RecordBatch {
    let host: DictionaryArray<Int32Type> = hosts.iter().copied().collect();
    let time = TimestampMicrosecondArray::from(
        minutes
            .iter()
            .map(|m| T0_NS / 1_000 + m * 60_000_000)
            .collect::<Vec<_>>(),
    )
    .with_timezone("UTC");
    RecordBatch::try_from_iter([
        ("host", Arc::new(host) as ArrayRef),
        ("time", Arc::new(time) as ArrayRef),
        (
            "temp",
            Arc::new(Float64Array::from(temps.to_vec())) as ArrayRef,
        ),
        ("n", Arc::new(Int32Array::from(n.to_vec())) as ArrayRef),
    ])
    .expect("a sensors batch")
}

fn ingest_command(
    table: &str,
    if_not_exist: TableNotExistOption,
    if_exists: TableExistsOption,
) -> CommandStatementIngest {
    CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: if_not_exist as i32,
            if_exists: if_exists as i32,
        }),
        table: table.to_string(),
        // arrow-rs's Flight encoder sends dictionary columns as plain strings, so the tag is
        // named (pyarrow and ADBC keep dictionaries, which become tags by themselves).
        options: [("tags".to_string(), "host".to_string())].into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_ingest_creates_appends_and_reads_back_over_sql() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let mut c = connect(&s).await;
    let pg = s.pg().await;

    // Create: a dictionary column is a tag, the timestamp the time column.
    let first = sensors(&["a", "b"], &[0, 0], &[1.5, 2.5], &[1, 2]);
    let second = sensors(&["a"], &[1], &[3.5], &[3]);
    let n = c
        .execute_ingest(
            ingest_command(
                "sensors",
                TableNotExistOption::Create,
                TableExistsOption::Fail,
            ),
            futures::stream::iter([Ok(first.clone()), Ok(second)]),
        )
        .await
        .expect("ingest (create)");
    assert_eq!(n, 3);
    let rows = pg
        .query("SELECT host, temp, n FROM sensors ORDER BY time, host", &[])
        .await
        .expect("read back");
    let got: Vec<(String, f64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            ("a".to_string(), 1.5, 1),
            ("b".to_string(), 2.5, 2),
            ("a".to_string(), 3.5, 3)
        ]
    );
    let at_t0: i64 = pg
        .query_one(
            "SELECT count(*) FROM sensors WHERE time = '2024-01-01T00:00:00'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(at_t0, 2, "time in UTC");
    let info = c
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "sensors".into(),
        })
        .await
        .expect("GetPrimaryKeys");
    let batch = metadata(&mut c, info).await;
    assert_eq!(string_column(&batch, "column_name"), ["host", "time"]);

    // Create again fails; append adds rows (plain strings for the tag, a new column).
    let e = status(
        c.execute_ingest(
            ingest_command(
                "sensors",
                TableNotExistOption::Create,
                TableExistsOption::Fail,
            ),
            futures::stream::iter([Ok(first.clone())]),
        )
        .await
        .expect_err("exists"),
    );
    assert_eq!(e.code(), Code::AlreadyExists, "{e}");
    let more = RecordBatch::try_from_iter([
        ("host", Arc::new(StringArray::from(vec!["c"])) as ArrayRef),
        (
            "time",
            Arc::new(TimestampNanosecondArray::from(vec![
                T0_NS + 120_000_000_000,
            ])) as ArrayRef,
        ),
        ("temp", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
        ("note", Arc::new(StringArray::from(vec!["new"])) as ArrayRef),
    ])
    .expect("batch");
    let n = c
        .execute_ingest(
            ingest_command(
                "sensors",
                TableNotExistOption::Fail,
                TableExistsOption::Append,
            ),
            futures::stream::iter([Ok(more)]),
        )
        .await
        .expect("ingest (append)");
    assert_eq!(n, 1);
    let row = pg
        .query_one("SELECT temp, note FROM sensors WHERE host = 'c'", &[])
        .await
        .expect("appended row");
    assert_eq!(row.get::<_, f64>(0), 7.0);
    assert_eq!(row.get::<_, String>(1), "new");

    // Append to a missing table fails; a type that cannot convert names both types.
    let e = status(
        c.execute_ingest(
            ingest_command(
                "nowhere",
                TableNotExistOption::Fail,
                TableExistsOption::Append,
            ),
            futures::stream::iter([Ok(first.clone())]),
        )
        .await
        .expect_err("missing"),
    );
    assert_eq!(e.code(), Code::NotFound, "{e}");
    let wrong = RecordBatch::try_from_iter([
        (
            "time",
            Arc::new(TimestampNanosecondArray::from(vec![T0_NS])) as ArrayRef,
        ),
        (
            "temp",
            Arc::new(StringArray::from(vec!["warm"])) as ArrayRef,
        ),
    ])
    .expect("batch");
    let e = status(
        c.execute_ingest(
            ingest_command(
                "sensors",
                TableNotExistOption::Fail,
                TableExistsOption::Append,
            ),
            futures::stream::iter([Ok(wrong)]),
        )
        .await
        .expect_err("text into a float column"),
    );
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    for word in ["\"temp\"", "Float64", "Utf8"] {
        assert!(e.message().contains(word), "{word} in {e}");
    }

    // Plain Flight: DoPut to a path appends (and would create).
    let data: Vec<FlightData> = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["sensors".into()])))
        .build(futures::stream::iter([Ok(sensors(
            &["d"],
            &[5],
            &[9.5],
            &[9],
        ))]))
        .try_collect()
        .await
        .expect("encode");
    let mut results = c
        .do_put(futures::stream::iter(data))
        .await
        .expect("DoPut to a path");
    let result = results
        .message()
        .await
        .expect("a result")
        .expect("one result");
    assert_eq!(record_count(&result.app_metadata), 1);
    let n: i64 = pg
        .query_one("SELECT count(*) FROM sensors", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_flight_reads_sql_tickets_paths_and_lists_tables() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let (st, body) = s.write_lp(WEATHER).await;
    assert_eq!(st, 204, "{body}");
    let mut c = connect(&s).await;

    // A ticket that is SQL text.
    let batches: Vec<RecordBatch> = c
        .do_get(Ticket::new("SELECT station FROM weather ORDER BY station"))
        .await
        .expect("DoGet of SQL text")
        .try_collect()
        .await
        .expect("batches");
    assert_eq!(rows_of(&batches), strings(&[&["bergen"], &["oslo"]]));

    // A path names a table: its schema, and a ticket that reads it whole.
    let path = FlightDescriptor::new_path(vec!["weather".into()]);
    let schema = c
        .inner_mut()
        .get_schema(path.clone())
        .await
        .expect("GetSchema")
        .into_inner();
    let schema = Schema::try_from(&schema).expect("a schema");
    assert!(schema.field_with_name("temp").is_ok(), "{schema:?}");
    let info = c
        .inner_mut()
        .get_flight_info(path)
        .await
        .expect("GetFlightInfo of a path")
        .into_inner();
    assert_eq!(rows_of(&fetch(&mut c, &info).await).len(), 2);

    // A command descriptor holding SQL text.
    let info = c
        .inner_mut()
        .get_flight_info(FlightDescriptor::new_cmd(
            "SELECT count(*) AS n FROM weather",
        ))
        .await
        .expect("GetFlightInfo of SQL text")
        .into_inner();
    assert_eq!(rows_of(&fetch(&mut c, &info).await), strings(&[&["2"]]));

    // Every table, with its path and schema.
    let flights: Vec<FlightInfo> = c
        .inner_mut()
        .list_flights(Criteria::default())
        .await
        .expect("ListFlights")
        .into_inner()
        .try_collect()
        .await
        .expect("infos");
    let weather = flights
        .iter()
        .find(|f| path_of(f) == ["weather"])
        .expect("weather is listed");
    let schema = weather.clone().try_decode_schema().expect("schema");
    assert!(schema.field_with_name("station").is_ok());
    assert!(flights.iter().any(|f| path_of(f) == ["eddy_queries"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_needs_credentials_when_users_are_configured() {
    let dir = data_dir();
    let s = Server::start_with(dir.path(), &["--user", "alice:secret"]);

    let mut anonymous = connect(&s).await;
    let e = status(
        anonymous
            .execute("SELECT 1".into(), None)
            .await
            .expect_err("no credentials"),
    );
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");

    let mut wrong = connect(&s).await;
    let e = wrong
        .handshake("alice", "nope")
        .await
        .expect_err("wrong password");
    assert!(e.to_string().contains("authentication failed"), "{e}");

    // The handshake's token works on later calls (and on other connections).
    let mut c = connect(&s).await;
    c.handshake("alice", "secret").await.expect("handshake");
    let token = c.token().cloned().expect("a bearer token");
    assert_eq!(
        rows_of(&query(&mut c, "SELECT 1 AS one").await),
        strings(&[&["1"]])
    );
    let mut other = connect(&s).await;
    other.set_token(token);
    assert_eq!(
        rows_of(&query(&mut other, "SELECT 2 AS two").await),
        strings(&[&["2"]])
    );

    // The user is who eddy_queries lists.
    let batches = query(&mut c, "SELECT user_name, protocol FROM eddy_queries").await;
    assert_eq!(rows_of(&batches), strings(&[&["alice", "flight"]]));

    // Basic credentials on every call, and static tokens, as the HTTP API takes them.
    let mut basic = connect(&s).await;
    basic.set_header("authorization", "Basic YWxpY2U6c2VjcmV0");
    assert_eq!(
        rows_of(&query(&mut basic, "SELECT 3 AS three").await).len(),
        1
    );
    let mut static_token = connect(&s).await;
    static_token.set_token("secret".into());
    assert_eq!(
        rows_of(&query(&mut static_token, "SELECT 4 AS four").await).len(),
        1
    );
    let mut forged = connect(&s).await;
    forged.set_token("0123456789abcdef".into());
    let e = status(
        forged
            .execute("SELECT 1".into(), None)
            .await
            .expect_err("unknown token"),
    );
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");

    // Listening beyond loopback is refused without users.
    let other_dir = data_dir();
    let addr = format!("0.0.0.0:{}", free_port());
    let out = refused_with(other_dir.path(), &["--flight-addr", addr.as_str()]);
    assert!(
        out.contains("refusing to listen for Flight SQL on 0.0.0.0")
            && out.contains("requires authentication"),
        "{out}"
    );
}

/// The calls Grafana's Flight SQL data source makes (influxdata/grafana-flightsql-datasource):
/// a handshake with the configured user, GetSqlInfo, GetTables of `BASE TABLE`s, GetTables
/// of one table with its schema (its columns), the health check `select 1`, and a time-range
/// query with `$__timeFilter` and `$__dateBin` expanded, each answered with one endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calls_grafanas_flight_sql_data_source_makes() {
    let dir = data_dir();
    let s = Server::start_with(dir.path(), &["--user", "grafana:pw"]);
    let mut lp = String::new();
    for i in 0..10i64 {
        lp.push_str(&format!(
            "cpu,hostname=h{} usage_user={}.5 {}\n",
            i % 2,
            i,
            T0_NS + i * 30_000_000_000
        ));
    }
    let resp = reqwest::Client::new()
        .post(s.url("/api/v2/write?precision=ns"))
        .basic_auth("grafana", Some("pw"))
        .body(lp)
        .send()
        .await
        .expect("write");
    assert_eq!(resp.status().as_u16(), 204, "{:?}", resp.text().await);

    let mut c = connect(&s).await;
    c.handshake("grafana", "pw").await.expect("handshake");
    let info = c.get_sql_info(vec![]).await.expect("GetSqlInfo");
    let batch = metadata(&mut c, info).await;
    assert!(batch.num_rows() > 20, "every SqlInfo: {}", batch.num_rows());

    let info = c
        .get_tables(CommandGetTables {
            table_types: vec!["BASE TABLE".into()],
            ..Default::default()
        })
        .await
        .expect("GetTables");
    let batch = metadata(&mut c, info).await;
    assert_eq!(string_column(&batch, "table_name"), ["cpu"]);

    let info = c
        .get_tables(CommandGetTables {
            table_name_filter_pattern: Some("cpu".into()),
            include_schema: true,
            ..Default::default()
        })
        .await
        .expect("GetTables with schema");
    let batch = metadata(&mut c, info).await;
    let schemas = batch
        .column_by_name("table_schema")
        .expect("table_schema")
        .as_any()
        .downcast_ref::<BinaryArray>()
        .expect("binary");
    let schema: SchemaRef =
        Arc::new(Schema::try_from(IpcMessage(schemas.value(0).to_vec().into())).expect("schema"));
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["time", "hostname", "usage_user"]);

    assert_eq!(
        rows_of(&query(&mut c, "select 1").await),
        strings(&[&["1"]])
    );

    let sql = "SELECT date_bin(interval '60 second', time, timestamp '1970-01-01T00:00:00Z') \
               AS time, avg(usage_user) AS usage FROM cpu \
               WHERE time >= '2024-01-01T00:00:00Z' AND time <= '2024-01-01T00:02:59Z' \
               GROUP BY 1 ORDER BY 1";
    let batches = query(&mut c, sql).await;
    assert_eq!(
        rows_of(&batches),
        strings(&[
            &["2024-01-01T00:00:00", "1.0"],
            &["2024-01-01T00:01:00", "3.0"],
            &["2024-01-01T00:02:00", "5.0"],
        ])
    );
    assert_eq!(
        batches[0].schema().field(0).data_type(),
        &DataType::Timestamp(TimeUnit::Nanosecond, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_clear_errors_and_the_server_goes_on() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let mut c = connect(&s).await;

    // Ticket bytes that are neither a command nor text.
    let e = status(
        c.do_get(Ticket::new(vec![0xff, 0xfe, 0x00, 0x80]))
            .await
            .expect_err("garbage ticket"),
    );
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");

    // A Flight SQL command whose body does not decode.
    let garbage = any(
        "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery",
        &[0xff, 0xff, 0xff],
    );
    let e = c
        .inner_mut()
        .get_flight_info(FlightDescriptor::new_cmd(garbage.clone()))
        .await
        .expect_err("garbage command");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("CommandStatementQuery"), "{e}");
    let e = status(
        c.do_get(Ticket::new(garbage))
            .await
            .expect_err("garbage ticket command"),
    );
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");

    // A statement ticket this server did not make.
    let foreign = any(
        "type.googleapis.com/arrow.flight.protocol.sql.TicketStatementQuery",
        &field(1, b"not ours"),
    );
    let e = status(
        c.do_get(Ticket::new(foreign))
            .await
            .expect_err("foreign handle"),
    );
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");

    // A prepared statement handle that is not (any more) there.
    let unknown = any(
        "type.googleapis.com/arrow.flight.protocol.sql.CommandPreparedStatementQuery",
        &field(1, &[7u8; 16]),
    );
    let e = c
        .inner_mut()
        .get_flight_info(FlightDescriptor::new_cmd(unknown))
        .await
        .expect_err("unknown handle");
    assert_eq!(e.code(), Code::NotFound, "{e}");

    // Bad SQL: a syntax error, two statements, a statement nested too deep, a huge one.
    for (sql, code, words) in [
        ("SELEC 1", Code::InvalidArgument, "SELEC"),
        ("SELECT 1; SELECT 2", Code::InvalidArgument, "2 statements"),
        ("", Code::InvalidArgument, "no statement"),
    ] {
        let e = status(
            c.execute(sql.into(), None)
                .await
                .expect_err("a bad statement"),
        );
        assert_eq!(e.code(), code, "{sql}: {e}");
        assert!(e.message().contains(words), "{sql}: {e}");
    }
    let deep = format!("SELECT {}1", "1 + ".repeat(20_000));
    let e = status(c.execute(deep, None).await.expect_err("too deep"));
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(
        e.message().contains("too complex") || e.message().contains("ecursion"),
        "{e}"
    );
    // A long statement is fine (under the client's 4 MiB default message limit).
    let huge = format!("SELECT '{}' AS big", "x".repeat(1 << 20));
    let batches = query(&mut c, &huge).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);

    // Transactions are refused with a reason.
    let e = status(c.begin_transaction().await.expect_err("no transactions"));
    assert_eq!(e.code(), Code::Unimplemented, "{e}");

    // The server still answers.
    assert_eq!(
        rows_of(&query(&mut c, "SELECT 42 AS answer").await),
        strings(&[&["42"]])
    );
}

/// A large scan of one table is answered as several endpoints, one per time slice; fetched in
/// parallel their union is the single-stream answer. A client that wants one endpoint (as
/// Grafana's data source does) says so with `x-eddy-endpoints: 1`, and aggregates are never
/// split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_scan_is_answered_as_parallel_endpoints() {
    const ROWS: i64 = 3_000_000;
    const BATCH: i64 = 250_000;
    let dir = data_dir();
    let s = Server::start(dir.path());
    let mut c = connect(&s).await;
    let batches = (0..ROWS / BATCH).map(|b| {
        let range = b * BATCH..(b + 1) * BATCH;
        let names: Vec<String> = range.clone().map(|i| format!("h{}", i % 100)).collect();
        let host: DictionaryArray<Int32Type> = names.iter().map(String::as_str).collect();
        // 100 hosts, one row per host and second: about eight hours in all.
        let time = TimestampNanosecondArray::from(
            range
                .clone()
                .map(|i| T0_NS + (i / 100) * 1_000_000_000)
                .collect::<Vec<_>>(),
        );
        let v = Int64Array::from(range.collect::<Vec<_>>());
        Ok(RecordBatch::try_from_iter([
            ("host", Arc::new(host) as ArrayRef),
            ("time", Arc::new(time) as ArrayRef),
            ("v", Arc::new(v) as ArrayRef),
        ])
        .expect("a batch"))
    });
    let n = c
        .execute_ingest(
            ingest_command("big", TableNotExistOption::Create, TableExistsOption::Fail),
            futures::stream::iter(batches),
        )
        .await
        .expect("ingest");
    assert_eq!(n, ROWS);

    let sql = "SELECT host, time, v FROM big WHERE v % 3 <> 1";
    let (want_rows, want_sum) = {
        let mut single = connect(&s).await;
        single.set_header("x-eddy-endpoints", "1");
        let info = single
            .execute(sql.to_string(), None)
            .await
            .expect("execute");
        let batches = fetch(&mut single, &info).await;
        sum_v(&batches)
    };
    assert_eq!(want_rows, ROWS - ROWS / 3);

    let info = c.execute(sql.to_string(), None).await.expect("execute");
    assert_eq!(info.endpoint.len(), 3, "one endpoint per million rows");
    let fetches = info.endpoint.iter().map(|e| {
        let ticket = e.ticket.clone().expect("a ticket");
        let s = &s;
        async move {
            let mut c = connect(s).await;
            let batches: Vec<RecordBatch> = c
                .do_get(ticket)
                .await
                .expect("DoGet")
                .try_collect()
                .await
                .expect("batches");
            sum_v(&batches)
        }
    });
    let parts = futures::future::join_all(fetches).await;
    assert!(parts.iter().all(|(rows, _)| *rows > 0), "{parts:?}");
    let rows: i64 = parts.iter().map(|p| p.0).sum();
    let sum: i64 = parts.iter().map(|p| p.1).sum();
    assert_eq!((rows, sum), (want_rows, want_sum));

    let info = c
        .execute("SELECT host, count(*) FROM big GROUP BY host".into(), None)
        .await
        .expect("execute");
    assert_eq!(info.endpoint.len(), 1, "an aggregate is one stream");
    c.set_header("x-eddy-endpoints", "nine");
    let e = c
        .execute(sql.to_string(), None)
        .await
        .expect_err("bad header");
    assert_eq!(status(e).code(), Code::InvalidArgument);
}

/// The rows of `batches` and the sum of their `v` column.
fn sum_v(batches: &[RecordBatch]) -> (i64, i64) {
    let mut rows = 0;
    let mut sum = 0;
    for b in batches {
        rows += b.num_rows() as i64;
        let v = b
            .column_by_name("v")
            .expect("column v")
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("v is BIGINT");
        sum += v.iter().flatten().sum::<i64>();
    }
    (rows, sum)
}
