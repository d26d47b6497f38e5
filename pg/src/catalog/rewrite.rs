//! SQL rewrites, applied after datafusion-pg-catalog's own rules: `rewrite` turns the
//! parsed statements PostgreSQL clients send for introspection (set-returning calls in select
//! lists, `(expr).field`, correlated scalar subqueries, `col = 'name'::regproc`,
//! `oid::regtype::text`, `ARRAY(SELECT ... FROM unnest(a) x)`) into SQL DataFusion can plan.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    self as sql, Visit, VisitMut, Visitor, VisitorMut, visit_expressions, visit_expressions_mut,
};

use super::functions::EXPAND_ARRAY;
use super::types::REGTYPE_TEXT;

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

    fn post_visit_query(&mut self, q: &mut sql::Query) -> ControlFlow<()> {
        if let sql::SetExpr::Select(select) = q.body.as_mut() {
            for item in &mut select.projection {
                if let sql::SelectItem::UnnamedExpr(e)
                | sql::SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    in_subqueries_as_arrays(e);
                }
            }
        }
        subquery_in_order_by(q);
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, t: &mut sql::TableFactor) -> ControlFlow<()> {
        function_in_from(t);
        qualify_pg_cursors(t);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut sql::Expr) -> ControlFlow<()> {
        bare_user(e);
        set_returning_call(e);
        field_access_by_name(e);
        regproc_comparison(e);
        computed_regclass(e);
        regtype_as_text(e);
        array_of_unnest(e);
        domain_base_type(e);
        oid_array_agg(e);
        if let sql::Expr::Subquery(q) = e
            && !self.set_operands.contains(&(&**q as *const sql::Query))
            && let Some(planable) = decorrelatable(q)
        {
            *e = planable;
        }
        ControlFlow::Continue(())
    }
}

/// `array_agg(x.atttypid ...)` is an `oid[]` in PostgreSQL, and asyncpg's type introspection
/// can decode its answer only as one: marked with `eddy_oid_array`, it is reported as `oid[]`.
fn oid_array_agg(e: &mut sql::Expr) {
    // A `CASE` (or a scalar subquery) makes a new column without the mark: the `CASE`
    // whose results hold a marked array is marked too.
    if let sql::Expr::Case {
        conditions,
        else_result,
        ..
    } = e
        && conditions.iter().any(|w| holds_oid_array(&w.result))
        && else_result
            .as_deref()
            .is_none_or(|x| matches!(x, sql::Expr::Value(v) if v.value == sql::Value::Null))
    {
        *e = call(super::functions::OID_ARRAY, vec![e.clone()]);
        return;
    }
    let sql::Expr::Function(f) = e else { return };
    if function_name(f).as_deref() != Some("array_agg") {
        return;
    }
    let sql::FunctionArguments::List(list) = &f.args else {
        return;
    };
    let [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(arg))] = list.args.as_slice() else {
        return;
    };
    let is_type_oid = match arg {
        sql::Expr::CompoundIdentifier(parts) => parts
            .last()
            .is_some_and(|p| p.value.eq_ignore_ascii_case("atttypid")),
        sql::Expr::Identifier(p) => p.value.eq_ignore_ascii_case("atttypid"),
        _ => false,
    };
    if is_type_oid {
        *e = call(super::functions::OID_ARRAY, vec![e.clone()]);
    }
}

