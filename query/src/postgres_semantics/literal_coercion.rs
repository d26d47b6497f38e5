//! Quoted literals compared with a value of another type. In PostgreSQL `'f'` is of unknown
//! type and takes the type of what it is compared with, so SQLAlchemy's reflection writes
//! `indisprimary = 'f'`. DataFusion types it as text and refuses to compare text with a
//! boolean, an interval or a duration (it converts text itself for numbers, dates, times,
//! timestamps and binary strings, which are left to it). For those three types the literal
//! is read as a value of the other operand's type while the statement is planned, so an
//! invalid one (`true = 'maybe'`) is an error naming it, as in PostgreSQL.

use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::planner::RawBinaryExpr;
use datafusion::logical_expr::sqlparser::ast::BinaryOperator;
use datafusion::logical_expr::{Expr, ExprSchemable};

use super::sql_error;
use crate::error::ErrorKind;

const NANOS_PER_DAY: i128 = 86_400_000_000_000;

/// A comparison (`=`, `<>`, `<`, `<=`, `>`, `>=`) of a quoted literal with a value of a type
/// DataFusion cannot compare text with, with the literal read as a value of that type; any
/// other operation comes back as it was.
pub fn plan(expr: RawBinaryExpr, schema: &DFSchema) -> DfResult<RawBinaryExpr> {
    if !matches!(
        expr.op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    ) {
        return Ok(expr);
    }
    let RawBinaryExpr { op, left, right } = expr;
    let (left, right) = match (is_text_literal(&left), is_text_literal(&right)) {
        (false, true) => {
            let right = as_type_of(right, &left, schema)?;
            (left, right)
        }
        (true, false) => {
            let left = as_type_of(left, &right, schema)?;
            (left, right)
        }
        _ => (left, right),
    };
    Ok(RawBinaryExpr { op, left, right })
}

/// `x IN ('t', 'f')` with the quoted literals read as values of `x`'s type, for the types
/// DataFusion cannot compare text with.
pub fn rewrite_in_list(in_list: InList, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    if !in_list.list.iter().any(is_text_literal) {
        return Ok(Transformed::no(Expr::InList(in_list)));
    }
    let target = in_list
        .expr
        .get_type(schema)
        .ok()
        .and_then(|t| coercion_target(&t));
    let Some(target) = target else {
        return Ok(Transformed::no(Expr::InList(in_list)));
    };
    let InList {
        expr,
        list,
        negated,
    } = in_list;
    let list = list
        .into_iter()
        .map(|item| as_target(item, target))
        .collect::<DfResult<Vec<_>>>()?;
    Ok(Transformed::yes(Expr::InList(InList {
        expr,
        list,
        negated,
    })))
}

/// A quoted literal as it comes out of the SQL planner (not a cast, not a parameter).
fn is_text_literal(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Literal(
            ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_),
            _
        )
    )
}

/// The types a quoted literal is read as here: those DataFusion cannot compare text with.
#[derive(Debug, Clone, Copy)]
enum Target {
    Boolean,
    Interval,
    Duration(TimeUnit),
}

fn coercion_target(ty: &DataType) -> Option<Target> {
    match ty {
        DataType::Boolean => Some(Target::Boolean),
        // Any interval unit: DataFusion compares intervals of different units.
        DataType::Interval(_) => Some(Target::Interval),
        DataType::Duration(unit) => Some(Target::Duration(*unit)),
        _ => None,
    }
}

/// `literal` read as a value of `other`'s type, when that is a type DataFusion cannot compare
/// text with; otherwise (or when `other`'s type cannot be told) unchanged.
fn as_type_of(literal: Expr, other: &Expr, schema: &DFSchema) -> DfResult<Expr> {
    match other
        .get_type(schema)
        .ok()
        .and_then(|t| coercion_target(&t))
    {
        Some(target) => as_target(literal, target),
        None => Ok(literal),
    }
}

