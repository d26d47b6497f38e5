//! The latest-row fast path: `SELECT cols FROM t [WHERE tag = v AND ...] ORDER BY time DESC
//! LIMIT 1` on an Eddy table is answered by [`eddy_storage::Db::latest_row`] instead of a
//! planned scan.
//!
//! Dashboards and services ask this ("current value of host X") far more often than anything
//! else, and planning alone costs more than the lookup. The plan is recognized after its
//! parameters are bound, so a prepared statement takes the fast path with any value. Anything
//! the recognizer does not know exactly (another filter, an expression in the select list,
//! OFFSET, a second sort key) takes the normal path; the answer is the same either way.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, FetchType, LogicalPlan, Operator, SkipType, TableScan,
};
use datafusion::optimizer::analyzer::type_coercion::TypeCoercionRewriter;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use eddy_storage::ColumnKind;

use crate::error::{ErrorKind, QueryError, Result};
use crate::table::EddyTable;

/// A recognized latest-row query with its values bound.
#[derive(Debug)]
pub struct LatestRowQuery {
    table: Arc<dyn datafusion::datasource::TableProvider>,
    /// (tag column, value) pairs that must all hold.
    tags: Vec<(String, String)>,
    /// Table column of each output column, in output order.
    columns: Vec<String>,
    /// The result schema the plan declares.
    schema: SchemaRef,
}

impl LatestRowQuery {
    /// Recognizes `plan` (with parameters bound), or `None` if it is not exactly a latest-row
    /// query on an Eddy table.
    pub fn recognize(plan: &LogicalPlan) -> Option<Self> {
        let LogicalPlan::Limit(limit) = plan else {
            return None;
        };
        if !matches!(limit.get_skip_type().ok()?, SkipType::Literal(0))
            || !matches!(limit.get_fetch_type().ok()?, FetchType::Literal(Some(1)))
        {
            return None;
        }
        // The nodes between the limit and the scan, top-down.
        let mut between = Vec::new();
        let mut node = limit.input.as_ref();
        let scan = loop {
            match node {
                LogicalPlan::TableScan(scan) => break scan,
                LogicalPlan::Projection(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::SubqueryAlias(_) => {
                    between.push(node);
                    node = node.inputs()[0];
                }
                _ => return None,
            }
        };
        let provider = source_as_provider(&scan.source).ok()?;
        let eddy = provider.downcast_ref::<EddyTable>()?;
        let table = eddy.table_schema().clone();
        let mut names = scan_columns(scan)?;
        let mut tags = Vec::new();
        let mut sorted = false;
        for node in between.into_iter().rev() {
            match node {
                LogicalPlan::Projection(p) => {
                    let mut next = HashMap::new();
                    for (expr, field) in p.expr.iter().zip(p.schema.fields()) {
                        let base = match expr {
                            Expr::Column(c) => names.get(&c.name)?,
                            Expr::Alias(a) => match a.expr.as_ref() {
                                Expr::Column(c) => names.get(&c.name)?,
                                _ => return None,
                            },
                            _ => return None,
                        };
                        if next.insert(field.name().clone(), base.clone()).is_some() {
                            return None;
                        }
                    }
                    names = next;
                }
                LogicalPlan::Filter(f) => {
                    if sorted {
                        return None;
                    }
                    for conjunct in split_conjunction(&f.predicate) {
                        let (column, value) = tag_equality(conjunct)?;
                        let base = names.get(&column)?;
                        let (_, def) = table.column(base)?;
                        if def.kind != ColumnKind::Tag {
                            return None;
                        }
                        tags.push((base.clone(), value));
                    }
                }
                LogicalPlan::Sort(s) => {
                    if sorted || s.fetch.is_some_and(|n| n != 1) || s.expr.len() != 1 {
                        return None;
                    }
                    let key = &s.expr[0];
                    let Expr::Column(c) = &key.expr else {
                        return None;
                    };
                    if key.asc || names.get(&c.name)? != table.time_column() {
                        return None;
                    }
                    sorted = true;
                }
                LogicalPlan::SubqueryAlias(_) => {}
                _ => return None,
            }
        }
        if !sorted {
            return None;
        }
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let columns = schema
            .fields()
            .iter()
            .map(|f| names.get(f.name()).cloned())
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            table: provider,
            tags,
            columns,
            schema,
        })
    }

    /// The result schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Looks the row up; `None` if the result cannot be shaped exactly as the plan declares
    /// (the caller then runs the plan).
    pub async fn run(self) -> Result<Option<RecordBatch>> {
        let Some(eddy) = self.table.downcast_ref::<EddyTable>() else {
            return Ok(None);
        };
        let table = eddy.table_schema().clone();
        let db = eddy.db().clone();
        let tags = self.tags;
        // A segment's summary is read from disk the first time; that must not block a
        // runtime thread.
        let row = tokio::task::spawn_blocking(move || -> eddy_storage::Result<_> {
            // The table was dropped since planning: the normal path reports it.
            let Some(snapshot) = db.snapshot(table.name()) else {
                return Ok(None);
            };
            db.latest_row(&snapshot, &tags).map(Some)
        })
        .await
        .map_err(|e| QueryError::new(ErrorKind::Internal, e.to_string()))??;
        let Some(row) = row else {
            return Ok(None);
        };
        let planned = eddy.table_schema().arrow_schema();
        let row = match row {
            Some(r) => eddy_storage::dedup::conform(&r, planned)?,
            None => RecordBatch::new_empty(planned.clone()),
        };
        let mut columns = Vec::with_capacity(self.columns.len());
        for (name, field) in self.columns.iter().zip(self.schema.fields()) {
            let Some(col) = row.column_by_name(name) else {
                return Ok(None);
            };
            if col.data_type() == field.data_type() {
                columns.push(col.clone());
            } else {
                let Ok(c) = cast(col, field.data_type()) else {
                    return Ok(None);
                };
                columns.push(c);
            }
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns).ok())
    }
}

