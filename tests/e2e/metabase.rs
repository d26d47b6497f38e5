//! The SQL Metabase's PostgreSQL driver sends when a database is added and synced, verbatim
//! as its sources build it (metabase/metabase src/metabase/driver/postgres.clj and
//! src/metabase/driver/sql_jdbc/sync/, a release later than v0.50): connection test, table
//! privileges, table listing, time zone, enum types, columns, foreign keys, the fingerprint
//! sample and the field-values query; plus what pgjdbc and c3p0 send around them. Metabase
//! itself is not run (it is not available to the test machines). Parameters are bound the way
//! pgjdbc binds them (`varchar` strings, `int8` numbers) over the extended protocol, and every
//! answer is checked as Metabase reads it: a table it cannot see, or a column with the wrong
//! type, would silently go missing from its data model.

use tokio_postgres::types::{ToSql, Type};

use crate::common::{Server, data_dir};

/// Connection test (`can-connect?`): the single value must be 1.
const CONNECTION_TEST: &str = r#"SELECT 1"#;

/// `current-user-table-privileges :postgres`: a table is synced only with `select` true.
const TABLE_PRIVILEGES: &str = r#"with table_privileges as (
 select
   NULL as role,
   t.schemaname as schema,
   t.objectname as table,
   pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'update') as update,
   pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'select') as select,
   pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'insert') as insert,
   pg_catalog.has_table_privilege(     current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'delete') as delete
 from (
   select schemaname, tablename as objectname from pg_catalog.pg_tables
   union
   select schemaname, viewname as objectname from pg_catalog.pg_views
   union
   select schemaname, matviewname as objectname from pg_catalog.pg_matviews
 ) t
 where t.schemaname !~ '^pg_'
   and t.schemaname <> 'information_schema'
   and pg_catalog.has_schema_privilege(current_user, t.schemaname, 'usage')
)
select t.*
from table_privileges t"#;

/// `get-tables-sql`: $1 = 0 (int8), $2 = '^pg_', $3 = 'information_schema', $4 = 'public'.
const TABLES: &str = r#"SELECT "n"."nspname" AS "schema", "c"."relname" AS "name", CASE "c"."relkind" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS "type", "d"."description" AS "description", "stat"."n_live_tup" AS "estimated_row_count" FROM "pg_catalog"."pg_class" AS "c" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid" LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid") AND ("d"."objsubid" = $1) AND ("d"."classoid" = 'pg_class'::regclass) LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname") AND ("c"."relname" = "stat"."relname") WHERE ("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ $2) AND ("n"."nspname" <> $3) AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND ("n"."nspname" IN ($4)) ORDER BY "type" ASC, "schema" ASC, "name" ASC"#;

/// `db-default-timezone :postgres`.
const TIMEZONE: &str = r#"show timezone;"#;

/// `enum-types`, before the column listing.
const ENUM_TYPES: &str = r#"SELECT nspname, typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid IN (SELECT DISTINCT enumtypid FROM pg_enum e)"#;

