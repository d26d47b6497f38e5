//! PostgreSQL semantics that DataFusion's SQL planner lacks and that clients rely on:
//!
//! - `interval * number`, `number * interval`, `interval / number` (Superset's 5/10/15/30-minute
//!   time grains), in `interval_arith`;
//! - a quoted literal compared with a boolean, an interval or a duration takes that type
//!   (`indisprimary = 'f'` in SQLAlchemy's reflection), in `literal_coercion`;
//! - `LIKE ... ESCAPE` with an escape other than the backslash (SQLAlchemy's
//!   `startswith(..., autoescape=True)`), in `like_escape`.
//!
//! The operators are planned by an [`ExprPlanner`], which sees the operands and their types
//! while the SQL becomes a plan: DataFusion would refuse `interval * 1.5` and `true = 'f'` as it
//! types the plan, so nothing after planning could repair them. `IN` lists and `LIKE` are
//! rewritten by a [`FunctionRewrite`], which DataFusion's analyzer runs before anything else
//! (before type coercion, which would refuse `b IN ('t', 'f')`) and after `$n` parameters are
//! bound. Escape strings DataFusion's parser refuses are rewritten in the statement
//! ([`rewrite_statement`]).

mod interval_arith;
mod like_escape;
mod literal_coercion;

#[cfg(test)]
mod tests;

pub use like_escape::rewrite_statement;

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ScalarUDF};
use datafusion::prelude::SessionContext;

use self::interval_arith::{IntervalOp, IntervalScale};
use self::like_escape::LikeEscape;
use crate::error::{ErrorKind, QueryError};

/// Installs the operators, the rewrites and PostgreSQL's `interval_mul`, `interval_div` and
/// `like_escape` functions into a context (the engine's template, and the one continuous
/// aggregates are planned in).
pub fn register(ctx: &SessionContext) {
    let functions = Functions {
        interval_mul: IntervalScale::udf(IntervalOp::Mul),
        interval_div: IntervalScale::udf(IntervalOp::Div),
        like_escape: LikeEscape::udf(),
    };
    for udf in [
        &functions.interval_mul,
        &functions.interval_div,
        &functions.like_escape,
    ] {
        ctx.register_udf(ScalarUDF::clone(udf));
    }
    let shared = ctx.state_ref();
    let mut state = shared.write();
    // A SessionState accepts both; only the trait's default implementations refuse.
    let _ = state.register_expr_planner(Arc::new(PostgresOperators(functions.clone())));
    let _ = state.register_function_rewrite(Arc::new(PostgresRewrites(functions)));
}

/// The functions the planner and the rewrite call.
#[derive(Debug, Clone)]
struct Functions {
    interval_mul: Arc<ScalarUDF>,
    interval_div: Arc<ScalarUDF>,
    like_escape: Arc<ScalarUDF>,
}

/// Plans interval arithmetic and comparisons with quoted literals.
#[derive(Debug)]
struct PostgresOperators(Functions);

impl ExprPlanner for PostgresOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let f = &self.0;
        match interval_arith::plan(expr, schema, &f.interval_mul, &f.interval_div)? {
            PlannerResult::Planned(planned) => Ok(PlannerResult::Planned(planned)),
            // With the literal retyped, DataFusion (and any later planner) builds the
            // comparison as usual.
            PlannerResult::Original(expr) => Ok(PlannerResult::Original(literal_coercion::plan(
                expr, schema,
            )?)),
        }
    }
}

/// Rewrites `IN` lists of quoted literals and `LIKE` with another escape character.
#[derive(Debug)]
struct PostgresRewrites(Functions);

impl FunctionRewrite for PostgresRewrites {
    fn name(&self) -> &str {
        "eddy_postgres_semantics"
    }

    fn rewrite(
        &self,
        expr: Expr,
        schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> DfResult<Transformed<Expr>> {
        match expr {
            Expr::Like(like) => like_escape::rewrite(like, &self.0.like_escape),
            Expr::InList(in_list) => literal_coercion::rewrite_in_list(in_list, schema),
            other => Ok(Transformed::no(other)),
        }
    }
}

/// An error of `kind` in DataFusion's error type, which the front ends unwrap to `kind`.
fn sql_error(kind: ErrorKind, message: impl Into<String>) -> DataFusionError {
    DataFusionError::External(Box::new(QueryError::new(kind, message)))
}
