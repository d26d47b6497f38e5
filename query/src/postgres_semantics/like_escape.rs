//! `LIKE ... ESCAPE` with an escape character other than the backslash. DataFusion's LIKE
//! knows only the backslash: its physical planner refuses any other escape character, and its
//! SQL planner refuses an escape string that is not exactly one byte (`ESCAPE ''`, which
//! PostgreSQL reads as "no escape character"). SQLAlchemy's `startswith(..., autoescape=True)`,
//! used by its reflection (`get_schema_names`), sends `LIKE 'pg/_' || '%' ESCAPE '/'`.
//!
//! PostgreSQL's own grammar plans `a LIKE b ESCAPE c` as `a LIKE like_escape(b, c)`, a
//! function that rewrites the pattern to use the backslash; Eddy does the same. A pattern that
//! is a string literal is rewritten while planning; any other pattern (an expression, a
//! parameter) gets a call of [`LikeEscape`], which constant folding evaluates once when the
//! pattern is a constant.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, Like, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
    lit,
};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast as sql;

use super::sql_error;
use crate::error::ErrorKind;

/// The function's name, PostgreSQL's.
const NAME: &str = "like_escape";

/// Rewrites the `ESCAPE` strings DataFusion's SQL planner refuses but PostgreSQL takes (`''`,
/// a character of more than one byte, an `E'...'` string) into a `like_escape` call on the
/// pattern, in a statement about to be planned.
pub fn rewrite_statement(mut stmt: DfStatement) -> DfStatement {
    rewrite_in_place(&mut stmt);
    stmt
}

fn rewrite_in_place(stmt: &mut DfStatement) {
    match stmt {
        DfStatement::Statement(s) => {
            let _ = sql::visit_expressions_mut(&mut **s, |e: &mut sql::Expr| {
                rewrite_sql_expr(e);
                ControlFlow::<()>::Continue(())
            });
        }
        DfStatement::Explain(explain) => rewrite_in_place(&mut explain.statement),
        _ => {}
    }
}

fn rewrite_sql_expr(expr: &mut sql::Expr) {
    if let sql::Expr::Like {
        pattern,
        escape_char,
        ..
    }
    | sql::Expr::ILike {
        pattern,
        escape_char,
        ..
    } = expr
        && let Some(escape) = escape_char.as_ref().and_then(refused_escape)
    {
        let inner = std::mem::replace(&mut **pattern, sql::Expr::value(sql::Value::Null));
        **pattern = like_escape_call(inner, escape);
        *escape_char = None;
    }
}

/// The escape string of an `ESCAPE` clause that DataFusion's planner would refuse.
fn refused_escape(escape: &sql::ValueWithSpan) -> Option<String> {
    match &escape.value {
        // DataFusion takes a string of exactly one byte.
        sql::Value::SingleQuotedString(s) if s.len() != 1 => Some(s.clone()),
        sql::Value::EscapedStringLiteral(s) => Some(s.clone()),
        _ => None,
    }
}

/// `like_escape(pattern, 'escape')`.
fn like_escape_call(pattern: sql::Expr, escape: String) -> sql::Expr {
    let arg = |e: sql::Expr| sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(e));
    sql::Expr::Function(sql::Function {
        name: sql::ObjectName::from(vec![sql::Ident::new(NAME)]),
        uses_odbc_syntax: false,
        parameters: sql::FunctionArguments::None,
        args: sql::FunctionArguments::List(sql::FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![
                arg(pattern),
                arg(sql::Expr::value(sql::Value::SingleQuotedString(escape))),
            ],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// A planned `LIKE`/`ILIKE` with an escape character other than the backslash, as one with
/// the backslash: a string literal pattern is translated now, any other is wrapped in
/// `like_escape`.
pub fn rewrite(like: Like, like_escape: &Arc<ScalarUDF>) -> DfResult<Transformed<Expr>> {
    let Some(escape) = like.escape_char.filter(|c| *c != '\\') else {
        return Ok(Transformed::no(Expr::Like(like)));
    };
    let Like {
        negated,
        expr,
        pattern,
        case_insensitive,
        ..
    } = like;
    let escape = escape.to_string();
    let pattern = match *pattern {
        Expr::Literal(ScalarValue::Utf8(Some(p)), metadata) => Expr::Literal(
            ScalarValue::Utf8(Some(to_backslash_pattern(&p, &escape)?)),
            metadata,
        ),
        Expr::Literal(ScalarValue::LargeUtf8(Some(p)), metadata) => Expr::Literal(
            ScalarValue::LargeUtf8(Some(to_backslash_pattern(&p, &escape)?)),
            metadata,
        ),
        Expr::Literal(ScalarValue::Utf8View(Some(p)), metadata) => Expr::Literal(
            ScalarValue::Utf8View(Some(to_backslash_pattern(&p, &escape)?)),
            metadata,
        ),
        // A null pattern matches nothing, whatever the escape.
        Expr::Literal(value, metadata) if value.is_null() => Expr::Literal(value, metadata),
        other => Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::clone(like_escape),
            vec![other, lit(escape)],
        )),
    };
    Ok(Transformed::yes(Expr::Like(Like::new(
        negated,
        expr,
        Box::new(pattern),
        None,
        case_insensitive,
    ))))
}

/// `pattern`, written with `escape` as its escape character (none if empty), rewritten to
/// use the backslash, as PostgreSQL's like_escape does: the escape character before a
/// character becomes a backslash, and a backslash that is not escaped is doubled so that it
/// stays an ordinary character. Unlike PostgreSQL's function, a pattern that ends in an
/// unescaped escape character is refused here, with the error PostgreSQL's LIKE gives.
pub fn to_backslash_pattern(pattern: &str, escape: &str) -> DfResult<String> {
    let mut chars = escape.chars();
    let escape = match (chars.next(), chars.next()) {
        (None, _) => None,
        (Some(c), None) => Some(c),
        _ => {
            return Err(sql_error(
                ErrorKind::InvalidEscapeSequence,
                "invalid escape string (escape string must be empty or one character)",
            ));
        }
    };
    let mut out = String::with_capacity(pattern.len() + 4);
    match escape {
        None => {
            for c in pattern.chars() {
                if c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        Some('\\') => out.push_str(pattern),
        Some(escape) => {
            let mut after_escape = false;
            for c in pattern.chars() {
                if c == escape && !after_escape {
                    out.push('\\');
                    after_escape = true;
                } else if c == '\\' {
                    out.push('\\');
                    if !after_escape {
                        out.push('\\');
                    }
                    after_escape = false;
                } else {
                    out.push(c);
                    after_escape = false;
                }
            }
            if after_escape {
                return Err(sql_error(
                    ErrorKind::InvalidEscapeSequence,
                    "LIKE pattern must not end with escape character",
                ));
            }
        }
    }
    Ok(out)
}

/// `like_escape(pattern, escape)`: the pattern rewritten to use the backslash as its escape
/// character (see [`to_backslash_pattern`]).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LikeEscape {
    signature: Signature,
}

impl LikeEscape {
    /// The function.
    pub fn udf() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(Self {
            signature: Signature::string(2, Volatility::Immutable),
        }))
    }

    fn wrong_arguments(&self) -> DataFusionError {
        DataFusionError::Internal(format!("{NAME} called with the wrong arguments"))
    }
}

