//! What a continuous aggregate may look like: the shape of its defining query, its bucket
//! and the aggregates that merge.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::AggregateExec;

use super::df_err;
use crate::error::{ErrorKind, QueryError, Result};

/// Aggregates whose partial state merges exactly (or, for the approximate ones, as the
/// approximation defines).
const MERGEABLE: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "mean",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "var",
    "variance",
    "var_samp",
    "var_pop",
    "first_value",
    "last_value",
    "first",
    "last",
    "approx_distinct",
    "approx_percentile_cont",
    "approx_percentile_cont_with_weight",
    "bool_and",
    "bool_or",
];

/// The error for a view shape that cannot be maintained, naming the part and the alternative.
pub(super) fn unsupported(part: impl std::fmt::Display, instead: &str) -> QueryError {
    QueryError::unsupported(format!(
        "a continuous aggregate cannot be maintained incrementally with {part}; {instead}"
    ))
}

pub(super) fn source_table_name(stmt: &datafusion::sql::parser::Statement) -> Result<String> {
    use datafusion::sql::parser::Statement as Df;
    use datafusion::sql::sqlparser::ast::{SetExpr, Statement, TableFactor};
    let Df::Statement(s) = stmt else {
        return Err(QueryError::new(
            ErrorKind::Syntax,
            "a view is defined by a SELECT",
        ));
    };
    let Statement::Query(q) = s.as_ref() else {
        return Err(QueryError::new(
            ErrorKind::Syntax,
            "a view is defined by a SELECT",
        ));
    };
    if q.with.is_some() {
        return Err(unsupported("WITH", "define the view with a single SELECT"));
    }
    if q.order_by.is_some() || q.limit_clause.is_some() {
        return Err(unsupported(
            "ORDER BY or LIMIT",
            "sort or limit when reading the view",
        ));
    }
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Err(unsupported("set operations", "define one view per SELECT"));
    };
    match sel.from.as_slice() {
        [twj] if twj.joins.is_empty() => match &twj.relation {
            TableFactor::Table { name, .. } => crate::ddl::table_name(name),
            other => Err(unsupported(format!("FROM {other}"), "select from a table")),
        },
        [_] => Err(unsupported("a join", "aggregate one table per view")),
        _ => Err(unsupported(
            "several tables in FROM",
            "aggregate one table per view",
        )),
    }
}

