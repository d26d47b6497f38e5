//! Values out of range are errors, as in PostgreSQL, never wrapped or saturated answers.
//!
//! DataFusion evaluates integer `+`, `-`, `*` and unary `-` with wrapping kernels
//! (`9223372036854775807 + 1` answers `-9223372036854775808`), both when it folds constants
//! during optimization and when it runs a plan; its `BinaryExpr` can check instead
//! (`fail_on_overflow`), but nothing in the planner sets that, and no session option does. So an
//! analyzer rule, run after type coercion, replaces each integer operator with a function that
//! runs arrow's checked kernel of the same operator. The functions keep the operators' column
//! names, result types, nullability, bounds and orderings, so plans and result columns look as
//! before, and constant folding, which evaluates them like any function, keeps an overflowing
//! constant unfolded so that it fails when (and only if) it is evaluated.
//!
//! `to_timestamp(seconds)` saturates at the largest timestamp for any float out of range (and
//! answers 1970 for NaN); it is wrapped so that seconds outside Eddy's nanosecond range are an
//! error naming the value. The errors DataFusion and arrow raise for the other overflows (casts,
//! `abs`, division, timestamp arithmetic) are recognised by [`out_of_range`].

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::compute::{cast, max, min};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type, UInt64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr_common::datum::apply;
use datafusion::prelude::SessionContext;

use crate::error::{ErrorKind, QueryError};

/// What Eddy's timestamps (nanoseconds since 1970 in an i64) can hold, for error messages:
/// PostgreSQL's range is wider (4713 BC to 294276 AD).
pub const TIMESTAMP_RANGE: &str =
    "timestamps run from 1677-09-21 00:12:43.145224192 to 2262-04-11 23:47:16.854775807 UTC";

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// Installs checked integer arithmetic and the range-checked `to_timestamp` into a context
/// (the engine's template, and the one continuous aggregates are planned in).
pub fn register(ctx: &SessionContext) {
    ctx.add_analyzer_rule(Arc::new(CheckedArithmetic::new()));
    // The registered one, so it keeps the time zone the context was configured with.
    let registered = ctx.state().scalar_functions().get("to_timestamp").cloned();
    if let Some(inner) = registered {
        ctx.register_udf(ScalarUDF::new_from_impl(CheckedToTimestamp { inner }));
    }
}

/// The analyzer rule that replaces integer `+`, `-`, `*` and unary `-` with checked functions.
#[derive(Debug)]
pub struct CheckedArithmetic {
    add: Arc<ScalarUDF>,
    sub: Arc<ScalarUDF>,
    mul: Arc<ScalarUDF>,
    neg: Arc<ScalarUDF>,
}

impl Default for CheckedArithmetic {
    fn default() -> Self {
        Self::new()
    }
}

impl CheckedArithmetic {
    /// The rule.
    pub fn new() -> Self {
        Self {
            add: Checked::udf(CheckedOp::Add),
            sub: Checked::udf(CheckedOp::Sub),
            mul: Checked::udf(CheckedOp::Mul),
            neg: Checked::udf(CheckedOp::Neg),
        }
    }

    /// Rewrites the expressions of one plan node; `schema` is what they are typed against.
    fn rewrite_node(&self, plan: LogicalPlan) -> DfResult<Transformed<LogicalPlan>> {
        let mut schema = merge_schema(&plan.inputs());
        if let LogicalPlan::TableScan(scan) = &plan {
            let source = DFSchema::try_from_qualified_schema(
                scan.table_name.clone(),
                &scan.source.schema(),
            )?;
            schema.merge(&source);
        }
        let names = NamePreserver::new(&plan);
        let rewritten = plan.map_expressions(|expr| {
            let name = names.save(&expr);
            expr.transform_up(|e| self.rewrite(e, &schema))
                .map(|t| t.update_data(|e| name.restore(e)))
        })?;
        if rewritten.transformed {
            rewritten.map_data(|p| p.recompute_schema())
        } else {
            Ok(rewritten)
        }
    }

    /// One expression: an integer operator becomes its checked function; anything else, and
    /// anything whose type cannot be told, stays as it is.
    fn rewrite(&self, expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
        let udf = match &expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let udf = match op {
                    Operator::Plus => &self.add,
                    Operator::Minus => &self.sub,
                    Operator::Multiply => &self.mul,
                    _ => return Ok(Transformed::no(expr)),
                };
                // Type coercion has given both sides one type; anything else is not ours.
                match (left.get_type(schema), right.get_type(schema)) {
                    (Ok(l), Ok(r)) if l.is_integer() && l == r => udf,
                    _ => return Ok(Transformed::no(expr)),
                }
            }
            Expr::Negative(inner) => match inner.get_type(schema) {
                Ok(t) if t.is_signed_integer() => &self.neg,
                _ => return Ok(Transformed::no(expr)),
            },
            _ => return Ok(Transformed::no(expr)),
        };
        let args = match expr {
            Expr::BinaryExpr(BinaryExpr { left, right, .. }) => vec![*left, *right],
            Expr::Negative(inner) => vec![*inner],
            other => return Ok(Transformed::no(other)),
        };
        Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::clone(udf), args),
        )))
    }
}