impl ScalarUDFImpl for LikeEscape {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn is_strict(&self) -> bool {
        true
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [pattern, escape] = args.args.as_slice() else {
            return Err(self.wrong_arguments());
        };
        let scalar = matches!(
            (pattern, escape),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let rows = if scalar { 1 } else { args.number_rows };
        let patterns = cast(&pattern.to_array(rows)?, &DataType::Utf8)?;
        let escapes = cast(&escape.to_array(rows)?, &DataType::Utf8)?;
        let (Some(patterns), Some(escapes)) = (
            patterns.as_string_opt::<i32>(),
            escapes.as_string_opt::<i32>(),
        ) else {
            return Err(self.wrong_arguments());
        };
        let result: StringArray = patterns
            .iter()
            .zip(escapes.iter())
            .map(|pair| match pair {
                (Some(p), Some(e)) => to_backslash_pattern(p, e).map(Some),
                _ => Ok(None),
            })
            .collect::<DfResult<_>>()?;
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(Arc::new(result)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(pattern: &str, escape: &str) -> String {
        to_backslash_pattern(pattern, escape).expect("translates")
    }

    #[test]
    fn escapes_become_backslashes() {
        assert_eq!(translated("pg^_%", "^"), r"pg\_%");
        assert_eq!(translated("a#%b", "#"), r"a\%b");
        // An escaped escape character is the character itself.
        assert_eq!(translated("a^^b", "^"), r"a\^b");
        // A backslash is an ordinary character, escaped or not.
        assert_eq!(translated(r"a\b", "^"), r"a\\b");
        assert_eq!(translated(r"a^\b", "^"), r"a\\b");
        assert_eq!(translated("pg/_%", "/"), r"pg\_%");
        assert_eq!(translated("x^_", "^"), r"x\_");
    }

    #[test]
    fn no_escape_character_makes_backslashes_ordinary() {
        assert_eq!(translated(r"a\b%", ""), r"a\\b%");
        assert_eq!(translated("a_b", ""), "a_b");
        // The backslash itself needs no rewriting.
        assert_eq!(translated(r"a\_", r"\"), r"a\_");
    }

    #[test]
    fn malformed_patterns_and_escapes_are_refused() {
        for (pattern, escape) in [("ab^", "^"), ("^", "^"), ("a^^^", "^"), ("a", "^^")] {
            let err = to_backslash_pattern(pattern, escape).expect_err(pattern);
            let DataFusionError::External(e) = err else {
                panic!("not a query error: {err}");
            };
            let kind = e.downcast_ref::<crate::error::QueryError>().map(|q| q.kind);
            assert_eq!(kind, Some(ErrorKind::InvalidEscapeSequence), "{pattern}");
        }
    }

    #[test]
    fn refused_escape_strings_become_calls() {
        let mut stmts = datafusion::sql::parser::DFParser::parse_sql_with_dialect(
            "SELECT a LIKE b ESCAPE '', a NOT ILIKE 'x' ESCAPE '', a LIKE b ESCAPE '^' FROM t",
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        )
        .expect("parses");
        let stmt = rewrite_statement(stmts.pop_front().expect("one statement"));
        assert_eq!(
            stmt.to_string(),
            "SELECT a LIKE like_escape(b, ''), a NOT ILIKE like_escape('x', ''), a LIKE b ESCAPE '^' FROM t"
        );
    }
}
