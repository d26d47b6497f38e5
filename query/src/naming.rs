//! PostgreSQL's names for result columns written without an alias: `count(*)` is `count`,
//! `upper(host)` is `upper`, `x::int` is `x`, `'1'::int` is `int4`, `1 + 1` is `?column?`
//! (PostgreSQL's FigureColname). DataFusion names them after the whole expression
//! (`count(*)`, `upper(t.host)`, `Int64(1) + Int64(1)`), which psql shows as headers, Grafana
//! as series names, and code reads as dictionary keys (`row["count"]`).
//!
//! The names are applied to the result's schema only, not to the plan: a plan must keep its
//! column names unique (PostgreSQL allows `SELECT max(a), max(b)`, both `max`), and
//! `GROUP BY` / `ORDER BY` keep resolving as DataFusion resolves them.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{self as sql, VisitMut, VisitorMut};

/// PostgreSQL's names of a query's result columns, by position, for those DataFusion names
/// differently; empty when none differ or they cannot be known (a `*` in the select list).
#[derive(Debug, Clone, Default)]
pub struct ColumnNames(Option<Arc<[Option<String>]>>);

impl ColumnNames {
    /// The names for the result columns of `q` (its first `SELECT`'s list).
    pub fn of(q: &sql::Query) -> Self {
        let Some(select) = first_select(q) else {
            return Self::default();
        };
        let mut names = Vec::with_capacity(select.projection.len());
        for item in &select.projection {
            names.push(match item {
                sql::SelectItem::UnnamedExpr(
                    sql::Expr::Identifier(_) | sql::Expr::CompoundIdentifier(_),
                )
                | sql::SelectItem::ExprWithAlias { .. } => None,
                sql::SelectItem::UnnamedExpr(e) => Some(column_name(e)),
                // How many columns a `*` stands for is known only after planning.
                _ => return Self::default(),
            });
        }
        if names.iter().all(Option::is_none) {
            return Self::default();
        }
        Self(Some(names.into()))
    }

    /// `schema` with the columns renamed (the names are ignored unless there is one per
    /// column). pg-catalog's rewrite of `SELECT n.oid, n.*` (DBeaver) names the first column
    /// `__alias_oid`, since a plan needs unique names; PostgreSQL calls both `oid`, so the
    /// prefix is dropped here too.
    pub fn apply(&self, schema: SchemaRef) -> SchemaRef {
        let names = self
            .0
            .as_deref()
            .filter(|n| n.len() == schema.fields().len());
        let aliased = |f: &Field| f.name().strip_prefix(PG_CATALOG_ALIAS).map(str::to_string);
        if names.is_none() && !schema.fields().iter().any(|f| aliased(f).is_some()) {
            return schema;
        }
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let name = names.and_then(|n| n[i].clone()).or_else(|| aliased(f));
                match name {
                    Some(n) => f.as_ref().clone().with_name(n),
                    None => f.as_ref().clone(),
                }
            })
            .collect();
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
    }
}

/// The prefix pg-catalog's rewrite gives a column that a `*` in the same list repeats.
const PG_CATALOG_ALIAS: &str = "__alias_";

/// Makes a query DataFusion can plan when its result columns repeat a name, which PostgreSQL
/// allows (`SELECT h, h::text`, `SELECT 1, 1`) and DataFusion refuses: each column whose
/// PostgreSQL name an earlier column already has gets a unique alias in the plan, and the
/// returned names give it back its PostgreSQL name in the result. `None`, with the query
/// unchanged, when no column repeats a name or the names are not known (a `*`).
pub fn alias_repeated(q: &mut sql::Query) -> Option<ColumnNames> {
    let select = first_select_mut(q)?;
    let names = output_names(select)?;
    let mut seen = std::collections::HashSet::new();
    let mut repeated = false;
    for (position, (item, name)) in select.projection.iter_mut().zip(&names).enumerate() {
        if seen.insert(name.as_str()) {
            continue;
        }
        repeated = true;
        // Quoted, with a space and a position: no column or earlier alias is spelled so.
        let alias = sql::Ident::with_quote('"', format!("{name} #{}", position + 1));
        *item = match std::mem::replace(item, sql::SelectItem::Wildcard(Default::default())) {
            sql::SelectItem::UnnamedExpr(expr) | sql::SelectItem::ExprWithAlias { expr, .. } => {
                sql::SelectItem::ExprWithAlias { expr, alias }
            }
            other => other,
        };
    }
    repeated.then(|| ColumnNames(Some(names.into_iter().map(Some).collect())))
}