/// Whether `e` calls `eddy_oid_array` anywhere (in a subquery too).
fn holds_oid_array(e: &sql::Expr) -> bool {
    let found = visit_expressions(e, |x| match x {
        sql::Expr::Function(f)
            if function_name(f).as_deref() == Some(super::functions::OID_ARRAY) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    found.is_break()
}

/// asyncpg's type introspection finds a domain's base type with a recursive CTE correlated
/// to the outer `pg_type` row (`WITH RECURSIVE typebases(oid, depth) AS (SELECT
/// t2.typbasetype ... WHERE t2.oid = t.oid UNION ALL ...) SELECT oid ... LIMIT 1`), which
/// DataFusion cannot decorrelate. It becomes `t.typbasetype`: the same answer for a domain over
/// a base type, which is every domain Eddy's catalog has (it has no `CREATE DOMAIN`, so no
/// domain over a domain).
fn domain_base_type(e: &mut sql::Expr) {
    let sql::Expr::Subquery(q) = e else { return };
    let Some(with) = &q.with else { return };
    let [cte] = with.cte_tables.as_slice() else {
        return;
    };
    if !with.recursive || !cte.alias.name.value.eq_ignore_ascii_case("typebases") {
        return;
    }
    let sql::SetExpr::SetOperation { left, .. } = cte.query.body.as_ref() else {
        return;
    };
    let sql::SetExpr::Select(anchor) = left.as_ref() else {
        return;
    };
    // `t2.oid = t.oid`: `t` is the outer row.
    let Some(sql::Expr::BinaryOp {
        left,
        op: sql::BinaryOperator::Eq,
        right,
    }) = &anchor.selection
    else {
        return;
    };
    let outer = |x: &sql::Expr| match x {
        sql::Expr::CompoundIdentifier(parts)
            if parts.len() == 2 && parts[1].value.eq_ignore_ascii_case("oid") =>
        {
            Some(parts[0].clone())
        }
        _ => None,
    };
    let inner_alias = anchor.from.first().and_then(|f| match &f.relation {
        sql::TableFactor::Table { alias: Some(a), .. } => Some(a.name.value.to_lowercase()),
        _ => None,
    });
    let outer_alias = [left.as_ref(), right.as_ref()]
        .into_iter()
        .filter_map(outer)
        .find(|a| Some(a.value.to_lowercase()) != inner_alias);
    if let Some(alias) = outer_alias {
        *e = sql::Expr::CompoundIdentifier(vec![alias, sql::Ident::new("typbasetype")]);
    }
}

/// `pg_cursors` is in pg_catalog, which PostgreSQL searches first; pg-catalog's rule that
/// qualifies its own tables does not know it.
fn qualify_pg_cursors(t: &mut sql::TableFactor) {
    if let sql::TableFactor::Table {
        name, args: None, ..
    } = t
        && let [sql::ObjectNamePart::Identifier(ident)] = name.0.as_slice()
        && ident.quote_style.is_none()
        && ident.value.eq_ignore_ascii_case(super::tables::PG_CURSORS)
    {
        name.0.insert(
            0,
            sql::ObjectNamePart::Identifier(sql::Ident::new("pg_catalog")),
        );
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

/// Table functions DataFusion has; any other function call in `FROM` is a scalar one.
const TABLE_FUNCTIONS: [&str; 4] = ["generate_series", "range", "unnest", "pg_get_keywords"];

/// A function call in `FROM` (without a column list) is, in PostgreSQL, a one-column table
/// named by its alias (or the function). DataFusion only knows table functions there, whose
/// column is `value`. Grafana's builder lists tables with
/// `FROM generate_series(array_lower(a, 1), array_upper(a, 1)) AS i, string_to_array(...) s`
/// and reads `s[i]`: the series becomes `(SELECT unnest(generate_series(..)) AS i) AS i`
/// (the scalar form also takes non-constant bounds) and a scalar call
/// `(SELECT string_to_array(..) AS s) AS s`.
fn function_in_from(t: &mut sql::TableFactor) {
    let sql::TableFactor::Table {
        name,
        alias,
        args: Some(args),
        with_ordinality: false,
        ..
    } = t
    else {
        return;
    };
    if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) || args.settings.is_some() {
        return;
    }
    let Some(function) = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_lowercase())
    else {
        return;
    };
    let column = alias
        .as_ref()
        .map(|a| a.name.clone())
        .unwrap_or_else(|| sql::Ident::new(function.clone()));
    let mut value = sql::Expr::Function(sql::Function {
        name: name.clone(),
        uses_odbc_syntax: false,
        parameters: sql::FunctionArguments::None,
        args: sql::FunctionArguments::List(sql::FunctionArgumentList {
            duplicate_treatment: None,
            args: args.args.clone(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    });
    match function.as_str() {
        "generate_series" if alias.is_some() => value = call("unnest", vec![value]),
        f if TABLE_FUNCTIONS.contains(&f) => return,
        _ => {}
    }
    let projection = vec![sql::SelectItem::ExprWithAlias {
        expr: value,
        alias: column.clone(),
    }];
    let Some(subquery) = select_without_from(projection) else {
        return;
    };
    *t = derived_table(subquery, column);
}

/// Applies [`in_subquery_as_array`] throughout `e`.
fn in_subqueries_as_arrays(e: &mut sql::Expr) {
    let _ = visit_expressions_mut(e, |x| {
        in_subquery_as_array(x);
        ControlFlow::<()>::Continue(())
    });
}

/// DataFusion plans `x IN (SELECT ...)` only in filters. In a select list (Grafana's
/// `CASE WHEN schema IN (SELECT ...)`, and sort keys moved there by [`subquery_in_order_by`])
/// it becomes scalar subqueries DataFusion can join, with PostgreSQL's three-valued answer:
/// true when `array_has((SELECT array_agg(v) ...), x)`; otherwise false for no rows, NULL
/// when `x` is NULL or a row's `v` is (`(SELECT bool_or(v IS NULL) ...)`), else false.
fn in_subquery_as_array(e: &mut sql::Expr) {
    let sql::Expr::InSubquery {
        expr,
        subquery,
        negated,
    } = e
    else {
        return;
    };
    if subquery.order_by.is_some() || subquery.limit_clause.is_some() || subquery.with.is_some() {
        return;
    }
    let sql::SetExpr::Select(select) = subquery.body.as_ref() else {
        return;
    };
    let simple = select.distinct.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, sql::GroupByExpr::Expressions(g, _) if g.is_empty());
    let [sql::SelectItem::UnnamedExpr(value) | sql::SelectItem::ExprWithAlias { expr: value, .. }] =
        select.projection.as_slice()
    else {
        return;
    };
    if !simple {
        return;
    }
    let values = scalar_subquery(subquery, call("array_agg", vec![value.clone()]));
    let value_is_null = sql::Expr::IsNull(Box::new(value.clone()));
    let any_null = scalar_subquery(subquery, call("bool_or", vec![value_is_null]));
    let boolean = |b: bool| sql::Expr::Value(sql::Value::Boolean(b).with_empty_span());
    let null = sql::Expr::Cast {
        kind: sql::CastKind::Cast,
        expr: Box::new(sql::Expr::Value(sql::Value::Null.with_empty_span())),
        data_type: sql::DataType::Boolean,
        array: false,
        format: None,
    };
    let found = call(
        "coalesce",
        vec![
            call("array_has", vec![values, (**expr).clone()]),
            boolean(false),
        ],
    );
    let x_is_null = sql::Expr::IsNull(expr.clone());
    // `any_null` is NULL when the subquery has no rows, which matches neither arm.
    let not_found = sql::Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: Some(Box::new(any_null)),
        conditions: vec![
            sql::CaseWhen {
                condition: boolean(true),
                result: null.clone(),
            },
            sql::CaseWhen {
                condition: boolean(false),
                result: sql::Expr::Case {
                    case_token: AttachedToken::empty(),
                    end_token: AttachedToken::empty(),
                    operand: None,
                    conditions: vec![sql::CaseWhen {
                        condition: x_is_null,
                        result: null,
                    }],
                    else_result: Some(Box::new(boolean(false))),
                },
            },
        ],
        else_result: Some(Box::new(boolean(false))),
    };
    let member = sql::Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions: vec![sql::CaseWhen {
            condition: found,
            result: boolean(true),
        }],
        else_result: Some(Box::new(not_found)),
    };
    *e = if *negated {
        sql::Expr::UnaryOp {
            op: sql::UnaryOperator::Not,
            expr: Box::new(sql::Expr::Nested(Box::new(member))),
        }
    } else {
        member
    };
}

/// DataFusion cannot sort by an expression holding a subquery (Grafana's table listing
/// orders by `CASE WHEN schema IN (SELECT ...) THEN 0 ELSE 1 END`). Such sort keys are
/// computed as hidden columns of the query, which becomes a derived table sorted outside:
/// `SELECT a AS x FROM t ORDER BY <k>, 1` is
/// `SELECT x FROM (SELECT a AS x, <k> AS __eddy_order_0 FROM t) AS __eddy_ordered
/// ORDER BY __eddy_order_0, 1`. Only when every output column has a name the outer query can
/// repeat (an alias or a column); ordinals and output names stay as they are.
fn subquery_in_order_by(q: &mut sql::Query) {
    let Some(sql::OrderBy {
        kind: sql::OrderByKind::Expressions(items),
        ..
    }) = &mut q.order_by
    else {
        return;
    };
    if !items.iter().any(|o| has_subquery(&o.expr)) {
        return;
    }
    let sql::SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    // Hidden columns would change what DISTINCT compares.
    if select.distinct.is_some() {
        return;
    }
    let names: Option<Vec<sql::Ident>> = select
        .projection
        .iter()
        .map(|item| match item {
            sql::SelectItem::ExprWithAlias { alias, .. } => Some(alias.clone()),
            sql::SelectItem::UnnamedExpr(sql::Expr::Identifier(id)) => Some(id.clone()),
            sql::SelectItem::UnnamedExpr(sql::Expr::CompoundIdentifier(ids)) => ids.last().cloned(),
            _ => None,
        })
        .collect();
    let Some(names) = names else { return };
    let outer_projection = names
        .iter()
        .map(|n| sql::SelectItem::UnnamedExpr(sql::Expr::Identifier(n.clone())))
        .collect();
    let (Some(mut inner), Some(outer)) = (
        select_without_from(vec![]),
        select_without_from(outer_projection),
    ) else {
        return;
    };
    let output_name = |id: &sql::Ident| {
        names.iter().any(|n| match (n.quote_style, id.quote_style) {
            (None, None) => n.value.eq_ignore_ascii_case(&id.value),
            _ => n.value == id.value,
        })
    };
    for (k, item) in items.iter_mut().enumerate() {
        match &item.expr {
            sql::Expr::Value(v) if matches!(v.value, sql::Value::Number(..)) => {}
            sql::Expr::Identifier(id) if output_name(id) => {}
            _ => {
                let hidden = sql::Ident::new(format!("__eddy_order_{k}"));
                let mut expr =
                    std::mem::replace(&mut item.expr, sql::Expr::Identifier(hidden.clone()));
                in_subqueries_as_arrays(&mut expr);
                select.projection.push(sql::SelectItem::ExprWithAlias {
                    expr,
                    alias: hidden,
                });
            }
        }
    }
    // The query keeps its WITH, ORDER BY and LIMIT; its SELECT moves into the derived table.
    inner.body = std::mem::replace(&mut q.body, outer.body);
    if let sql::SetExpr::Select(wrapper) = q.body.as_mut() {
        wrapper.from = vec![sql::TableWithJoins {
            relation: derived_table(inner, sql::Ident::new("__eddy_ordered")),
            joins: vec![],
        }];
    }
}

/// `(subquery) AS alias`.
fn derived_table(subquery: sql::Query, alias: sql::Ident) -> sql::TableFactor {
    sql::TableFactor::Derived {
        lateral: false,
        subquery: Box::new(subquery),
        alias: Some(sql::TableAlias {
            explicit: true,
            name: alias,
            columns: vec![],
            at: None,
        }),
        sample: None,
    }
}

/// `SELECT <projection>` with no `FROM`, built from a parsed template so the many optional
/// parts of a query keep their defaults.
fn select_without_from(projection: Vec<sql::SelectItem>) -> Option<sql::Query> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT 1").ok()?;
    let sql::Statement::Query(mut q) = stmts.pop()? else {
        return None;
    };
    let sql::SetExpr::Select(select) = q.body.as_mut() else {
        return None;
    };
    select.projection = projection;
    Some(*q)
}

/// `user` and `current_role` are PostgreSQL's `current_user`; the parser reads the keyword
/// `user` as a call of a function `user`, which DataFusion does not have. Both become
/// `session_user()`, which is what pg-catalog turns `current_user` into.
fn bare_user(e: &mut sql::Expr) {
    // `current_role` is `current_user` too; the parser reads it as a column name.
    if let sql::Expr::Identifier(i) = e
        && i.quote_style.is_none()
        && i.value.eq_ignore_ascii_case("current_role")
    {
        *e = call("session_user", vec![]);
    }
    if let sql::Expr::Function(f) = e
        && matches!(f.args, sql::FunctionArguments::None)
        && let [part] = f.name.0.as_slice()
        && part
            .as_ident()
            .is_some_and(|i| i.quote_style.is_none() && i.value.eq_ignore_ascii_case("user"))
    {
        *e = call("session_user", vec![]);
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
    proname_for_oid(left, right);
    proname_for_oid(right, left);
}

/// `CAST(expr AS regclass)` of a computed name (Metabase's
/// `format('%I.%I', schema, table)::regclass`): pg-catalog rewrites only literal and
/// parameter names, and would leave a cast of text to an integer; `to_regclass` looks the
/// name up per row instead.
fn computed_regclass(e: &mut sql::Expr) {
    let sql::Expr::Cast {
        expr, data_type, ..
    } = e
    else {
        return;
    };
    let regclass = match data_type {
        sql::DataType::Regclass => true,
        sql::DataType::Custom(name, _) => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case("regclass")),
        _ => false,
    };
    let literal = matches!(
        expr.as_ref(),
        sql::Expr::Value(v) if matches!(v.value, sql::Value::SingleQuotedString(_) | sql::Value::Placeholder(_) | sql::Value::Number(..))
    );
    if regclass && !literal {
        let arg = std::mem::replace(expr.as_mut(), sql::Expr::value(sql::Value::Null));
        *e = call("to_regclass", vec![arg]);
    }
}

/// Whether `dt` is the type `name` (`regtype`, `pg_catalog.regtype`), without modifiers.
fn type_named(dt: &sql::DataType, name: &str) -> bool {
    match dt {
        sql::DataType::Custom(n, modifiers) => {
            modifiers.is_empty()
                && n.0
                    .last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|i| i.value.eq_ignore_ascii_case(name))
        }
        _ => false,
    }
}

