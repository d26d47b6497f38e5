//! SQL for stream sources: `CREATE SOURCE`, `DROP SOURCE`, `ALTER SOURCE ... PAUSE | RESUME`
//! (which DataFusion's parser does not know, so they are read here from its tokens), and the
//! `eddy_sources` system table.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result as DfResult;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
use eddy_ingest::sources::SourceManager;

use crate::error::{ErrorKind, QueryError, Result};

/// Name of the system table listing sources.
pub const SOURCES_TABLE: &str = "eddy_sources";

/// A source statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceCommand {
    /// `CREATE SOURCE [IF NOT EXISTS] name FROM KAFKA | MQTT (option 'value', ...)`.
    Create {
        /// The source's name.
        name: String,
        /// `kafka` or `mqtt`.
        kind: String,
        /// Options, names lower case.
        options: BTreeMap<String, String>,
        /// `IF NOT EXISTS` was given.
        if_not_exists: bool,
    },
    /// `DROP SOURCE [IF EXISTS] name`.
    Drop {
        /// The source's name.
        name: String,
        /// `IF EXISTS` was given.
        if_exists: bool,
    },
    /// `ALTER SOURCE name PAUSE | RESUME`.
    SetPaused {
        /// The source's name.
        name: String,
        /// `PAUSE` (true) or `RESUME`.
        paused: bool,
    },
}

/// The tokens of a statement, without whitespace and comments.
struct Tokens {
    tokens: Vec<Token>,
    at: usize,
}

impl Tokens {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    /// Takes the keyword if it comes next.
    fn keyword(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn expect_keyword(&mut self, kw: &str, what: &str) -> Result<()> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(syntax(format!(
                "expected {kw} {what}, found {}",
                self.found()
            )))
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(t) => format!("\"{t}\""),
            None => "the end of the statement".into(),
        }
    }

    /// A name: an identifier, folded to lower case unless quoted.
    fn name(&mut self, what: &str) -> Result<String> {
        match self.next() {
            Some(Token::Word(w)) => Ok(word_name(&w)),
            other => Err(syntax(format!(
                "expected {what}, found {}",
                other.map_or("the end of the statement".into(), |t| format!("\"{t}\""))
            ))),
        }
    }

    /// The end of the statement (an optional semicolon).
    fn end(&mut self) -> Result<()> {
        while matches!(self.peek(), Some(Token::SemiColon)) {
            self.at += 1;
        }
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(syntax(format!(
                "unexpected {} after the end of the source statement",
                self.found()
            ))),
        }
    }
}

fn word_name(w: &Word) -> String {
    if w.quote_style.is_some() {
        w.value.clone()
    } else {
        w.value.to_lowercase()
    }
}

fn syntax(message: String) -> QueryError {
    QueryError::new(ErrorKind::Syntax, message)
}

/// One statement of a query string that holds source statements.
#[derive(Debug)]
pub enum Piece {
    /// A source statement, read.
    Source(Result<SourceCommand>),
    /// Any other statement, as written (for the front end's usual parser).
    Sql(String),
}

/// Splits `sql` into its statements when one of them is a source statement (`DROP SOURCE s;
/// DROP TABLE t`); `None` when none is, and the usual parser takes the text whole.
pub fn split_source_statements(sql: &str) -> Option<Vec<Piece>> {
    if !sql.to_ascii_lowercase().contains("source") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    // Byte offset of a (1-based line, 1-based character column) location.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let byte_at = |line: u64, column: u64| -> usize {
        let start = line_starts
            .get((line as usize).saturating_sub(1))
            .copied()
            .unwrap_or(sql.len());
        sql[start..]
            .char_indices()
            .nth((column as usize).saturating_sub(1))
            .map_or(sql.len(), |(i, _)| start + i)
    };
    let mut pieces = Vec::new();
    let mut any_source = false;
    let mut from = 0usize;
    let mut words: Vec<Token> = Vec::new();
    let mut finish = |text: &str, words: &mut Vec<Token>, pieces: &mut Vec<Piece>| {
        if words.is_empty() {
            return;
        }
        if is_source_statement(words) {
            any_source = true;
            pieces.push(Piece::Source(parse_tokens(Tokens {
                tokens: std::mem::take(words),
                at: 0,
            })));
        } else {
            pieces.push(Piece::Sql(text.to_string()));
        }
        words.clear();
    };
    for t in tokens {
        match t.token {
            Token::SemiColon => {
                let end = byte_at(t.span.start.line, t.span.start.column);
                finish(&sql[from..end], &mut words, &mut pieces);
                from = (end + 1).min(sql.len());
            }
            Token::Whitespace(_) => {}
            other => words.push(other),
        }
    }
    finish(&sql[from..], &mut words, &mut pieces);
    any_source.then_some(pieces)
}

