//! `FETCH` and `MOVE` statements. They are read here, not by sqlparser, which knows only
//! part of PostgreSQL's grammar for them: no `MOVE`, no signed counts (`FETCH -1`), no bare
//! `BACKWARD`, no cursor name without `FROM` (`FETCH c`). psql users, psycopg's
//! `scroll()` (`MOVE -2 FROM "c"`) and tutorials use all of those.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Word};

use crate::error::{PgError, Result};

/// `FETCH ALL` and `BACKWARD ALL` as a count: more rows than any cursor holds.
pub const ALL: u64 = u64::MAX;

/// Where a `FETCH` or `MOVE` goes, in PostgreSQL's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The next `n` rows (`NEXT`, `n`, `FORWARD n`, `ALL`); `n` is at least 1.
    Forward(u64),
    /// The previous `n` rows, nearest first (`PRIOR`, `-n`, `BACKWARD n`); `n` is at least 1.
    Backward(u64),
    /// Row `n` from the start, or `-n` from the end; 0 is before the first row.
    Absolute(i64),
    /// The row `n` away; 0 is the current row again.
    Relative(i64),
}

/// A parsed `FETCH` (rows back) or `MOVE` (position only) statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorCommand {
    /// The cursor.
    pub name: String,
    /// Where it goes.
    pub direction: Direction,
    /// `MOVE`: the rows are skipped, not returned.
    pub move_only: bool,
}

/// A statement of SQL text that holds `FETCH` or `MOVE` commands.
#[derive(Debug)]
pub enum Piece<'a> {
    /// A `FETCH` or `MOVE`.
    Command(CursorCommand),
    /// Any other statement, as its text.
    Sql(&'a str),
}

