//! SQL rewrites, applied after datafusion-pg-catalog's own rules: `rewrite` turns the
//! parsed statements PostgreSQL clients send for introspection (set-returning calls in select
//! lists, `(expr).field`, correlated scalar subqueries, `col = 'name'::regproc`) into SQL
//! DataFusion can plan.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    self as sql, Visit, VisitMut, Visitor, VisitorMut, visit_expressions, visit_expressions_mut,
};

use super::functions::EXPAND_ARRAY;

/// Rewrites a parsed statement (after `PostgresCompatibilityParser`'s rules) into SQL that
/// DataFusion plans: set-returning calls in select lists, `(expr).field`, correlated scalar
/// subqueries, and `col = 'name'::regproc`.
pub fn rewrite(mut stmt: sql::Statement) -> sql::Statement {
    // Called through the trait: `Visit::visit` would be found first for `&Statement`.
    let _ = VisitMut::visit(&mut stmt, &mut Rewriter::default());
    stmt
}

/// Applies the rules bottom-up: a replacement is never visited again.
#[derive(Default)]
struct Rewriter {
    /// Subqueries that are the set of `x op ANY/ALL (subquery)`: they may return many rows,
    /// so they must not be turned into aggregates. Identified by address while visiting.
    set_operands: HashSet<*const sql::Query>,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &mut sql::Expr) -> ControlFlow<()> {
        if let sql::Expr::AnyOp { right, .. } | sql::Expr::AllOp { right, .. } = e
            && let sql::Expr::Subquery(q) = &**right
        {
            self.set_operands.insert(&**q as *const sql::Query);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut sql::Expr) -> ControlFlow<()> {
        set_returning_call(e);
        field_access_by_name(e);
        regproc_comparison(e);
        if let sql::Expr::Subquery(q) = e
            && !self.set_operands.contains(&(&**q as *const sql::Query))
            && let Some(planable) = decorrelatable(q)
        {
            *e = planable;
        }
        ControlFlow::Continue(())
    }
}

/// Set-returning functions in a select list become `unnest` of an array, which DataFusion
/// expands the way PostgreSQL does (several in one list advance in lockstep):
/// `_pg_expandarray(a)` (pgjdbc) and `generate_subscripts(a, d)` (SQLAlchemy).
fn set_returning_call(e: &mut sql::Expr) {
    let sql::Expr::Function(f) = e else { return };
    if f.over.is_some() {
        return;
    }
    let Some(name) = function_name(f) else { return };
    let sql::FunctionArguments::List(list) = &f.args else {
        return;
    };
    let args: Option<Vec<sql::Expr>> = list
        .args
        .iter()
        .map(|a| match a {
            sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(x)) => Some(x.clone()),
            _ => None,
        })
        .collect();
    let Some(args) = args else { return };
    match name.as_str() {
        EXPAND_ARRAY if args.len() == 1 => {
            *e = call("unnest", vec![call(EXPAND_ARRAY, args)]);
        }
        "generate_subscripts" => {
            let [array, dim] = args.as_slice() else {
                return;
            };
            let bound = |f: &str| call(f, vec![array.clone(), dim.clone()]);
            *e = call(
                "unnest",
                vec![call(
                    "generate_series",
                    vec![bound("array_lower"), bound("array_upper")],
                )],
            );
        }
        _ => {}
    }
}

/// `(expr).field` is `expr['field']`: DataFusion only reads named field access in the
/// subscript form (pgjdbc writes `(_pg_expandarray(indkey)).n` and `(keys).x`).
fn field_access_by_name(e: &mut sql::Expr) {
    let sql::Expr::CompoundFieldAccess { root, access_chain } = e else {
        return;
    };
    // `a.b.c` with an identifier root is a column path DataFusion resolves itself.
    if matches!(**root, sql::Expr::Identifier(_)) {
        return;
    }
    for access in access_chain.iter_mut() {
        if let sql::AccessExpr::Dot(sql::Expr::Identifier(id)) = access {
            let name = match id.quote_style {
                Some(_) => id.value.clone(),
                None => id.value.to_lowercase(),
            };
            *access = sql::AccessExpr::Subscript(sql::Subscript::Index {
                index: string_literal(name),
            });
        }
    }
}

