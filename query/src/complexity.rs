//! Refuses statements nested too deep to plan safely, right after they are parsed.
//!
//! The parser reads a long operator chain in a loop, but everything after it (rewrites,
//! planning, optimizing, even dropping the tree) recurses once per level. A 4 KB statement can
//! nest thousands of levels, so depth, not length, is what must be bounded.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Statement, Visit, Visitor};

use crate::error::{ErrorKind, QueryError, Result};
use crate::limits::STATEMENT_DEPTH_MAX;

/// Checks a statement as DataFusion's parser returns it.
pub fn check_df_statement(stmt: &DfStatement) -> Result<()> {
    match stmt {
        DfStatement::Statement(s) => check_statement(s),
        DfStatement::Explain(e) => check_df_statement(&e.statement),
        _ => Ok(()),
    }
}

/// Checks a SQL statement: refuses it when its expressions, subqueries and set operations
/// nest deeper than [`STATEMENT_DEPTH_MAX`].
pub fn check_statement(stmt: &Statement) -> Result<()> {
    let mut depth = Depth::default();
    match stmt.visit(&mut depth) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(too_complex()),
    }
}

/// The error for a statement over the limit.
pub fn too_complex() -> QueryError {
    QueryError::new(
        ErrorKind::TooComplex,
        format!(
            "statement too complex: its expressions, subqueries or set operations nest more than {STATEMENT_DEPTH_MAX} levels deep; write long chains of OR or = as IN (...)"
        ),
    )
}

/// Counts nesting while the visitor walks down, and stops it at the limit, so the walk itself
/// never recurses deeper than the limit.
#[derive(Default)]
struct Depth {
    now: usize,
}

impl Depth {
    fn enter(&mut self, levels: usize) -> ControlFlow<()> {
        self.now += levels;
        if self.now > STATEMENT_DEPTH_MAX {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // Set operations are not visited as nodes of their own; their chain is counted here.
        self.enter(1 + set_operation_depth(&query.body))
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.now -= 1 + set_operation_depth(&query.body);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.enter(1)
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.now -= 1;
        ControlFlow::Continue(())
    }
}

/// How deep set operations nest in `body`, counted without recursion and capped just past the
/// limit (a chain of `UNION ALL` leans left, one level per operator).
fn set_operation_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(body, 0usize)];
    while let Some((node, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        if deepest > STATEMENT_DEPTH_MAX {
            break;
        }
        if let SetExpr::SetOperation { left, right, .. } = node {
            stack.push((left, depth + 1));
            stack.push((right, depth + 1));
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn check(sql: &str) -> Result<()> {
        let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        stmts.iter().try_for_each(check_statement)
    }

    /// Runs where a deep tree can be walked and dropped, as the query threads are.
    fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(crate::limits::QUERY_THREAD_STACK_BYTES)
            .spawn(f)
            .expect("thread")
            .join()
            .expect("join")
    }

    #[test]
    fn ordinary_statements_pass() {
        on_big_stack(|| {
            check("SELECT a + b * 2 FROM t WHERE (x = 1 OR y IN (1, 2, 3)) AND z > (SELECT 1)")
                .expect("ordinary");
            let chain = vec!["1"; STATEMENT_DEPTH_MAX - 10].join("+");
            check(&format!("SELECT {chain}")).expect("just under the limit");
        });
    }

    #[test]
    fn deep_chains_of_every_kind_are_refused() {
        on_big_stack(|| {
            for sql in [
                format!("SELECT {}", vec!["1"; 2_000].join("+")),
                format!("SELECT 1 WHERE {}", vec!["true"; 50_000].join(" AND ")),
                format!("SELECT 1 WHERE {}", vec!["x = 1"; 20_000].join(" OR ")),
                format!("SELECT {}", vec!["'a'"; 50_000].join(" || ")),
                vec!["SELECT 1"; 10_000].join(" UNION ALL "),
            ] {
                let err = check(&sql).expect_err("too deep");
                assert_eq!(err.kind, ErrorKind::TooComplex, "{}", &sql[..40]);
                assert!(err.message.contains("too complex"), "{}", err.message);
            }
        });
    }
}
