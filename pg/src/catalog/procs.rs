//! What psql's `\df` calls on `pg_proc` rows: `pg_function_is_visible`,
//! `pg_get_function_arguments` and `pg_get_function_result`, over pg-catalog's static
//! `pg_proc` (every function in it is in `pg_catalog` or `information_schema`; Eddy has no
//! user-defined functions).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanBuilder, StringArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::{as_boolean_array, as_int32_array, as_int64_array, as_string_array};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, Volatility};
use datafusion::prelude::SessionContext;

use super::types::{TypeCatalog, column, first_arg};
use crate::error::Result;

/// One argument of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Arg {
    type_oid: i32,
    /// `proargmodes`: `i` in, `o` out, `b` inout, `v` variadic, `t` table column.
    mode: char,
    /// '' when unnamed.
    name: String,
}

/// A `pg_proc` row, as far as `\df` goes.
#[derive(Debug)]
struct Proc {
    namespace: i32,
    /// `prokind`: `f` function, `a` aggregate, `w` window, `p` procedure.
    kind: String,
    returns: i32,
    returns_set: bool,
    /// All arguments, out and table columns too, in order.
    args: Vec<Arg>,
}

/// pg-catalog's `pg_proc`, read once at start-up (it is static).
#[derive(Debug)]
pub(super) struct ProcCatalog {
    procs: HashMap<i32, Proc>,
    types: Arc<TypeCatalog>,
}

/// The items of pg-catalog's text form of an array column (`[25, 18]`, `['i', 'o']`);
/// `None` for NULL or anything else.
fn list_items(text: &str) -> Option<Vec<String>> {
    let body = text.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    if body.is_empty() {
        return Some(Vec::new());
    }
    Some(
        body.split(',')
            .map(|item| {
                item.trim()
                    .trim_matches(|c| c == '\'' || c == '"')
                    .to_string()
            })
            .collect(),
    )
}

/// The arguments of a `pg_proc` row from its text columns: `proallargtypes` (all of them,
/// when there are out or variadic ones) or else `proargtypes` (space-separated input types),
/// with `proargmodes` and `proargnames` matched by position.
fn arguments(
    argtypes: Option<&str>,
    allargtypes: Option<&str>,
    modes: Option<&str>,
    names: Option<&str>,
) -> Vec<Arg> {
    let types: Vec<i32> = match allargtypes.and_then(list_items) {
        Some(all) => all.iter().filter_map(|t| t.parse().ok()).collect(),
        None => argtypes
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect(),
    };
    let modes = modes.and_then(list_items).unwrap_or_default();
    let names = names.and_then(list_items).unwrap_or_default();
    types
        .into_iter()
        .enumerate()
        .map(|(i, type_oid)| Arg {
            type_oid,
            mode: modes.get(i).and_then(|m| m.chars().next()).unwrap_or('i'),
            name: names.get(i).cloned().unwrap_or_default(),
        })
        .collect()
}

