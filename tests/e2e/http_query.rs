//! The HTTP query API, `/api/v3/query_sql`: the same rows in every format (JSON, JSON lines,
//! CSV, the pretty table, Parquet and Arrow IPC, the last two read back with arrow-rs), GET and
//! POST, parameters, statements without rows, errors as JSON with a status and a kind,
//! credentials when users are configured, large results that stream, a client that goes away
//! in the middle of a huge result (its query stops), and a Python program reading every format
//! with pyarrow and the standard library.

use std::time::{Duration, Instant};

use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Server, data_dir};

const API: &str = "/api/v3/query_sql";

const WEATHER: &str = concat!(
    "weather,station=oslo temp=-3.5,rain=1i,ok=true,note=\"cold, \\\"very\\\"\" ",
    "1704067200000000000\n",
    "weather,station=bergen temp=4.5,rain=12i,ok=false 1704070800000000000\n",
);

const SQL: &str = "SELECT station, time, temp, rain, ok, note FROM weather ORDER BY time";

/// The rows of [`SQL`], each value as arrow-rs displays it (a null as an empty string).
fn weather_rows() -> Vec<Vec<String>> {
    [
        [
            "oslo",
            "2024-01-01T00:00:00",
            "-3.5",
            "1",
            "true",
            "cold, \"very\"",
        ],
        ["bergen", "2024-01-01T01:00:00", "4.5", "12", "false", ""],
    ]
    .iter()
    .map(|r| r.iter().map(|v| v.to_string()).collect())
    .collect()
}

/// An answer of the query API.
struct Answer {
    status: u16,
    content_type: String,
    chunked: bool,
    body: Bytes,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("a UTF-8 body")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Checks a JSON error: its status and kind; returns its message.
    fn error(&self, status: u16, kind: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.content_type, "application/json");
        let body = self.json();
        assert_eq!(body["kind"], kind, "{body}");
        body["error"]
            .as_str()
            .expect("an error message")
            .to_string()
    }
}

async fn answer(r: reqwest::RequestBuilder) -> Answer {
    let r = r.send().await.expect("http request");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let content_type = header("content-type");
    let chunked = header("transfer-encoding") == "chunked";
    let status = r.status().as_u16();
    let body = r.bytes().await.expect("the whole body");
    Answer {
        status,
        content_type,
        chunked,
        body,
    }
}

async fn get(s: &Server, params: &[(&str, &str)]) -> Answer {
    answer(reqwest::Client::new().get(s.url(API)).query(params)).await
}

async fn post(s: &Server, body: &Value) -> Answer {
    answer(
        reqwest::Client::new()
            .post(s.url(API))
            .header("Content-Type", "application/json")
            .body(body.to_string()),
    )
    .await
}

/// The values of `batches`, row by row, as arrow-rs displays them.
fn rows_of(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for b in batches {
        let columns: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            rows.push(columns.iter().map(|c| c.value(i).to_string()).collect());
        }
    }
    rows
}

fn read_parquet(body: &Bytes) -> (usize, Vec<RecordBatch>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(body.clone()).expect("a Parquet file");
    let row_groups = builder.metadata().num_row_groups();
    let batches = builder
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (row_groups, batches)
}

fn read_arrow(body: &Bytes) -> Vec<RecordBatch> {
    StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None)
        .expect("an Arrow IPC stream")
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// The column types of the weather rows, as Arrow and Parquet carry them.
fn assert_weather_types(batches: &[RecordBatch]) {
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["station", "time", "temp", "rain", "ok", "note"]);
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::Utf8View);
    assert!(text(types[0]), "{types:?}");
    assert_eq!(types[1], &DataType::Timestamp(TimeUnit::Nanosecond, None));
    assert_eq!(types[2], &DataType::Float64);
    assert_eq!(types[3], &DataType::Int64);
    assert_eq!(types[4], &DataType::Boolean);
    assert!(text(types[5]), "{types:?}");
}

/// The cells of a pretty table's lines, header first.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The answer (head and body) to a POST whose head declares a 2 MB body, none of which is sent.
async fn too_large_head(s: &Server) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", s.http)).await.unwrap();
    let head = format!(
        "POST {API} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: 2000000\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .expect("a Content-Length");
            if body.len() >= length {
                return text;
            }
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf))
            .await
            .expect("an answer within 30 s")
            .expect("read the answer");
        assert!(n > 0, "the connection closed: {text}");
        answer.extend_from_slice(&buf[..n]);
    }
}