/// Output names of a scan: each is its own table column.
fn scan_columns(scan: &TableScan) -> Option<HashMap<String, String>> {
    if !scan.filters.is_empty() || scan.fetch.is_some() {
        return None;
    }
    Some(
        scan.projected_schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.name().clone()))
            .collect(),
    )
}

/// `column = 'text'` (either way round), as (column, text).
fn tag_equality(e: &Expr) -> Option<(String, String)> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = e
    else {
        return None;
    };
    let (column, value) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), other) | (other, Expr::Column(c)) => (c, text_literal(other)?),
        _ => return None,
    };
    Some((column.name.clone(), value))
}

/// The text a value expression stands for: a text literal, possibly cast to text, or an
/// expression of constants that folds to one (`'host_' || $1::text` once `$1` is bound).
fn text_literal(e: &Expr) -> Option<String> {
    if let Some(s) = plain_text(e) {
        return Some(s);
    }
    if !e.column_refs().is_empty() {
        return None;
    }
    // Coerced first, as the analyzer would (`::text` is Utf8View, a literal Utf8). No query
    // start time: now() and friends are not folded, and take the normal path.
    let empty = DFSchema::empty();
    let coerced = e
        .clone()
        .rewrite(&mut TypeCoercionRewriter::new(&empty))
        .ok()?
        .data;
    let folded = ExprSimplifier::new(SimplifyContext::default())
        .simplify(coerced)
        .ok()?;
    plain_text(&folded)
}

