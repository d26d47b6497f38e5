//! Values out of range are errors with PostgreSQL's SQLSTATEs, never wrapped or saturated
//! answers: integer arithmetic, negation, `abs`, casts to narrower integers (22003), and
//! timestamps beyond what nanoseconds hold (22008), on constants and on table columns alike.

use tokio_postgres::SimpleQueryMessage;

use crate::common::{Server, data_dir};

/// The SQLSTATE and message of a statement that must fail.
async fn sqlstate(c: &tokio_postgres::Client, sql: &str) -> (String, String) {
    let e = c.simple_query(sql).await.expect_err(sql);
    let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// The first row of a statement, as text.
async fn first_row(c: &tokio_postgres::Client, sql: &str) -> Vec<Option<String>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(String::from)).collect())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

async fn assert_out_of_range(c: &tokio_postgres::Client, sql: &str, code: &str, message: &str) {
    let (got, msg) = sqlstate(c, sql).await;
    assert_eq!(got, code, "{sql}: {msg}");
    assert!(msg.contains(message), "{sql}: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_overflow_on_constants_is_22003() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    for (sql, message) in [
        ("SELECT 9223372036854775807 + 1", "bigint out of range"),
        ("SELECT -9223372036854775808 - 1", "bigint out of range"),
        ("SELECT 4611686018427387904 * 2", "bigint out of range"),
        ("SELECT -(-9223372036854775807 - 1)", "bigint out of range"),
        (
            "SELECT abs(-9223372036854775807 - 1)",
            "bigint out of range",
        ),
        ("SELECT (-9223372036854775807 - 1) / -1", "out of range"),
        // Inside a larger expression: the overflow is not folded away.
        (
            "SELECT (9223372036854775807 + 1) - 1",
            "bigint out of range",
        ),
        ("SELECT 2147483647::int4 + 1::int4", "integer out of range"),
        (
            "SELECT (-2147483647)::int4 - 2::int4",
            "integer out of range",
        ),
        ("SELECT 32767::int2 * 2::int2", "smallint out of range"),
        ("SELECT 2147483648::int4", "integer out of range"),
        ("SELECT 1e30::bigint", "bigint out of range"),
        (
            "SELECT '99999999999'::int",
            "value \"99999999999\" is out of range for type integer",
        ),
    ] {
        assert_out_of_range(&c, sql, "22003", message).await;
    }
    // A parameter is a constant too.
    let e = c
        .query("SELECT $1::bigint + 1", &[&i64::MAX])
        .await
        .expect_err("parameter overflow");
    assert_eq!(e.code().map(|c| c.code()), Some("22003"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arithmetic_in_range_keeps_its_values_and_names() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    let rows = c.query("SELECT 1 + 2", &[]).await.unwrap();
    assert_eq!(rows[0].columns()[0].name(), "?column?");
    assert_eq!(rows[0].get::<_, i64>(0), 3);
    assert_eq!(
        first_row(
            &c,
            "SELECT 9223372036854775806 + 1, -9223372036854775807 - 1, 3037000499 * 3037000499, \
             -(-9223372036854775807), abs(-9223372036854775807), 7 - 10, -(5), \
             2147483646::int4 + 1::int4"
        )
        .await,
        [
            "9223372036854775807",
            "-9223372036854775808",
            "9223372030926249001",
            "9223372036854775807",
            "9223372036854775807",
            "-3",
            "-5",
            "2147483647",
        ]
        .map(|v| Some(v.to_string()))
    );
    let rows = c
        .query("SELECT $1::bigint + 1 AS next", &[&41i64])
        .await
        .unwrap();
    assert_eq!(rows[0].columns()[0].name(), "next");
    assert_eq!(rows[0].get::<_, i64>(0), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_overflow_on_table_columns_is_22003() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    assert_eq!(
        s.write_lp(
            "m,host=a v=9223372036854775807i,w=-9223372036854775808i,u=18446744073709551615u 0\n"
        )
        .await
        .0,
        204
    );
    for (sql, message) in [
        ("SELECT v + 1 FROM m", "bigint out of range"),
        ("SELECT w - 1 FROM m", "bigint out of range"),
        ("SELECT w * 2 FROM m", "bigint out of range"),
        ("SELECT -w FROM m", "bigint out of range"),
        ("SELECT abs(w) FROM m", "bigint out of range"),
        ("SELECT v::int4 FROM m", "integer out of range"),
        ("SELECT u + u FROM m", "out of range"),
        (
            "SELECT count(*) FROM m WHERE v + 1 > 0",
            "bigint out of range",
        ),
        (
            "SELECT host, max(v * 2) FROM m GROUP BY host",
            "bigint out of range",
        ),
    ] {
        assert_out_of_range(&c, sql, "22003", message).await;
    }
    // The extended protocol reports the same.
    let e = c
        .query("SELECT v + 1 FROM m", &[])
        .await
        .expect_err("v + 1");
    assert_eq!(e.code().map(|c| c.code()), Some("22003"), "{e}");

    // In range, the same columns answer as before, under PostgreSQL's names.
    let rows = c
        .query("SELECT v - 1, w + 1, -v, v + w FROM m", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].columns()[0].name(), "?column?");
    assert_eq!(rows[0].get::<_, i64>(0), i64::MAX - 1);
    assert_eq!(rows[0].get::<_, i64>(1), i64::MIN + 1);
    assert_eq!(rows[0].get::<_, i64>(2), -i64::MAX);
    assert_eq!(rows[0].get::<_, i64>(3), -1);
    // Rows are checked, not expressions: a branch no row takes does not fail.
    assert_eq!(
        first_row(&c, "SELECT CASE WHEN v < 0 THEN v + 1 ELSE 0 END FROM m").await,
        vec![Some("0".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_out_of_range_are_22008() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    for (sql, message) in [
        (
            "SELECT to_timestamp(1e30)",
            "timestamp out of range: \"1e30\"",
        ),
        (
            "SELECT to_timestamp(-1e30)",
            "timestamp out of range: \"-1e30\"",
        ),
        (
            "SELECT to_timestamp(9223372037)",
            "timestamp out of range: \"9223372037\"",
        ),
        (
            "SELECT to_timestamp('NaN'::double precision)",
            "timestamp cannot be NaN",
        ),
        (
            "SELECT TIMESTAMP '2262-04-01 00:00:00' + INTERVAL '30 days'",
            "timestamp out of range",
        ),
        (
            "SELECT TIMESTAMP '1677-10-01 00:00:00' - INTERVAL '30 days'",
            "timestamp out of range",
        ),
        (
            "SELECT '2262-04-12 00:00:00'::timestamp",
            "timestamp out of range",
        ),
    ] {
        assert_out_of_range(&c, sql, "22008", message).await;
    }

    // Seconds from a column are checked the same way.
    assert_eq!(s.write_lp("t secs=1e30,ok=1700000000.5 0\n").await.0, 204);
    assert_out_of_range(
        &c,
        "SELECT to_timestamp(secs) FROM t",
        "22008",
        "timestamp out of range",
    )
    .await;

    // In range, to_timestamp answers as before, up to the edges of the nanosecond range.
    assert_eq!(
        first_row(
            &c,
            "SELECT to_timestamp(ok) > to_timestamp(1700000000), \
             to_timestamp(9223372036) > to_timestamp(0), \
             to_timestamp(-9223372036) < to_timestamp(0), \
             to_timestamp(1.5) = to_timestamp(1) + INTERVAL '500 milliseconds' FROM t"
        )
        .await,
        ["t", "t", "t", "t"].map(|v| Some(v.to_string()))
    );
}