pub(super) fn validate_shape(plan: &LogicalPlan) -> Result<()> {
    let mut seen_aggregate = false;
    let mut err = None;
    plan.apply(|node| {
        let bad = match node {
            LogicalPlan::Projection(_) | LogicalPlan::TableScan(_) | LogicalPlan::SubqueryAlias(_) => None,
            LogicalPlan::Filter(_) if seen_aggregate => None,
            LogicalPlan::Filter(_) => Some(unsupported(
                "HAVING",
                "filter the view's rows when reading it",
            )),
            LogicalPlan::Aggregate(a) => {
                seen_aggregate = true;
                check_aggregates(&a.aggr_expr).err()
            }
            LogicalPlan::Join(_) => Some(unsupported("a join", "aggregate one table per view")),
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
                Some(unsupported("ORDER BY or LIMIT", "sort or limit when reading the view"))
            }
            LogicalPlan::Window(_) => Some(unsupported(
                "window functions",
                "apply them when reading the view",
            )),
            LogicalPlan::Distinct(_) => Some(unsupported(
                "DISTINCT",
                "group by the columns instead",
            )),
            other => Some(unsupported(
                format!("a {} step", other.display()),
                "use SELECT time_bucket(...), columns, aggregates FROM table [WHERE ...] GROUP BY ...",
            )),
        };
        if let Some(e) = bad {
            err = Some(e);
            return Ok(TreeNodeRecursion::Stop);
        }
        // Non-deterministic functions would make the view depend on when rows arrived.
        for e in node.expressions() {
            if let Some(f) = non_deterministic(&e) {
                err = Some(unsupported(
                    format!("the non-deterministic function {f}()"),
                    "use only deterministic functions (a view must not depend on when rows arrive)",
                ));
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(df_err)?;
    if let Some(e) = err {
        return Err(e);
    }
    if !seen_aggregate {
        return Err(QueryError::new(
            ErrorKind::Grouping,
            "a continuous aggregate needs aggregates and GROUP BY time_bucket(...)",
        ));
    }
    Ok(())
}

/// The first function in `e` whose result can change between calls with the same arguments
/// (`now()`, `random()`, ...).
fn non_deterministic(e: &Expr) -> Option<String> {
    use datafusion::logical_expr::Volatility;
    let mut found = None;
    let _ = e.apply(|x| {
        if let Expr::ScalarFunction(f) = x
            && f.func.signature().volatility != Volatility::Immutable
        {
            found = Some(f.name().to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn check_aggregates(exprs: &[Expr]) -> Result<()> {
    use datafusion::logical_expr::expr::AggregateFunction;
    for e in exprs {
        let mut inner = e;
        while let Expr::Alias(a) = inner {
            inner = a.expr.as_ref();
        }
        let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
            return Err(unsupported(
                format!("the expression {e}"),
                "aggregate columns",
            ));
        };
        let name = func.name().to_lowercase();
        if params.distinct {
            return Err(unsupported(
                format!("{name}(DISTINCT ...)"),
                "use approx_distinct(...) for distinct counts",
            ));
        }
        if !MERGEABLE.contains(&name.as_str()) {
            let instead = match name.as_str() {
                "median" | "percentile_cont" => "use approx_percentile_cont(...)",
                "array_agg" | "string_agg" => {
                    "aggregate into a mergeable value such as count or max"
                }
                _ => {
                    "use count, sum, min, max, avg, stddev, variance, first_value, last_value, approx_distinct or approx_percentile_cont"
                }
            };
            return Err(unsupported(format!("the aggregate {name}"), instead));
        }
    }
    Ok(())
}

/// Finds the bucket among the group-by expressions of the optimized plan: its width, origin
/// and position. Exactly one `date_bin`/`time_bucket` over the time column with a fixed width.
pub(super) fn bucket_of(plan: &LogicalPlan, time_column: &str) -> Result<(i64, i64, usize)> {
    let mut found = None;
    plan.apply(|node| {
        if let LogicalPlan::Aggregate(a) = node {
            found = Some(a.group_expr.clone());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(df_err)?;
    let groups = found.ok_or_else(|| QueryError::new(ErrorKind::Grouping, "no GROUP BY"))?;
    let mut bucket = None;
    for (i, g) in groups.iter().enumerate() {
        let mut g = g;
        while let Expr::Alias(a) = g {
            g = a.expr.as_ref();
        }
        match g {
            Expr::ScalarFunction(f) if f.name() == "date_bin" => {
                if bucket.is_some() {
                    return Err(unsupported(
                        "two time buckets",
                        "group by one time_bucket(...)",
                    ));
                }
                let width = match f.args.first() {
                    Some(Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _)) => {
                        if v.months != 0 {
                            return Err(unsupported(
                                "a bucket width in months",
                                "use a fixed width such as '30 days'",
                            ));
                        }
                        v.days as i64 * 86_400_000_000_000 + v.nanoseconds
                    }
                    Some(Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _)) => {
                        v.days as i64 * 86_400_000_000_000 + v.milliseconds as i64 * 1_000_000
                    }
                    other => {
                        return Err(unsupported(
                            format!("the bucket width {other:?}"),
                            "give the width as a constant interval, e.g. '1 minute'",
                        ));
                    }
                };
                match f.args.get(1) {
                    Some(Expr::Column(c)) if c.name == time_column => {}
                    other => {
                        return Err(unsupported(
                            format!("a bucket over {other:?}"),
                            &format!("bucket the time column \"{time_column}\""),
                        ));
                    }
                }
                let origin = match f.args.get(2) {
                    None => 0,
                    Some(Expr::Literal(v, _)) => match v {
                        ScalarValue::TimestampNanosecond(Some(t), _) => *t,
                        ScalarValue::TimestampMicrosecond(Some(t), _) => t * 1_000,
                        ScalarValue::TimestampMillisecond(Some(t), _) => t * 1_000_000,
                        ScalarValue::TimestampSecond(Some(t), _) => t * 1_000_000_000,
                        other => {
                            return Err(unsupported(
                                format!("the bucket origin {other}"),
                                "give the origin as a constant timestamp",
                            ));
                        }
                    },
                    Some(other) => {
                        return Err(unsupported(
                            format!("the bucket origin {other}"),
                            "give the origin as a constant timestamp",
                        ));
                    }
                };
                if width <= 0 {
                    return Err(QueryError::new(
                        ErrorKind::InvalidParameter,
                        "bucket width must be positive",
                    ));
                }
                bucket = Some((width, origin, i));
            }
            Expr::Column(_) => {}
            other => {
                return Err(unsupported(
                    format!("GROUP BY {other}"),
                    "group by time_bucket(...) and plain columns",
                ));
            }
        }
    }
    bucket.ok_or_else(|| {
        QueryError::new(
            ErrorKind::Grouping,
            "a continuous aggregate must GROUP BY time_bucket(width, time) or date_bin(width, time)",
        )
    })
}

/// The output column that returns the bucket unchanged (`time_bucket(...) AS bucket`).
pub(super) fn bucket_output_name(plan: &LogicalPlan, bucket_index: usize) -> Option<String> {
    let LogicalPlan::Projection(p) = plan else {
        return None;
    };
    let LogicalPlan::Aggregate(a) = p.input.as_ref() else {
        return None;
    };
    let group_field = a.schema.field(bucket_index).name().clone();
    p.expr.iter().enumerate().find_map(|(i, e)| {
        let mut inner = e;
        while let Expr::Alias(al) = inner {
            inner = al.expr.as_ref();
        }
        match inner {
            Expr::Column(c) if c.name == group_field => Some(plan.schema().field(i).name().clone()),
            _ => None,
        }
    })
}

pub(super) fn find_aggregate(plan: &Arc<dyn ExecutionPlan>) -> Option<&AggregateExec> {
    if let Some(a) = plan.downcast_ref::<AggregateExec>() {
        return Some(a);
    }
    plan.children().into_iter().find_map(find_aggregate)
}