/// `x::regtype::text` (psycopg's `TypeInfo.fetch`, psql's `\d`): pg-catalog plans the
/// inner cast as the OID unchanged, so the text would be the number; PostgreSQL prints the
/// type's name, as [`REGTYPE_TEXT`] does.
fn regtype_as_text(e: &mut sql::Expr) {
    let sql::Expr::Cast {
        expr: inner,
        data_type: outer,
        ..
    } = e
    else {
        return;
    };
    let text = matches!(
        outer,
        sql::DataType::Text | sql::DataType::Varchar(_) | sql::DataType::CharacterVarying(_)
    ) || ["text", "varchar", "name"]
        .iter()
        .any(|t| type_named(outer, t));
    if !text {
        return;
    }
    let sql::Expr::Cast {
        expr: oid,
        data_type,
        ..
    } = inner.as_mut()
    else {
        return;
    };
    if !type_named(data_type, "regtype") {
        return;
    }
    let oid = std::mem::replace(oid.as_mut(), sql::Expr::value(sql::Value::Null));
    *e = call(REGTYPE_TEXT, vec![oid]);
}

/// `ARRAY(SELECT f(x) FROM unnest(a) x)` (psql's `\d+` lists a table's options and its
/// TOAST table's this way) is `array_transform(a, x -> f(x))`: DataFusion has no array
/// constructor from a subquery, nor plans `unnest` of an outer column in a correlated one.
/// A NULL `a` gives NULL where PostgreSQL gives an empty array (both print as '').
fn array_of_unnest(e: &mut sql::Expr) {
    let sql::Expr::Function(f) = e else { return };
    if function_name(f).as_deref() != Some("array") {
        return;
    }
    let sql::FunctionArguments::Subquery(q) = &f.args else {
        return;
    };
    let Some((array, element, value)) = unnest_select(q) else {
        return;
    };
    let lambda = sql::Expr::Lambda(sql::LambdaFunction {
        params: sql::OneOrManyWithParens::One(sql::LambdaFunctionParameter {
            name: element,
            data_type: None,
        }),
        body: Box::new(value),
        syntax: sql::LambdaSyntax::Arrow,
    });
    *e = call("array_transform", vec![array, lambda]);
}

