//! InfluxDB line protocol: parses a request body into structured lines, knowing no catalog.
//!
//! [`parse`] is a pure function of its input: each good line comes back as its measurement,
//! tags, typed field values and time in nanoseconds, borrowing the body where no unescaping
//! was needed; each bad line comes back as a [`LineError`] with its line number and reason.
//! Checking the lines against the catalog and building Arrow batches is a separate step,
//! [`batch::build`], so the parser can be tested and benchmarked on its own and other sources
//! can reuse it.

pub mod batch;

use std::borrow::Cow;

use eddy_storage::{DEFAULT_TIME_COLUMN, FieldType};

/// Longest accepted line, in bytes.
pub const LINE_BYTES_MAX: usize = 1024 * 1024;

/// Unit of the timestamps in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Nanoseconds (default).
    Nanosecond,
    /// Microseconds.
    Microsecond,
    /// Milliseconds.
    Millisecond,
    /// Seconds.
    Second,
    /// Minutes.
    Minute,
    /// Hours.
    Hour,
}

impl Precision {
    /// Parses the `precision` parameter of the InfluxDB write APIs.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "n" | "ns" | "nanosecond" => Precision::Nanosecond,
            "u" | "us" | "µ" | "µs" | "microsecond" => Precision::Microsecond,
            "ms" | "millisecond" => Precision::Millisecond,
            "s" | "second" => Precision::Second,
            "m" | "minute" => Precision::Minute,
            "h" | "hour" => Precision::Hour,
            _ => return None,
        })
    }

    fn nanos(self) -> i64 {
        match self {
            Precision::Nanosecond => 1,
            Precision::Microsecond => 1_000,
            Precision::Millisecond => 1_000_000,
            Precision::Second => 1_000_000_000,
            Precision::Minute => 60_000_000_000,
            Precision::Hour => 3_600_000_000_000,
        }
    }
}

/// A rejected line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the request body.
    pub line: usize,
    /// Why it was rejected.
    pub message: String,
}

/// A field value as written in a line; strings borrow the request body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A float (`1.5`, `-2`, `1e3`).
    Float(f64),
    /// A signed integer (`3i`).
    Int(i64),
    /// An unsigned integer (`3u`).
    UInt(u64),
    /// A boolean (`t`, `false`, ...).
    Bool(bool),
    /// A string without escapes, between its quotes.
    Str(&'a str),
    /// A string with backslash escapes still in it; [`Value::string`] removes them.
    EscapedStr(&'a str),
}

impl<'a> Value<'a> {
    /// The column type the value writes.
    pub fn field_type(&self) -> FieldType {
        match self {
            Value::Float(_) => FieldType::Float,
            Value::Int(_) => FieldType::Integer,
            Value::UInt(_) => FieldType::UInteger,
            Value::Bool(_) => FieldType::Boolean,
            Value::Str(_) | Value::EscapedStr(_) => FieldType::String,
        }
    }

    /// The text of a string value, unescaped; `None` for other types.
    pub fn string(&self) -> Option<Cow<'a, str>> {
        match *self {
            Value::Str(s) => Some(Cow::Borrowed(s)),
            Value::EscapedStr(s) => Some(Cow::Owned(unescape_string(s))),
            _ => None,
        }
    }
}

/// One good line of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    /// 1-based line number in the request body.
    pub line: usize,
    /// The measurement (table) name, unescaped.
    pub measurement: Cow<'a, str>,
    /// Tag keys and values, unescaped, in the order written.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Field keys (unescaped) and values, in the order written.
    pub fields: Vec<(Cow<'a, str>, Value<'a>)>,
    /// Time in nanoseconds since the epoch: the line's timestamp times the precision, or the
    /// request's `now` when the line has none.
    pub time_ns: i64,
}

/// What [`parse`] made of a request body.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedLines<'a> {
    /// The good lines, in order.
    pub lines: Vec<Line<'a>>,
    /// The lines rejected for their syntax (or length, encoding, timestamp range), in order.
    pub errors: Vec<LineError>,
}

/// A line as written, before its timestamp is scaled and defaulted.
#[derive(Debug)]
struct RawLine<'a> {
    measurement: Cow<'a, str>,
    tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    fields: Vec<(Cow<'a, str>, Value<'a>)>,
    time: Option<i64>,
}

