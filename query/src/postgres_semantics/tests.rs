//! Planner-level tests: SQL planned and run in a context set up as the engine sets up its own.

use datafusion::arrow::datatypes::IntervalMonthDayNano;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

use crate::error::{ErrorKind, QueryError};

const MINUTE: i64 = 60_000_000_000;
const HOUR: i64 = 60 * MINUTE;

fn context() -> SessionContext {
    let ctx = SessionContext::new();
    crate::overflow::register(&ctx);
    super::register(&ctx);
    ctx
}

/// Parses, plans and runs `sql` as the engine does (PostgreSQL's dialect, the statement
/// rewrite, planning in the session state).
async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let mut stmts = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})?;
    let stmt = stmts
        .pop_front()
        .ok_or_else(|| QueryError::internal("no statement"))?;
    let plan = ctx
        .state()
        .statement_to_plan(super::rewrite_statement(stmt))
        .await?;
    Ok(ctx.execute_logical_plan(plan).await?.collect().await?)
}

/// The first column of what `sql` answers.
async fn column(ctx: &SessionContext, sql: &str) -> Vec<ScalarValue> {
    let batches = run(ctx, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut values = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            values
                .push(ScalarValue::try_from_array(batch.column(0).as_ref(), row).expect("a value"));
        }
    }
    values
}

/// The one value `sql` answers.
async fn value(ctx: &SessionContext, sql: &str) -> ScalarValue {
    let mut values = column(ctx, sql).await;
    assert_eq!(values.len(), 1, "{sql}: {values:?}");
    values.remove(0)
}

/// The error `sql` fails with, planning or running.
async fn error(ctx: &SessionContext, sql: &str) -> QueryError {
    match run(ctx, sql).await {
        Ok(batches) => panic!("{sql} answered {batches:?}"),
        Err(e) => e,
    }
}

fn interval(months: i32, days: i32, nanoseconds: i64) -> ScalarValue {
    ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(months, days, nanoseconds)))
}

fn boolean(b: bool) -> ScalarValue {
    ScalarValue::Boolean(Some(b))
}

#[tokio::test]
async fn intervals_multiply_and_divide_by_numbers() {
    let ctx = context();
    for (sql, expected) in [
        (
            "SELECT interval '5 minutes' * 3",
            interval(0, 0, 15 * MINUTE),
        ),
        (
            "SELECT interval '5 minutes' * 2.5",
            interval(0, 0, 25 * MINUTE / 2),
        ),
        (
            "SELECT interval '5 minutes' * floor(3.7)",
            interval(0, 0, 15 * MINUTE),
        ),
        ("SELECT 3 * interval '1 day'", interval(0, 3, 0)),
        ("SELECT interval '1 month' * 1.5", interval(1, 15, 0)),
        ("SELECT interval '1 day' / 4", interval(0, 0, 6 * HOUR)),
        (
            "SELECT interval '1 day 2 hours' * 0.5",
            interval(0, 0, 13 * HOUR),
        ),
        (
            "SELECT interval '1 day' * CAST(1.5 AS DECIMAL(3, 1))",
            interval(0, 1, 12 * HOUR),
        ),
        ("SELECT -2 * interval '1 hour'", interval(0, 0, -2 * HOUR)),
    ] {
        assert_eq!(value(&ctx, sql).await, expected, "{sql}");
    }
    assert_eq!(
        column(
            &ctx,
            "SELECT i * interval '1 hour' FROM (VALUES (1), (2), (NULL)) AS v(i)"
        )
        .await,
        vec![
            interval(0, 0, HOUR),
            interval(0, 0, 2 * HOUR),
            ScalarValue::IntervalMonthDayNano(None)
        ]
    );
}

