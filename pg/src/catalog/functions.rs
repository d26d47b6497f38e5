//! The functions PostgreSQL client introspection calls that pg-catalog lacks or gets wrong:
//! `_pg_expandarray`, `json_build_object`, `pg_get_indexdef`, `pg_get_constraintdef` (for
//! Eddy's primary keys) and `pg_collation_is_visible`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Builder, ListArray, StringBuilder, StructArray,
    new_null_array,
};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::ScalarValue;
use datafusion::common::cast::{as_int64_array, as_list_array};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, SimpleScalarUDF,
    TypeSignature, Volatility,
};
use eddy_storage::{Db, TableSchema};

use super::oids::{key_columns, table_oid};
use super::tables::list_of;
use eddy_query::catalog::SCHEMA;

/// Name of the `_pg_expandarray` function (the rewrite in `rewrite.rs` wraps calls in
/// `unnest`).
pub(super) const EXPAND_ARRAY: &str = "_pg_expandarray";

/// `_pg_expandarray(array)`: the array as a list of `{x: element, n: position}`;
/// `information_schema._pg_expandarray` returns these as rows, which `unnest` makes of it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ExpandArray {
    pub(super) signature: Signature,
}

fn expanded_type(element: &DataType) -> DataType {
    let fields = Fields::from(vec![
        Field::new("x", element.clone(), true),
        Field::new("n", DataType::Int32, false),
    ]);
    list_of(DataType::Struct(fields))
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        EXPAND_ARRAY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types {
            [DataType::List(f)] => Ok(expanded_type(f.data_type())),
            [DataType::Null] => Ok(expanded_type(&DataType::Null)),
            other => Err(DataFusionError::Plan(format!(
                "{EXPAND_ARRAY} takes an array, got {other:?}"
            ))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return Err(DataFusionError::Execution(format!(
                "{EXPAND_ARRAY} takes one argument"
            )));
        };
        let array = arg.to_array(args.number_rows)?;
        let out_type = args.return_field.data_type();
        if array.data_type() == &DataType::Null {
            return Ok(ColumnarValue::Array(new_null_array(out_type, array.len())));
        }
        let (DataType::List(item), list) = (out_type, as_list_array(&array)?) else {
            return Err(DataFusionError::Internal(format!(
                "{EXPAND_ARRAY} returns {out_type}"
            )));
        };
        let DataType::Struct(fields) = item.data_type() else {
            return Err(DataFusionError::Internal(format!(
                "{EXPAND_ARRAY} returns {out_type}"
            )));
        };
        // Reuse the elements; positions restart at 1 in every row.
        let offsets = list.value_offsets();
        let (Some(&start), Some(&end)) = (offsets.first(), offsets.last()) else {
            return Err(DataFusionError::Internal("list without offsets".into()));
        };
        let mut positions = Int32Builder::with_capacity(usize::try_from(end - start).unwrap_or(0));
        for w in offsets.windows(2) {
            if let [a, b] = w {
                (1..=b - a).for_each(|p| positions.append_value(p));
            }
        }
        let elements = list.values().slice(
            usize::try_from(start).unwrap_or(0),
            usize::try_from(end - start).unwrap_or(0),
        );
        let structs = StructArray::try_new(
            fields.clone(),
            vec![elements, Arc::new(positions.finish()) as ArrayRef],
            None,
        )?;
        let rebased: Vec<i32> = offsets.iter().map(|o| o - start).collect();
        let out = ListArray::try_new(
            item.clone(),
            OffsetBuffer::new(ScalarBuffer::from(rebased)),
            Arc::new(structs),
            list.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `json_build_object(k1, v1, ...)`: a JSON object as PostgreSQL formats it (as text).
pub(super) fn json_build_object_udf() -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "json_build_object",
        Signature::variadic_any(Volatility::Immutable),
        DataType::Utf8,
        Arc::new(|args: &[ColumnarValue]| {
            if !args.len().is_multiple_of(2) {
                return Err(DataFusionError::Execution(
                    "json_build_object: argument list must have even number of elements".into(),
                ));
            }
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let rows = arrays.first().map_or(1, |a| a.len());
            let mut out = StringBuilder::new();
            for row in 0..rows {
                let mut text = String::from("{");
                for (i, pair) in arrays.chunks_exact(2).enumerate() {
                    let [k, v] = pair else { continue };
                    let key = ScalarValue::try_from_array(k, row)?;
                    if key.is_null() {
                        return Err(DataFusionError::Execution(format!(
                            "json_build_object: argument {}: key must not be null",
                            2 * i + 1
                        )));
                    }
                    if i > 0 {
                        text.push_str(", ");
                    }
                    text.push_str(&json_string(&scalar_text(&key)));
                    text.push_str(" : ");
                    text.push_str(&json_value(&ScalarValue::try_from_array(v, row)?));
                }
                text.push('}');
                out.append_value(text);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ))
}

fn scalar_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn json_value(v: &ScalarValue) -> String {
    match v {
        _ if v.is_null() => "null".to_string(),
        ScalarValue::Boolean(Some(b)) => b.to_string(),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_) => v.to_string(),
        ScalarValue::Float32(Some(f)) if f.is_finite() => f.to_string(),
        ScalarValue::Float64(Some(f)) if f.is_finite() => f.to_string(),
        other => json_string(&scalar_text(other)),
    }
}

/// What a primary key OID (index or constraint) names.
enum KeyObject {
    Index,
    Constraint,
}

/// The Eddy table whose primary key index or constraint has OID `oid`.
fn key_owner(
    tables: &HashMap<i32, Arc<TableSchema>>,
    oid: i64,
) -> Option<(KeyObject, &TableSchema)> {
    let oid = i32::try_from(oid).ok()?;
    // Table OIDs are multiples of 4; the index is table + 1, the constraint table + 2.
    let (object, table) = match oid.rem_euclid(4) {
        1 => (KeyObject::Index, oid - 1),
        2 => (KeyObject::Constraint, oid - 2),
        _ => return None,
    };
    tables.get(&table).map(|t| (object, t.as_ref()))
}

/// Eddy tables by OID.
fn tables_by_oid(db: &Db) -> DfResult<HashMap<i32, Arc<TableSchema>>> {
    db.catalog()
        .tables()
        .into_iter()
        .map(|t| Ok((table_oid(&t)?, t)))
        .collect()
}

/// `name` as PostgreSQL prints an identifier: bare if it can be, else double-quoted.
fn quote_ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn key_list(t: &TableSchema) -> Vec<String> {
    let columns = t.columns();
    key_columns(t)
        .into_iter()
        .filter_map(|i| columns.get(i).map(|c| quote_ident(&c.name)))
        .collect()
}

/// The arguments as arrays of one length, each cast to `Int64` (OIDs, column numbers).
fn int64_args(args: &[ColumnarValue]) -> DfResult<Vec<ArrayRef>> {
    ColumnarValue::values_to_arrays(args)?
        .iter()
        .map(|a| Ok(cast(a, &DataType::Int64)?))
        .collect()
}

/// Value `row` of an `Int64` argument array, if given and not NULL.
fn int64_at(args: &[ArrayRef], arg: usize, row: usize) -> DfResult<Option<i64>> {
    let Some(a) = args.get(arg) else {
        return Ok(None);
    };
    let a = as_int64_array(a)?;
    Ok((row < a.len() && !a.is_null(row)).then(|| a.value(row)))
}

/// `pg_get_indexdef(index [, column, pretty])` for primary key indexes; NULL for others.
pub(super) fn pg_get_indexdef_udf(db: Db) -> ScalarUDF {
    key_definition_udf("pg_get_indexdef", &[1, 3], db, |object, t, args, row| {
        if !matches!(object, KeyObject::Index) {
            return Ok(None);
        }
        let keys = key_list(t);
        Ok(Some(match int64_at(args, 1, row)? {
            // Column `k` alone: its name ('' past the last column, as PostgreSQL).
            Some(k) if k > 0 => usize::try_from(k - 1)
                .ok()
                .and_then(|i| keys.get(i))
                .cloned()
                .unwrap_or_default(),
            _ => format!(
                "CREATE UNIQUE INDEX {} ON {}.{} USING btree ({})",
                quote_ident(&format!("{}_pkey", t.name())),
                SCHEMA,
                quote_ident(t.name()),
                keys.join(", ")
            ),
        }))
    })
}

/// `pg_get_constraintdef(constraint [, pretty])`: `PRIMARY KEY (...)` for Eddy's primary
/// keys (replacing pg-catalog's, which returns '' for everything); NULL for others.
pub(super) fn pg_get_constraintdef_udf(db: Db) -> ScalarUDF {
    key_definition_udf("pg_get_constraintdef", &[1, 2], db, |object, t, _, _| {
        Ok(matches!(object, KeyObject::Constraint)
            .then(|| format!("PRIMARY KEY ({})", key_list(t).join(", "))))
    })
}

/// A `pg_get_*def(oid, ...)` function over Eddy's primary keys, taking `arities` integer
/// arguments: `describe` gives the text for the key object the first argument names (it sees
/// all arguments and the row), and any other OID gives NULL.
fn key_definition_udf(
    name: &str,
    arities: &[usize],
    db: Db,
    describe: impl Fn(KeyObject, &TableSchema, &[ArrayRef], usize) -> DfResult<Option<String>>
    + Send
    + Sync
    + 'static,
) -> ScalarUDF {
    let signature = Signature::one_of(
        arities.iter().map(|&n| TypeSignature::Any(n)).collect(),
        Volatility::Stable,
    );
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        name,
        signature,
        DataType::Utf8,
        Arc::new(move |args: &[ColumnarValue]| {
            let args = int64_args(args)?;
            let tables = tables_by_oid(&db)?;
            let rows = args.first().map_or(0, |a| a.len());
            let mut out = StringBuilder::new();
            for row in 0..rows {
                let text = match int64_at(&args, 0, row)?.and_then(|oid| key_owner(&tables, oid)) {
                    Some((object, t)) => describe(object, t, &args, row)?,
                    None => None,
                };
                out.append_option(text);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ))
}

/// `pg_collation_is_visible(oid)`: true, every collation is in pg_catalog.
pub(super) fn pg_collation_is_visible_udf() -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "pg_collation_is_visible",
        Signature::any(1, Volatility::Stable),
        DataType::Boolean,
        Arc::new(|args: &[ColumnarValue]| {
            let oids = ColumnarValue::values_to_arrays(args)?;
            let visible: BooleanArray = oids
                .first()
                .map(|oids| (0..oids.len()).map(move |row| (!oids.is_null(row)).then_some(true)))
                .into_iter()
                .flatten()
                .collect();
            Ok(ColumnarValue::Array(Arc::new(visible)))
        }),
    ))
}