/// Applies [`name_inner_columns`] to every derived table and CTE of a statement or query, for
/// every front end alike. Applying it twice changes nothing: named columns are left alone.
pub fn name_derived_columns<T: VisitMut>(node: &mut T) {
    let _ = node.visit(&mut DerivedTables);
}

/// Finds the derived tables and CTEs of a statement.
struct DerivedTables;

impl VisitorMut for DerivedTables {
    type Break = ();

    fn post_visit_query(&mut self, q: &mut sql::Query) -> ControlFlow<()> {
        if let Some(with) = &mut q.with {
            for cte in &mut with.cte_tables {
                name_inner_columns(&mut cte.query);
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, t: &mut sql::TableFactor) -> ControlFlow<()> {
        if let sql::TableFactor::Derived { subquery, .. } = t {
            name_inner_columns(subquery);
        }
        ControlFlow::Continue(())
    }
}

/// Gives the computed columns of a derived table or CTE their PostgreSQL names as aliases, so
/// that an outer query can refer to them as PostgreSQL lets it: `SELECT s.count FROM
/// (SELECT count(*) FROM t) s`. BI tools wrap a user's query this way (Superset's
/// `virtual_table`, Tableau's custom SQL, Metabase's models). A name that two columns of the
/// list would share is left to DataFusion, as is a list with a `*`.
pub fn name_inner_columns(q: &mut sql::Query) {
    let Some(select) = first_select_mut(q) else {
        return;
    };
    let Some(names) = output_names(select) else {
        return;
    };
    let once = |name: &str| names.iter().filter(|n| n.as_str() == name).count() == 1;
    for (item, name) in select.projection.iter_mut().zip(&names) {
        if let sql::SelectItem::UnnamedExpr(e) = item
            && !matches!(
                e,
                sql::Expr::Identifier(_) | sql::Expr::CompoundIdentifier(_)
            )
            && once(name)
        {
            *item = sql::SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: sql::Ident::with_quote('"', name.as_str()),
            };
        }
    }
}

/// PostgreSQL's name of every column of a select list (its alias, else
/// [`column_name`]); `None` when the list has a `*`, whose columns are known only after
/// planning.
fn output_names(select: &sql::Select) -> Option<Vec<String>> {
    select
        .projection
        .iter()
        .map(|item| match item {
            sql::SelectItem::UnnamedExpr(e) => Some(column_name(e)),
            sql::SelectItem::ExprWithAlias { alias, .. } => Some(ident(alias)),
            _ => None,
        })
        .collect()
}

fn first_select_mut(q: &mut sql::Query) -> Option<&mut sql::Select> {
    let mut body = q.body.as_mut();
    loop {
        body = match body {
            sql::SetExpr::Select(s) => return Some(s),
            sql::SetExpr::SetOperation { left, .. } => left,
            sql::SetExpr::Query(q) => q.body.as_mut(),
            _ => return None,
        };
    }
}

/// The `SELECT` whose list names a query's columns: the leftmost one of a set operation.
fn first_select(q: &sql::Query) -> Option<&sql::Select> {
    let mut body = q.body.as_ref();
    loop {
        body = match body {
            sql::SetExpr::Select(s) => return Some(s),
            sql::SetExpr::SetOperation { left, .. } => left,
            sql::SetExpr::Query(q) => q.body.as_ref(),
            _ => return None,
        };
    }
}

/// The name PostgreSQL gives a result column computed by `e`.
fn column_name(e: &sql::Expr) -> String {
    match figure(e) {
        (Some(name), strength) if strength > 0 => name,
        _ => "?column?".to_string(),
    }
}

/// A name for `e` and how strongly it holds (PostgreSQL's FigureColnameInternal): 2 for a
/// column or function name, 1 for a fallback (`case`, a cast's type), 0 for none.
fn figure(e: &sql::Expr) -> (Option<String>, u8) {
    use sql::Expr;
    let named = |n: &str| (Some(n.to_string()), 2);
    match e {
        Expr::Identifier(i) => (Some(ident(i)), 2),
        Expr::CompoundIdentifier(parts) => (parts.last().map(ident), 2),
        Expr::Function(f) => (f.name.0.last().and_then(|p| p.as_ident()).map(ident), 2),
        Expr::Nested(inner) => figure(inner),
        Expr::Cast {
            expr, data_type, ..
        } => match figure(expr) {
            (name, 2) => (name, 2),
            _ => (type_name(data_type), 1),
        },
        Expr::TypedString(t) => (type_name(&t.data_type), 1),
        Expr::Interval(_) => (Some("interval".to_string()), 1),
        Expr::Case { .. } => (Some("case".to_string()), 1),
        Expr::Subquery(q) => match first_select(q).and_then(|s| s.projection.first()) {
            Some(sql::SelectItem::ExprWithAlias { alias, .. }) => (Some(ident(alias)), 2),
            Some(sql::SelectItem::UnnamedExpr(e)) => (Some(column_name(e)), 2),
            _ => (None, 0),
        },
        Expr::Exists { .. } => named("exists"),
        Expr::Array(_) => named("array"),
        Expr::Extract { .. } => named("extract"),
        Expr::Substring { .. } => named("substring"),
        Expr::Position { .. } => named("position"),
        Expr::Overlay { .. } => named("overlay"),
        Expr::Ceil { .. } => named("ceil"),
        Expr::Floor { .. } => named("floor"),
        Expr::AtTimeZone { .. } => named("timezone"),
        Expr::Trim { trim_where, .. } => named(match trim_where {
            Some(sql::TrimWhereField::Leading) => "ltrim",
            Some(sql::TrimWhereField::Trailing) => "rtrim",
            _ => "btrim",
        }),
        _ => (None, 0),
    }
}

/// An identifier as PostgreSQL folds it: unquoted names in lower case.
fn ident(i: &sql::Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// The pg_type name PostgreSQL reports for a cast to `t` (`int4` for `integer`).
fn type_name(t: &sql::DataType) -> Option<String> {
    let written = t.to_string().to_lowercase();
    let base = written
        .split(['(', '['])
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches("pg_catalog.");
    Some(
        match base {
            "int" | "integer" | "int4" => "int4",
            "bigint" | "int8" => "int8",
            "smallint" | "int2" => "int2",
            "real" | "float4" => "float4",
            "double" | "double precision" | "float" | "float8" => "float8",
            "varchar" | "character varying" => "varchar",
            "char" | "character" => "bpchar",
            "bool" | "boolean" => "bool",
            "timestamp" | "timestamp without time zone" => "timestamp",
            "timestamptz" | "timestamp with time zone" => "timestamptz",
            "time" | "time without time zone" => "time",
            "decimal" | "numeric" => "numeric",
            other if !other.is_empty() => other,
            _ => return None,
        }
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn names(sql_text: &str) -> Option<Vec<Option<String>>> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql_text)
            .expect("parses")
            .remove(0);
        let sql::Statement::Query(q) = stmt else {
            panic!("a query");
        };
        ColumnNames::of(&q).0.map(|n| n.to_vec())
    }

    #[test]
    fn unnamed_columns_get_postgresql_names() {
        let got = names(
            "SELECT count(*), avg(v), pg_catalog.upper(h), 1 + 1, 'a', h::text, '1'::int, \
             CAST(now() AS date), CASE WHEN v > 1 THEN 1 END, (SELECT max(v) FROM t), \
             EXISTS (SELECT 1), extract(hour FROM ts), trim(h), (v), \"Mixed\", h, t.h, v AS w, \
             \"Q\"(), timestamp '2024-01-01', interval '1 day', COALESCE(v, 0) FROM t",
        )
        .expect("names");
        let want = [
            Some("count"),
            Some("avg"),
            Some("upper"),
            Some("?column?"),
            Some("?column?"),
            Some("h"),
            Some("int4"),
            Some("now"),
            Some("case"),
            Some("max"),
            Some("exists"),
            Some("extract"),
            Some("btrim"),
            Some("v"),
            None,
            None,
            None,
            None,
            Some("Q"),
            Some("timestamp"),
            Some("interval"),
            Some("coalesce"),
        ];
        let want: Vec<Option<String>> = want.iter().map(|n| n.map(str::to_string)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn left_select_names_a_union_and_star_or_plain_columns_leave_names_alone() {
        assert_eq!(
            names("SELECT max(a) FROM t UNION ALL SELECT min(b) FROM u"),
            Some(vec![Some("max".to_string())])
        );
        assert_eq!(names("SELECT *, count(*) OVER () FROM t"), None);
        assert_eq!(names("SELECT a, b AS c FROM t"), None);
        assert_eq!(names("VALUES (1)"), None);
    }

    #[test]
    fn repeated_names_get_unique_aliases_in_the_plan_and_their_own_names_back() {
        let parsed = |text: &str| {
            let stmt = Parser::parse_sql(&PostgreSqlDialect {}, text)
                .expect("parses")
                .remove(0);
            let sql::Statement::Query(q) = stmt else {
                panic!("a query");
            };
            q
        };
        let mut q =
            parsed("SELECT h, h::text, t.h, 1, 1 AS x, 2 AS \"?column?\" FROM t ORDER BY h");
        let names = alias_repeated(&mut q).expect("names repeat");
        assert_eq!(
            q.to_string(),
            "SELECT h, h::TEXT AS \"h #2\", t.h AS \"h #3\", 1, 1 AS x, 2 AS \"?column? #6\" FROM t ORDER BY h"
        );
        let want = ["h", "h", "h", "?column?", "x", "?column?"];
        let want: Vec<Option<String>> = want.iter().map(|n| Some(n.to_string())).collect();
        assert_eq!(names.0.map(|n| n.to_vec()), Some(want));

        assert!(alias_repeated(&mut parsed("SELECT h, count(*) FROM t GROUP BY h")).is_none());
        assert!(alias_repeated(&mut parsed("SELECT *, h FROM t")).is_none());
    }

    #[test]
    fn inner_columns_get_postgresql_names_unless_two_would_share_one() {
        let named = |text: &str| {
            let stmt = Parser::parse_sql(&PostgreSqlDialect {}, text)
                .expect("parses")
                .remove(0);
            let sql::Statement::Query(mut q) = stmt else {
                panic!("a query");
            };
            name_inner_columns(&mut q);
            q.to_string()
        };
        assert_eq!(
            named("SELECT h, count(*), avg(v) AS a, 1 + 1, t.x FROM t GROUP BY h"),
            "SELECT h, count(*) AS \"count\", avg(v) AS a, 1 + 1 AS \"?column?\", t.x \
             FROM t GROUP BY h"
        );
        assert_eq!(
            named("SELECT max(a), max(b), min(c) FROM t"),
            "SELECT max(a), max(b), min(c) AS \"min\" FROM t"
        );
        assert_eq!(
            named("SELECT *, count(*) OVER () FROM t"),
            "SELECT *, count(*) OVER () FROM t"
        );
    }

    #[test]
    fn derived_tables_and_ctes_are_named_at_any_depth_and_only_once() {
        let mut stmt = Parser::parse_sql(
            &PostgreSqlDialect {},
            "WITH c AS (SELECT count(*) FROM t) \
             SELECT s.max, c.count FROM (SELECT max(v) FROM (SELECT v + 1 FROM u) i) s, c",
        )
        .expect("parses")
        .remove(0);
        name_derived_columns(&mut stmt);
        let once = stmt.to_string();
        assert_eq!(
            once,
            "WITH c AS (SELECT count(*) AS \"count\" FROM t) SELECT s.max, c.count FROM \
             (SELECT max(v) AS \"max\" FROM (SELECT v + 1 AS \"?column?\" FROM u) i) s, c"
        );
        name_derived_columns(&mut stmt);
        assert_eq!(stmt.to_string(), once);
    }
}