/// The array, the element's name and the value of `SELECT value FROM unnest(array)
/// [AS] element` (or `AS t(element)`), with nothing else in the query.
fn unnest_select(q: &sql::Query) -> Option<(sql::Expr, sql::Ident, sql::Expr)> {
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return None;
    }
    let sql::SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let no_grouping = matches!(&s.group_by,
        sql::GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty());
    if s.distinct.is_some()
        || s.selection.is_some()
        || s.having.is_some()
        || s.qualify.is_some()
        || !no_grouping
    {
        return None;
    }
    let [sql::SelectItem::UnnamedExpr(value) | sql::SelectItem::ExprWithAlias { expr: value, .. }] =
        s.projection.as_slice()
    else {
        return None;
    };
    let [from] = s.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let (array, alias) = match &from.relation {
        sql::TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset: false,
            with_offset_alias: None,
            with_ordinality: false,
        } => match array_exprs.as_slice() {
            [array] => (array.clone(), alias.as_ref()),
            _ => return None,
        },
        sql::TableFactor::Table {
            name,
            alias,
            args: Some(args),
            with_ordinality: false,
            ..
        } => {
            let unnest = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("unnest"));
            match args.args.as_slice() {
                [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(array))]
                    if unnest && args.settings.is_none() =>
                {
                    (array.clone(), alias.as_ref())
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    // The element's column: the alias's one column, else the alias, else `unnest`.
    let element = match alias {
        Some(a) => match a.columns.as_slice() {
            [] => a.name.clone(),
            [c] => c.name.clone(),
            _ => return None,
        },
        None => sql::Ident::new("unnest"),
    };
    Some((array, element, value.clone()))
}