/// `typinput = 'pg_catalog.array_in'::regproc` (pgjdbc's type cache): pg-catalog turns the
/// cast into a `pg_proc.oid` lookup, but its regproc columns hold function names, so a
/// column other than an oid is compared with the bare name instead.
fn regproc_comparison(e: &mut sql::Expr) {
    let sql::Expr::BinaryOp { left, op, right } = e else {
        return;
    };
    if !matches!(op, sql::BinaryOperator::Eq | sql::BinaryOperator::NotEq) {
        return;
    }
    name_for_regproc(left, right);
    name_for_regproc(right, left);
}

fn name_for_regproc(column: &sql::Expr, value: &mut sql::Expr) {
    let last = match column {
        sql::Expr::Identifier(i) => i,
        sql::Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(i) => i,
            None => return,
        },
        _ => return,
    };
    if last.value.eq_ignore_ascii_case("oid") {
        return;
    }
    if let sql::Expr::Subquery(q) = value
        && let Some(name) = regproc_lookup(q)
    {
        *value = string_literal(name);
    }
}

/// The function name of pg-catalog's `'name'::regproc` rewrite,
/// `(SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'name')`, without schema.
fn regproc_lookup(q: &sql::Query) -> Option<String> {
    let sql::SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let [sql::SelectItem::UnnamedExpr(sql::Expr::Identifier(col))] = s.projection.as_slice() else {
        return None;
    };
    let [from] = s.from.as_slice() else {
        return None;
    };
    let sql::TableFactor::Table { name: table, .. } = &from.relation else {
        return None;
    };
    let Some(sql::Expr::BinaryOp {
        left,
        op: sql::BinaryOperator::Eq,
        right,
    }) = &s.selection
    else {
        return None;
    };
    let (sql::Expr::Identifier(key), sql::Expr::Value(v)) = (&**left, &**right) else {
        return None;
    };
    let sql::Value::SingleQuotedString(proc) = &v.value else {
        return None;
    };
    let matches = col.value == "oid"
        && key.value == "proname"
        && from.joins.is_empty()
        && table.to_string() == "pg_catalog.pg_proc";
    matches.then(|| {
        let bare = proc.rsplit_once('.').map_or(proc.as_str(), |(_, n)| n);
        bare.trim_matches('"').to_string()
    })
}

/// Functions that aggregate: a subquery selecting one already returns at most one row.
const AGGREGATES: &[&str] = &[
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bool_and",
    "bool_or",
    "count",
    "every",
    "first",
    "first_value",
    "json_agg",
    "json_object_agg",
    "jsonb_agg",
    "last",
    "last_value",
    "max",
    "median",
    "min",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
];