fn plain_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s.clone()),
        Expr::Cast(c)
            if matches!(
                c.field.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            plain_text(&c.expr)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::common::ParamValues;
    use eddy_storage::{ColumnKind, FieldType};

    use super::LatestRowQuery;
    use crate::{Prepared, QueryEngine, parse};

    async fn engine(dir: &std::path::Path) -> QueryEngine {
        let columns = [
            ("time", ColumnKind::Time),
            ("host", ColumnKind::Tag),
            ("dc", ColumnKind::Tag),
            ("usage", ColumnKind::Field(FieldType::Float)),
        ];
        crate::test_support::engine(dir, &columns).await.2
    }

    /// Plans `sql`, binds `params`, and returns what the recognizer makes of it.
    async fn recognize(engine: &QueryEngine, sql: &str, params: &[&str]) -> Option<LatestRowQuery> {
        let session = engine.session();
        let stmt = parse(sql).expect("parses").remove(0);
        let Prepared::Plan(plan, _) = session.prepare(stmt).await.expect("plans") else {
            panic!("not a plan: {sql}");
        };
        let plan = if params.is_empty() {
            plan
        } else {
            let values = params
                .iter()
                .map(|p| datafusion::common::ScalarValue::Utf8(Some(p.to_string())))
                .collect::<Vec<_>>();
            plan.with_param_values(ParamValues::List(
                values.into_iter().map(Into::into).collect(),
            ))
            .expect("binds")
        };
        LatestRowQuery::recognize(&plan)
    }

    #[tokio::test]
    async fn recognizes_exactly_the_latest_row_queries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine(dir.path()).await;
        let tags = |q: Option<LatestRowQuery>| q.map(|q| (q.tags, q.columns));
        let all = || ["time", "host", "dc", "usage"].map(String::from).to_vec();
        let h1 = || vec![("host".to_string(), "h1".to_string())];
        assert_eq!(
            tags(
                recognize(
                    &e,
                    "SELECT * FROM cpu WHERE host = $1 ORDER BY time DESC LIMIT 1",
                    &["h1"]
                )
                .await
            ),
            Some((h1(), all()))
        );
        // pgbench's way of binding a text value: an expression of constants.
        assert_eq!(
            tags(
                recognize(
                    &e,
                    "SELECT * FROM cpu WHERE host = 'h' || $1::text ORDER BY time DESC LIMIT 1",
                    &["1"]
                )
                .await
            ),
            Some((h1(), all()))
        );
        assert_eq!(
            tags(recognize(&e, "select * from public.cpu c where 'h1' = c.host and dc = 'x' order by c.time desc limit 1", &[]).await),
            Some((vec![("host".into(), "h1".into()), ("dc".into(), "x".into())], all()))
        );
        assert_eq!(
            tags(recognize(&e, "SELECT usage AS u, time AS t FROM cpu WHERE host = 'h1' ORDER BY t DESC LIMIT 1", &[]).await),
            Some((h1(), vec!["usage".to_string(), "time".to_string()]))
        );
        assert_eq!(
            tags(recognize(&e, "SELECT usage FROM cpu ORDER BY time DESC LIMIT 1", &[]).await),
            Some((vec![], vec!["usage".to_string()]))
        );
        for other in [
            "SELECT * FROM cpu WHERE host = 'h1' ORDER BY time LIMIT 1",
            "SELECT * FROM cpu WHERE host = 'h1' ORDER BY time DESC LIMIT 2",
            "SELECT * FROM cpu WHERE host = 'h1' ORDER BY time DESC LIMIT 1 OFFSET 1",
            "SELECT * FROM cpu WHERE host = 'h1' ORDER BY time DESC, dc LIMIT 1",
            "SELECT * FROM cpu WHERE host = 'h1' ORDER BY usage DESC LIMIT 1",
            "SELECT * FROM cpu WHERE usage = 1 ORDER BY time DESC LIMIT 1",
            "SELECT * FROM cpu WHERE host <> 'h1' ORDER BY time DESC LIMIT 1",
            "SELECT * FROM cpu WHERE host = 'h1' OR dc = 'x' ORDER BY time DESC LIMIT 1",
            "SELECT * FROM cpu WHERE host = 'h1' AND time < now() ORDER BY time DESC LIMIT 1",
            "SELECT usage * 2 FROM cpu WHERE host = 'h1' ORDER BY time DESC LIMIT 1",
            "SELECT host FROM cpu WHERE host = 'h1' GROUP BY host ORDER BY max(time) DESC LIMIT 1",
            "SELECT * FROM cpu WHERE host = 'h1' LIMIT 1",
            "SELECT * FROM cpu WHERE host = now()::text ORDER BY time DESC LIMIT 1",
            "SELECT * FROM cpu WHERE host = dc ORDER BY time DESC LIMIT 1",
        ] {
            assert!(tags(recognize(&e, other, &[]).await).is_none(), "{other}");
        }
    }
}
