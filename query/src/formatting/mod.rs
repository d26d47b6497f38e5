//! PostgreSQL's data-type formatting functions with PostgreSQL's template patterns:
//! `to_char` of timestamps, dates, times, intervals and numbers, `to_timestamp(text, text)`,
//! `to_date(text, text)` and `to_number(text, text)`, in the C locale and Eddy's session time
//! zone (UTC).
//!
//! `to_char`, `to_timestamp` and `to_date` wrap the functions registered under those names
//! before them (DataFusion's, and Eddy's range-checked `to_timestamp`): a template holding a
//! `%` is a chrono format and goes to the wrapped function, as do calls that are not
//! `(text, text)` for `to_timestamp` and `to_date`, so queries written for DataFusion keep
//! working. The template form of `to_timestamp` returns exactly the wrapped function's type
//! (`Timestamp(Nanosecond, None)` unless the session sets a time zone), the type of Eddy's
//! time columns.

mod calendar;
mod columnar;
mod errors;
mod format_datetime;
mod format_number;
mod number_template;
mod ordinal;
mod parse_datetime;
mod parse_number;
mod read_fields;
mod template;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, new_null_array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use self::columnar::Rows;

/// Installs `to_char`, `to_timestamp`, `to_date` and `to_number` with PostgreSQL's templates
/// into a context, wrapping the `to_char`, `to_timestamp` and `to_date` registered there now
/// (so it goes after anything else that wraps them, such as [`crate::overflow::register`]).
pub fn register(ctx: &SessionContext) {
    let state = ctx.state();
    let registered = |name: &str| state.scalar_functions().get(name).cloned();
    let (to_char, to_timestamp, to_date) = (
        registered("to_char"),
        registered("to_timestamp"),
        registered("to_date"),
    );
    ctx.register_udf(ScalarUDF::new_from_impl(ToChar::new(to_char)));
    if let Some(inner) = to_timestamp {
        ctx.register_udf(ScalarUDF::new_from_impl(ReadWithTemplate {
            inner,
            target: Target::Timestamp,
        }));
    }
    if let Some(inner) = to_date {
        ctx.register_udf(ScalarUDF::new_from_impl(ReadWithTemplate {
            inner,
            target: Target::Date,
        }));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(ToNumber::new()));
}

/// A planning error for arguments a function does not take.
fn no_such_function(name: &str, arg_types: &[DataType]) -> DataFusionError {
    let types: Vec<String> = arg_types.iter().map(ToString::to_string).collect();
    DataFusionError::Plan(format!(
        "function {name}({}) does not exist",
        types.join(", ")
    ))
}

/// `to_char(value, template)`: PostgreSQL's patterns for numbers, dates, times, timestamps and
/// intervals; the previous `to_char` (chrono formats) for templates with a `%`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToChar {
    chrono: Option<Arc<ScalarUDF>>,
    signature: Signature,
}

impl ToChar {
    fn new(chrono: Option<Arc<ScalarUDF>>) -> Self {
        Self {
            chrono,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The types DataFusion's `to_char` formats with chrono formats.
fn chrono_formats(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Timestamp(_, _)
            | DataType::Duration(_)
    )
}

/// The type `to_char` takes a value of type `data_type` as, if it takes it at all.
fn to_char_value_type(data_type: &DataType) -> Option<DataType> {
    match data_type {
        DataType::Null => Some(DataType::Null),
        DataType::Float16 => Some(DataType::Float32),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => Some(DataType::Decimal128(*p, *s)),
        DataType::Decimal256(_, s) => Some(DataType::Decimal128(38, (*s).min(38))),
        other if format_datetime::is_temporal(other) || format_number::is_number(other) => {
            Some(other.clone())
        }
        _ => None,
    }
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    // The template is `Utf8`, which the previous `to_char` requires of it.
    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match arg_types {
            [value, template] if columnar::is_text(template) => to_char_value_type(value)
                .map(|value| vec![value, DataType::Utf8])
                .ok_or_else(|| no_such_function(self.name(), arg_types)),
            _ => Err(no_such_function(self.name(), arg_types)),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let chrono = match args.args.first() {
            Some(value) if chrono_formats(&value.data_type()) => self.chrono.as_deref(),
            _ => None,
        };
        columnar::dispatch(args, 1, chrono, &to_char_rows)
    }
}

/// `to_char` of each row with PostgreSQL's patterns.
fn to_char_rows(arrays: &[ArrayRef], _return_type: &DataType) -> DfResult<ArrayRef> {
    let [values, templates] = arrays else {
        return Err(errors::internal("to_char takes two arguments"));
    };
    let templates = columnar::utf8(templates)?;
    let templates = columnar::strings(&templates)?;
    let data_type = values.data_type();
    if format_datetime::is_temporal(data_type) {
        format_datetime::to_char_temporal(values, templates)
    } else if format_number::is_number(data_type) {
        format_number::to_char_numbers(values, templates)
    } else if *data_type == DataType::Null {
        Ok(new_null_array(&DataType::Utf8, values.len()))
    } else {
        Err(errors::internal(format!(
            "to_char cannot format {data_type}"
        )))
    }
}

/// What a [`ReadWithTemplate`] reads text into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    /// `to_timestamp`.
    Timestamp,
    /// `to_date`.
    Date,
}

/// `to_timestamp(text, template)` or `to_date(text, template)` with PostgreSQL's patterns,
/// wrapping the function registered before under that name, which answers every other call
/// (one argument, more than two, arguments that are not text, chrono formats).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ReadWithTemplate {
    inner: Arc<ScalarUDF>,
    target: Target,
}