/// Whether a statement's tokens start with `CREATE | DROP | ALTER SOURCE`.
fn is_source_statement(tokens: &[Token]) -> bool {
    let word = |i: usize, w: &[&str]| {
        matches!(tokens.get(i), Some(Token::Word(x)) if x.quote_style.is_none()
            && w.iter().any(|w| x.value.eq_ignore_ascii_case(w)))
    };
    word(0, &["create", "drop", "alter"]) && word(1, &["source"])
}

fn parse_tokens(mut t: Tokens) -> Result<SourceCommand> {
    let cmd = if t.keyword("create") {
        t.expect_keyword("source", "after CREATE")?;
        let if_not_exists = if t.keyword("if") {
            t.expect_keyword("not", "after IF")?;
            t.expect_keyword("exists", "after IF NOT")?;
            true
        } else {
            false
        };
        let name = t.name("the source's name")?;
        t.expect_keyword("from", "and the source type (FROM KAFKA or FROM MQTT)")?;
        let kind = t.name("KAFKA or MQTT")?;
        t.keyword("with");
        let options = options(&mut t)?;
        SourceCommand::Create {
            name,
            kind,
            options,
            if_not_exists,
        }
    } else if t.keyword("drop") {
        t.expect_keyword("source", "after DROP")?;
        let if_exists = if t.keyword("if") {
            t.expect_keyword("exists", "after IF")?;
            true
        } else {
            false
        };
        SourceCommand::Drop {
            name: t.name("the source's name")?,
            if_exists,
        }
    } else {
        t.expect_keyword("alter", "")?;
        t.expect_keyword("source", "after ALTER")?;
        let name = t.name("the source's name")?;
        let paused = if t.keyword("pause") {
            true
        } else if t.keyword("resume") {
            false
        } else {
            return Err(syntax(format!(
                "ALTER SOURCE {name} takes PAUSE or RESUME, found {}",
                t.found()
            )));
        };
        SourceCommand::SetPaused { name, paused }
    };
    t.end()?;
    Ok(cmd)
}

/// `(name 'value', name value, ...)`; `=` between a name and its value is allowed.
fn options(t: &mut Tokens) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if !matches!(t.next(), Some(Token::LParen)) {
        return Err(syntax(
            "expected the options in parentheses, e.g. (brokers 'localhost:9092', topic 'telegraf')"
                .into(),
        ));
    }
    if matches!(t.peek(), Some(Token::RParen)) {
        t.next();
        return Ok(out);
    }
    loop {
        let name = t.name("an option name")?;
        if matches!(t.peek(), Some(Token::Eq)) {
            t.next();
        }
        let value = match t.next() {
            Some(Token::SingleQuotedString(s)) => s,
            Some(Token::Number(n, _)) => n,
            Some(Token::Minus) => match t.next() {
                Some(Token::Number(n, _)) => format!("-{n}"),
                _ => return Err(syntax(format!("option {name} needs a value"))),
            },
            // Unquoted words: true, false, earliest, ...
            Some(Token::Word(w)) if w.quote_style.is_none() => w.value.clone(),
            other => {
                return Err(syntax(format!(
                    "option {name} needs a value in single quotes, found {}",
                    other.map_or("the end of the statement".into(), |t| format!("\"{t}\""))
                )));
            }
        };
        if out.insert(name.clone(), value).is_some() {
            return Err(syntax(format!("option {name} is given twice")));
        }
        match t.next() {
            Some(Token::Comma) => continue,
            Some(Token::RParen) => break,
            other => {
                return Err(syntax(format!(
                    "expected , or ) after option {name}, found {}",
                    other.map_or("the end of the statement".into(), |t| format!("\"{t}\""))
                )));
            }
        }
    }
    Ok(out)
}