#[tokio::test]
async fn superset_time_grains_plan_and_run() {
    let ctx = context();
    let minutes = "SELECT DATE_TRUNC('hour', t) + INTERVAL '5 minutes' * FLOOR(EXTRACT(MINUTE FROM t) / 5) \
         = TIMESTAMP '2024-01-01 10:15:00' FROM (VALUES (TIMESTAMP '2024-01-01 10:17:30')) AS v(t)";
    assert_eq!(value(&ctx, minutes).await, boolean(true));
    let seconds = "SELECT DATE_TRUNC('minute', t) + INTERVAL '5 seconds' * FLOOR(EXTRACT(SECOND FROM t) / 5) \
         = TIMESTAMP '2024-01-01 10:17:35' FROM (VALUES (TIMESTAMP '2024-01-01 10:17:37.5')) AS v(t)";
    assert_eq!(value(&ctx, seconds).await, boolean(true));
    // Grouped by the grain, as Superset groups.
    let grouped = "SELECT count(*) FROM (VALUES (TIMESTAMP '2024-01-01 10:16:00'), \
         (TIMESTAMP '2024-01-01 10:19:00'), (TIMESTAMP '2024-01-01 10:21:00')) AS v(t) \
         GROUP BY DATE_TRUNC('hour', t) + INTERVAL '5 minutes' * FLOOR(EXTRACT(MINUTE FROM t) / 5) \
         ORDER BY 1";
    assert_eq!(
        column(&ctx, grouped).await,
        vec![ScalarValue::Int64(Some(1)), ScalarValue::Int64(Some(2))]
    );
}

#[tokio::test]
async fn interval_overflow_and_division_by_zero_are_errors() {
    let ctx = context();
    for sql in [
        "SELECT interval '1 day' * 9223372036854775807",
        "SELECT interval '1 hour' * 1e300",
        "SELECT interval '2000000000 days' * 2",
    ] {
        let e = error(&ctx, sql).await;
        assert_eq!(e.kind, ErrorKind::DatetimeOutOfRange, "{sql}: {e}");
        assert_eq!(e.message, "interval out of range", "{sql}");
    }
    let e = error(&ctx, "SELECT interval '1 day' / 0").await;
    assert_eq!(e.kind, ErrorKind::DivisionByZero, "{e}");
    assert_eq!(e.message, "division by zero");
}

#[tokio::test]
async fn quoted_literals_take_the_boolean_type() {
    let ctx = context();
    for (sql, expected) in [
        ("SELECT true = 'f'", false),
        ("SELECT 't' = true", true),
        ("SELECT false <> 'no'", false),
        ("SELECT true > 'off'", true),
        ("SELECT true = ' YES '", true),
        // Text with text stays text.
        ("SELECT 't' = 'true'", false),
    ] {
        assert_eq!(value(&ctx, sql).await, boolean(expected), "{sql}");
    }
    let values = "FROM (VALUES (true), (false), (true), (NULL)) AS v(b)";
    for (filter, expected) in [
        ("b = 'f'", 1),
        ("'t' = b", 2),
        ("b IN ('t', 'yes')", 2),
        ("b NOT IN ('true')", 1),
        ("b IN ('f', b)", 3),
    ] {
        let sql = format!("SELECT count(*) {values} WHERE {filter}");
        assert_eq!(
            value(&ctx, &sql).await,
            ScalarValue::Int64(Some(expected)),
            "{sql}"
        );
    }
    for sql in [
        "SELECT true = 'maybe'",
        "SELECT 'maybe' <> false",
        "SELECT count(*) FROM (VALUES (true)) AS v(b) WHERE b IN ('t', 'maybe')",
    ] {
        let e = error(&ctx, sql).await;
        assert_eq!(e.kind, ErrorKind::InvalidTextRepresentation, "{sql}: {e}");
        assert_eq!(
            e.message, "invalid input syntax for type boolean: \"maybe\"",
            "{sql}"
        );
    }
}

#[tokio::test]
async fn quoted_literals_take_interval_and_duration_types() {
    let ctx = context();
    for sql in [
        "SELECT interval '1 hour' = '1 hour'",
        "SELECT interval '2 hours' > '90 minutes'",
        "SELECT '1 day' = interval '1 day'",
        "SELECT TIMESTAMP '2024-01-01 02:00:00' - TIMESTAMP '2024-01-01 00:00:00' > '1 hour'",
        "SELECT TIMESTAMP '2024-01-01 02:00:00' - TIMESTAMP '2024-01-01 00:00:00' < '3 hours'",
    ] {
        assert_eq!(value(&ctx, sql).await, boolean(true), "{sql}");
    }
    let e = error(&ctx, "SELECT interval '1 hour' = 'soon'").await;
    assert_eq!(e.kind, ErrorKind::InvalidTextRepresentation, "{e}");
    assert_eq!(
        e.message,
        "invalid input syntax for type interval: \"soon\""
    );
    // What DataFusion compares with text itself is left to it.
    assert_eq!(value(&ctx, "SELECT 1 = '1'").await, boolean(true));
}

