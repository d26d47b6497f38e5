//! COPY options: the data formats, the options a statement resolves to, and the error type
//! all of COPY's data handling reports. Options are read from the statement's `WITH (...)`
//! and pre-9.0 legacy clauses with PostgreSQL's defaults and consistency checks before any
//! data moves, so a bad statement is refused before the client is asked for data; keeping
//! them apart lets the protocol side resolve and check them without the codecs.

use std::fmt;

use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};

/// The data format of a COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// Tab-separated text with backslash escapes.
    Text,
    /// Comma-separated values with quoting.
    Csv,
    /// PostgreSQL's `PGCOPY` binary format.
    Binary,
}

/// The resolved options of a COPY statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    /// Data format.
    pub format: CopyFormat,
    /// Field separator (text and csv).
    pub delimiter: u8,
    /// The string that stands for NULL (text and csv).
    pub null: String,
    /// Whether the first line is a header (skipped on input, written on output).
    pub header: bool,
    /// Quote character (csv).
    pub quote: u8,
    /// Escape character inside quoted fields (csv).
    pub escape: u8,
}

impl CopyOptions {
    /// PostgreSQL's defaults for the text format: tab delimiter, `\N` for NULL.
    pub fn text() -> Self {
        Self {
            format: CopyFormat::Text,
            delimiter: b'\t',
            null: "\\N".to_string(),
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    /// PostgreSQL's defaults for the csv format: comma delimiter, unquoted empty string for NULL.
    pub fn csv() -> Self {
        Self {
            format: CopyFormat::Csv,
            delimiter: b',',
            null: String::new(),
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    /// Options for the binary format.
    pub fn binary() -> Self {
        Self {
            format: CopyFormat::Binary,
            ..Self::text()
        }
    }
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self::text()
    }
}

/// A COPY failure, located like PostgreSQL's error context (line and column) when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyError {
    /// 1-based input line (text), record (csv) or tuple (binary) number.
    pub line: Option<u64>,
    /// The column being read when the error occurred.
    pub column: Option<String>,
    /// What went wrong, in PostgreSQL's wording where one exists.
    pub message: String,
}

impl CopyError {
    /// An error not tied to a line or a column.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub(super) fn at_line(line: u64, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            column: None,
            message: message.into(),
        }
    }