/// Parses a whole request body. `now_ns` is the time given to lines without a timestamp.
pub fn parse(body: &[u8], precision: Precision, now_ns: i64) -> ParsedLines<'_> {
    let mut out = ParsedLines::default();
    for (idx, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line_no = idx + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let trimmed = trim_start(raw);
        if trimmed.is_empty() || trimmed[0] == b'#' {
            continue;
        }
        let fail = |message: String| LineError {
            line: line_no,
            message,
        };
        if raw.len() > LINE_BYTES_MAX {
            out.errors.push(fail(format!(
                "line is {} bytes; the maximum is {LINE_BYTES_MAX}",
                raw.len()
            )));
            continue;
        }
        let text = match std::str::from_utf8(trimmed) {
            Ok(t) => t,
            Err(e) => {
                out.errors.push(fail(format!("invalid UTF-8: {e}")));
                continue;
            }
        };
        let line = match parse_line(text) {
            Ok(l) => l,
            Err(m) => {
                out.errors.push(fail(m));
                continue;
            }
        };
        let time_ns = match line.time {
            Some(t) => match t.checked_mul(precision.nanos()) {
                Some(t) => t,
                None => {
                    out.errors.push(fail(format!(
                        "timestamp {t} is out of range for precision {precision:?}"
                    )));
                    continue;
                }
            },
            None => now_ns,
        };
        out.lines.push(Line {
            line: line_no,
            measurement: line.measurement,
            tags: line.tags,
            fields: line.fields,
            time_ns,
        });
    }
    out
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Index of the first unescaped byte of `stops` at or after `from`, and whether a backslash
/// was seen on the way.
fn scan(s: &[u8], from: usize, stops: &[u8]) -> (usize, bool) {
    let mut i = from;
    let mut escaped = false;
    while i < s.len() {
        let c = s[i];
        if c == b'\\' && i + 1 < s.len() {
            escaped = true;
            i += 2;
            continue;
        }
        if stops.contains(&c) {
            return (i, escaped);
        }
        i += 1;
    }
    (s.len(), escaped)
}

fn unescape<'a>(s: &'a str, escaped: bool, specials: &[u8]) -> Cow<'a, str> {
    if !escaped {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut start = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() && specials.contains(&b[i + 1]) {
            out.push_str(&s[start..i]);
            start = i + 1;
            i += 2;
            continue;
        }
        i += 1;
    }
    out.push_str(&s[start..]);
    Cow::Owned(out)
}

fn unescape_string(s: &str) -> String {
    unescape(s, true, b"\"\\").into_owned()
}

fn parse_line(text: &str) -> Result<RawLine<'_>, String> {
    let s = text.as_bytes();
    // Measurement.
    let (m_end, m_esc) = scan(s, 0, b", ");
    if m_end == 0 {
        return Err("missing measurement".into());
    }
    let measurement = unescape(&text[..m_end], m_esc, b", \\");
    let mut pos = m_end;
    let mut tags = Vec::new();
    if pos < s.len() && s[pos] == b',' {
        loop {
            pos += 1;
            let (k_end, k_esc) = scan(s, pos, b"=, ");
            if k_end == pos {
                return Err(format!("empty tag key at column {}", pos + 1));
            }
            if k_end >= s.len() || s[k_end] != b'=' {
                return Err(format!(
                    "tag key \"{}\" has no '=' and value at column {}",
                    &text[pos..k_end],
                    k_end + 1
                ));
            }
            let key = unescape(&text[pos..k_end], k_esc, b",= \\");
            let v_start = k_end + 1;
            let (v_end, v_esc) = scan(s, v_start, b", =");
            if v_end < s.len() && s[v_end] == b'=' {
                return Err(format!(
                    "unescaped '=' in value of tag \"{key}\" at column {}",
                    v_end + 1
                ));
            }
            if v_end == v_start {
                return Err(format!("tag \"{key}\" has an empty value"));
            }
            let value = unescape(&text[v_start..v_end], v_esc, b",= \\");
            if key == DEFAULT_TIME_COLUMN {
                return Err("\"time\" is reserved and cannot be a tag key".into());
            }
            tags.push((key, value));
            pos = v_end;
            if pos >= s.len() || s[pos] == b' ' {
                break;
            }
        }
    }
    if pos >= s.len() {
        return Err("missing fields".into());
    }
    // One or more spaces separate measurement+tags from fields.
    while pos < s.len() && s[pos] == b' ' {
        pos += 1;
    }
    let mut fields = Vec::new();
    loop {
        let (k_end, k_esc) = scan(s, pos, b"=, ");
        if k_end == pos {
            return Err(format!("empty field key at column {}", pos + 1));
        }
        if k_end >= s.len() || s[k_end] != b'=' {
            return Err(format!(
                "field \"{}\" has no '=' and value at column {}",
                &text[pos..k_end],
                k_end + 1
            ));
        }
        let key = unescape(&text[pos..k_end], k_esc, b",= \\");
        if key == DEFAULT_TIME_COLUMN {
            return Err("\"time\" is reserved and cannot be a field key".into());
        }
        let v_start = k_end + 1;
        let (value, v_end) = if v_start < s.len() && s[v_start] == b'"' {
            let mut i = v_start + 1;
            let mut esc = false;
            loop {
                if i >= s.len() {
                    return Err(format!("unterminated string value of field \"{key}\""));
                }
                match s[i] {
                    b'\\' if i + 1 < s.len() => {
                        esc = true;
                        i += 2;
                    }
                    b'"' => break,
                    _ => i += 1,
                }
            }
            let inner = &text[v_start + 1..i];
            let v = if esc {
                Value::EscapedStr(inner)
            } else {
                Value::Str(inner)
            };
            (v, i + 1)
        } else {
            let (v_end, _) = scan(s, v_start, b", ");
            let raw = &text[v_start..v_end];
            (
                parse_value(raw).map_err(|m| format!("field \"{key}\": {m}"))?,
                v_end,
            )
        };
        fields.push((key, value));
        pos = v_end;
        if pos >= s.len() || s[pos] == b' ' {
            break;
        }
        if s[pos] != b',' {
            return Err(format!(
                "unexpected character after value at column {}",
                pos + 1
            ));
        }
        pos += 1;
    }
    while pos < s.len() && s[pos] == b' ' {
        pos += 1;
    }
    let time = if pos < s.len() {
        let ts = text[pos..].trim_end();
        Some(ts.parse::<i64>().map_err(|_| {
            format!(
                "invalid timestamp \"{ts}\" at column {}: expected an integer",
                pos + 1
            )
        })?)
    } else {
        None
    };
    Ok(RawLine {
        measurement,
        tags,
        fields,
        time,
    })
}

