//! Several endpoints for one large scan, so a lakehouse engine (or any client with threads)
//! can fetch them in parallel.
//!
//! Only a query that reads one Eddy table row by row (projections and filters over one table
//! scan: no aggregate, sort, limit, join, window or subquery) is split, and only when the
//! table holds at least [`ENDPOINT_ROWS`] rows per endpoint. Each endpoint's ticket holds the
//! SQL and a half-open slice of the time column: the first slice is open below, the last open
//! above, and slices do not overlap, so whatever rows the table holds, each one is in exactly
//! one slice and the union of the endpoints is the single-stream answer. A slice is applied
//! by a filter right above the table scan, which the planner pushes into the scan, so each
//! endpoint reads only its time range.
//!
//! A client asks for at most N endpoints with the gRPC header `x-eddy-endpoints: N`; `1`
//! turns splitting off (Grafana's data source reads only one endpoint: set it there).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::logical_expr::{Expr, Filter, LogicalPlan, lit};
use eddy_query::QueryEngine;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// The header with which a client caps the number of endpoints of one answer.
pub(super) const ENDPOINTS_HEADER: &str = "x-eddy-endpoints";

/// Most endpoints one answer has unless the client asks otherwise.
pub(super) const ENDPOINTS_DEFAULT: usize = 8;

/// Most endpoints a client may ask for.
pub(super) const ENDPOINTS_MAX: usize = 64;

/// Rows an endpoint should hold at least: smaller results stay one stream.
pub(super) const ENDPOINT_ROWS: u64 = 1_000_000;

/// A time slice of a scan: `[lo, hi)` in nanoseconds, `None` for an open end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slice {
    /// Inclusive lower bound.
    pub lo: Option<i64>,
    /// Exclusive upper bound.
    pub hi: Option<i64>,
}

/// The most endpoints the caller accepts: its `x-eddy-endpoints` header, else the default.
pub(super) fn wanted(metadata: &MetadataMap) -> Result<usize, Status> {
    let Some(value) = metadata.get(ENDPOINTS_HEADER) else {
        return Ok(ENDPOINTS_DEFAULT);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=ENDPOINTS_MAX).contains(n))
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "header {ENDPOINTS_HEADER} must be a number from 1 to {ENDPOINTS_MAX}"
            ))
        })
}

/// The Eddy table a row-by-row query reads, with its time column, or `None` when the plan is
/// anything else.
fn scanned_table(engine: &QueryEngine, plan: &LogicalPlan) -> Option<(TableReference, String)> {
    let mut scans = Vec::new();
    let mut row_by_row = true;
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
            }
            LogicalPlan::TableScan(scan) => scans.push(scan.clone()),
            _ => {
                row_by_row = false;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    let [scan] = <[_; 1]>::try_from(scans).ok()?;
    if !row_by_row || scan.fetch.is_some() {
        return None;
    }
    let foreign_schema = scan
        .table_name
        .schema()
        .is_some_and(|s| s != eddy_query::catalog::SCHEMA);
    let foreign_catalog = scan
        .table_name
        .catalog()
        .is_some_and(|c| c != eddy_query::catalog::DATABASE);
    if foreign_schema || foreign_catalog {
        return None;
    }
    let snapshot = engine.db().snapshot(scan.table_name.table())?;
    let time = snapshot.schema.time_column().to_string();
    // A view or system table of the same name has a schema of its own.
    let field = scan.source.schema().field_with_name(&time).ok()?.clone();
    matches!(
        field.data_type(),
        DataType::Timestamp(TimeUnit::Nanosecond, None)
    )
    .then_some((scan.table_name, time))
}

/// The slices `plan` is answered in when at most `wanted` endpoints are wanted: one open slice
/// (a single endpoint) unless the plan reads one large table row by row.
pub(super) fn slices(engine: &QueryEngine, plan: &LogicalPlan, wanted: usize) -> Vec<Slice> {
    let whole = vec![Slice { lo: None, hi: None }];
    if wanted <= 1 {
        return whole;
    }
    let Some((table, _)) = scanned_table(engine, plan) else {
        return whole;
    };
    let Some(snapshot) = engine.db().snapshot(table.table()) else {
        return whole;
    };
    let mut rows = 0u64;
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for s in &snapshot.segments {
        rows += s.meta.rows;
        min = min.min(s.meta.min_time);
        max = max.max(s.meta.max_time);
    }
    for m in &snapshot.memory {
        rows += m.batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        min = min.min(m.min_time);
        max = max.max(m.max_time);
    }
    let n = usize::try_from(rows / ENDPOINT_ROWS)
        .unwrap_or(usize::MAX)
        .min(wanted);
    if n <= 1 || max <= min {
        return whole;
    }
    cut(min, max, n)
}