impl AnalyzerRule for CheckedArithmetic {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        Ok(plan
            .transform_up_with_subqueries(|node| self.rewrite_node(node))?
            .data)
    }

    fn name(&self) -> &str {
        "eddy_checked_arithmetic"
    }
}

/// An integer operator that fails on overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CheckedOp {
    Add,
    Sub,
    Mul,
    Neg,
}

/// `a + b`, `a - b`, `a * b` or `-a` on integers of one type, failing on overflow.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Checked {
    op: CheckedOp,
    signature: Signature,
}

impl Checked {
    fn udf(op: CheckedOp) -> Arc<ScalarUDF> {
        let arity = if op == CheckedOp::Neg { 1 } else { 2 };
        Arc::new(ScalarUDF::new_from_impl(Checked {
            op,
            // Only the rule builds calls, after type coercion: the arguments are typed already.
            signature: Signature::any(arity, Volatility::Immutable),
        }))
    }

    fn wrong_arguments(&self) -> DataFusionError {
        DataFusionError::Internal(format!("{} called with the wrong arguments", self.name()))
    }
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        match self.op {
            CheckedOp::Add => "checked_add",
            CheckedOp::Sub => "checked_sub",
            CheckedOp::Mul => "checked_mul",
            CheckedOp::Neg => "checked_neg",
        }
    }

    // The operator's own column name (as `Expr::BinaryExpr` and `Expr::Negative` spell it), so
    // the rewrite renames no column of the plan.
    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        let op = match self.op {
            CheckedOp::Add => Operator::Plus,
            CheckedOp::Sub => Operator::Minus,
            CheckedOp::Mul => Operator::Multiply,
            CheckedOp::Neg => {
                let [a] = args else {
                    return Err(self.wrong_arguments());
                };
                return Ok(format!("(- {})", a.schema_name()));
            }
        };
        let [l, r] = args else {
            return Err(self.wrong_arguments());
        };
        Ok(format!("{} {op} {}", l.schema_name(), r.schema_name()))
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| self.wrong_arguments())
    }

    // Nullable when an operand is, as the operator is.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let first = args
            .arg_fields
            .first()
            .ok_or_else(|| self.wrong_arguments())?;
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(Field::new(
            self.name(),
            first.data_type().clone(),
            nullable,
        )))
    }

    fn is_strict(&self) -> bool {
        true
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let result = match (self.op, args.args.as_slice()) {
            (CheckedOp::Add, [l, r]) => apply(l, r, numeric::add),
            (CheckedOp::Sub, [l, r]) => apply(l, r, numeric::sub),
            (CheckedOp::Mul, [l, r]) => apply(l, r, numeric::mul),
            (CheckedOp::Neg, [a]) => negate(a),
            _ => return Err(self.wrong_arguments()),
        };
        result.map_err(|e| integer_overflow(e, args.return_field.data_type()))
    }

    fn evaluate_bounds(&self, inputs: &[&Interval]) -> DfResult<Interval> {
        match (self.op, inputs) {
            (CheckedOp::Add, [l, r]) => l.add(*r),
            (CheckedOp::Sub, [l, r]) => l.sub(*r),
            (CheckedOp::Mul, [l, r]) => l.mul(*r),
            (CheckedOp::Neg, [a]) => a.arithmetic_negate(),
            _ => Err(self.wrong_arguments()),
        }
    }

    // As the operator's, and without its caveat: a checked result cannot wrap out of order.
    fn output_ordering(&self, inputs: &[ExprProperties]) -> DfResult<SortProperties> {
        Ok(match (self.op, inputs) {
            (CheckedOp::Add, [l, r]) => l.sort_properties.add(&r.sort_properties),
            (CheckedOp::Sub, [l, r]) => l.sort_properties.sub(&r.sort_properties),
            (CheckedOp::Neg, [a]) => -a.sort_properties,
            _ => SortProperties::Unordered,
        })
    }
}