fn parse_value(raw: &str) -> Result<Value<'static>, String> {
    if raw.is_empty() {
        return Err("missing value".into());
    }
    match raw {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if let Some(n) = raw.strip_suffix('i') {
        return n
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| format!("invalid integer \"{raw}\""));
    }
    if let Some(n) = raw.strip_suffix('u') {
        return n
            .parse::<u64>()
            .map(Value::UInt)
            .map_err(|_| format!("invalid unsigned integer \"{raw}\""));
    }
    let first = raw.as_bytes()[0];
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return Err(format!(
            "invalid value \"{raw}\": strings must be double-quoted"
        ));
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Value::Float(v)),
        _ => Err(format!("invalid float \"{raw}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_types_and_escapes() {
        let l = parse_line(r#"my\ meas,t\=a=x\,y\ z f=1.5,i=-3i,u=7u,b=t,s="a \"q\" \\ b" 123"#)
            .unwrap();
        assert_eq!(l.measurement, "my meas");
        assert_eq!(l.tags[0].0, "t=a");
        assert_eq!(l.tags[0].1, "x,y z");
        assert_eq!(l.fields[0].1, Value::Float(1.5));
        assert_eq!(l.fields[1].1, Value::Int(-3));
        assert_eq!(l.fields[2].1, Value::UInt(7));
        assert_eq!(l.fields[3].1, Value::Bool(true));
        match l.fields[4].1 {
            Value::EscapedStr(s) => assert_eq!(unescape_string(s), r#"a "q" \ b"#),
            other => panic!("{other:?}"),
        }
        assert_eq!(l.time, Some(123));
    }

    #[test]
    fn parse_scales_and_defaults_times_and_numbers_lines() {
        let parsed = parse(b"m,h=a f=1 10\n\n# c\nm f=2\nm f=\n", Precision::Second, 99);
        assert_eq!(parsed.lines.len(), 2);
        assert_eq!(parsed.lines[0].line, 1);
        assert_eq!(parsed.lines[0].time_ns, 10_000_000_000);
        assert_eq!(parsed.lines[0].tags[0].1, "a");
        assert_eq!(parsed.lines[1].line, 4);
        assert_eq!(parsed.lines[1].time_ns, 99);
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].line, 5);
        assert!(parsed.errors[0].message.contains("missing value"));
        let far = parse(b"m f=1 9223372036854775807", Precision::Hour, 0);
        assert!(far.lines.is_empty());
        assert!(far.errors[0].message.contains("out of range"));
    }

    #[test]
    fn rejects_bad_lines_with_reasons() {
        assert!(parse_line("m").unwrap_err().contains("missing fields"));
        assert!(parse_line("m f=abc").unwrap_err().contains("double-quoted"));
        assert!(
            parse_line("m f=1 notatime")
                .unwrap_err()
                .contains("invalid timestamp")
        );
        assert!(
            parse_line("m f=\"open")
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(parse_line("m,t f=1").unwrap_err().contains("no '='"));
        assert!(
            parse_line("m f=1.5i")
                .unwrap_err()
                .contains("invalid integer")
        );
        assert!(parse_line("m f=1i2").unwrap_err().contains("invalid float"));
    }
}