/// The schema of `eddy_sources`.
pub fn sources_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("options", DataType::Utf8, false),
        Field::new("messages", DataType::Int64, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("messages_per_second", DataType::Float64, false),
        Field::new("rows_per_second", DataType::Float64, false),
        Field::new("lag", DataType::Int64, true),
        Field::new("partition_lag", DataType::Utf8, true),
        Field::new("errors", DataType::Int64, false),
        Field::new("dead_letters", DataType::Int64, false),
        Field::new("last_error", DataType::Utf8, true),
        Field::new(
            "last_error_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]))
}

/// The rows of `eddy_sources`.
pub fn sources_table(manager: &SourceManager) -> DfResult<RecordBatch> {
    let status = manager.status();
    let lag = |s: &eddy_ingest::sources::SourceStatus| -> Option<i64> {
        (!s.stats.lag.is_empty()).then(|| s.stats.lag.values().sum())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            status.iter().map(|s| s.def.name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            status.iter().map(|s| s.def.kind.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            status.iter().map(|s| s.stats.state.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(status.iter().map(|s| {
            s.options_shown
                .iter()
                .map(|(k, v)| format!("{k} '{v}'"))
                .collect::<Vec<_>>()
                .join(", ")
        }))),
        Arc::new(Int64Array::from_iter_values(
            status.iter().map(|s| s.stats.messages as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            status.iter().map(|s| s.stats.rows as i64),
        )),
        Arc::new(Float64Array::from_iter_values(
            status.iter().map(|s| s.stats.messages_per_second),
        )),
        Arc::new(Float64Array::from_iter_values(
            status.iter().map(|s| s.stats.rows_per_second),
        )),
        Arc::new(Int64Array::from_iter(status.iter().map(lag))),
        Arc::new(StringArray::from_iter(status.iter().map(|s| {
            (!s.stats.lag.is_empty()).then(|| {
                s.stats
                    .lag
                    .iter()
                    .map(|(p, l)| format!("{p}={l}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        }))),
        Arc::new(Int64Array::from_iter_values(
            status.iter().map(|s| s.stats.errors as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            status.iter().map(|s| s.stats.dead_letters as i64),
        )),
        Arc::new(StringArray::from_iter(
            status
                .iter()
                .map(|s| s.stats.last_error.as_ref().map(|(_, e)| e.clone())),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter(
                status
                    .iter()
                    .map(|s| s.stats.last_error.as_ref().map(|(t, _)| t / 1000)),
            )
            .with_timezone("UTC"),
        ),
    ];
    Ok(RecordBatch::try_new(sources_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Result<SourceCommand> {
        let mut pieces = split_source_statements(sql).expect("a source statement");
        assert_eq!(pieces.len(), 1, "{pieces:?}");
        match pieces.remove(0) {
            Piece::Source(cmd) => cmd,
            Piece::Sql(text) => panic!("not a source statement: {text}"),
        }
    }

    #[test]
    fn create_source_reads_its_options() {
        let cmd = parse(
            "CREATE SOURCE IF NOT EXISTS Telegraf FROM KAFKA (brokers 'b:9092', topic = 'metrics', qos 1, batch_messages 500);",
        )
        .expect("parses");
        let SourceCommand::Create {
            name,
            kind,
            options,
            if_not_exists,
        } = cmd
        else {
            panic!("create");
        };
        assert_eq!(
            (name.as_str(), kind.as_str(), if_not_exists),
            ("telegraf", "kafka", true)
        );
        assert_eq!(options["brokers"], "b:9092");
        assert_eq!(options["topic"], "metrics");
        assert_eq!(options["qos"], "1");
    }

    #[test]
    fn drop_and_alter() {
        assert_eq!(
            parse("drop source if exists s").expect("drop"),
            SourceCommand::Drop {
                name: "s".into(),
                if_exists: true
            }
        );
        assert_eq!(
            parse("ALTER SOURCE \"S\" PAUSE").expect("alter"),
            SourceCommand::SetPaused {
                name: "S".into(),
                paused: true
            }
        );
        assert!(parse("ALTER SOURCE s STOP").is_err());
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse("CREATE SOURCE s FROM KAFKA (brokers 'b' topic 't')").expect_err("comma");
        assert!(e.to_string().contains("after option brokers"), "{e}");
        let e = parse("CREATE SOURCE s FROM KAFKA (a '1', a '2')").expect_err("twice");
        assert!(e.to_string().contains("twice"), "{e}");
        let e = parse("CREATE SOURCE s (a '1')").expect_err("from");
        assert!(e.to_string().contains("FROM"), "{e}");
        assert!(split_source_statements("SELECT 1").is_none());
        let pieces = split_source_statements(
            "select 'a;b' as source; DROP SOURCE s;\n drop table t; alter source x resume",
        )
        .expect("has source statements");
        assert_eq!(pieces.len(), 4, "{pieces:?}");
        assert!(matches!(&pieces[0], Piece::Sql(t) if t == "select 'a;b' as source"));
        assert!(matches!(
            &pieces[1],
            Piece::Source(Ok(SourceCommand::Drop { .. }))
        ));
        assert!(matches!(&pieces[2], Piece::Sql(t) if t.trim() == "drop table t"));
        assert!(matches!(
            &pieces[3],
            Piece::Source(Ok(SourceCommand::SetPaused { paused: false, .. }))
        ));
        assert!(split_source_statements("select source from t; select 2").is_none());
        assert!(split_source_statements("create table source (x int)").is_none());
    }
}
