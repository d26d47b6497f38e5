//! The SQL Grafana's built-in PostgreSQL data source sends, verbatim as its macro engine and
//! query builder produce it (pkg/tsdb/grafana-postgresql-datasource/macros.go and
//! postgresMetaQuery.ts): health check, version and TimescaleDB detection, `$__timeFilter`,
//! `$__timeGroupAlias` (plain and with the TimescaleDB toggle), `$__unixEpochFilter` and
//! `$__unixEpochGroupAlias`, and the builder's listings of schemas, tables and columns (with
//! PostgreSQL type names).
//! Grafana uses the simple query protocol and text results, as this test does.

use tokio_postgres::SimpleQueryMessage;

use crate::common::{Server, data_dir};

async fn rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e:?}"));
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_postgres_data_source_queries() {
    let dir = data_dir();
    let srv = Server::start(dir.path());
    // Two hosts, one reading a minute for three minutes from 2024-01-01T00:00:00Z.
    let mut lp = String::new();
    for (i, host) in ["a", "b"].iter().enumerate() {
        for m in 0..3i64 {
            let t = 1_704_067_200 + m * 60;
            lp.push_str(&format!(
                "gm,host={host} v={},ts_s={t}i {t}000000000\n",
                (i as i64 + 1) * 10 + m
            ));
        }
    }
    assert_eq!(srv.write_lp(lp).await.0, 204);
    let c = srv.pg().await;

    // Save & test: pgx sends `-- ping`, lib/pq `;`.
    for q in ["-- ping", ";"] {
        assert!(rows(&c, q).await.is_empty());
    }
    assert_eq!(
        rows(
            &c,
            "SELECT current_setting('server_version_num')::int/100 as version"
        )
        .await,
        vec![vec![s("1600")]]
    );
    assert!(
        rows(
            &c,
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        )
        .await
        .is_empty()
    );

    // Time series: $__timeGroupAlias(time, 1m) and $__timeFilter(time).
    let q = "SELECT floor(extract(epoch from time)/60)*60 AS \"time\", avg(v) AS v FROM gm \
             WHERE time BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-01T00:01:30.5Z' \
             GROUP BY 1 ORDER BY 1";
    assert_eq!(
        rows(&c, q).await,
        vec![
            vec![s("1704067200"), s("15")],
            vec![s("1704067260"), s("16")]
        ]
    );
    // The TimescaleDB toggle: time_bucket('60.000s',time), with a metric column.
    let q = "SELECT time_bucket('60.000s',time) AS \"time\", host AS metric, max(v) AS v FROM gm \
             WHERE time BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-01T00:05:00Z' \
             GROUP BY 1, 2 ORDER BY 1, 2";
    let got = rows(&c, q).await;
    assert_eq!(got.len(), 6);
    assert_eq!(got[0], vec![s("2024-01-01 00:00:00"), s("a"), s("10")]);
    assert_eq!(got[5], vec![s("2024-01-01 00:02:00"), s("b"), s("22")]);
    // $__unixEpochFilter(ts_s) and $__unixEpochGroupAlias(ts_s, 2m) on an integer column.
    let q = "SELECT floor((ts_s)/120)*120 AS \"time\", count(*) AS n FROM gm \
             WHERE ts_s >= 1704067200 AND ts_s <= 1704067320 GROUP BY 1 ORDER BY 1";
    assert_eq!(
        rows(&c, q).await,
        vec![vec![s("1704067200"), s("4")], vec![s("1704067320"), s("2")]]
    );

    // The query builder's drop-downs: schemas, tables (in the search_path unqualified) and
    // the columns a panel can use, with the PostgreSQL type names Grafana matches on.
    let schemas = rows(
        &c,
        "SELECT schema_name AS \"name\"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name",
    )
    .await;
    assert_eq!(schemas, vec![vec![s("public")]]);
    let in_search_path = "
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )";
    let tables = rows(
        &c,
        &format!(
            "SELECT
    CASE WHEN {in_search_path}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS \"table\"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN {in_search_path} THEN 0 ELSE 1 END, 1"
        ),
    )
    .await;
    assert!(tables.contains(&vec![s("gm")]), "{tables:?}");
    assert!(
        tables
            .iter()
            .all(|t| !t[0].as_deref().unwrap_or("").contains('.')),
        "every table is in the search path: {tables:?}"
    );
    let tables_of_public = rows(
        &c,
        "SELECT quote_ident(table_name) AS \"table\"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'public'
      ORDER BY 1",
    )
    .await;
    assert_eq!(tables_of_public, tables);
    let want = vec![
        vec![s("host"), s("text")],
        vec![s("time"), s("timestamp without time zone")],
        vec![s("ts_s"), s("bigint")],
        vec![s("v"), s("double precision")],
    ];
    for table in ["gm", "public.gm"] {
        let mut cols = rows(
            &c,
            &format!(
                "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('{table}'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('{table}'))[1]
          AND quote_ident(table_name) = (parse_ident('{table}'))[2]
        ELSE quote_ident(table_name) = '{table}'
          AND {in_search_path}
      END"
            ),
        )
        .await;
        cols.sort();
        assert_eq!(cols, want, "columns of {table}");
    }
}