/// `n` slices covering every instant, with boundaries spread evenly over `[min, max]`.
fn cut(min: i64, max: i64, n: usize) -> Vec<Slice> {
    let span = i128::from(max) - i128::from(min);
    let mut bounds: Vec<i64> = (1..n)
        .map(|i| {
            let b = i128::from(min) + span * i as i128 / n as i128;
            i64::try_from(b).unwrap_or(max)
        })
        .collect();
    bounds.dedup();
    let mut out = Vec::with_capacity(bounds.len() + 1);
    let mut lo = None;
    for b in bounds {
        out.push(Slice { lo, hi: Some(b) });
        lo = Some(b);
    }
    out.push(Slice { lo, hi: None });
    out
}

/// `plan` restricted to the rows of `slice`: a filter on the time column right above its one
/// table scan. `FailedPrecondition` when the plan no longer reads one table row by row (the
/// table was replaced by a view since the endpoints were handed out).
pub(super) fn restrict(
    engine: &QueryEngine,
    plan: LogicalPlan,
    slice: Slice,
) -> Result<LogicalPlan, Status> {
    if slice.lo.is_none() && slice.hi.is_none() {
        return Ok(plan);
    }
    let (table, time) = scanned_table(engine, &plan).ok_or_else(|| {
        Status::failed_precondition(
            "the statement no longer reads one table row by row; call GetFlightInfo again",
        )
    })?;
    let column = || Expr::Column(Column::new(Some(table.clone()), time.clone()));
    let ts = |v: i64| lit(ScalarValue::TimestampNanosecond(Some(v), None));
    let predicate = match (slice.lo, slice.hi) {
        (Some(lo), Some(hi)) => column().gt_eq(ts(lo)).and(column().lt(ts(hi))),
        (Some(lo), None) => column().gt_eq(ts(lo)),
        (None, Some(hi)) => column().lt(ts(hi)),
        (None, None) => return Ok(plan),
    };
    plan.transform_up(|node| match node {
        LogicalPlan::TableScan(_) => {
            let filter = Filter::try_new(predicate.clone(), Arc::new(node))?;
            Ok(Transformed::yes(LogicalPlan::Filter(filter)))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .map_err(|e| Status::internal(format!("cannot restrict the query to a time slice: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_every_instant_once() {
        let s = cut(0, 100, 4);
        assert_eq!(s.len(), 4);
        assert_eq!(
            s[0],
            Slice {
                lo: None,
                hi: Some(25)
            }
        );
        assert_eq!(
            s[3],
            Slice {
                lo: Some(75),
                hi: None
            }
        );
        for w in s.windows(2) {
            assert_eq!(w[0].hi, w[1].lo);
        }
        // A span narrower than the count: fewer, still covering slices.
        let s = cut(10, 12, 8);
        assert_eq!(s.first().map(|s| s.lo), Some(None));
        assert_eq!(s.last().map(|s| s.hi), Some(None));
        for w in s.windows(2) {
            assert_eq!(w[0].hi, w[1].lo);
        }
        // The whole range of i64 does not overflow.
        let s = cut(i64::MIN, i64::MAX, 3);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn the_header_caps_the_count() {
        let mut m = MetadataMap::new();
        assert_eq!(wanted(&m).expect("default"), ENDPOINTS_DEFAULT);
        m.insert(ENDPOINTS_HEADER, "1".parse().expect("value"));
        assert_eq!(wanted(&m).expect("one"), 1);
        m.insert(ENDPOINTS_HEADER, "0".parse().expect("value"));
        assert!(wanted(&m).is_err());
        m.insert(ENDPOINTS_HEADER, "lots".parse().expect("value"));
        assert!(wanted(&m).is_err());
    }
}