/// pg-catalog's regproc columns: function names where PostgreSQL stores a pg_proc OID.
const REGPROC_COLUMNS: &[&str] = &[
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
    "typsubscript",
    "oprcode",
    "oprrest",
    "oprjoin",
];

/// `proc.oid = typ.typreceive` (Npgsql's type loading joins pg_proc this way): the regproc
/// column holds the function's name here, so the join compares `proc.proname` with it.
fn proname_for_oid(regproc: &sql::Expr, oid: &mut sql::Expr) {
    let sql::Expr::CompoundIdentifier(parts) = regproc else {
        return;
    };
    let Some(column) = parts.last() else { return };
    if !REGPROC_COLUMNS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&column.value))
    {
        return;
    }
    if let sql::Expr::CompoundIdentifier(oid_parts) = oid
        && let [_, last] = oid_parts.as_mut_slice()
        && last.value.eq_ignore_ascii_case("oid")
    {
        *last = sql::Ident::new("proname");
    }
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

    /// `sql` comes out of the rewrite as it went in (as the parser prints it).
    fn assert_unchanged(sql: &str) {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        assert_eq!(rewritten(sql), stmts.remove(0).to_string(), "{sql}");
    }

    #[test]
    fn regclass_of_computed_names_and_regproc_joins() {
        assert_eq!(
            rewritten(
                "SELECT CAST(CAST(format('%I.%I', s, t) AS REGCLASS) AS OID), n::pg_catalog.regclass FROM c"
            ),
            "SELECT CAST(to_regclass(format('%I.%I', s, t)) AS OID), to_regclass(n) FROM c"
        );
        assert_unchanged("SELECT 'cpu'::regclass, $1::regclass");
        assert_eq!(
            rewritten("SELECT 1 FROM pg_type AS t LEFT JOIN pg_proc AS p ON p.oid = t.typreceive"),
            "SELECT 1 FROM pg_type AS t LEFT JOIN pg_proc AS p ON p.proname = t.typreceive"
        );
        assert_eq!(
            rewritten("SELECT * FROM pg_cursors"),
            "SELECT * FROM pg_catalog.pg_cursors"
        );
    }

    #[test]
    fn regtype_text_names_the_type() {
        assert_eq!(
            rewritten(
                "SELECT oid::regtype::text, t.typelem::pg_catalog.regtype::pg_catalog.text, \
                 oid::regtype FROM pg_type AS t"
            ),
            "SELECT regtypeout(oid), regtypeout(t.typelem), oid::regtype FROM pg_type AS t"
        );
        assert_unchanged("SELECT oid::text, typname::pg_catalog.text FROM pg_type");
    }

    #[test]
    fn array_of_unnest_becomes_array_transform() {
        // psql's `\d+`.
        assert_eq!(
            rewritten(
                "SELECT pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x \
                 from pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_class AS c"
            ),
            "SELECT pg_catalog.array_to_string(c.reloptions || \
             array_transform(tc.reloptions, x -> 'toast.' || x), ', ') FROM pg_class AS c"
        );
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT upper(e) FROM unnest(a) AS t(e)) FROM t"),
            "SELECT array_transform(a, e -> upper(e)) FROM t"
        );
        for sql in [
            "SELECT ARRAY(SELECT a FROM t)",
            "SELECT ARRAY(SELECT x FROM unnest(a) AS x WHERE x > 1) FROM t",
            "SELECT ARRAY(SELECT x FROM unnest(a) AS x ORDER BY 1) FROM t",
        ] {
            assert_unchanged(sql);
        }
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
            assert_unchanged(sql);
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
    fn functions_in_from_become_one_column_tables() {
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END \
                 FROM generate_series(array_lower(string_to_array(p, ','), 1), 2) AS i, \
                 string_to_array(p, ',') s"
            ),
            "SELECT CASE WHEN TRIM(s[i]) = '\"$user\"' THEN session_user() ELSE TRIM(s[i]) END \
             FROM (SELECT unnest(generate_series(array_lower(string_to_array(p, ','), 1), 2)) AS i) AS i, \
             (SELECT string_to_array(p, ',') AS s) AS s"
        );
        // Table functions without an alias, and column lists, stay as they are.
        for sql in [
            "SELECT * FROM generate_series(1, 3)",
            "SELECT * FROM generate_series(1, 3) AS g(n)",
            "SELECT * FROM pg_get_keywords() AS k",
        ] {
            assert_unchanged(sql);
        }
    }

    /// `s IN (SELECT x FROM p)` in a select list, as rewritten.
    const IN_P: &str = "CASE WHEN coalesce(array_has((SELECT array_agg(x) FROM p), s), false) \
         THEN true ELSE CASE (SELECT bool_or(x IS NULL) FROM p) \
         WHEN true THEN CAST(NULL AS BOOLEAN) \
         WHEN false THEN CASE WHEN s IS NULL THEN CAST(NULL AS BOOLEAN) ELSE false END \
         ELSE false END END";

    #[test]
    fn sort_keys_with_subqueries_become_hidden_columns() {
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN s IN (SELECT x FROM p) THEN a ELSE b END AS \"table\" FROM t \
                 WHERE c ORDER BY CASE WHEN s IN (SELECT x FROM p) THEN 0 ELSE 1 END, 1 LIMIT 5"
            ),
            format!(
                "SELECT \"table\" FROM (SELECT CASE WHEN {IN_P} THEN a ELSE b END AS \"table\", \
                 CASE WHEN {IN_P} THEN 0 ELSE 1 END AS __eddy_order_0 FROM t WHERE c) \
                 AS __eddy_ordered ORDER BY __eddy_order_0, 1 LIMIT 5"
            )
        );
        // Unnamed output columns cannot be repeated outside: left alone.
        let sql = "SELECT a + 1 FROM t ORDER BY a IN (SELECT x FROM p)";
        // A filter's IN subquery is DataFusion's own (a semi join).
        let filter = "SELECT a FROM t WHERE a IN (SELECT x FROM p)";
        assert_unchanged(filter);
        assert_unchanged(sql);
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
