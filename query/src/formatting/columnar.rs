//! Running the formatting functions over arrow arrays: which rows DataFusion's chrono-format
//! function answers and which PostgreSQL's patterns do, scalars versus arrays, and parsing each
//! distinct template once.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use datafusion::arrow::compute::{cast, filter, interleave};
use datafusion::arrow::datatypes::{ArrowPrimitiveType, DataType};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};

use super::errors::internal;

/// Computes one function's answers for arrays of equal length (the arguments), given the
/// return type; the answer has the same length.
pub(crate) type Rows = dyn Fn(&[ArrayRef], &DataType) -> DfResult<ArrayRef>;

/// Whether a template is a chrono format (`%Y-%m-%d`), which the function registered before
/// Eddy's answers, so that queries written for DataFusion keep working.
pub(crate) fn is_chrono_format(template: &str) -> bool {
    template.contains('%')
}

/// Whether arguments of this type are text (or a NULL of no type).
pub(crate) fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

/// The text of a scalar, if it is non-NULL text.
pub(crate) fn scalar_text(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// Answers a call: rows whose template (argument `template_at`) is a chrono format go to
/// `chrono` when there is one, the others to `own`; the answers come back in row order.
pub(crate) fn dispatch(
    args: ScalarFunctionArgs,
    template_at: usize,
    chrono: Option<&ScalarUDF>,
    own: &Rows,
) -> DfResult<ColumnarValue> {
    let Some(template) = args.args.get(template_at) else {
        return Err(internal(format!(
            "formatting function called with {} arguments",
            args.args.len()
        )));
    };
    if let Some(chrono) = chrono {
        match template {
            ColumnarValue::Scalar(s) => {
                if scalar_text(s).is_some_and(is_chrono_format) {
                    return chrono.invoke_with_args(args);
                }
            }
            ColumnarValue::Array(array) => {
                let text = utf8(array)?;
                let chrono_rows: Vec<bool> = strings(&text)?
                    .iter()
                    .map(|t| t.is_some_and(is_chrono_format))
                    .collect();
                let count = chrono_rows.iter().filter(|c| **c).count();
                if count == chrono_rows.len() {
                    return chrono.invoke_with_args(args);
                }
                if count > 0 {
                    return split(args, &chrono_rows, chrono, own);
                }
            }
        }
    }
    own_rows(
        &args.args,
        args.number_rows,
        args.return_field.data_type(),
        own,
    )
}

/// Runs `own` on every row; a call on scalars answers a scalar.
fn own_rows(
    args: &[ColumnarValue],
    number_rows: usize,
    return_type: &DataType,
    own: &Rows,
) -> DfResult<ColumnarValue> {
    let scalars = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let rows = if scalars { 1 } else { number_rows };
    let arrays = args
        .iter()
        .map(|a| a.to_array(rows))
        .collect::<DfResult<Vec<_>>>()?;
    let answers = own(&arrays, return_type)?;
    if scalars {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            answers.as_ref(),
            0,
        )?))
    } else {
        Ok(ColumnarValue::Array(answers))
    }
}

/// Runs `chrono` on the rows marked in `chrono_rows` and `own` on the others.
fn split(
    args: ScalarFunctionArgs,
    chrono_rows: &[bool],
    chrono: &ScalarUDF,
    own: &Rows,
) -> DfResult<ColumnarValue> {
    let rows = args.number_rows;
    let arrays = args
        .args
        .iter()
        .map(|a| a.to_array(rows))
        .collect::<DfResult<Vec<_>>>()?;
    let to_chrono = BooleanArray::from(chrono_rows.to_vec());
    let to_own = BooleanArray::from(chrono_rows.iter().map(|c| !c).collect::<Vec<_>>());
    let pick = |mask: &BooleanArray| {
        arrays
            .iter()
            .map(|a| filter(a.as_ref(), mask).map_err(DataFusionError::from))
            .collect::<DfResult<Vec<ArrayRef>>>()
    };
    let chrono_count = to_chrono.true_count();
    let chrono_args = ScalarFunctionArgs {
        args: pick(&to_chrono)?
            .into_iter()
            .map(ColumnarValue::Array)
            .collect(),
        arg_fields: args.arg_fields.clone(),
        number_rows: chrono_count,
        return_field: Arc::clone(&args.return_field),
        config_options: Arc::clone(&args.config_options),
    };
    let chrono_answers = chrono
        .invoke_with_args(chrono_args)?
        .to_array(chrono_count)?;
    let own_answers = own(&pick(&to_own)?, args.return_field.data_type())?;
    let (mut next_own, mut next_chrono) = (0, 0);
    let indices: Vec<(usize, usize)> = chrono_rows
        .iter()
        .map(|is_chrono| {
            if *is_chrono {
                next_chrono += 1;
                (1, next_chrono - 1)
            } else {
                next_own += 1;
                (0, next_own - 1)
            }
        })
        .collect();
    Ok(ColumnarValue::Array(interleave(
        &[own_answers.as_ref(), chrono_answers.as_ref()],
        &indices,
    )?))
}

/// Any text array (or NULLs) as `Utf8`.
pub(crate) fn utf8(array: &ArrayRef) -> DfResult<ArrayRef> {
    Ok(cast(array, &DataType::Utf8)?)
}

/// The strings of an array [`utf8`] returned.
pub(crate) fn strings(array: &ArrayRef) -> DfResult<&StringArray> {
    array
        .as_string_opt::<i32>()
        .ok_or_else(|| internal(format!("expected text, got {}", array.data_type())))
}

/// The value at `row` of a primitive array of type `T`.
pub(crate) fn primitive_at<T: ArrowPrimitiveType>(
    array: &ArrayRef,
    row: usize,
) -> DfResult<T::Native> {
    array
        .as_primitive_opt::<T>()
        .filter(|a| row < a.len())
        .map(|a| a.value(row))
        .ok_or_else(|| internal(format!("unexpected {} array", array.data_type())))
}

/// The last template parsed, kept while the next rows have the same one (a literal template
/// is parsed once per batch).
pub(crate) struct TemplateCache<'a, T> {
    text: Option<&'a str>,
    parsed: Option<T>,
}

impl<T> Default for TemplateCache<'_, T> {
    fn default() -> Self {
        Self {
            text: None,
            parsed: None,
        }
    }
}

impl<'a, T> TemplateCache<'a, T> {
    /// The parsed form of `text`, parsing it unless it is the one parsed last.
    pub(crate) fn get(
        &mut self,
        text: &'a str,
        parse: impl FnOnce(&str) -> DfResult<T>,
    ) -> DfResult<&T> {
        if self.text != Some(text) || self.parsed.is_none() {
            self.parsed = Some(parse(text)?);
            self.text = Some(text);
        }
        self.parsed
            .as_ref()
            .ok_or_else(|| internal("template cache is empty"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chrono_formats_have_a_percent_sign() {
        assert!(is_chrono_format("%Y-%m-%d"));
        assert!(!is_chrono_format("YYYY-MM-DD"));
    }

    #[test]
    fn the_cache_parses_each_run_of_one_template_once() {
        let mut cache = TemplateCache::default();
        let mut parses = 0;
        for t in ["a", "a", "b", "a"] {
            let parsed = cache.get(t, |s| {
                parses += 1;
                Ok(s.to_uppercase())
            });
            assert_eq!(
                parsed.ok().map(String::as_str),
                Some(t.to_uppercase().as_str())
            );
        }
        assert_eq!(parses, 3);
    }
}