/// `-a`, failing for the smallest value of a signed type.
fn negate(a: &ColumnarValue) -> DfResult<ColumnarValue> {
    match a {
        ColumnarValue::Array(array) => Ok(ColumnarValue::Array(numeric::neg(array.as_ref())?)),
        ColumnarValue::Scalar(s) => {
            let array = numeric::neg(s.to_array()?.as_ref())?;
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                array.as_ref(),
                0,
            )?))
        }
    }
}

/// An arrow overflow as PostgreSQL words it (`bigint out of range`); other errors unchanged.
fn integer_overflow(e: DataFusionError, ty: &DataType) -> DataFusionError {
    let overflow = matches!(
        &e,
        DataFusionError::ArrowError(a, _) if matches!(a.as_ref(), ArrowError::ArithmeticOverflow(_))
    );
    if !overflow {
        return e;
    }
    let name = sql_integer_name(&ty.to_string()).unwrap_or("integer");
    DataFusionError::External(Box::new(QueryError::new(
        ErrorKind::NumericOutOfRange,
        format!("{name} out of range"),
    )))
}

/// The SQL name of an arrow integer type, by its arrow name (`Int32` is `integer`).
fn sql_integer_name(arrow_name: &str) -> Option<&'static str> {
    Some(match arrow_name {
        "Int8" => "tinyint",
        "Int16" => "smallint",
        "Int32" => "integer",
        "Int64" => "bigint",
        "UInt8" => "tinyint unsigned",
        "UInt16" => "smallint unsigned",
        "UInt32" => "integer unsigned",
        "UInt64" => "bigint unsigned",
        _ => return None,
    })
}