/// `format(formatstr, VARIADIC args)`: PostgreSQL's `%s` (the value as text, NULL as
/// nothing), `%I` (quoted identifier), `%L` (quoted literal, NULL as `NULL`), `%%`, and the
/// positional forms `%n$s`. Metabase builds `schema.table` names with it.
pub(super) fn format_udf() -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "format",
        Signature::variadic_any(Volatility::Immutable),
        DataType::Utf8,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(a) => Some(a.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            let texts = args
                .iter()
                .map(|a| Ok(cast(&a.to_array(rows)?, &DataType::Utf8)?))
                .collect::<DfResult<Vec<ArrayRef>>>()?;
            let texts = texts
                .iter()
                .map(|a| datafusion::common::cast::as_string_array(a))
                .collect::<DfResult<Vec<_>>>()?;
            let Some((template, values)) = texts.split_first() else {
                return Err(DataFusionError::Plan(
                    "format needs a format string".to_string(),
                ));
            };
            let mut out = StringBuilder::new();
            for row in 0..rows {
                if template.is_null(row) {
                    out.append_null();
                    continue;
                }
                let arg = |i: usize| {
                    values
                        .get(i)
                        .map(|a| (!a.is_null(row)).then(|| a.value(row)))
                };
                out.append_value(format_one(template.value(row), arg)?);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ))
}

