//! Type names as PostgreSQL reads and prints them, over pg-catalog's `pg_type`:
//! `to_regtype(text)` (psycopg's `TypeInfo.fetch`), `pg_type_is_visible(oid)`, and the
//! `oid::regtype::text` of a type OID (`format_type_be`), which the rewrite in `rewrite.rs`
//! turns into a call of [`REGTYPE_TEXT`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanBuilder, Int32Builder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::cast::{as_int32_array, as_int64_array, as_string_array};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, Volatility};
use datafusion::prelude::SessionContext;

use crate::error::Result;

/// The function `CAST(CAST(x AS regtype) AS text)` is rewritten to: PostgreSQL's output
/// function of `regtype`, which prints a type OID as its name.
pub(super) const REGTYPE_TEXT: &str = "regtypeout";

const PG_CATALOG: i32 = 11;
const PUBLIC: i32 = 2200;
const INFORMATION_SCHEMA: i32 = 13283;

/// Column `name` of a batch of `table`, cast to `dt`.
pub(super) fn column(
    b: &RecordBatch,
    table: &str,
    name: &str,
    dt: &DataType,
) -> DfResult<ArrayRef> {
    let c = b
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Plan(format!("{table} has no column {name}")))?;
    Ok(cast(c, dt)?)
}

/// One `pg_type` row, as far as names go.
#[derive(Debug)]
struct TypeRow {
    name: String,
    namespace: i32,
    /// `typarray`: the type of arrays of it (0 if none).
    array: i32,
    /// The element type, for a true array type (`_int4`, not `name` or `int2vector`).
    element: Option<i32>,
}

/// pg-catalog's `pg_type`, read once at start-up (it is static), with the keywords
/// `quote_identifier` quotes.
#[derive(Debug, Default)]
pub(super) struct TypeCatalog {
    by_oid: HashMap<i32, TypeRow>,
    by_name: HashMap<(i32, String), i32>,
    /// PostgreSQL's keywords that are not unreserved (`pg_get_keywords()`'s catcode other
    /// than `U`): an identifier spelled as one of them is printed quoted.
    keywords: HashSet<String>,
}

impl TypeCatalog {
    /// Reads `pg_catalog.pg_type` and `pg_get_keywords()` of a context set up by pg-catalog.
    pub(super) async fn load(ctx: &SessionContext) -> Result<Self> {
        let mut types = Self::default();
        for b in ctx.table("pg_catalog.pg_type").await?.collect().await? {
            let t = "pg_catalog.pg_type";
            let oids = column(&b, t, "oid", &DataType::Int32)?;
            let names = column(&b, t, "typname", &DataType::Utf8)?;
            let namespaces = column(&b, t, "typnamespace", &DataType::Int32)?;
            let elements = column(&b, t, "typelem", &DataType::Int32)?;
            let arrays = column(&b, t, "typarray", &DataType::Int32)?;
            let storages = column(&b, t, "typstorage", &DataType::Utf8)?;
            let subscripts = column(&b, t, "typsubscript", &DataType::Utf8)?;
            let (oids, names) = (as_int32_array(&oids)?, as_string_array(&names)?);
            let (namespaces, elements) = (as_int32_array(&namespaces)?, as_int32_array(&elements)?);
            let arrays = as_int32_array(&arrays)?;
            let (storages, subscripts) =
                (as_string_array(&storages)?, as_string_array(&subscripts)?);
            for i in 0..b.num_rows() {
                if oids.is_null(i) || names.is_null(i) || namespaces.is_null(i) {
                    continue;
                }
                let element = (!elements.is_null(i)).then(|| elements.value(i));
                // PostgreSQL's `IsTrueArrayType`, less the plain-storage vectors
                // (`int2vector`, `oidvector`) that `format_type` prints by name.
                let true_array = element.is_some_and(|e| e != 0)
                    && !subscripts.is_null(i)
                    && subscripts.value(i) == "array_subscript_handler"
                    && (storages.is_null(i) || storages.value(i) != "p");
                let row = TypeRow {
                    name: names.value(i).to_string(),
                    namespace: namespaces.value(i),
                    array: if arrays.is_null(i) {
                        0
                    } else {
                        arrays.value(i)
                    },
                    element: element.filter(|_| true_array),
                };
                types
                    .by_name
                    .insert((row.namespace, row.name.clone()), oids.value(i));
                types.by_oid.insert(oids.value(i), row);
            }
        }
        let keywords = ctx
            .sql("SELECT word, catcode FROM pg_get_keywords()")
            .await?
            .collect()
            .await?;
        for b in keywords {
            let words = column(&b, "pg_get_keywords()", "word", &DataType::Utf8)?;
            let codes = column(&b, "pg_get_keywords()", "catcode", &DataType::Utf8)?;
            let (words, codes) = (as_string_array(&words)?, as_string_array(&codes)?);
            for i in 0..b.num_rows() {
                if !words.is_null(i) && !codes.is_null(i) && codes.value(i) != "U" {
                    types.keywords.insert(words.value(i).to_string());
                }
            }
        }
        Ok(types)
    }