/// DataFusion's `to_timestamp`, with epoch seconds outside what a timestamp holds refused
/// rather than saturated (floats) or failing as an arithmetic overflow (integers).
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedToTimestamp {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for CheckedToTimestamp {
    crate::functions::delegate_to_inner!();

    // The result's time zone follows the session's: keep following it.
    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let inner = self.inner.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(CheckedToTimestamp {
            inner: Arc::new(inner),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if let Some(seconds) = args.args.first() {
            check_epoch_seconds(seconds)?;
        }
        self.inner.invoke_with_args(args)
    }
}

/// Fails unless every number of seconds since 1970 in `v` is a representable timestamp; text
/// and other arguments are left to `to_timestamp` itself. Looks only at the smallest and the
/// largest value, with arrow's vectorised kernels.
fn check_epoch_seconds(v: &ColumnarValue) -> DfResult<()> {
    let ty = v.data_type();
    if ty.is_floating() {
        let array = cast(&v.to_array(1)?, &DataType::Float64)?;
        if let Some(floats) = array.as_primitive_opt::<Float64Type>() {
            // Any NaN is the maximum.
            for x in [max(floats), min(floats)].into_iter().flatten() {
                check_float_seconds(x)?;
            }
        }
    } else if ty == DataType::UInt64 {
        let array = v.to_array(1)?;
        if let Some(x) = array.as_primitive_opt::<UInt64Type>().and_then(max)
            && i64::try_from(x)
                .ok()
                .and_then(|s| s.checked_mul(NANOS_PER_SECOND))
                .is_none()
        {
            return Err(timestamp_out_of_range(&x.to_string()));
        }
    } else if ty.is_integer() {
        let array = cast(&v.to_array(1)?, &DataType::Int64)?;
        if let Some(ints) = array.as_primitive_opt::<Int64Type>() {
            for x in [min(ints), max(ints)].into_iter().flatten() {
                if x.checked_mul(NANOS_PER_SECOND).is_none() {
                    return Err(timestamp_out_of_range(&x.to_string()));
                }
            }
        }
    }
    Ok(())
}

/// Fails unless `x` seconds is a representable timestamp (to_timestamp multiplies by 1e9 and
/// converts, which saturates).
fn check_float_seconds(x: f64) -> DfResult<()> {
    if x.is_nan() {
        return Err(DataFusionError::External(Box::new(QueryError::new(
            ErrorKind::DatetimeOutOfRange,
            "timestamp cannot be NaN",
        ))));
    }
    // -2^63 is representable, 2^63 is not.
    let nanos = x * NANOS_PER_SECOND as f64;
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&nanos) {
        return Err(timestamp_out_of_range(&format!("{x:?}")));
    }
    Ok(())
}

fn timestamp_out_of_range(value: &str) -> DataFusionError {
    DataFusionError::External(Box::new(QueryError::new(
        ErrorKind::DatetimeOutOfRange,
        format!("timestamp out of range: \"{value}\" ({TIMESTAMP_RANGE})"),
    )))
}

/// The out-of-range error that DataFusion or arrow raised as `root`, if it is one: arithmetic
/// overflow, a cast to an integer type that cannot hold the value, `abs` of the smallest
/// integer, a timestamp beyond what nanoseconds hold.
pub(crate) fn out_of_range(root: &DataFusionError) -> Option<QueryError> {
    let numeric_err =
        |message: String| Some(QueryError::new(ErrorKind::NumericOutOfRange, message));
    let datetime_err =
        |message: String| Some(QueryError::new(ErrorKind::DatetimeOutOfRange, message));
    let text = root.message();
    // Parsing text, casting text and to_timestamp(text) all say this about nanoseconds.
    if text.contains("have to be between 1677-09-21") {
        let value = text
            .split_once("Overflow converting ")
            .and_then(|(_, rest)| rest.split_once(" to Nanosecond"))
            .map(|(value, _)| value);
        return match value {
            Some(v) => datetime_err(format!(
                "timestamp out of range: \"{v}\" ({TIMESTAMP_RANGE})"
            )),
            None => datetime_err(format!("timestamp out of range ({TIMESTAMP_RANGE})")),
        };
    }
    // to_timestamp(numeric).
    if text.contains("overflows timestamp nanoseconds") {
        return datetime_err(format!(
            "timestamp out of range: {text} ({TIMESTAMP_RANGE})"
        ));
    }
    let DataFusionError::ArrowError(arrow, _) = root else {
        return None;
    };
    match arrow.as_ref() {
        ArrowError::ArithmeticOverflow(m) => {
            let what = m.strip_prefix("Overflow happened on: ").unwrap_or(m);
            numeric_err(format!("value out of range: overflow in {what}"))
        }
        // Timestamp plus or minus an interval.
        ArrowError::ComputeError(m) if m == "Timestamp out of range" => {
            datetime_err(format!("timestamp out of range ({TIMESTAMP_RANGE})"))
        }
        // `Int64Array overflow on abs(-9223372036854775808)`.
        ArrowError::ComputeError(m) if m.contains(" overflow on abs(") => {
            let array = m.split_once(' ').map_or("", |(t, _)| t);
            let name = sql_integer_name(array.strip_suffix("Array").unwrap_or(array));
            numeric_err(format!("{} out of range", name.unwrap_or("integer")))
        }
        ArrowError::CastError(m) => cast_out_of_range(m).and_then(numeric_err),
        _ => None,
    }
}

/// PostgreSQL's message for a cast that failed because the target integer type cannot hold
/// the value; `None` for other cast failures (text that is not a number stays a data error).
fn cast_out_of_range(m: &str) -> Option<String> {
    // A number of another type: `Can't cast value 2147483648 to type Int32`.
    if let Some(rest) = m.strip_prefix("Can't cast value ") {
        let (value, ty) = rest.rsplit_once(" to type ")?;
        return Some(match sql_integer_name(ty) {
            Some(name) => format!("{name} out of range"),
            None => format!("value {value} out of range for type {ty}"),
        });
    }
    // A decimal: `value of 1e20 is out of range Int64`.
    if let Some(rest) = m.strip_prefix("value of ") {
        let (_, ty) = rest.rsplit_once(" is out of range ")?;
        return sql_integer_name(ty).map(|name| format!("{name} out of range"));
    }
    // Text: `Cannot cast string '99999999999' to value of Int32 type`, out of range only
    // when the text is an integer.
    let rest = m.strip_prefix("Cannot cast string '")?;
    let (value, ty) = rest.rsplit_once("' to value of ")?;
    let name = sql_integer_name(ty.strip_suffix(" type")?)?;
    let digits = value.trim();
    let digits = digits
        .strip_prefix(|c: char| c == '+' || c == '-')
        .unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("value \"{value}\" is out of range for type {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cast_messages_name_the_sql_type() {
        assert_eq!(
            cast_out_of_range("Can't cast value 2147483648 to type Int32").as_deref(),
            Some("integer out of range")
        );
        assert_eq!(
            cast_out_of_range("Cannot cast string '99999999999' to value of Int32 type").as_deref(),
            Some("value \"99999999999\" is out of range for type integer")
        );
        assert_eq!(
            cast_out_of_range("Cannot cast string 'seven' to value of Int32 type"),
            None
        );
        assert_eq!(
            cast_out_of_range("value of 100000000000000000000 is out of range Int64").as_deref(),
            Some("bigint out of range")
        );
    }

    #[test]
    fn float_seconds_beyond_nanoseconds_are_refused() {
        assert!(check_float_seconds(1e9).is_ok());
        assert!(check_float_seconds(-9.2e9).is_ok());
        assert!(check_float_seconds(1e30).is_err());
        assert!(check_float_seconds(-1e30).is_err());
        assert!(check_float_seconds(f64::INFINITY).is_err());
        assert!(check_float_seconds(f64::NAN).is_err());
    }
}