/// `describe-fields-sql :postgres`: $1 = $2 = 'public'.
const FIELDS: &str = r#"SELECT "c"."column_name" AS "name", CASE WHEN "c"."udt_schema" IN ('public', 'pg_catalog') THEN FORMAT('%s', "c"."udt_name") ELSE FORMAT('"%s"."%s"', "c"."udt_schema", "c"."udt_name") END AS "database-type", "c"."ordinal_position" - 1 AS "database-position", "c"."table_schema" AS "table-schema", "c"."table_name" AS "table-name", "pk"."column_name" IS NOT NULL AS "pk?", COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', CAST("c"."table_schema" AS TEXT), CAST("c"."table_name" AS TEXT)) AS REGCLASS) AS OID), "c"."ordinal_position") AS "field-comment", (("column_default" IS NULL) OR (LOWER("column_default") = 'null')) AND ("is_nullable" = 'NO') AND NOT ((("column_default" IS NOT NULL) AND ("column_default" LIKE '%nextval(%')) OR ("is_identity" <> 'NO')) AS "database-required", (("column_default" IS NOT NULL) AND ("column_default" LIKE '%nextval(%')) OR ("is_identity" <> 'NO') AS "database-is-auto-increment" FROM "information_schema"."columns" AS "c" LEFT JOIN (SELECT "tc"."table_schema", "tc"."table_name", "kc"."column_name" FROM "information_schema"."table_constraints" AS "tc" INNER JOIN "information_schema"."key_column_usage" AS "kc" ON ("tc"."constraint_name" = "kc"."constraint_name") AND ("tc"."table_schema" = "kc"."table_schema") AND ("tc"."table_name" = "kc"."table_name") WHERE "tc"."constraint_type" = 'PRIMARY KEY') AS "pk" ON ("c"."table_schema" = "pk"."table_schema") AND ("c"."table_name" = "pk"."table_name") AND ("c"."column_name" = "pk"."column_name") WHERE c.table_schema !~ '^information_schema|catalog_history|pg_' AND ("c"."table_schema" IN ($1)) UNION ALL SELECT "pa"."attname" AS "name", CASE WHEN "ptn"."nspname" IN ('public', 'pg_catalog') THEN FORMAT('%s', "pt"."typname") ELSE FORMAT('"%s"."%s"', "ptn"."nspname", "pt"."typname") END AS "database-type", "pa"."attnum" - 1 AS "database-position", "pn"."nspname" AS "table-schema", "pc"."relname" AS "table-name", FALSE AS "pk?", NULL AS "field-comment", FALSE AS "database-required", FALSE AS "database-is-auto-increment" FROM "pg_catalog"."pg_class" AS "pc" INNER JOIN "pg_catalog"."pg_namespace" AS "pn" ON "pn"."oid" = "pc"."relnamespace" INNER JOIN "pg_catalog"."pg_attribute" AS "pa" ON "pa"."attrelid" = "pc"."oid" INNER JOIN "pg_catalog"."pg_type" AS "pt" ON "pt"."oid" = "pa"."atttypid" INNER JOIN "pg_catalog"."pg_namespace" AS "ptn" ON "ptn"."oid" = "pt"."typnamespace" WHERE ("pc"."relkind" = 'm') AND ("pa"."attnum" >= 1) AND ("pn"."nspname" IN ($2)) ORDER BY "table-schema" ASC, "table-name" ASC, "database-position" ASC"#;

/// `describe-fks-sql :postgres`: $1 = 'public'.
const FOREIGN_KEYS: &str = r#"SELECT "fk_ns"."nspname" AS "fk-table-schema", "fk_table"."relname" AS "fk-table-name", "fk_column"."attname" AS "fk-column-name", "pk_ns"."nspname" AS "pk-table-schema", "pk_table"."relname" AS "pk-table-name", "pk_column"."attname" AS "pk-column-name" FROM "pg_constraint" AS "c" INNER JOIN "pg_class" AS "fk_table" ON "c"."conrelid" = "fk_table"."oid" INNER JOIN "pg_namespace" AS "fk_ns" ON "c"."connamespace" = "fk_ns"."oid" INNER JOIN "pg_attribute" AS "fk_column" ON "c"."conrelid" = "fk_column"."attrelid" INNER JOIN "pg_class" AS "pk_table" ON "c"."confrelid" = "pk_table"."oid" INNER JOIN "pg_namespace" AS "pk_ns" ON "pk_table"."relnamespace" = "pk_ns"."oid" INNER JOIN "pg_attribute" AS "pk_column" ON "c"."confrelid" = "pk_column"."attrelid" WHERE fk_ns.nspname !~ '^information_schema|catalog_history|pg_' AND ("c"."contype" = 'f'::char) AND ("fk_column"."attnum" = ANY(c.conkey)) AND ("pk_column"."attnum" = ANY(c.confkey)) AND ("fk_ns"."nspname" IN ($1)) ORDER BY "fk-table-schema" ASC, "fk-table-name" ASC"#;