/// A correlated scalar subquery `(SELECT e FROM ... WHERE ...)` that does not aggregate, in a
/// form DataFusion can decorrelate, or `None` to leave it as written.
///
/// DataFusion requires correlated scalar subqueries to aggregate, and cannot decorrelate a
/// `WHERE` conjunct or a select list that references only the outer query. PostgreSQL makes
/// a scalar subquery return at most one row, so for it:
/// - `e` is `max(e)` (the row's value; NULL without a row);
/// - conjuncts on outer columns only become a `CASE WHEN` around the subquery;
/// - a select list using outer columns becomes `CASE WHEN (SELECT count(1) ...) > 0 THEN e'`
///   where `e'` reads each inner column through its own `(SELECT max(col) ...)`.
fn decorrelatable(q: &sql::Query) -> Option<sql::Expr> {
    if q.with.is_some() || q.order_by.is_some() || q.fetch.is_some() {
        return None;
    }
    // pg-catalog adds `LIMIT 1` to select-list subqueries; for at most one row it changes
    // nothing, any other limit does.
    match &q.limit_clause {
        None => {}
        Some(sql::LimitClause::LimitOffset {
            limit: Some(sql::Expr::Value(v)),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() && matches!(&v.value, sql::Value::Number(n, _) if n == "1") => {}
        Some(_) => return None,
    }
    let sql::SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    let no_grouping = matches!(&select.group_by,
        sql::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if select.distinct.is_some()
        || !no_grouping
        || select.having.is_some()
        || select.qualify.is_some()
    {
        return None;
    }
    let value = match select.projection.as_slice() {
        [sql::SelectItem::UnnamedExpr(e)] | [sql::SelectItem::ExprWithAlias { expr: e, .. }] => e,
        _ => return None,
    };
    if has_aggregate(value) {
        return None;
    }
    let scope = tables_in_scope(q);
    if !column_refs(q, &scope).1 {
        return None; // uncorrelated: DataFusion plans it as it is
    }

    let (mut guards, mut rest) = (Vec::new(), Vec::new());
    for c in select.selection.iter().flat_map(conjuncts) {
        let (inner, outer) = column_refs(c, &scope);
        if outer && !inner && !has_subquery(c) {
            guards.push(c.clone());
        } else {
            rest.push(c.clone());
        }
    }
    let mut base = q.clone();
    base.limit_clause = None;
    if let sql::SetExpr::Select(s) = base.body.as_mut() {
        s.selection = and_all(rest);
    }

    let result = if !column_refs(value, &scope).1 {
        scalar_subquery(&base, call("max", vec![value.clone()]))
    } else {
        if has_subquery(value) {
            return None;
        }
        let mut v = value.clone();
        let _ = visit_expressions_mut(&mut v, |x| {
            if outer_ref(x, &scope) == Some(false) {
                let column = x.clone();
                *x = scalar_subquery(&base, call("max", vec![column]));
            }
            ControlFlow::<()>::Continue(())
        });
        let count = scalar_subquery(&base, call("count", vec![number("1")]));
        let some_row = sql::Expr::BinaryOp {
            left: Box::new(count),
            op: sql::BinaryOperator::Gt,
            right: Box::new(number("0")),
        };
        case_when(some_row, v)
    };
    Some(match and_all(guards) {
        Some(guard) => case_when(guard, result),
        None => result,
    })
}

/// Names that qualify columns of a query's own relations (at any depth): aliases, or table
/// names where there is no alias; lower case.
fn tables_in_scope(q: &sql::Query) -> HashSet<String> {
    struct Tables(HashSet<String>);
    impl Visitor for Tables {
        type Break = ();
        fn pre_visit_table_factor(&mut self, t: &sql::TableFactor) -> ControlFlow<()> {
            let name = match t {
                sql::TableFactor::Table { alias: Some(a), .. }
                | sql::TableFactor::Derived { alias: Some(a), .. } => Some(&a.name),
                sql::TableFactor::Table { name, .. } => name.0.last().and_then(|p| p.as_ident()),
                _ => None,
            };
            if let Some(n) = name {
                self.0.insert(n.value.to_lowercase());
            }
            ControlFlow::Continue(())
        }
    }
    let mut tables = Tables(HashSet::new());
    let _ = Visit::visit(q, &mut tables);
    tables.0
}

/// Whether `e` is a column of the outer query (`Some(true)`) or of `scope` (`Some(false)`);
/// unqualified names count as inner. `None` if `e` is not a column.
fn outer_ref(e: &sql::Expr, scope: &HashSet<String>) -> Option<bool> {
    match e {
        sql::Expr::Identifier(_) => Some(false),
        sql::Expr::CompoundIdentifier(parts) => {
            let table = parts.iter().rev().nth(1)?;
            Some(!scope.contains(&table.value.to_lowercase()))
        }
        _ => None,
    }
}

/// Whether `node` reads inner columns, and whether it reads outer ones.
fn column_refs<V: Visit>(node: &V, scope: &HashSet<String>) -> (bool, bool) {
    let (mut inner, mut outer) = (false, false);
    let _ = visit_expressions(node, |e| {
        match outer_ref(e, scope) {
            Some(true) => outer = true,
            Some(false) => inner = true,
            None => {}
        }
        ControlFlow::<()>::Continue(())
    });
    (inner, outer)
}

fn has_aggregate(e: &sql::Expr) -> bool {
    visit_expressions(e, |x| match x {
        sql::Expr::Function(f)
            if f.over.is_some()
                || f.filter.is_some()
                || !f.within_group.is_empty()
                || function_name(f).is_some_and(|n| AGGREGATES.contains(&n.as_str())) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

fn has_subquery(e: &sql::Expr) -> bool {
    visit_expressions(e, |x| match x {
        sql::Expr::Subquery(_) | sql::Expr::Exists { .. } | sql::Expr::InSubquery { .. } => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

fn conjuncts(e: &sql::Expr) -> Vec<&sql::Expr> {
    match e {
        sql::Expr::BinaryOp {
            left,
            op: sql::BinaryOperator::And,
            right,
        } => {
            let mut all = conjuncts(left);
            all.extend(conjuncts(right));
            all
        }
        sql::Expr::Nested(inner)
            if matches!(
                **inner,
                sql::Expr::BinaryOp {
                    op: sql::BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(inner)
        }
        other => vec![other],
    }
}

/// The conjunction of `exprs`, each parenthesized so the text form parses back the same.
fn and_all(exprs: Vec<sql::Expr>) -> Option<sql::Expr> {
    exprs
        .into_iter()
        .map(|e| sql::Expr::Nested(Box::new(e)))
        .reduce(|a, b| sql::Expr::BinaryOp {
            left: Box::new(a),
            op: sql::BinaryOperator::And,
            right: Box::new(b),
        })
}

/// `base` selecting only `value`, as a scalar subquery.
fn scalar_subquery(base: &sql::Query, value: sql::Expr) -> sql::Expr {
    let mut q = base.clone();
    if let sql::SetExpr::Select(s) = q.body.as_mut() {
        s.projection = vec![sql::SelectItem::UnnamedExpr(value)];
    }
    sql::Expr::Subquery(Box::new(q))
}

fn case_when(condition: sql::Expr, result: sql::Expr) -> sql::Expr {
    sql::Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions: vec![sql::CaseWhen { condition, result }],
        else_result: None,
    }
}

fn call(name: &str, args: Vec<sql::Expr>) -> sql::Expr {
    sql::Expr::Function(sql::Function {
        name: sql::ObjectName::from(vec![sql::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: sql::FunctionArguments::None,
        args: sql::FunctionArguments::List(sql::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn function_name(f: &sql::Function) -> Option<String> {
    f.name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_lowercase())
}

fn number(n: &str) -> sql::Expr {
    sql::Expr::Value(sql::Value::Number(n.to_string(), false).with_empty_span())
}

fn string_literal(s: String) -> sql::Expr {
    sql::Expr::Value(sql::Value::SingleQuotedString(s).with_empty_span())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        rewrite(stmts.remove(0)).to_string()
    }

    #[test]
    fn set_returning_calls_become_unnest() {
        assert_eq!(
            rewritten("SELECT (_pg_expandarray(i.indkey)).n, generate_subscripts(k, 1) FROM i"),
            "SELECT (unnest(_pg_expandarray(i.indkey)))['n'], \
             unnest(generate_series(array_lower(k, 1), array_upper(k, 1))) FROM i"
        );
    }

    #[test]
    fn correlated_subquery_is_aggregated() {
        assert_eq!(
            rewritten("SELECT 1 FROM t WHERE (SELECT c.k = 'c' FROM c WHERE c.oid = t.r)"),
            "SELECT 1 FROM t WHERE (SELECT max(c.k = 'c') FROM c WHERE (c.oid = t.r))"
        );
        // Uncorrelated, aggregated and ANY subqueries are left alone.
        for sql in [
            "SELECT (SELECT x FROM c WHERE c.a = 1) FROM t",
            "SELECT (SELECT max(x) FROM c WHERE c.a = t.a) FROM t",
            "SELECT 1 FROM t WHERE t.a = ANY(SELECT c.a FROM c WHERE c.b = t.b)",
        ] {
            let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
            assert_eq!(rewritten(sql), stmts.remove(0).to_string());
        }
    }

    #[test]
    fn outer_only_conjuncts_and_select_lists_move_out() {
        assert_eq!(
            rewritten("SELECT (SELECT s.v FROM s WHERE t.f AND s.k = t.k) FROM t"),
            "SELECT CASE WHEN (t.f) THEN (SELECT max(s.v) FROM s WHERE (s.k = t.k)) END FROM t"
        );
        assert_eq!(
            rewritten("SELECT (SELECT f(t.a, s.v) FROM s WHERE s.k = t.k) FROM t"),
            "SELECT CASE WHEN (SELECT count(1) FROM s WHERE (s.k = t.k)) > 0 \
             THEN f(t.a, (SELECT max(s.v) FROM s WHERE (s.k = t.k))) END FROM t"
        );
    }

    #[test]
    fn regproc_lookup_compares_names() {
        assert_eq!(
            rewritten(
                "SELECT typinput = (SELECT oid FROM pg_catalog.pg_proc \
                 WHERE proname = 'pg_catalog.array_in') FROM pg_type"
            ),
            "SELECT typinput = 'array_in' FROM pg_type"
        );
    }
}