/// One `format` result; `arg(i)` is argument `i` after the format string (`None` past the
/// last, `Some(None)` for NULL).
fn format_one<'a>(
    template: &str,
    arg: impl Fn(usize) -> Option<Option<&'a str>>,
) -> DfResult<String> {
    let bad = |what: String| DataFusionError::Execution(format!("format: {what}"));
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // `%n$` picks argument n (from 1); otherwise the next one.
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let index = if digits.is_empty() {
            next
        } else if chars.next() == Some('$') {
            digits
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| n - 1)
                .ok_or_else(|| bad(format!("invalid argument position {digits}")))?
        } else {
            return Err(bad(format!(
                "widths are not supported (\"%{digits}\" in \"{template}\")"
            )));
        };
        let kind = chars
            .next()
            .ok_or_else(|| bad("unterminated format specifier".to_string()))?;
        let value = arg(index).ok_or_else(|| bad("too few arguments".to_string()))?;
        next = index + 1;
        match kind {
            's' => out.push_str(value.unwrap_or_default()),
            'I' => out.push_str(&quote_ident(value.ok_or_else(|| {
                bad("null values cannot be formatted as an SQL identifier".to_string())
            })?)),
            'L' => match value {
                Some(v) => {
                    out.push('\'');
                    out.push_str(&v.replace('\'', "''"));
                    out.push('\'');
                }
                None => out.push_str("NULL"),
            },
            other => {
                return Err(bad(format!(
                    "unrecognized format() type specifier \"{other}\" (use %s, %I, %L or %%)"
                )));
            }
        }
    }
    Ok(out)
}