    /// `quote_identifier`: `name` bare if it can be (lower case letters, digits and `_`, not
    /// starting with a digit, not a keyword), else double-quoted.
    pub(super) fn quote(&self, name: &str) -> String {
        let bare = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !self.keywords.contains(name);
        if bare {
            name.to_string()
        } else {
            format!("\"{}\"", name.replace('"', "\"\""))
        }
    }

    /// The name of type `oid` as `format_type_be` (and so `oid::regtype::text`) prints it:
    /// SQL's names for the standard types (`integer`, `timestamp with time zone`), arrays
    /// as their element's name and `[]`, a type outside the search path qualified; the OID
    /// itself for an unknown one.
    pub(super) fn name_of(&self, oid: i32) -> String {
        let Some(row) = self.by_oid.get(&oid) else {
            return oid.to_string();
        };
        let (oid, row, suffix) = match row.element {
            Some(e) => match self.by_oid.get(&e) {
                Some(element) => (e, element, "[]"),
                None => return oid.to_string(),
            },
            None => (oid, row, ""),
        };
        if let Some(sql) = sql_name(oid) {
            return format!("{sql}{suffix}");
        }
        let name = self.quote(&row.name);
        match row.namespace {
            PG_CATALOG | PUBLIC => format!("{name}{suffix}"),
            INFORMATION_SCHEMA => format!("information_schema.{name}{suffix}"),
            _ => format!("{name}{suffix}"),
        }
    }

    /// `pg_type_is_visible`: whether type `oid` is found by its bare name on the search path
    /// (pg_catalog, public); `None` if there is no such type.
    pub(super) fn is_visible(&self, oid: i32) -> Option<bool> {
        self.by_oid
            .get(&oid)
            .map(|t| matches!(t.namespace, PG_CATALOG | PUBLIC))
    }

    /// `to_regtype`: the OID of the type `text` names, as PostgreSQL parses a type name
    /// (`integer`, `double precision`, `varchar(10)`, `int4[]`, `pg_catalog.int4`,
    /// `"char"`), or `None` if it names none.
    pub(super) fn resolve(&self, text: &str) -> Option<i32> {
        let t = parse_type_name(text)?;
        let name = match (&t.schema, t.quoted) {
            (None, false) => {
                standard_name(&t.name, t.modifier).map_or_else(|| t.name.clone(), str::to_string)
            }
            _ => t.name.clone(),
        };
        let namespaces = match t.schema.as_deref() {
            Some(schema) => vec![namespace(schema)?],
            None => vec![PG_CATALOG, PUBLIC],
        };
        let oid = namespaces
            .into_iter()
            .find_map(|ns| self.by_name.get(&(ns, name.clone())).copied())?;
        if t.array {
            self.by_oid.get(&oid).map(|r| r.array).filter(|a| *a != 0)
        } else {
            Some(oid)
        }
    }
}

/// The OID of a schema that holds types.
fn namespace(schema: &str) -> Option<i32> {
    match schema {
        "pg_catalog" => Some(PG_CATALOG),
        "public" => Some(PUBLIC),
        "information_schema" => Some(INFORMATION_SCHEMA),
        _ => None,
    }
}

/// What `format_type_be` prints for the types SQL names itself (PostgreSQL 16's
/// `format_type.c`, which also spells out `json`, a keyword since 16).
fn sql_name(oid: i32) -> Option<&'static str> {
    Some(match oid {
        16 => "boolean",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        114 => "json",
        700 => "real",
        701 => "double precision",
        1042 => "character",
        1043 => "character varying",
        1083 => "time without time zone",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1186 => "interval",
        1266 => "time with time zone",
        1560 => "bit",
        1562 => "bit varying",
        1700 => "numeric",
        _ => return None,
    })
}