/// Splits `sql` into statements when one of them is a `FETCH` or `MOVE`; `None` when none is
/// (the usual case, decided without tokenizing unless the words appear at all).
pub fn split(sql: &str) -> Option<Result<Vec<Piece<'_>>>> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("fetch") && !lower.contains("move") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let statements: Vec<Vec<&TokenWithSpan>> = tokens
        .split(|t| t.token == Token::SemiColon)
        .map(|s| {
            s.iter()
                .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if !statements.iter().any(|s| command_keyword(s[0]).is_some()) {
        return None;
    }
    Some(
        statements
            .into_iter()
            .map(|s| match command_keyword(s[0]) {
                Some(move_only) => command(&s[1..], move_only).map(Piece::Command),
                None => {
                    let text = offset(sql, s[0].span.start)
                        .zip(offset(sql, s[s.len() - 1].span.end))
                        .map(|(a, b)| &sql[a..b]);
                    text.map(Piece::Sql).ok_or_else(|| {
                        PgError::new("42601", "could not split the statements of the query")
                    })
                }
            })
            .collect(),
    )
}

/// `Some(move_only)` when the token starts a `FETCH` or `MOVE`.
fn command_keyword(t: &TokenWithSpan) -> Option<bool> {
    match &t.token {
        Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("fetch") => {
            Some(false)
        }
        Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("move") => {
            Some(true)
        }
        _ => None,
    }
}

/// The byte offset of a tokenizer location (1-based line and column, columns in characters,
/// as the tokenizer counts them).
fn offset(sql: &str, at: Location) -> Option<usize> {
    let (mut line, mut column) = (1, 1);
    for (i, c) in sql.char_indices() {
        if (line, column) == (at.line, at.column) {
            return Some(i);
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    ((line, column) == (at.line, at.column)).then_some(sql.len())
}

fn syntax(what: &str, move_only: bool) -> PgError {
    let verb = if move_only { "MOVE" } else { "FETCH" };
    PgError::new(
        "42601",
        format!(
            "syntax error in {verb}: {what}; expected {verb} [NEXT | PRIOR | FIRST | LAST | ABSOLUTE n | RELATIVE n | n | ALL | FORWARD [n | ALL] | BACKWARD [n | ALL]] [FROM | IN] cursor_name"
        ),
    )
}

/// The words after `FETCH` / `MOVE`: a direction, `FROM` or `IN`, the cursor name.
fn command(tokens: &[&TokenWithSpan], move_only: bool) -> Result<CursorCommand> {
    let (name, rest) = match tokens.split_last() {
        Some((last, rest)) => match &last.token {
            Token::Word(w) => (name_of(w), rest),
            other => return Err(syntax(&format!("{other} is not a cursor name"), move_only)),
        },
        None => return Err(syntax("the cursor name is missing", move_only)),
    };
    let rest = match rest.split_last() {
        Some((last, before)) if is_word(last, Keyword::FROM) || is_word(last, Keyword::IN) => {
            before
        }
        _ => rest,
    };
    let words: Vec<&Token> = rest.iter().map(|t| &t.token).collect();
    let direction = direction(&words).map_err(|e| match e {
        DirectionError::Syntax(what) => syntax(&what, move_only),
        DirectionError::Query(e) => e,
    })?;
    Ok(CursorCommand {
        name,
        direction,
        move_only,
    })
}

/// An identifier's name: unquoted names fold to lower case, as in PostgreSQL.
fn name_of(w: &Word) -> String {
    match w.quote_style {
        Some(_) => w.value.clone(),
        None => w.value.to_lowercase(),
    }
}

fn is_word(t: &TokenWithSpan, k: Keyword) -> bool {
    matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.keyword == k)
}

enum DirectionError {
    Syntax(String),
    Query(PgError),
}

fn direction(words: &[&Token]) -> std::result::Result<Direction, DirectionError> {
    let keyword = |t: &Token| match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    };
    let Some((first, rest)) = words.split_first() else {
        return Ok(Direction::Forward(1));
    };
    let count = |tokens: &[&Token]| signed_count(tokens).map_err(DirectionError::Query);
    let Some(k) = keyword(first) else {
        // `FETCH n` / `FETCH -n`.
        return Ok(forward(count(words)?));
    };
    let d = match (k, rest) {
        (Keyword::NEXT, []) => Direction::Forward(1),
        (Keyword::PRIOR, []) => Direction::Backward(1),
        (Keyword::FIRST, []) => Direction::Absolute(1),
        (Keyword::LAST, []) => Direction::Absolute(-1),
        (Keyword::ALL, []) => Direction::Forward(ALL),
        (Keyword::FORWARD, [all]) if keyword(all) == Some(Keyword::ALL) => Direction::Forward(ALL),
        (Keyword::FORWARD, []) => Direction::Forward(1),
        (Keyword::BACKWARD, []) => Direction::Backward(1),
        (Keyword::BACKWARD, [all]) if keyword(all) == Some(Keyword::ALL) => {
            Direction::Backward(ALL)
        }
        (Keyword::ABSOLUTE, n) => Direction::Absolute(count(n)?),
        (Keyword::RELATIVE, n) => Direction::Relative(count(n)?),
        (Keyword::FORWARD, n) => forward(count(n)?),
        (Keyword::BACKWARD, n) => forward(count(n)?.saturating_neg()),
        _ => {
            let text: Vec<String> = words.iter().map(|t| t.to_string()).collect();
            return Err(DirectionError::Syntax(format!(
                "unknown direction \"{}\"",
                text.join(" ")
            )));
        }
    };
    Ok(d)
}

/// `n` rows forward for a signed count: negative goes backward, 0 is the current row again.
fn forward(n: i64) -> Direction {
    match n {
        0 => Direction::Relative(0),
        n if n > 0 => Direction::Forward(n.unsigned_abs()),
        n => Direction::Backward(n.unsigned_abs()),
    }
}

/// An optionally signed integer count.
fn signed_count(tokens: &[&Token]) -> Result<i64> {
    let (negative, digits) = match tokens {
        [Token::Minus, Token::Number(n, _)] => (true, n),
        [Token::Plus, Token::Number(n, _)] | [Token::Number(n, _)] => (false, n),
        _ => {
            let text: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
            return Err(PgError::new(
                "42601",
                format!(
                    "a FETCH or MOVE count must be an integer, got \"{}\"",
                    text.join(" ")
                ),
            ));
        }
    };
    let n: i64 = digits.parse().map_err(|_| {
        PgError::new(
            "22003",
            format!("FETCH or MOVE count {digits} is not an integer in the range of bigint"),
        )
    })?;
    Ok(if negative { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Result<CursorCommand> {
        let mut pieces = split(sql).expect("a cursor command")?;
        assert_eq!(pieces.len(), 1, "{sql}");
        match pieces.remove(0) {
            Piece::Command(c) => Ok(c),
            Piece::Sql(s) => panic!("{sql}: read as SQL {s}"),
        }
    }

    fn dir(sql: &str) -> Direction {
        one(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).direction
    }

    #[test]
    fn reads_postgresql_directions() {
        use Direction::*;
        let cases = [
            ("FETCH c", Forward(1)),
            ("fetch from c", Forward(1)),
            ("FETCH NEXT FROM c", Forward(1)),
            ("FETCH PRIOR IN c", Backward(1)),
            ("FETCH FIRST c", Absolute(1)),
            ("FETCH LAST FROM c", Absolute(-1)),
            ("FETCH ABSOLUTE 3 FROM c", Absolute(3)),
            ("FETCH ABSOLUTE -2 FROM c", Absolute(-2)),
            ("FETCH RELATIVE -1 FROM c", Relative(-1)),
            ("FETCH RELATIVE 0 FROM c", Relative(0)),
            ("FETCH 5 FROM c", Forward(5)),
            ("FETCH -5 FROM c", Backward(5)),
            ("FETCH +5 c", Forward(5)),
            ("FETCH 0 FROM c", Relative(0)),
            ("FETCH ALL FROM c", Forward(ALL)),
            ("FETCH FORWARD c", Forward(1)),
            ("FETCH FORWARD 7 FROM c", Forward(7)),
            ("FETCH FORWARD -7 FROM c", Backward(7)),
            ("FETCH FORWARD ALL FROM c", Forward(ALL)),
            ("FETCH BACKWARD c", Backward(1)),
            ("FETCH BACKWARD 2 FROM c", Backward(2)),
            ("FETCH BACKWARD -2 FROM c", Forward(2)),
            ("FETCH BACKWARD ALL FROM c", Backward(ALL)),
            ("MOVE -2 FROM c", Backward(2)),
            ("MOVE ABSOLUTE 0 FROM c", Absolute(0)),
            ("  -- comment\n MOVE\tLAST IN c ;", Absolute(-1)),
        ];
        for (sql, want) in cases {
            assert_eq!(dir(sql), want, "{sql}");
        }
        let c = one("MOVE 2 FROM \"My Cursor\"").expect("MOVE");
        assert_eq!((c.name.as_str(), c.move_only), ("My Cursor", true));
        assert_eq!(one("FETCH 1 FROM Upper").expect("FETCH").name, "upper");
        assert!(!one("FETCH 1 FROM c").expect("FETCH").move_only);
    }

    #[test]
    fn rejects_what_postgresql_rejects_with_the_reason() {
        for (sql, code, says) in [
            ("FETCH", "42601", "cursor name is missing"),
            ("FETCH 1 FROM 3", "42601", "not a cursor name"),
            (
                "FETCH SIDEWAYS 2 FROM c",
                "42601",
                "unknown direction \"SIDEWAYS 2\"",
            ),
            ("FETCH ABSOLUTE FROM c", "42601", "must be an integer"),
            ("FETCH 1.5 FROM c", "22003", "1.5"),
            ("MOVE 99999999999999999999 FROM c", "22003", "bigint"),
        ] {
            let e = one(sql).expect_err(sql);
            assert_eq!(e.sqlstate, code, "{sql}: {e}");
            assert!(e.message.contains(says), "{sql}: {e}");
        }
    }

    #[test]
    fn splits_other_statements_around_commands() {
        assert!(split("SELECT 'fetch'").is_none());
        assert!(split("SELECT movement FROM t").is_none());
        let sql = "DECLARE c SCROLL CURSOR FOR SELECT 'it''s; fine', 'é';\nMOVE 2 c; FETCH PRIOR c;SELECT 1";
        let pieces = split(sql).expect("commands").expect("split");
        let shown: Vec<String> = pieces
            .iter()
            .map(|p| match p {
                Piece::Command(c) => format!("{:?} {}", c.direction, c.move_only),
                Piece::Sql(s) => (*s).to_string(),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "DECLARE c SCROLL CURSOR FOR SELECT 'it''s; fine', 'é'",
                "Forward(2) true",
                "Backward(1) false",
                "SELECT 1",
            ]
        );
    }
}