/// `col_description`, `obj_description` and `shobj_description`: NULL, as Eddy keeps no
/// comments on objects (its pg_description is empty).
pub(super) fn description_udfs() -> Vec<ScalarUDF> {
    [
        ("col_description", 2),
        ("obj_description", 1),
        ("shobj_description", 2),
    ]
    .into_iter()
    .map(|(name, arity)| {
        let arities = if name == "obj_description" {
            vec![TypeSignature::Any(1), TypeSignature::Any(2)]
        } else {
            vec![TypeSignature::Any(arity)]
        };
        ScalarUDF::from(SimpleScalarUDF::new_with_signature(
            name,
            Signature::one_of(arities, Volatility::Stable),
            DataType::Utf8,
            Arc::new(|args: &[ColumnarValue]| {
                let rows = ColumnarValue::values_to_arrays(args)?
                    .first()
                    .map_or(1, |a| a.len());
                Ok(ColumnarValue::Array(new_null_array(&DataType::Utf8, rows)))
            }),
        ))
    })
    .collect()
}

/// `to_regclass(name)`: the pg_class OID of a relation named `table` or `schema.table`
/// (quoted parts keep their case), looked up as `pg_catalog` then `public`; NULL when there
/// is none. Digits are an OID already, as PostgreSQL 16 reads them (so `c.oid::regclass`,
/// which is rewritten to this, stays the OID). `CAST(expr AS regclass)` of a computed name
/// is rewritten to it.
pub(super) fn to_regclass_udf(state: Arc<super::tables::CatalogState>) -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "to_regclass",
        Signature::any(1, Volatility::Stable),
        DataType::Int32,
        Arc::new(move |args: &[ColumnarValue]| {
            let names = ColumnarValue::values_to_arrays(args)?;
            let Some(names) = names.first() else {
                return Err(DataFusionError::Plan(
                    "to_regclass takes a name".to_string(),
                ));
            };
            let names = cast(names, &DataType::Utf8)?;
            let names = datafusion::common::cast::as_string_array(&names)?;
            let mut out = Int32Builder::new();
            for name in names.iter() {
                out.append_option(name.and_then(|n| match numeric_oid(n) {
                    Some(oid) => oid,
                    None => relation_oid(&state, n),
                }));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ))
}

/// An OID written in digits: `Some(Some(oid))`, or `Some(None)` when it is beyond the OIDs
/// Eddy hands out; `None` if `text` is not digits.
fn numeric_oid(text: &str) -> Option<Option<i32>> {
    let t = text.trim();
    (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok())
}

/// The parts of a possibly qualified, possibly quoted name (`"My Schema".t` → `My Schema`,
/// `t`); unquoted parts fold to lower case.
fn name_parts(name: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quoted = false;
    let mut chars = name.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                part.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut part)),
            c if quoted => part.push(c),
            c => part.extend(c.to_lowercase()),
        }
    }
    parts.push(part);
    parts
}

/// The OID of the relation `name` names, as `to_regclass` finds it; `None` if there is none.
pub(super) fn relation_oid(state: &super::tables::CatalogState, name: &str) -> Option<i32> {
    let parts = name_parts(name);
    let (schemas, table): (Vec<&str>, &str) = match parts.as_slice() {
        [t] => (vec!["pg_catalog", SCHEMA], t),
        [s, t] => (vec![s.as_str()], t),
        _ => return None,
    };
    schemas.into_iter().find_map(|schema| {
        if schema == SCHEMA {
            if let Some(t) = state.db.catalog().get(table) {
                return table_oid(&t).ok();
            }
            if let Some(v) = state.views.get(table) {
                return Some(super::oids::hashed_oid(b"view:", &v.def().id.to_le_bytes()));
            }
        }
        let namespace = super::oids::namespace_oid(schema, &mut 0);
        state
            .system
            .get(&(namespace, table.to_string()))
            .map(|(oid, _)| *oid)
    })
}

/// `pg_encoding_to_char(encoding)`: PostgreSQL's name of an encoding number (`UTF8` for 6,
/// where pg-catalog's says `UTF-8`), '' for one it does not know, as PostgreSQL answers.
pub(super) fn pg_encoding_to_char_udf() -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "pg_encoding_to_char",
        Signature::any(1, Volatility::Stable),
        DataType::Utf8,
        Arc::new(|args: &[ColumnarValue]| {
            let args = int64_args(args)?;
            let rows = args.first().map_or(0, |a| a.len());
            let mut out = StringBuilder::new();
            for row in 0..rows {
                out.append_option(int64_at(&args, 0, row)?.map(encoding_name));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ))
}