impl ScalarUDFImpl for ReadWithTemplate {
    crate::functions::delegate_to_inner!();

    // The result's time zone follows the session's: keep following it.
    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let inner = self.inner.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(ReadWithTemplate {
            inner: Arc::new(inner),
            target: self.target,
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let templated =
            args.args.len() == 2 && args.args.iter().all(|a| columnar::is_text(&a.data_type()));
        if !templated {
            return self.inner.invoke_with_args(args);
        }
        let rows: &Rows = match self.target {
            Target::Timestamp => &parse_datetime::to_timestamp_rows,
            Target::Date => &parse_datetime::to_date_rows,
        };
        columnar::dispatch(args, 1, Some(&*self.inner), rows)
    }
}

/// `to_number(text, template)`, answering a decimal whose precision and scale come from the
/// template when it is a string literal (see [`parse_number`]).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToNumber {
    signature: Signature,
}

impl ToNumber {
    fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ToNumber {
    fn name(&self) -> &str {
        "to_number"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    // Text stays the text type it is: a cast around a literal template would hide it from
    // `return_field_from_args` until it is simplified away, changing the result type.
    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match arg_types {
            [text, template] if columnar::is_text(text) && columnar::is_text(template) => {
                Ok(arg_types.to_vec())
            }
            _ => Err(no_such_function(self.name(), arg_types)),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Decimal128(
            parse_number::FALLBACK_PRECISION,
            parse_number::FALLBACK_SCALE,
        ))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        // Only a string literal as SQL writes it (`Utf8`): a type must not change when
        // simplification folds an expression into a literal, and `'99'::text` folds into a
        // `Utf8View` one, so casts keep the fixed type before and after.
        let template = match args.scalar_arguments.get(1).copied().flatten() {
            Some(ScalarValue::Utf8(Some(template))) => Some(template.as_str()),
            _ => None,
        };
        let (precision, scale) = template.map_or(
            (
                parse_number::FALLBACK_PRECISION,
                parse_number::FALLBACK_SCALE,
            ),
            parse_number::result_precision_scale,
        );
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Decimal128(precision, scale),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        columnar::dispatch(args, 1, None, &parse_number::to_number_rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use datafusion::arrow::array::{
        Array, AsArray, Date32Array, StringArray, TimestampNanosecondArray,
    };
    use datafusion::arrow::datatypes::{Decimal128Type, TimeUnit, TimestampNanosecondType};
    use datafusion::arrow::record_batch::RecordBatch;

    /// A context with DataFusion's functions, Eddy's range-checked `to_timestamp`, and these.
    fn context() -> SessionContext {
        let ctx = SessionContext::new();
        crate::overflow::register(&ctx);
        register(&ctx);
        ctx
    }

    async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, String> {
        let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
        df.collect().await.map_err(|e| e.to_string())
    }

    /// The single value of a one-row, one-column answer, as text.
    async fn one(ctx: &SessionContext, sql: &str) -> String {
        let batches = match query(ctx, sql).await {
            Ok(b) => b,
            Err(e) => panic!("{sql}: {e}"),
        };
        let Some(column) = batches.first().map(|b| b.column(0).clone()) else {
            panic!("{sql}: no rows");
        };
        match datafusion::arrow::util::display::array_value_to_string(column.as_ref(), 0) {
            Ok(s) => s,
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    #[tokio::test]
    async fn superset_time_filter_compares_with_a_time_column() {
        let ctx = context();
        let time = TimestampNanosecondArray::from(vec![
            1_699_920_000_000_000_000,
            1_699_833_599_000_000_000,
        ]);
        let batch = match RecordBatch::try_from_iter([("time", Arc::new(time) as ArrayRef)]) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        if let Err(e) = ctx.register_batch("cpu", batch) {
            panic!("{e}");
        }
        let sql = "SELECT count(*) FROM cpu WHERE time >= \
                   TO_TIMESTAMP('2023-11-14 00:00:00.000000', 'YYYY-MM-DD HH24:MI:SS.US')";
        assert_eq!(one(&ctx, sql).await, "1");
        let typed = match query(
            &ctx,
            "SELECT to_timestamp('2023-11-14 00:00:00', 'YYYY-MM-DD HH24:MI:SS') AS t",
        )
        .await
        {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        let column = typed.first().map(|b| b.column(0).clone());
        assert_eq!(
            column.as_ref().map(|c| c.data_type().clone()),
            Some(DataType::Timestamp(TimeUnit::Nanosecond, None))
        );
        assert_eq!(
            column
                .as_ref()
                .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
                .map(|a| a.value(0)),
            Some(1_699_920_000_000_000_000)
        );
    }

    #[tokio::test]
    async fn postgresql_templates_through_sql() {
        let ctx = context();
        assert_eq!(
            one(
                &ctx,
                "SELECT to_char(TIMESTAMP '2023-11-14 09:05:07.5', 'YYYY-MM-DD HH24:MI:SS.MS')"
            )
            .await,
            "2023-11-14 09:05:07.500"
        );
        assert_eq!(
            one(
                &ctx,
                "SELECT to_char(DATE '2024-03-01', 'FMDay, FMDDth FMMonth YYYY')"
            )
            .await,
            "Friday, 1st March 2024"
        );
        assert_eq!(
            one(
                &ctx,
                "SELECT to_char(INTERVAL '15 hours 2 minutes 12 seconds', 'HH24:MI:SS')"
            )
            .await,
            "15:02:12"
        );
        assert_eq!(one(&ctx, "SELECT to_char(-485, '999PR')").await, "<485>");
        assert_eq!(one(&ctx, "SELECT to_char(1485, '9G999')").await, " 1,485");
        assert_eq!(
            one(
                &ctx,
                "SELECT to_char(CAST(3148.5 AS DECIMAL(10, 2)), '9G999D999')"
            )
            .await,
            " 3,148.500"
        );
        assert_eq!(
            one(&ctx, "SELECT to_date('05 Dec 2000', 'DD Mon YYYY')").await,
            "2000-12-05"
        );
        assert_eq!(
            one(&ctx, "SELECT to_number('12,454.8-', '99G999D9S')").await,
            "-12454.8"
        );
    }

    #[tokio::test]
    async fn to_number_types_its_result_from_a_literal_template() {
        let ctx = context();
        let batches = match query(&ctx, "SELECT to_number('12,454.8-', '99G999D9S') AS n").await {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        let column = batches.first().map(|b| b.column(0).clone());
        assert_eq!(
            column.as_ref().map(|c| c.data_type().clone()),
            Some(DataType::Decimal128(6, 1))
        );
        assert_eq!(
            column
                .as_ref()
                .and_then(|c| c.as_primitive_opt::<Decimal128Type>())
                .map(|a| a.value(0)),
            Some(-124_548)
        );
    }

    #[tokio::test]
    async fn chrono_formats_still_reach_datafusion() {
        let ctx = context();
        assert_eq!(
            one(&ctx, "SELECT to_char(DATE '2023-03-01', '%d-%m-%Y')").await,
            "01-03-2023"
        );
        assert_eq!(
            one(&ctx, "SELECT to_date('2023/01/31', '%Y/%m/%d')").await,
            "2023-01-31"
        );
        assert_eq!(
            one(
                &ctx,
                "SELECT to_timestamp('2023-01-31 10:11:12', '%Y-%m-%d %H:%M:%S')"
            )
            .await,
            "2023-01-31T10:11:12"
        );
        assert_eq!(
            one(&ctx, "SELECT to_timestamp(0)").await,
            "1970-01-01T00:00:00"
        );
        assert_eq!(
            one(&ctx, "SELECT to_date('2023-01-31')").await,
            "2023-01-31"
        );
        // The range check of the wrapped to_timestamp still applies.
        assert!(query(&ctx, "SELECT to_timestamp(1e30)").await.is_err());
    }

    #[test]
    fn mixed_template_columns_go_row_by_row() {
        let ctx = context();
        let Some(to_char) = ctx.state().scalar_functions().get("to_char").cloned() else {
            panic!("to_char is not registered");
        };
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![Some(19_783), None, Some(0)]));
        let templates: ArrayRef = Arc::new(StringArray::from(vec![
            Some("%Y/%m/%d"),
            Some("YYYY"),
            Some("YYYY-MM-DD"),
        ]));
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(dates), ColumnarValue::Array(templates)],
            arg_fields: vec![
                Arc::new(Field::new("d", DataType::Date32, true)),
                Arc::new(Field::new("t", DataType::Utf8, true)),
            ],
            number_rows: 3,
            return_field: Arc::new(Field::new("to_char", DataType::Utf8, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        let answer = match to_char.invoke_with_args(args) {
            Ok(ColumnarValue::Array(a)) => a,
            Ok(other) => panic!("{other:?}"),
            Err(e) => panic!("{e}"),
        };
        let strings = answer.as_string::<i32>();
        assert_eq!(strings.value(0), "2024/03/01");
        assert!(strings.is_null(1));
        assert_eq!(strings.value(2), "1970-01-01");
    }
}
