//! Statements that used to crash or freeze the whole server: deep operator chains, huge
//! values, and settings that would lift the server's limits. Each gets an error naming the
//! limit, and the server goes on serving everyone else.

use crate::common::{Server, data_dir};

async fn sqlstate(c: &tokio_postgres::Client, sql: &str) -> (String, String) {
    let e = c
        .simple_query(sql)
        .await
        .expect_err(&sql[..sql.len().min(60)]);
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("{}: {e}", &sql[..sql.len().min(60)]));
    (db.code().code().to_string(), db.message().to_string())
}

/// The server still answers both protocols.
async fn alive(s: &Server) {
    let c = s.pg().await;
    let rows = c
        .simple_query("SELECT 41 + 1")
        .await
        .expect("a fresh client");
    assert!(rows.iter().any(
        |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("42"))
    ));
    let health = reqwest::get(s.url("/health")).await.expect("health");
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_statements_are_refused_as_too_complex_and_crash_nothing() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    let deep = [
        format!("SELECT {}", vec!["1"; 2_000].join("+")),
        format!("SELECT 1 WHERE {}", vec!["true"; 50_000].join(" AND ")),
        format!("SELECT 1 WHERE {}", vec!["1 = 1"; 20_000].join(" OR ")),
        vec!["SELECT 1"; 10_000].join(" UNION ALL "),
        format!("SELECT length({})", vec!["'a'"; 50_000].join(" || ")),
        format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000)),
    ];
    for sql in &deep {
        let (code, message) = sqlstate(&c, sql).await;
        assert_eq!(code, "54001", "{}: {message}", &sql[..40]);
        // The same through the extended protocol (Parse), which plans at once.
        let e = c.prepare(sql).await.expect_err("prepare");
        let db = e.as_db_error().expect("db error");
        assert_eq!(db.code().code(), "54001", "{}", db.message());
    }
    // The connection that sent them is still usable, and so is the server.
    let n: i64 = c.query_one("SELECT 2::bigint", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
    alive(&s).await;

    // Long chains under the limit still answer, with the right values.
    let sum = format!("SELECT {}", vec!["1"; 900].join("+"));
    let rows = c.simple_query(&sum).await.expect("900 terms");
    let got = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(got.as_deref(), Some("900"));
    let union = vec!["SELECT 1 AS one"; 900].join(" UNION ALL ");
    let rows = c.query(union.as_str(), &[]).await.expect("900 unions");
    assert_eq!(rows.len(), 900);
    let concat = format!("SELECT length({})", vec!["'ab'"; 900].join(" || "));
    let rows = c
        .query(concat.as_str(), &[])
        .await
        .expect("900 concatenations");
    assert_eq!(rows[0].get::<_, i32>(0), 1_800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_values_are_refused_before_they_are_built() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    for sql in [
        "SELECT length(lpad('x', 2147483647))",
        "SELECT length(rpad('x', 1000000000, 'yz'))",
        "SELECT length(repeat('abcdefgh', 100000000))",
    ] {
        let (code, message) = sqlstate(&c, sql).await;
        assert_eq!(code, "54000", "{sql}: {message}");
        assert!(message.contains("requested length too large"), "{message}");
    }
    // From a column as well as a constant.
    c.batch_execute(
        "CREATE TABLE pads (time TIMESTAMP NOT NULL, n BIGINT, PRIMARY KEY (time));
         INSERT INTO pads VALUES ('2024-01-01T00:00:00', 3), ('2024-01-01T00:00:01', 2000000000);",
    )
    .await
    .unwrap();
    let (code, _) = sqlstate(&c, "SELECT length(lpad('x', n)) FROM pads").await;
    assert_eq!(code, "54000");
    // Ordinary sizes still work.
    let row = c
        .query_one(
            "SELECT lpad('7', 3, '0'), rpad('a', 3, 'b'), repeat('ab', 3)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "007");
    assert_eq!(row.get::<_, String>(1), "abb");
    assert_eq!(row.get::<_, String>(2), "ababab");
    let n: i32 = c
        .query_one(
            "SELECT length(lpad('x', n::int)) FROM pads WHERE n = 3",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    alive(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_cannot_change_the_servers_resource_settings() {
    let dir = data_dir();
    let s = Server::start_with(dir.path(), &["--query-memory-bytes-max", "67108864"]);
    let c = s.pg().await;
    let outside = dir.path().join("elsewhere");
    for sql in [
        "SET datafusion.runtime.memory_limit = '8G'".to_string(),
        format!(
            "SET datafusion.runtime.temp_directory = '{}'",
            outside.display()
        ),
        "SET datafusion.runtime.max_temp_directory_size = '1T'".to_string(),
        "SET datafusion.execution.sort_spill_reservation_bytes = 1".to_string(),
        "SET datafusion.catalog.location = '/etc'".to_string(),
    ] {
        let (code, message) = sqlstate(&c, &sql).await;
        assert_eq!(code, "42501", "{sql}: {message}");
        assert!(
            message.contains("permission denied to set parameter"),
            "{message}"
        );
    }
    assert!(
        !outside.exists(),
        "a session made a directory on the server"
    );
    // Planning settings stay the session's.
    c.batch_execute("SET datafusion.execution.batch_size = 7")
        .await
        .expect("a planning setting");
    alive(&s).await;
}