/// The probe for tables it cannot check privileges of (foreign tables), and the column probe
/// when `getColumns` finds nothing.
const SELECT_PROBE: &str = r#"SELECT TRUE AS "_" FROM "public"."cpu" WHERE 1 <> 1 LIMIT 0"#;
const COLUMN_PROBE: &str = r#"SELECT * FROM "public"."cpu" WHERE 1 <> 1 LIMIT 0"#;

/// The fingerprint sample: `-- Metabase` remark, text columns cut to 1,234 characters under a
/// generated alias (`substring` and a counter).
const FINGERPRINT: &str = "-- Metabase\nSELECT \"public\".\"cpu\".\"time\" AS \"time\", SUBSTRING(\"public\".\"cpu\".\"hostname\", 1, 1234) AS \"substring4476\", \"public\".\"cpu\".\"usage_user\" AS \"usage_user\" FROM \"public\".\"cpu\" LIMIT 10000";

/// The distinct values of a category field.
const FIELD_VALUES: &str = "-- Metabase\nSELECT \"public\".\"cpu\".\"hostname\" AS \"hostname\" FROM \"public\".\"cpu\" GROUP BY \"public\".\"cpu\".\"hostname\" ORDER BY \"public\".\"cpu\".\"hostname\" ASC LIMIT 1000";

/// Runs `sql` as pgjdbc does: prepared with the parameter types it declares.
async fn jdbc(
    c: &tokio_postgres::Client,
    sql: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
) -> Vec<tokio_postgres::Row> {
    let st = c
        .prepare_typed(sql, types)
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e:?}"));
    c.query(&st, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e:?}"))
}