/// The `pg_type` name of a type SQL spells its own way (`integer`, `double precision`,
/// `character varying`), unqualified and unquoted; `None` for any other name.
fn standard_name(name: &str, modifier: Option<i64>) -> Option<&'static str> {
    Some(match name {
        "int" | "integer" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        // `float(p)` is `real` up to 24 binary digits of precision.
        "float" => match modifier {
            Some(p) if (1..=24).contains(&p) => "float4",
            _ => "float8",
        },
        "double precision" => "float8",
        "dec" | "decimal" => "numeric",
        "boolean" => "bool",
        "char" | "character" | "nchar" | "national char" | "national character" => "bpchar",
        "char varying"
        | "character varying"
        | "nchar varying"
        | "national char varying"
        | "national character varying" => "varchar",
        "bit varying" => "varbit",
        "time without time zone" => "time",
        "time with time zone" => "timetz",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        n if n.strip_prefix("interval ").is_some_and(|fields| {
            fields.split(' ').all(|w| {
                matches!(
                    w,
                    "year" | "month" | "day" | "hour" | "minute" | "second" | "to"
                )
            })
        }) =>
        {
            "interval"
        }
        _ => return None,
    })
}

/// A type name as `to_regtype` reads it.
#[derive(Debug, PartialEq, Eq)]
struct TypeName {
    schema: Option<String>,
    /// Unquoted words fold to lower case and are joined by one space
    /// (`double precision`).
    name: String,
    /// Whether the name was double-quoted (then it is a `pg_type` name as it is).
    quoted: bool,
    /// `[]`, `[n]` or `ARRAY` after it.
    array: bool,
    /// The first type modifier (`10` of `varchar(10)`), which only `float(p)` looks at.
    modifier: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An identifier and whether it was quoted.
    Word(String, bool),
    Dot,
    /// A parenthesized type modifier list.
    Modifiers(String),
    /// `[]` or `[n]`.
    Bounds,
}