/// A quoted literal as a literal of `target`; any other expression unchanged.
fn as_target(literal: Expr, target: Target) -> DfResult<Expr> {
    let text = match literal {
        Expr::Literal(
            ScalarValue::Utf8(t) | ScalarValue::LargeUtf8(t) | ScalarValue::Utf8View(t),
            _,
        ) => t,
        other => return Ok(other),
    };
    let text = text.as_deref();
    let value = match target {
        Target::Boolean => ScalarValue::Boolean(
            text.map(|t| parse_bool(t).ok_or_else(|| invalid_input("boolean", t)))
                .transpose()?,
        ),
        Target::Interval => {
            ScalarValue::IntervalMonthDayNano(text.map(parse_interval).transpose()?)
        }
        Target::Duration(unit) => duration(text.map(parse_interval).transpose()?, unit)?,
    };
    Ok(Expr::Literal(value, None))
}

/// PostgreSQL's boolean input (boolin): `true`/`false`, `yes`/`no` and any unique prefix of
/// them, `on`, `off` (or `of`), `1` and `0`, in any case, with surrounding white space.
pub fn parse_bool(text: &str) -> Option<bool> {
    let t = text
        .trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C'))
        .to_ascii_lowercase();
    let prefix_of = |word: &str| word.starts_with(t.as_str());
    match t.as_str() {
        "" => None,
        "1" | "on" => Some(true),
        "0" | "of" | "off" => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
}

/// Text read as an interval, with DataFusion's reading of interval literals.
fn parse_interval(text: &str) -> DfResult<IntervalMonthDayNano> {
    match ScalarValue::Utf8(Some(text.to_string()))
        .cast_to(&DataType::Interval(IntervalUnit::MonthDayNano))
    {
        Ok(ScalarValue::IntervalMonthDayNano(Some(v))) => Ok(v),
        _ => Err(invalid_input("interval", text)),
    }
}

/// An interval as a duration of `unit`, with PostgreSQL's 30-day months and 24-hour days (the
/// lengths its interval comparisons use).
fn duration(v: Option<IntervalMonthDayNano>, unit: TimeUnit) -> DfResult<ScalarValue> {
    let per_unit: i128 = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    let value = v
        .map(|v| {
            let nanos = (i128::from(v.months) * 30 + i128::from(v.days)) * NANOS_PER_DAY
                + i128::from(v.nanoseconds);
            i64::try_from(nanos / per_unit)
                .map_err(|_| sql_error(ErrorKind::DatetimeOutOfRange, "interval out of range"))
        })
        .transpose()?;
    Ok(match unit {
        TimeUnit::Second => ScalarValue::DurationSecond(value),
        TimeUnit::Millisecond => ScalarValue::DurationMillisecond(value),
        TimeUnit::Microsecond => ScalarValue::DurationMicrosecond(value),
        TimeUnit::Nanosecond => ScalarValue::DurationNanosecond(value),
    })
}

fn invalid_input(type_name: &str, text: &str) -> datafusion::error::DataFusionError {
    sql_error(
        ErrorKind::InvalidTextRepresentation,
        format!("invalid input syntax for type {type_name}: \"{text}\""),
    )
}

#[cfg(test)]
mod tests {
    use super::parse_bool;

    #[test]
    fn booleans_are_read_as_postgres_reads_them() {
        for t in [
            "t", "tr", "TRUE", "true", "y", "yes", "on", "1", " t ", "\ttrue\n",
        ] {
            assert_eq!(parse_bool(t), Some(true), "{t:?}");
        }
        for f in ["f", "fal", "FALSE", "n", "no", "of", "off", "0", " F"] {
            assert_eq!(parse_bool(f), Some(false), "{f:?}");
        }
        for bad in [
            "", " ", "o", "maybe", "truee", "yess", "onn", "offf", "2", "00", "10", "t rue",
        ] {
            assert_eq!(parse_bool(bad), None, "{bad:?}");
        }
    }
}