/// An integer column as JDBC's `getLong` reads it, whatever its width.
fn int(r: &tokio_postgres::Row, col: &str) -> i64 {
    match r.try_get::<_, i32>(col) {
        Ok(v) => i64::from(v),
        Err(_) => r.get::<_, i64>(col),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metabase_sync_sees_tables_views_and_columns() {
    let dir = data_dir();
    let srv = Server::start(dir.path());
    srv.create_cpu_and_rollup();
    let c = srv.pg().await;

    // What pgjdbc and c3p0 send on a pooled connection: isValid() is an empty query, then the
    // isolation level Metabase asks for, the application name and c3p0's probes.
    assert!(
        c.simple_query("")
            .await
            .unwrap()
            .iter()
            .all(|m| !matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
    );
    for sql in [
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
        "SET application_name = 'Metabase v0.57.0 [0b1c2d3e-0000-4000-8000-000000000000]'",
    ] {
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    let iso: String = jdbc(&c, "SHOW TRANSACTION ISOLATION LEVEL", &[], &[]).await[0].get(0);
    assert_eq!(iso, "read committed");
    let catalog: String = jdbc(&c, "select current_catalog", &[], &[]).await[0].get(0);
    assert_eq!(catalog, "eddy");

    // Metabase reads the value with getObject and compares it with 1, whatever its width.
    let one = jdbc(&c, CONNECTION_TEST, &[], &[]).await;
    assert_eq!(int(&one[0], one[0].columns()[0].name()), 1);

    // Table privileges: every table and view selectable (and writable, for tables).
    let privileges: Vec<(String, String, bool, bool)> = jdbc(&c, TABLE_PRIVILEGES, &[], &[])
        .await
        .iter()
        .map(|r| {
            assert_eq!(r.get::<_, Option<String>>("role"), None);
            (
                r.get("schema"),
                r.get("table"),
                r.get("select"),
                r.get("insert"),
            )
        })
        .collect();
    for name in ["cpu", "cpu_1m"] {
        assert!(
            privileges
                .iter()
                .any(|(s, t, select, _)| s == "public" && t == name && *select),
            "{name} not selectable in {privileges:?}"
        );
    }

    // The table listing, with Metabase's types.
    let tables: Vec<(String, String, String)> = jdbc(
        &c,
        TABLES,
        &[Type::INT8, Type::VARCHAR, Type::VARCHAR, Type::VARCHAR],
        &[&0i64, &"^pg_", &"information_schema", &"public"],
    )
    .await
    .iter()
    .map(|r| (r.get("schema"), r.get("name"), r.get("type")))
    .collect();
    for (name, kind) in [("cpu", "TABLE"), ("cpu_1m", "MATERIALIZED VIEW")] {
        assert!(
            tables
                .iter()
                .any(|(s, n, k)| s == "public" && n == name && k == kind),
            "{name} as {kind} not in {tables:?}"
        );
    }

    let tz: String = jdbc(&c, TIMEZONE, &[], &[]).await[0].get(0);
    assert_eq!(tz, "UTC");
    assert!(jdbc(&c, ENUM_TYPES, &[], &[]).await.is_empty());

    // Columns: PostgreSQL type names Metabase maps to its base types, positions from 0, the
    // key (tags and time) as pk?, NOT NULL time as required. Rows come grouped by table, in
    // position order. A continuous aggregate's columns come from both arms: from
    // information_schema (where Eddy lists aggregates, unlike PostgreSQL's materialized views,
    // so Grafana's query builder offers them) and from pg_attribute; both agree.
    let fields: Vec<(String, String, i64, String, bool, bool)> = jdbc(
        &c,
        FIELDS,
        &[Type::VARCHAR, Type::VARCHAR],
        &[&"public", &"public"],
    )
    .await
    .iter()
    .map(|r| {
        (
            r.get("table-name"),
            r.get("name"),
            int(r, "database-position"),
            r.get("database-type"),
            r.get("pk?"),
            r.get("database-required"),
        )
    })
    .filter(|f: &(String, _, _, _, _, _)| f.0.starts_with("cpu"))
    .collect();
    let mut view: Vec<_> = fields
        .iter()
        .filter(|f| f.0 == "cpu_1m")
        .map(|f| (f.1.clone(), f.2, f.3.clone()))
        .collect();
    view.dedup();
    assert_eq!(
        view,
        [
            ("bucket".to_string(), 0, "timestamp".to_string()),
            ("hostname".to_string(), 1, "text".to_string()),
            ("usage".to_string(), 2, "float8".to_string()),
        ]
    );
    let fields: Vec<_> = fields.into_iter().filter(|f| f.0 == "cpu").collect();
    let want = |t: &str, n: &str, p: i64, ty: &str, pk: bool, req: bool| {
        (t.to_string(), n.to_string(), p, ty.to_string(), pk, req)
    };
    assert_eq!(
        fields,
        vec![
            want("cpu", "time", 0, "timestamp", true, true),
            want("cpu", "hostname", 1, "text", true, false),
            want("cpu", "usage_user", 2, "float8", false, false),
        ]
    );

    assert!(
        jdbc(&c, FOREIGN_KEYS, &[Type::VARCHAR], &[&"public"])
            .await
            .is_empty()
    );
    assert!(jdbc(&c, SELECT_PROBE, &[], &[]).await.is_empty());
    let probe = c.prepare(COLUMN_PROBE).await.unwrap();
    let names: Vec<&str> = probe.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["time", "hostname", "usage_user"]);

    // Fingerprinting reads the rows; the field-values query lists distinct hosts in order.
    let sample = jdbc(&c, FINGERPRINT, &[], &[]).await;
    assert_eq!(sample.len(), 3);
    assert_eq!(sample[0].columns()[1].name(), "substring4476");
    let mut hosts: Vec<String> = sample.iter().map(|r| r.get(1)).collect();
    hosts.sort();
    assert_eq!(hosts, ["host_a", "host_b", "host_b"]);
    let values: Vec<String> = jdbc(&c, FIELD_VALUES, &[], &[])
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(values, ["host_a", "host_b"]);
}