/// Row `i` of a text column, `None` when NULL.
fn text_at(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

impl ProcCatalog {
    /// Reads `pg_catalog.pg_proc` of a context set up by pg-catalog.
    pub(super) async fn load(ctx: &SessionContext, types: Arc<TypeCatalog>) -> Result<Self> {
        let mut procs = HashMap::new();
        let t = "pg_catalog.pg_proc";
        for b in ctx.table(t).await?.collect().await? {
            let oids = column(&b, t, "oid", &DataType::Int32)?;
            let namespaces = column(&b, t, "pronamespace", &DataType::Int32)?;
            let kinds = column(&b, t, "prokind", &DataType::Utf8)?;
            let returns = column(&b, t, "prorettype", &DataType::Int32)?;
            let sets = column(&b, t, "proretset", &DataType::Boolean)?;
            let argtypes = column(&b, t, "proargtypes", &DataType::Utf8)?;
            let allargtypes = column(&b, t, "proallargtypes", &DataType::Utf8)?;
            let modes = column(&b, t, "proargmodes", &DataType::Utf8)?;
            let names = column(&b, t, "proargnames", &DataType::Utf8)?;
            let (oids, namespaces) = (as_int32_array(&oids)?, as_int32_array(&namespaces)?);
            let (kinds, returns) = (as_string_array(&kinds)?, as_int32_array(&returns)?);
            let sets = as_boolean_array(&sets)?;
            let (argtypes, allargtypes) =
                (as_string_array(&argtypes)?, as_string_array(&allargtypes)?);
            let (modes, names) = (as_string_array(&modes)?, as_string_array(&names)?);
            for i in 0..b.num_rows() {
                if oids.is_null(i) || namespaces.is_null(i) || returns.is_null(i) {
                    continue;
                }
                procs.insert(
                    oids.value(i),
                    Proc {
                        namespace: namespaces.value(i),
                        kind: text_at(kinds, i).unwrap_or("f").to_string(),
                        returns: returns.value(i),
                        returns_set: !sets.is_null(i) && sets.value(i),
                        args: arguments(
                            text_at(argtypes, i),
                            text_at(allargtypes, i),
                            text_at(modes, i),
                            text_at(names, i),
                        ),
                    },
                );
            }
        }
        Ok(Self { procs, types })
    }

    /// `pg_function_is_visible`: functions in pg_catalog and public are; `None` for an OID
    /// no function has.
    fn is_visible(&self, oid: i32) -> Option<bool> {
        self.procs
            .get(&oid)
            .map(|p| matches!(p.namespace, 11 | 2200))
    }

    /// PostgreSQL's `print_function_arguments`: the arguments (`table`: only the table
    /// columns, else all but them) as `[mode ][name ]type`; defaults are not shown, as
    /// pg-catalog keeps them only as parse trees.
    fn print_args(&self, p: &Proc, table: bool) -> Vec<String> {
        p.args
            .iter()
            .filter(|a| table == (a.mode == 't'))
            .map(|a| {
                let mode = match a.mode {
                    'o' => "OUT ",
                    'b' => "INOUT ",
                    'v' => "VARIADIC ",
                    _ => "",
                };
                let name = if a.name.is_empty() {
                    String::new()
                } else {
                    format!("{} ", self.types.quote(&a.name))
                };
                format!("{mode}{name}{}", self.types.name_of(a.type_oid))
            })
            .collect()
    }

    /// `pg_get_function_arguments(oid)`.
    fn arguments(&self, oid: i32) -> Option<String> {
        let p = self.procs.get(&oid)?;
        Some(self.print_args(p, false).join(", "))
    }

    /// `pg_get_function_result(oid)`: `TABLE(...)` for a function returning table columns,
    /// else the return type with `SETOF` for a set; NULL for a procedure.
    fn result(&self, oid: i32) -> Option<String> {
        let p = self.procs.get(&oid)?;
        if p.kind == "p" {
            return None;
        }
        if p.returns_set {
            let columns = self.print_args(p, true);
            if !columns.is_empty() {
                return Some(format!("TABLE({})", columns.join(", ")));
            }
            return Some(format!("SETOF {}", self.types.name_of(p.returns)));
        }
        Some(self.types.name_of(p.returns))
    }
}

/// `pg_function_is_visible`, `pg_get_function_arguments` and `pg_get_function_result`.
pub(super) fn udfs(procs: Arc<ProcCatalog>) -> Vec<ScalarUDF> {
    let visible = procs.clone();
    let arguments = procs.clone();
    let result = procs;
    vec![
        ScalarUDF::from(SimpleScalarUDF::new_with_signature(
            "pg_function_is_visible",
            Signature::any(1, Volatility::Stable),
            DataType::Boolean,
            Arc::new(move |args: &[ColumnarValue]| {
                let oids = first_arg(args, "pg_function_is_visible", &DataType::Int64)?;
                let mut out = BooleanBuilder::with_capacity(oids.len());
                for oid in as_int64_array(&oids)?.iter() {
                    let oid = oid.and_then(|o| i32::try_from(o).ok());
                    out.append_option(oid.and_then(|o| visible.is_visible(o)));
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }),
        )),
        text_udf("pg_get_function_arguments", move |oid| {
            arguments.arguments(oid)
        }),
        text_udf("pg_get_function_result", move |oid| result.result(oid)),
    ]
}

/// A function of one OID giving text, NULL for NULL and for OIDs `text` knows nothing of.
fn text_udf(
    name: &'static str,
    text: impl Fn(i32) -> Option<String> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        name,
        Signature::any(1, Volatility::Stable),
        DataType::Utf8,
        Arc::new(move |args: &[ColumnarValue]| {
            let oids = first_arg(args, name, &DataType::Int64)?;
            let mut out = StringBuilder::new();
            for oid in as_int64_array(&oids)?.iter() {
                let oid = oid.and_then(|o| i32::try_from(o).ok());
                out.append_option(oid.and_then(&text));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_lists_read_pg_catalogs_text_columns() {
        assert_eq!(list_items("[25, 18]"), Some(vec!["25".into(), "18".into()]));
        assert_eq!(list_items("['i', 'o']"), Some(vec!["i".into(), "o".into()]));
        assert_eq!(list_items("[]"), Some(vec![]));
        assert_eq!(list_items(""), None);
        let keywords = arguments(
            Some(""),
            Some("[25, 18]"),
            Some("['o', 'o']"),
            Some("['word', 'catcode']"),
        );
        assert_eq!(
            keywords,
            vec![
                Arg {
                    type_oid: 25,
                    mode: 'o',
                    name: "word".into()
                },
                Arg {
                    type_oid: 18,
                    mode: 'o',
                    name: "catcode".into()
                },
            ]
        );
        let substr = arguments(Some("25 23 23"), None, None, None);
        assert_eq!(substr.len(), 3);
        assert!(substr.iter().all(|a| a.mode == 'i' && a.name.is_empty()));
    }
}