/// PostgreSQL's name of encoding number `n` (`pg_wchar.h`).
fn encoding_name(n: i64) -> &'static str {
    match n {
        0 => "SQL_ASCII",
        6 => "UTF8",
        _ => "",
    }
}

/// `version()`: what PostgreSQL prints, so clients that parse it (`PostgreSQL X.Y ...`) accept
/// Eddy, followed by Eddy's own version.
pub fn version_udf() -> ScalarUDF {
    let text = format!(
        "PostgreSQL {} (Eddy {}) on {}-linux, compiled by rustc, 64-bit",
        crate::settings::PG_SERVER_VERSION,
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    datafusion::logical_expr::create_udf(
        "version",
        vec![],
        DataType::Utf8,
        datafusion::logical_expr::Volatility::Immutable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))
        }),
    )
}

/// `pg_get_serial_sequence(table, column)`: always NULL, Eddy has no sequences (SQLAlchemy
/// asks it for every column it reflects).
pub fn pg_get_serial_sequence_udf() -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        datafusion::logical_expr::Volatility::Immutable,
        Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    )
}

/// `eddy_oid_array(list)`: its argument unchanged, marked as an `oid[]`, which the wire
/// reports as `oid[]` (1028) rather than `int4[]`. asyncpg decodes its type introspection
/// with built-in codecs only, and has one for `oid[]` but not for `int4[]`: its
/// `array_agg(atttypid)` must come back as PostgreSQL types it (see `rewrite.rs`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct OidArray {
    signature: Signature,
}

/// The name the rewrite calls [`OidArray`] by.
pub(super) const OID_ARRAY: &str = "eddy_oid_array";

impl OidArray {
    pub(super) fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(OidArray {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for OidArray {
    fn name(&self) -> &str {
        OID_ARRAY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Plan(format!("{OID_ARRAY} takes one argument")))
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<datafusion::arrow::datatypes::FieldRef> {
        let input = args
            .arg_fields
            .first()
            .ok_or_else(|| DataFusionError::Plan(format!("{OID_ARRAY} takes one argument")))?;
        let metadata = HashMap::from([(
            arrow_pg::datatypes::PG_OID_ALIAS_KEY.to_string(),
            "oid".to_string(),
        )]);
        Ok(Arc::new(
            Field::new(OID_ARRAY, input.data_type().clone(), true).with_metadata(metadata),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        args.args
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Plan(format!("{OID_ARRAY} takes one argument")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_quote_like_postgresql() {
        assert_eq!(quote_ident("station"), "station");
        assert_eq!(quote_ident("Station"), "\"Station\"");
        assert_eq!(quote_ident("a b"), "\"a b\"");
    }

    #[test]
    fn format_reads_postgresql_specifiers() {
        let args = [Some("public"), Some("My Table"), None, Some("it's")];
        let arg = |i: usize| args.get(i).copied();
        for (template, want) in [
            ("%s.%s", "public.My Table"),
            ("%I.%I", "public.\"My Table\""),
            ("%2$s, %1$s", "My Table, public"),
            ("[%3$s] %3$L %4$L 100%%", "[] NULL 'it''s' 100%"),
        ] {
            assert_eq!(
                format_one(template, arg).expect(template),
                want,
                "{template}"
            );
        }
        for bad in ["%s %s %s %s %s", "%x", "%10s", "%0$s", "%"] {
            assert!(format_one(bad, arg).is_err(), "{bad}");
        }
        assert!(format_one("%3$I", arg).is_err(), "NULL identifier");
    }

    #[test]
    fn digits_are_an_oid_already() {
        assert_eq!(numeric_oid("16388"), Some(Some(16388)));
        assert_eq!(numeric_oid(" 1259 "), Some(Some(1259)));
        assert_eq!(numeric_oid("4294967295"), Some(None));
        assert_eq!(numeric_oid("cpu"), None);
        assert_eq!(numeric_oid(""), None);
    }

    #[test]
    fn encodings_have_postgresql_names() {
        assert_eq!(encoding_name(6), "UTF8");
        assert_eq!(encoding_name(0), "SQL_ASCII");
        assert_eq!(encoding_name(-1), "");
    }

    #[test]
    fn names_split_like_parse_ident() {
        assert_eq!(name_parts("public.CPU"), ["public", "cpu"]);
        assert_eq!(
            name_parts("\"My Schema\".\"A\"\"b\""),
            ["My Schema", "A\"b"]
        );
        assert_eq!(name_parts("t"), ["t"]);
    }
}