    pub(super) fn at_column(line: u64, column: &str, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            column: Some(column.to_string()),
            message: message.into(),
        }
    }
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        // Value errors already name the column in their message; saying it twice reads badly.
        if let Some(column) = &self.column
            && !self.message.contains(&format!("column \"{column}\""))
        {
            write!(f, ", column {column}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CopyError {}

/// Records which options were given, so repeats can be rejected as PostgreSQL does.
#[derive(Default)]
struct GivenOptions {
    format: Option<CopyFormat>,
    delimiter: Option<char>,
    null: Option<String>,
    header: Option<bool>,
    quote: Option<char>,
    escape: Option<char>,
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), CopyError> {
    if slot.is_some() {
        return Err(CopyError::new("conflicting or redundant options"));
    }
    *slot = Some(value);
    Ok(())
}

fn unsupported(option: &str) -> CopyError {
    CopyError::new(format!("COPY option {option} is not supported"))
}

/// Resolves a COPY statement's `WITH (...)` options and pre-9.0 legacy options.
pub fn copy_options(
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<CopyOptions, CopyError> {
    let mut given = GivenOptions::default();
    for option in options {
        match option {
            CopyOption::Format(name) => {
                let format = match name.value.to_ascii_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    _ => {
                        return Err(CopyError::new(format!(
                            "COPY format \"{}\" not recognized",
                            name.value
                        )));
                    }
                };
                set_once(&mut given.format, format)?;
            }
            // FREEZE only changes how PostgreSQL writes heap pages; turning it off is a no-op.
            CopyOption::Freeze(false) => {}
            CopyOption::Freeze(true) => return Err(unsupported("FREEZE")),
            CopyOption::Delimiter(c) => set_once(&mut given.delimiter, *c)?,
            CopyOption::Null(s) => set_once(&mut given.null, s.clone())?,
            CopyOption::Header(h) => set_once(&mut given.header, *h)?,
            CopyOption::Quote(c) => set_once(&mut given.quote, *c)?,
            CopyOption::Escape(c) => set_once(&mut given.escape, *c)?,
            CopyOption::ForceQuote(_) => return Err(unsupported("FORCE_QUOTE")),
            CopyOption::ForceNotNull(_) => return Err(unsupported("FORCE_NOT_NULL")),
            CopyOption::ForceNull(_) => return Err(unsupported("FORCE_NULL")),
            CopyOption::Encoding(name) => {
                if !(name.eq_ignore_ascii_case("utf8") || name.eq_ignore_ascii_case("utf-8")) {
                    return Err(CopyError::new(format!(
                        "COPY option ENCODING '{name}' is not supported; only UTF8 is"
                    )));
                }
            }
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => set_once(&mut given.format, CopyFormat::Binary)?,
            CopyLegacyOption::Csv(csv_options) => {
                set_once(&mut given.format, CopyFormat::Csv)?;
                for csv_option in csv_options {
                    match csv_option {
                        CopyLegacyCsvOption::Header => set_once(&mut given.header, true)?,
                        CopyLegacyCsvOption::Quote(c) => set_once(&mut given.quote, *c)?,
                        CopyLegacyCsvOption::Escape(c) => set_once(&mut given.escape, *c)?,
                        CopyLegacyCsvOption::ForceQuote(_) => {
                            return Err(unsupported("FORCE QUOTE"));
                        }
                        CopyLegacyCsvOption::ForceNotNull(_) => {
                            return Err(unsupported("FORCE NOT NULL"));
                        }
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => set_once(&mut given.delimiter, *c)?,
            CopyLegacyOption::Null(s) => set_once(&mut given.null, s.clone())?,
            CopyLegacyOption::Header => set_once(&mut given.header, true)?,
            other => return Err(unsupported(&other.to_string())),
        }
    }
    resolve_options(given)
}

fn one_byte(c: char, what: &str) -> Result<u8, CopyError> {
    if c.is_ascii() {
        Ok(c as u8)
    } else {
        Err(CopyError::new(format!(
            "COPY {what} must be a single one-byte character"
        )))
    }
}

/// Applies PostgreSQL's defaults and consistency checks (ProcessCopyOptions).
fn resolve_options(given: GivenOptions) -> Result<CopyOptions, CopyError> {
    let format = given.format.unwrap_or(CopyFormat::Text);
    let mut options = match format {
        CopyFormat::Text => CopyOptions::text(),
        CopyFormat::Csv => CopyOptions::csv(),
        CopyFormat::Binary => CopyOptions::binary(),
    };
    if format == CopyFormat::Binary {
        if given.delimiter.is_some() {
            return Err(CopyError::new("cannot specify DELIMITER in BINARY mode"));
        }
        if given.null.is_some() {
            return Err(CopyError::new("cannot specify NULL in BINARY mode"));
        }
        if given.header == Some(true) {
            return Err(CopyError::new("cannot specify HEADER in BINARY mode"));
        }
    }
    if format != CopyFormat::Csv {
        if given.quote.is_some() {
            return Err(CopyError::new("COPY QUOTE requires CSV mode"));
        }
        if given.escape.is_some() {
            return Err(CopyError::new("COPY ESCAPE requires CSV mode"));
        }
    }
    if let Some(c) = given.delimiter {
        options.delimiter = one_byte(c, "delimiter")?;
    }
    if let Some(null) = given.null {
        options.null = null;
    }
    if let Some(header) = given.header {
        options.header = header;
    }
    if let Some(c) = given.quote {
        options.quote = one_byte(c, "quote")?;
    }
    // ESCAPE defaults to whatever QUOTE resolved to.
    options.escape = match given.escape {
        Some(c) => one_byte(c, "escape")?,
        None => options.quote,
    };
    if format == CopyFormat::Binary {
        return Ok(options);
    }
    let delimiter = options.delimiter;
    if delimiter == b'\n' || delimiter == b'\r' {
        return Err(CopyError::new(
            "COPY delimiter cannot be newline or carriage return",
        ));
    }
    if options.null.contains(['\n', '\r']) {
        return Err(CopyError::new(
            "COPY null representation cannot use newline or carriage return",
        ));
    }
    // In text mode these characters would be read as part of a backslash escape sequence.
    if format == CopyFormat::Text && b"\\.abcdefghijklmnopqrstuvwxyz0123456789".contains(&delimiter)
    {
        return Err(CopyError::new(format!(
            "COPY delimiter cannot be \"{}\"",
            char::from(delimiter)
        )));
    }
    if options.null.as_bytes().contains(&delimiter) {
        return Err(CopyError::new(
            "COPY delimiter character must not appear in the NULL specification",
        ));
    }
    if format == CopyFormat::Csv {
        if delimiter == options.quote {
            return Err(CopyError::new("COPY delimiter and quote must be different"));
        }
        if options.null.as_bytes().contains(&options.quote) {
            return Err(CopyError::new(
                "CSV quote character must not appear in the NULL specification",
            ));
        }
    }
    Ok(options)
}

/// Errors unless `options` can be used for `COPY ... TO STDOUT`.
pub fn check_copy_to(options: &CopyOptions) -> Result<(), CopyError> {
    if options.format == CopyFormat::Binary {
        return Err(CopyError::new("COPY TO STDOUT supports text and csv"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn parse_options(sql: &str) -> Result<CopyOptions, CopyError> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        match statements.first() {
            Some(Statement::Copy {
                options,
                legacy_options,
                ..
            }) => copy_options(options, legacy_options),
            other => panic!("not a COPY: {other:?}"),
        }
    }

    #[test]
    fn options_from_statements() {
        let o =
            parse_options("COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';')")
                .expect("valid");
        assert_eq!(o.format, CopyFormat::Csv);
        assert_eq!(o.delimiter, b';');
        assert!(o.header);
        assert_eq!(o.null, "");
        assert_eq!((o.quote, o.escape), (b'"', b'"'));

        let o = parse_options("COPY t FROM STDIN WITH CSV HEADER").expect("valid");
        assert_eq!(o.format, CopyFormat::Csv);
        assert!(o.header);

        let o = parse_options("COPY t FROM STDIN WITH BINARY").expect("valid");
        assert_eq!(o.format, CopyFormat::Binary);

        let o = parse_options("COPY t FROM STDIN WITH DELIMITER '|' NULL 'nil'").expect("valid");
        assert_eq!(o.format, CopyFormat::Text);
        assert_eq!(o.delimiter, b'|');
        assert_eq!(o.null, "nil");

        let o = parse_options("COPY t FROM STDIN").expect("valid");
        assert_eq!(o, CopyOptions::text());

        let o = parse_options("COPY t FROM STDIN WITH (FORMAT csv, QUOTE '''', ESCAPE '!')")
            .expect("valid");
        assert_eq!((o.quote, o.escape), (b'\'', b'!'));

        let e = parse_options("COPY t TO STDOUT WITH (FORMAT csv, FORCE_QUOTE (a))")
            .expect_err("unsupported");
        assert!(e.message.contains("FORCE_QUOTE"), "{e}");
        let e = parse_options("COPY t FROM STDIN WITH (ENCODING 'LATIN1')").expect_err("encoding");
        assert!(e.message.contains("ENCODING"), "{e}");
        let e = parse_options("COPY t FROM STDIN WITH (FORMAT xml)").expect_err("format");
        assert!(e.message.contains("xml"), "{e}");
        let e = parse_options("COPY t FROM STDIN WITH (QUOTE '\"')").expect_err("quote in text");
        assert!(e.message.contains("CSV"), "{e}");
        let e = parse_options("COPY t FROM STDIN WITH (FORMAT csv, FORMAT text)").expect_err("dup");
        assert!(e.message.contains("redundant"), "{e}");
        assert!(parse_options("COPY t FROM STDIN WITH (ENCODING 'utf8')").is_ok());
    }
}