fn tokens(text: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '.' => out.push(Token::Dot),
            '"' => {
                let mut word = String::new();
                loop {
                    match chars.next()? {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            word.push('"');
                        }
                        '"' => break,
                        c => word.push(c),
                    }
                }
                if word.is_empty() {
                    return None;
                }
                out.push(Token::Word(word, true));
            }
            '(' => {
                let mut inner = String::new();
                loop {
                    match chars.next()? {
                        ')' => break,
                        '(' => return None,
                        c => inner.push(c),
                    }
                }
                out.push(Token::Modifiers(inner));
            }
            '[' => {
                loop {
                    match chars.next()? {
                        ']' => break,
                        c if c.is_ascii_digit() || c.is_whitespace() => {}
                        _ => return None,
                    }
                }
                out.push(Token::Bounds);
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = String::new();
                word.push(c.to_ascii_lowercase());
                while let Some(&n) = chars.peek() {
                    if !(n.is_alphanumeric() || n == '_' || n == '$') {
                        break;
                    }
                    word.push(n.to_ascii_lowercase());
                    chars.next();
                }
                out.push(Token::Word(word, false));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Reads a type name; `None` if it is not one.
fn parse_type_name(text: &str) -> Option<TypeName> {
    let mut tokens = tokens(text)?;
    let mut array = false;
    while tokens.last() == Some(&Token::Bounds) {
        tokens.pop();
        array = true;
    }
    if tokens.len() > 1 && tokens.last() == Some(&Token::Word("array".to_string(), false)) {
        tokens.pop();
        array = true;
    }
    let mut modifiers = None;
    let mut rest = Vec::with_capacity(tokens.len());
    for t in tokens {
        match t {
            Token::Modifiers(m) => {
                modifiers.get_or_insert(m);
            }
            Token::Bounds => return None,
            other => rest.push(other),
        }
    }
    let modifier: Option<i64> =
        modifiers.and_then(|m| m.split(',').next().and_then(|p| p.trim().parse().ok()));
    let name = |schema: Option<String>, name: String, quoted: bool| TypeName {
        schema,
        name,
        quoted,
        array,
        modifier,
    };
    match rest.as_slice() {
        [Token::Word(schema, _), Token::Dot, Token::Word(n, quoted)] => {
            Some(name(Some(schema.clone()), n.clone(), *quoted))
        }
        [Token::Word(n, quoted)] => Some(name(None, n.clone(), *quoted)),
        words if words.len() > 1 => {
            let mut parts = Vec::with_capacity(words.len());
            for w in words {
                match w {
                    Token::Word(w, false) => parts.push(w.as_str()),
                    _ => return None,
                }
            }
            Some(name(None, parts.join(" "), false))
        }
        _ => None,
    }
}

/// `to_regtype`, `pg_type_is_visible` and [`REGTYPE_TEXT`] over `types`.
pub(super) fn udfs(types: &Arc<TypeCatalog>) -> Vec<ScalarUDF> {
    let resolve = types.clone();
    let visible = types.clone();
    let names = types.clone();
    vec![
        ScalarUDF::from(SimpleScalarUDF::new_with_signature(
            "to_regtype",
            Signature::any(1, Volatility::Stable),
            // pg_type.oid's type, so `t.oid = to_regtype('int4')` compares.
            DataType::Int32,
            Arc::new(move |args: &[ColumnarValue]| {
                let texts = first_arg(args, "to_regtype", &DataType::Utf8)?;
                let mut out = Int32Builder::with_capacity(texts.len());
                for text in as_string_array(&texts)?.iter() {
                    out.append_option(text.and_then(|t| resolve.resolve(t)));
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }),
        )),
        ScalarUDF::from(SimpleScalarUDF::new_with_signature(
            "pg_type_is_visible",
            Signature::any(1, Volatility::Stable),
            DataType::Boolean,
            Arc::new(move |args: &[ColumnarValue]| {
                let oids = first_arg(args, "pg_type_is_visible", &DataType::Int64)?;
                let mut out = BooleanBuilder::with_capacity(oids.len());
                for oid in as_int64_array(&oids)?.iter() {
                    let oid = oid.and_then(|o| i32::try_from(o).ok());
                    out.append_option(oid.and_then(|o| visible.is_visible(o)));
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }),
        )),
        ScalarUDF::from(SimpleScalarUDF::new_with_signature(
            REGTYPE_TEXT,
            Signature::any(1, Volatility::Stable),
            DataType::Utf8,
            Arc::new(move |args: &[ColumnarValue]| {
                let oids = first_arg(args, REGTYPE_TEXT, &DataType::Int64)?;
                let mut out = StringBuilder::new();
                for oid in as_int64_array(&oids)?.iter() {
                    out.append_option(oid.map(|o| match i32::try_from(o) {
                        // What regtypeout prints for InvalidOid.
                        Ok(0) => "-".to_string(),
                        Ok(o) => names.name_of(o),
                        Err(_) => o.to_string(),
                    }));
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }),
        )),
    ]
}

/// The one argument of `function`, as an array cast to `dt`.
pub(super) fn first_arg(
    args: &[ColumnarValue],
    function: &str,
    dt: &DataType,
) -> DfResult<ArrayRef> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let Some(arg) = arrays.first() else {
        return Err(DataFusionError::Plan(format!(
            "{function} takes one argument"
        )));
    };
    Ok(cast(arg, dt)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few rows of pg-catalog's `pg_type`, enough to name what the tests name.
    fn catalog() -> TypeCatalog {
        let mut t = TypeCatalog::default();
        // (oid, name, namespace, typarray, element of a true array)
        for (oid, name, ns, array, element) in [
            (16, "bool", PG_CATALOG, 1000, None),
            (18, "char", PG_CATALOG, 1002, None),
            (19, "name", PG_CATALOG, 1003, None),
            (22, "int2vector", PG_CATALOG, 1006, None),
            (23, "int4", PG_CATALOG, 1007, None),
            (25, "text", PG_CATALOG, 1009, None),
            (114, "json", PG_CATALOG, 199, None),
            (700, "float4", PG_CATALOG, 1021, None),
            (701, "float8", PG_CATALOG, 1022, None),
            (1002, "_char", PG_CATALOG, 0, Some(18)),
            (1007, "_int4", PG_CATALOG, 0, Some(23)),
            (1042, "bpchar", PG_CATALOG, 1014, None),
            (1043, "varchar", PG_CATALOG, 1015, None),
            (1114, "timestamp", PG_CATALOG, 1115, None),
            (1184, "timestamptz", PG_CATALOG, 1185, None),
            (1185, "_timestamptz", PG_CATALOG, 0, Some(1184)),
            (1186, "interval", PG_CATALOG, 1187, None),
            (1266, "timetz", PG_CATALOG, 1270, None),
            (1562, "varbit", PG_CATALOG, 1563, None),
            (1700, "numeric", PG_CATALOG, 1231, None),
            (2276, "any", PG_CATALOG, 0, None),
            (13297, "cardinal_number", INFORMATION_SCHEMA, 13296, None),
        ] {
            t.by_name.insert((ns, name.to_string()), oid);
            t.by_oid.insert(
                oid,
                TypeRow {
                    name: name.to_string(),
                    namespace: ns,
                    array,
                    element,
                },
            );
        }
        t.keywords = ["any", "char", "json", "time", "values"]
            .into_iter()
            .map(String::from)
            .collect();
        t
    }

    #[test]
    fn type_names_resolve_like_to_regtype() {
        let t = catalog();
        // PostgreSQL 15's to_regtype of each.
        for (text, want) in [
            ("int4", Some(23)),
            ("integer", Some(23)),
            ("int", Some(23)),
            ("INT4", Some(23)),
            (" int4 ", Some(23)),
            ("\"INT4\"", None),
            ("pg_catalog.int4", Some(23)),
            ("PG_CATALOG.INT4", Some(23)),
            ("public.int4", None),
            ("x.int4", None),
            ("integer[]", Some(1007)),
            ("int4[]", Some(1007)),
            ("int[3][4]", Some(1007)),
            ("int array", Some(1007)),
            ("_int4", Some(1007)),
            ("\"char\"", Some(18)),
            ("pg_catalog.\"char\"", Some(18)),
            ("char", Some(1042)),
            ("character(3)", Some(1042)),
            ("varchar(10)", Some(1043)),
            ("character varying", Some(1043)),
            ("national character varying(3)", Some(1043)),
            ("double precision", Some(701)),
            ("double   precision", Some(701)),
            ("float", Some(701)),
            ("float(10)", Some(700)),
            ("float(53)", Some(701)),
            ("real", Some(700)),
            ("bool", Some(16)),
            ("boolean", Some(16)),
            ("text", Some(25)),
            ("timestamp with time zone", Some(1184)),
            ("timestamp(3) with time zone", Some(1184)),
            ("timestamptz", Some(1184)),
            ("timestamp without time zone", Some(1114)),
            ("timestamptz[]", Some(1185)),
            ("time with time zone", Some(1266)),
            ("interval day to second", Some(1186)),
            ("dec(3,1)", Some(1700)),
            ("bit varying", Some(1562)),
            ("cardinal_number", None),
            ("information_schema.cardinal_number", Some(13297)),
            ("nosuch", None),
            ("int4 int4", None),
            ("", None),
            ("\"\"", None),
            ("int4(", None),
            ("a.b.c", None),
            ("int4;", None),
        ] {
            assert_eq!(t.resolve(text), want, "{text:?}");
        }
    }

    #[test]
    fn type_oids_print_like_regtype() {
        let t = catalog();
        // PostgreSQL's `oid::regtype::text` of each.
        for (oid, want) in [
            (23, "integer"),
            (1007, "integer[]"),
            (18, "\"char\""),
            (1002, "\"char\"[]"),
            (19, "name"),
            (22, "int2vector"),
            (25, "text"),
            (114, "json"),
            (701, "double precision"),
            (1042, "character"),
            (1043, "character varying"),
            (1184, "timestamp with time zone"),
            (1185, "timestamp with time zone[]"),
            (2276, "\"any\""),
            (13297, "information_schema.cardinal_number"),
            (999_999, "999999"),
        ] {
            assert_eq!(t.name_of(oid), want, "{oid}");
        }
        assert_eq!(t.quote("values"), "\"values\"");
        assert_eq!(t.quote("My Col"), "\"My Col\"");
        assert_eq!(t.quote("word"), "word");
    }

    #[test]
    fn types_in_the_search_path_are_visible() {
        let t = catalog();
        assert_eq!(t.is_visible(23), Some(true));
        assert_eq!(t.is_visible(13297), Some(false));
        assert_eq!(t.is_visible(999_999), None);
    }
}