async fn write_weather(s: &Server) {
    let (status, body) = s.write_lp(WEATHER).await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_answers_the_same_rows() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    write_weather(&s).await;

    // JSON (the default): an array of row objects, timestamps as ISO 8601, nulls left out.
    let a = get(&s, &[("db", "eddy"), ("q", SQL)]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.content_type, "application/json");
    let want = json!([
        {"station": "oslo", "time": "2024-01-01T00:00:00", "temp": -3.5, "rain": 1,
         "ok": true, "note": "cold, \"very\""},
        {"station": "bergen", "time": "2024-01-01T01:00:00", "temp": 4.5, "rain": 12,
         "ok": false},
    ]);
    assert_eq!(a.json(), want);
    let want_rows = want.as_array().unwrap().clone();

    // JSON lines: the same objects, one per line.
    let a = get(&s, &[("q", SQL), ("format", "jsonl")]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.content_type, "application/jsonl");
    let lines: Vec<Value> = a
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, want_rows);

    // CSV: a header, then quoted only where needed.
    let csv = "station,time,temp,rain,ok,note\n\
               oslo,2024-01-01T00:00:00,-3.5,1,true,\"cold, \"\"very\"\"\"\n\
               bergen,2024-01-01T01:00:00,4.5,12,false,\n";
    let a = get(&s, &[("db", ""), ("q", SQL), ("format", "csv")]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.content_type, "text/csv");
    assert_eq!(a.text(), csv);

    // The pretty table.
    let a = get(&s, &[("q", SQL), ("format", "pretty")]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.content_type, "text/plain; charset=utf-8");
    let mut table = vec![
        ["station", "time", "temp", "rain", "ok", "note"]
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>(),
    ];
    table.extend(weather_rows());
    assert_eq!(table_rows(&a.text()), table, "{}", a.text());

    // Parquet, read back with arrow-rs.
    let a = get(&s, &[("q", SQL), ("format", "parquet")]).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.content_type, "application/vnd.apache.parquet");
    let (_, batches) = read_parquet(&a.body);
    assert_weather_types(&batches);
    assert_eq!(rows_of(&batches), weather_rows());

    // Arrow IPC, asked for by the Accept header (no format parameter).
    let a = answer(
        reqwest::Client::new()
            .get(s.url(API))
            .query(&[("q", SQL)])
            .header("Accept", "application/vnd.apache.arrow.stream"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.content_type, "application/vnd.apache.arrow.stream");
    let batches = read_arrow(&a.body);
    assert_weather_types(&batches);
    assert_eq!(rows_of(&batches), weather_rows());
    // Also by name; and the format parameter wins over the Accept header.
    let a = get(&s, &[("q", SQL), ("format", "arrow")]).await;
    assert_eq!(rows_of(&read_arrow(&a.body)), weather_rows());
    let a = answer(
        reqwest::Client::new()
            .get(s.url(API))
            .query(&[("q", SQL), ("format", "csv")])
            .header("Accept", "application/vnd.apache.arrow.stream"),
    )
    .await;
    assert_eq!(a.text(), csv);

    // POST with a JSON body.
    let a = post(&s, &json!({"db": "eddy", "q": SQL, "format": "csv"})).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.text(), csv);
    let a = post(&s, &json!({"q": SQL})).await;
    assert_eq!(a.json(), want);

    // No rows: still a whole document in every format.
    let none = "SELECT station, time, temp, rain, ok, note FROM weather WHERE temp > 100";
    assert_eq!(get(&s, &[("q", none)]).await.json(), json!([]));
    let a = get(&s, &[("q", none), ("format", "jsonl")]).await;
    assert_eq!((a.status, a.text()), (200, String::new()));
    let a = get(&s, &[("q", none), ("format", "csv")]).await;
    assert_eq!(a.text(), "station,time,temp,rain,ok,note\n");
    let a = get(&s, &[("q", none), ("format", "pretty")]).await;
    assert_eq!(table_rows(&a.text()).len(), 1, "{}", a.text());
    let batches = read_arrow(&get(&s, &[("q", none), ("format", "arrow")]).await.body);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    let (_, batches) = read_parquet(&get(&s, &[("q", none), ("format", "parquet")]).await.body);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_and_statements_without_rows() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    write_weather(&s).await;

    // Positional parameters, cast to the types the statement gives its placeholders.
    let a = post(
        &s,
        &json!({
            "q": "SELECT station FROM weather WHERE temp > $1 AND station <> $2",
            "params": [-10, "oslo"],
        }),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json(), json!([{"station": "bergen"}]));
    // Named ones, and a timestamp given as text.
    let a = post(
        &s,
        &json!({
            "q": "SELECT station FROM weather WHERE time >= $since AND rain < $most",
            "params": {"since": "2024-01-01T00:30:00", "most": 100},
        }),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json(), json!([{"station": "bergen"}]));
    // On a GET, params is JSON text.
    let a = get(
        &s,
        &[
            ("q", "SELECT count(*) AS n FROM weather WHERE rain = $1"),
            ("params", "[12]"),
        ],
    )
    .await;
    assert_eq!(a.json(), json!([{"n": 1}]));
    let message = post(&s, &json!({"q": SQL, "params": "x"}))
        .await
        .error(400, "invalid_request");
    assert!(message.contains("params"), "{message}");
    post(
        &s,
        &json!({"q": "SELECT * FROM weather WHERE rain = $1", "params": ["many"]}),
    )
    .await
    .error(400, "invalid_parameter");

    // Statements without rows answer what they did.
    let a = post(
        &s,
        &json!({"q": "CREATE TABLE t (ts TIMESTAMP NOT NULL, k TEXT, v DOUBLE PRECISION, \
                      PRIMARY KEY (k, ts))"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json(), json!({"ok": true, "command": "CREATE TABLE"}));
    let a = post(
        &s,
        &json!({
            "q": "INSERT INTO t VALUES ('2024-01-01T00:00:00', 'a', 1.5), ($1, $2, $3)",
            "params": ["2024-01-01T00:01:00", "b", 2],
        }),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.json(),
        json!({"ok": true, "command": "INSERT", "rows_affected": 2})
    );
    let a = get(
        &s,
        &[("q", "SELECT k, v FROM t ORDER BY k"), ("format", "csv")],
    )
    .await;
    assert_eq!(a.text(), "k,v\na,1.5\nb,2.0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_with_a_status_and_a_kind() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    write_weather(&s).await;

    get(&s, &[("q", "SELEC 1")]).await.error(400, "syntax");
    let message = get(&s, &[("q", "SELECT * FROM nosuchtable")])
        .await
        .error(400, "table_not_found");
    assert!(message.contains("nosuchtable"), "{message}");
    get(&s, &[("q", "SELECT nope FROM weather")])
        .await
        .error(400, "column_not_found");
    get(&s, &[("q", "COPY weather TO '/tmp/x.csv'")])
        .await
        .error(403, "permission_denied");

    let message = get(&s, &[("db", "eddy")])
        .await
        .error(400, "invalid_request");
    assert!(message.contains("\"q\""), "{message}");
    let message = get(&s, &[("q", SQL), ("format", "xml")])
        .await
        .error(400, "invalid_request");
    assert!(
        message.contains("json, jsonl, csv, pretty, parquet, arrow"),
        "{message}"
    );
    let message = get(&s, &[("q", SQL), ("db", "other")])
        .await
        .error(404, "database_not_found");
    assert!(message.contains("database not found"), "{message}");
    let message = get(&s, &[("q", "SELECT 1; SELECT 2")])
        .await
        .error(400, "invalid_request");
    assert!(message.contains("2 statements"), "{message}");
    post(&s, &json!({"db": "other", "q": SQL}))
        .await
        .error(404, "database_not_found");

    // Malformed bodies.
    let a = answer(reqwest::Client::new().post(s.url(API)).body("q=SELECT 1")).await;
    a.error(400, "invalid_request");
    post(&s, &json!(["SELECT 1"]))
        .await
        .error(400, "invalid_request");
    post(&s, &json!({"q": 1}))
        .await
        .error(400, "invalid_request");
    // Too large by its Content-Length: refused before the body is read (so it is not sent).
    let head = too_large_head(&s).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.contains("\"kind\":\"too_large\"") && head.contains("1048576"),
        "{head}"
    );

    // The pretty table holds its rows, so it has a limit; streaming formats do not.
    let many = "SELECT x FROM generate_series(1, 200000) AS t(x)";
    let message = get(&s, &[("q", many), ("format", "pretty")])
        .await
        .error(413, "limit_exceeded");
    assert!(message.contains("100000"), "{message}");

    // The server goes on answering.
    assert_eq!(
        get(&s, &[("q", "SELECT 1 AS one")]).await.json(),
        json!([{"one": 1}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_need_credentials_when_users_are_configured() {
    let dir = data_dir();
    let s = Server::start_with(dir.path(), &["--user", "alice:s3cret"]);
    let q = [("q", "SELECT 1 AS one")];

    let a = get(&s, &q).await;
    assert_eq!(a.status, 401, "{}", a.text());
    let a = answer(
        reqwest::Client::new()
            .get(s.url(API))
            .query(&q)
            .basic_auth("alice", Some("wrong")),
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.text());
    let a = answer(
        reqwest::Client::new()
            .post(s.url(API))
            .body(json!({"q": "SELECT 1 AS one"}).to_string()),
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.text());

    let a = answer(
        reqwest::Client::new()
            .get(s.url(API))
            .query(&q)
            .basic_auth("alice", Some("s3cret")),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json(), json!([{"one": 1}]));
    for authorization in ["Bearer s3cret", "Token alice:s3cret"] {
        let a = answer(
            reqwest::Client::new()
                .post(s.url(API))
                .header("Authorization", authorization)
                .body(json!({"q": "SELECT 1 AS one"}).to_string()),
        )
        .await;
        assert_eq!(a.status, 200, "{authorization}: {}", a.text());
        assert_eq!(a.json(), json!([{"one": 1}]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_streams_in_every_format() {
    const ROWS: usize = 200_000;
    let dir = data_dir();
    let s = Server::start(dir.path());
    let mut lp = String::new();
    for i in 0..ROWS {
        lp.push_str(&format!(
            "big,host=h{} v={i}i {}\n",
            i % 10,
            1_704_067_200_000_000_000i64 + i as i64 * 1_000_000_000
        ));
    }
    let (status, body) = s.write_lp(lp).await;
    assert_eq!(status, 204, "{body}");
    let q = "SELECT host, v FROM big ORDER BY v";

    // Sent as it is encoded: chunked, with no length known up front.
    let a = get(&s, &[("q", q), ("format", "csv")]).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.chunked, "a large CSV result is streamed");
    let text = a.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), ROWS + 1);
    assert_eq!(lines[0], "host,v");
    assert_eq!(lines[1], "h0,0");
    assert_eq!(lines[ROWS], "h9,199999");
    let sum: i64 = lines[1..]
        .iter()
        .map(|l| l.split_once(',').unwrap().1.parse::<i64>().unwrap())
        .sum();
    assert_eq!(sum, (ROWS as i64 - 1) * ROWS as i64 / 2);

    let a = get(&s, &[("q", q), ("format", "jsonl")]).await;
    assert!(a.chunked);
    let text = a.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), ROWS);
    assert_eq!(
        serde_json::from_str::<Value>(lines[0]).unwrap(),
        json!({"host": "h0", "v": 0})
    );
    assert_eq!(
        serde_json::from_str::<Value>(lines[ROWS - 1]).unwrap(),
        json!({"host": "h9", "v": 199_999})
    );

    let a = get(&s, &[("q", q)]).await;
    assert!(a.chunked);
    let rows = a.json();
    let rows = rows.as_array().expect("a JSON array");
    assert_eq!(rows.len(), ROWS);
    assert_eq!(rows[ROWS - 1], json!({"host": "h9", "v": 199_999}));

    let a = get(&s, &[("q", q), ("format", "arrow")]).await;
    assert!(a.chunked);
    let batches = read_arrow(&a.body);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), ROWS);

    // Parquet goes out a row group at a time.
    let a = get(&s, &[("q", q), ("format", "parquet")]).await;
    assert!(a.chunked);
    let (row_groups, batches) = read_parquet(&a.body);
    assert!(row_groups >= 4, "{row_groups} row groups");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), ROWS);
    assert_eq!(rows_of(&batches)[ROWS - 1], ["h9", "199999"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_its_query() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let pg = s.pg().await;
    // Ten billion rows: it would run for hours if nothing stopped it.
    let huge = "SELECT a.x, b.y FROM generate_series(1, 100000) AS a(x) \
                CROSS JOIN generate_series(1, 100000) AS b(y)";
    let listed = "SELECT query FROM eddy_queries WHERE protocol = 'http'";

    let client = reqwest::Client::new();
    let mut r = client
        .get(s.url(API))
        .query(&[("q", huge), ("format", "csv")])
        .send()
        .await
        .expect("the status");
    assert_eq!(r.status().as_u16(), 200);
    let mut received = 0usize;
    while received < 1 << 20 {
        let chunk = tokio::time::timeout(Duration::from_secs(60), r.chunk())
            .await
            .expect("rows within 60 s")
            .expect("read the body")
            .expect("the body goes on");
        received += chunk.len();
    }
    // Listed while its rows stream.
    let rows = pg.query(listed, &[]).await.unwrap();
    let queries: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(queries, [huge]);

    drop(r);
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pg.query(listed, &[]).await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the query is still listed 10 s after its client went away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(&s, &[("q", "SELECT 1 AS one")]).await.json(),
        json!([{"one": 1}])
    );
}

/// Python reads every format: pyarrow for Arrow IPC and Parquet, `csv` and `json` for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_every_format() {
    crate::clients::run_python_client("http_query.py");
}