#[tokio::test]
async fn like_takes_any_escape_character() {
    let ctx = context();
    for (sql, expected) in [
        ("SELECT 'pg_toast' LIKE 'pg^_%' ESCAPE '^'", true),
        ("SELECT 'pgxtoast' LIKE 'pg^_%' ESCAPE '^'", false),
        ("SELECT 'public' NOT LIKE 'pg^_%' ESCAPE '^'", true),
        ("SELECT 'pg_toast' NOT LIKE 'pg^_%' ESCAPE '^'", false),
        ("SELECT 'a%b' LIKE 'a#%b' ESCAPE '#'", true),
        ("SELECT 'axb' LIKE 'a#%b' ESCAPE '#'", false),
        ("SELECT 'a^b' LIKE 'a^^b' ESCAPE '^'", true),
        ("SELECT 'PG_toast' ILIKE 'pg^_%' ESCAPE '^'", true),
        ("SELECT 'PGxtoast' ILIKE 'pg^_%' ESCAPE '^'", false),
        ("SELECT 'PG_TOAST' NOT ILIKE 'pg^_%' ESCAPE '^'", false),
        // A backslash is an ordinary character when another one escapes.
        (r"SELECT 'a\b' LIKE 'a\b' ESCAPE '^'", true),
        (r"SELECT 'ab' LIKE 'a\b' ESCAPE '^'", false),
        // No escape character at all.
        (r"SELECT 'a\b' LIKE 'a\b' ESCAPE ''", true),
        (r"SELECT 'ab' LIKE 'a\b' ESCAPE ''", false),
        ("SELECT 'ab' LIKE 'a_' ESCAPE ''", true),
        ("SELECT 'a_' LIKE 'a_' ESCAPE ''", true),
        // The backslash as the escape, as before.
        (r"SELECT 'a%' LIKE 'a\%' ESCAPE '\'", true),
        (r"SELECT 'ab' LIKE 'a\%' ESCAPE '\'", false),
    ] {
        assert_eq!(value(&ctx, sql).await, boolean(expected), "{sql}");
    }
}

#[tokio::test]
async fn like_escapes_patterns_that_are_not_literals() {
    let ctx = context();
    // SQLAlchemy's get_schema_names (startswith with autoescape), parameter inlined.
    let schemas = "SELECT nspname FROM (VALUES ('pg_toast'), ('public'), ('pgx'), ('pg_catalog')) \
         AS n(nspname) WHERE nspname NOT LIKE 'pg/_' || '%' ESCAPE '/' ORDER BY nspname";
    let names: Vec<String> = column(&ctx, schemas)
        .await
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(names, ["pgx", "public"]);
    let patterns = "SELECT s LIKE p ESCAPE '^' FROM (VALUES ('a_b', 'a^_b'), ('axb', 'a^_b'), \
         ('a^b', 'a^^b'), (NULL, 'a'), ('a', NULL)) AS v(s, p)";
    assert_eq!(
        column(&ctx, patterns).await,
        vec![
            boolean(true),
            boolean(false),
            boolean(true),
            ScalarValue::Boolean(None),
            ScalarValue::Boolean(None)
        ]
    );
    let e = error(
        &ctx,
        "SELECT s LIKE p ESCAPE '^' FROM (VALUES ('a', 'a^')) AS v(s, p)",
    )
    .await;
    assert_eq!(e.kind, ErrorKind::InvalidEscapeSequence, "{e}");
}

#[tokio::test]
async fn like_patterns_ending_in_the_escape_are_errors() {
    let ctx = context();
    for sql in [
        "SELECT 'a' LIKE 'a^' ESCAPE '^'",
        "SELECT 'a' NOT ILIKE 'a^' ESCAPE '^'",
        "SELECT 'a' LIKE 'a' || '^' ESCAPE '^'",
    ] {
        let e = error(&ctx, sql).await;
        assert_eq!(e.kind, ErrorKind::InvalidEscapeSequence, "{sql}: {e}");
        assert_eq!(
            e.message, "LIKE pattern must not end with escape character",
            "{sql}"
        );
    }
}
