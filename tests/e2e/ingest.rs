//! Line protocol over HTTP: every type and escape, partial writes, precisions, gzip, limits,
//! schema evolution and type conflicts, read back over the Postgres protocol.

use std::io::Write;

use crate::common::{Server, data_dir, eddy_gen};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_cpu_data_round_trips_through_sql() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let data = eddy_gen(&[
        "--scale",
        "10",
        "--start",
        "2024-01-01T00:00:00Z",
        "--end",
        "2024-01-01T01:00:00Z",
    ]);
    let text = String::from_utf8(data.clone()).unwrap();
    // Expected max(usage_user) per host, computed from the text itself.
    let mut expected: std::collections::BTreeMap<String, i64> = Default::default();
    for line in text.lines() {
        let host = line
            .split(',')
            .nth(1)
            .unwrap()
            .trim_start_matches("hostname=")
            .to_string();
        let uu: i64 = line
            .split(' ')
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .trim_start_matches("usage_user=")
            .trim_end_matches('i')
            .parse()
            .unwrap();
        let e = expected.entry(host).or_insert(i64::MIN);
        *e = (*e).max(uu);
    }
    assert_eq!(text.lines().count(), 3600);
    let (status, body) = s.write_lp(data).await;
    assert_eq!(status, 204, "{body}");

    let c = s.pg().await;
    let rows = c
        .query(
            "SELECT hostname, max(usage_user) FROM cpu GROUP BY hostname ORDER BY hostname",
            &[],
        )
        .await
        .unwrap();
    let got: std::collections::BTreeMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    assert_eq!(got, expected);
    let n: i64 = c
        .query_one("SELECT count(*) FROM cpu", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3600);

    // The same query through psql, the README's tour.
    let out =
        s.psql("SELECT hostname, max(usage_user) FROM cpu GROUP BY hostname ORDER BY hostname");
    let psql: std::collections::BTreeMap<String, i64> = out
        .lines()
        .map(|l| {
            let (h, v) = l.split_once('|').unwrap();
            (h.to_string(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(psql, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_escape() {
    let dir = data_dir();
    let mut s = Server::start(dir.path());
    let body = concat!(
        "# a comment line\n",
        "\n",
        r#"we\ ird\,m,ta\ g=v\,a\=l\ ue,plain=x f_float=1.5,f_int=-42i,f_uint=18446744073709551615u,f_true=t,f_false=FALSE,f_str="say \"hi\" \\ there",f_exp=-1.25e3 1000"#,
        "\n",
        r#"we\ ird\,m,ta\ g=second,plain=y f_float=2,f_true=True,f_false=f,f_str="" 2000"#,
        "\n",
    );
    let (status, resp) = s.write_lp(body).await;
    assert_eq!(status, 204, "{resp}");
    let c = s.pg().await;
    let rows = c
        .query(
            r#"SELECT "ta g", plain, f_float, f_int, CAST(f_uint AS VARCHAR), f_true, f_false, f_str, f_exp, time
               FROM "we ird,m" ORDER BY time"#,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.get::<_, String>(0), "v,a=l ue");
    assert_eq!(r.get::<_, String>(1), "x");
    assert_eq!(r.get::<_, f64>(2), 1.5);
    assert_eq!(r.get::<_, i64>(3), -42);
    assert_eq!(r.get::<_, String>(4), "18446744073709551615");
    assert!(r.get::<_, bool>(5));
    assert!(!r.get::<_, bool>(6));
    assert_eq!(r.get::<_, String>(7), r#"say "hi" \ there"#);
    assert_eq!(r.get::<_, f64>(8), -1250.0);
    let t: std::time::SystemTime = r.get(9);
    assert_eq!(
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos(),
        1000
    );
    let r = &rows[1];
    assert_eq!(r.get::<_, String>(0), "second");
    assert_eq!(r.get::<_, f64>(2), 2.0);
    assert_eq!(r.get::<_, Option<i64>>(3), None);
    assert!(r.get::<_, bool>(5));
    assert_eq!(r.get::<_, String>(7), "");

    // Type OIDs of the result columns.
    let stmt = c
        .prepare(r#"SELECT time, "ta g", f_float, f_int, f_true FROM "we ird,m""#)
        .await
        .unwrap();
    let oids: Vec<u32> = stmt.columns().iter().map(|c| c.type_().oid()).collect();
    assert_eq!(oids, vec![1114, 25, 701, 20, 16]);

    // After a restart the rows come from a Parquet segment of a table whose name needs
    // escaping on disk.
    drop(c);
    assert_eq!(s.stop(), Some(0));
    s.restart();
    let c = s.pg().await;
    let row = c
        .query_one(r#"SELECT count(*), max(f_str) FROM "we ird,m""#, &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    assert_eq!(row.get::<_, String>(1), r#"say "hi" \ there"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_write_keeps_good_lines_and_names_bad_ones() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let body = "m,h=a v=1 1\nm,h=a v=oops 2\nm,h=b v=3 3\nm,h=c v=4i 4\nm v= 5\nm,h=d v=6 notatime\nm,h=e v=7 7\n";
    let (status, resp) = s.write_lp(body).await;
    assert_eq!(status, 400, "{resp}");
    let json: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(json["lines_written"], 3);
    assert_eq!(json["lines_rejected"], 4);
    let errors = json["errors"].as_array().unwrap();
    let lines: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![2, 4, 5, 6]);
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("double-quoted")
    );
    assert!(
        errors[1]["message"]
            .as_str()
            .unwrap()
            .contains("float field"),
        "{resp}"
    );
    assert!(
        errors[3]["message"]
            .as_str()
            .unwrap()
            .contains("invalid timestamp")
    );

    let c = s.pg().await;
    let rows = c
        .query("SELECT h, v FROM m ORDER BY time", &[])
        .await
        .unwrap();
    let got: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![("a".into(), 1.0), ("b".into(), 3.0), ("e".into(), 7.0)]
    );

    // A later request conflicting with the stored type is rejected by line as well.
    let (status, resp) = s.write_lp("m,h=z v=\"text\" 9\n").await;
    assert_eq!(status, 400);
    assert!(resp.contains("column \\\"v\\\" is a float field"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precisions_endpoints_gzip_and_limits() {
    let dir = data_dir();
    let s = Server::start_with(dir.path(), &["--request-bytes-max", "4096"]);
    let cases = [
        (
            "/write?db=eddy&precision=h",
            "p,e=v1 v=1 2",
            2 * 3_600_000_000_000i64,
        ),
        (
            "/write?db=eddy&precision=m",
            "p,e=v1m v=1 2",
            2 * 60_000_000_000,
        ),
        ("/write?db=eddy&precision=s", "p,e=v1s v=1 2", 2_000_000_000),
        ("/write?db=eddy&precision=ms", "p,e=v1ms v=1 2", 2_000_000),
        ("/write?db=eddy&precision=u", "p,e=v1u v=1 2", 2_000),
        ("/write?db=eddy", "p,e=v1ns v=1 2", 2),
        (
            "/api/v2/write?bucket=eddy&org=x&precision=s",
            "p,e=v2 v=1 3",
            3_000_000_000,
        ),
        (
            "/api/v3/write_lp?db=eddy&precision=ms",
            "p,e=v3 v=1 4",
            4_000_000,
        ),
    ];
    for (path, body, _) in cases {
        let (status, resp) = s.post(&s.url(path), body).await;
        assert_eq!(status, 204, "{path}: {resp}");
    }
    let c = s.pg().await;
    for (path, body, want) in cases {
        let tag = body.split(' ').next().unwrap().trim_start_matches("p,e=");
        let row = c
            .query_one("SELECT CAST(time AS BIGINT) FROM p WHERE e = $1", &[&tag])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), want, "{path}");
    }
    let (status, _) = s.post(&s.url("/write?precision=fortnight"), "p v=1").await;
    assert_eq!(status, 400);

    // Gzip body.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"gz,k=a v=1i 10\ngz,k=b v=2i 20\n").unwrap();
    let r = reqwest::Client::new()
        .post(s.url("/api/v2/write?bucket=eddy"))
        .header("Content-Encoding", "gzip")
        .body(enc.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let n: i64 = c
        .query_one("SELECT sum(v) FROM gz", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    // Over the limit: plain and after decompression.
    let big = "x v=1 1\n".repeat(1000);
    let (status, _) = s.write_lp(big.clone()).await;
    assert_eq!(status, 413);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(big.as_bytes()).unwrap();
    let r = reqwest::Client::new()
        .post(s.url("/api/v2/write?bucket=eddy"))
        .header("Content-Encoding", "gzip")
        .body(enc.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let r = reqwest::Client::new()
        .post(s.url("/api/v2/write?bucket=eddy"))
        .header("Content-Encoding", "br")
        .body("x v=1 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert!(r.text().await.unwrap().contains("br"));

    // A bad key rejects its line only.
    let long = "k".repeat(300);
    let (status, resp) = s
        .write_lp(format!("keys v=1 1\nkeys {long}=2 2\nkeys w=3 3\n"))
        .await;
    assert_eq!(status, 400, "{resp}");
    let json: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(json["lines_written"], 2);
    assert_eq!(json["errors"][0]["line"], 2);
    assert!(
        json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("255 bytes"),
        "{resp}"
    );

    let health = reqwest::get(s.url("/health")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_evolves_and_upserts_merge_field_by_field() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    assert_eq!(s.write_lp("w,host=a f1=1 100\n").await.0, 204);
    // New field and new tag on later writes.
    assert_eq!(
        s.write_lp("w,host=a f2=2 200\nw,host=a,dc=x f1=3 300\n")
            .await
            .0,
        204
    );
    // Same key again setting only f2: f1 is kept.
    assert_eq!(s.write_lp("w,host=a f2=20 100\n").await.0, 204);
    let c = s.pg().await;
    let rows = c
        .query(
            "SELECT CAST(time AS BIGINT) AS t, host, dc, f1, f2 FROM w ORDER BY t",
            &[],
        )
        .await
        .unwrap();
    type Row = (i64, String, Option<String>, Option<f64>, Option<f64>);
    let got: Vec<Row> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        got,
        vec![
            (100, "a".into(), None, Some(1.0), Some(20.0)),
            (200, "a".into(), None, None, Some(2.0)),
            (300, "a".into(), Some("x".into()), Some(3.0), None),
        ]
    );
    // A tag may not be written as a field.
    let (status, resp) = s.write_lp("w,host=a dc=1 400\n").await;
    assert_eq!(status, 400);
    assert!(resp.contains("is a tag"), "{resp}");
}

/// Retention applies to line protocol whatever the table's column order: a table made by SQL
/// with its time column last rejects only the expired line and keeps the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_rejects_expired_lines_when_time_is_not_the_first_column() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    c.batch_execute(
        "CREATE TABLE r (host TEXT, v DOUBLE PRECISION, time TIMESTAMP NOT NULL, \
         PRIMARY KEY (host, time)); ALTER TABLE r SET (retention = '1 day')",
    )
    .await
    .unwrap();
    let (status, resp) = s.write_lp("r,host=a v=1 1000000000\nr,host=b v=2\n").await;
    assert_eq!(status, 400, "{resp}");
    let json: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(json["lines_written"], 1, "{resp}");
    assert_eq!(json["lines_rejected"], 1, "{resp}");
    assert_eq!(json["errors"][0]["line"], 1, "{resp}");
    let message = json["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("table \"r\" keeps 1 days"), "{message}");

    let rows = c.query("SELECT host, v FROM r", &[]).await.unwrap();
    let got: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![("b".to_string(), 2.0)]);
}
