//! Messages to rows: a batch of messages becomes one set of per-table batches (one atomic
//! write), and every message that yields an error becomes a dead letter, while its good rows
//! and every other message's rows are written.

use std::borrow::Cow;

use serde_json::Value as Json;

use crate::lineproto::{self, Line, LineError, ParsedLines, Value};
use crate::sources::options::{Format, JsonFormat, TimeFormat};
use crate::{Ingest, IngestError, PreparedLines};

/// One message as a source received it.
#[derive(Debug, Clone)]
pub struct Message {
    /// Its payload.
    pub payload: Vec<u8>,
    /// Tags the message's origin gives every row (MQTT topic levels).
    pub tags: Vec<(String, String)>,
    /// Where it came from: `topic/partition` for Kafka, the topic for MQTT.
    pub partition: String,
    /// Its offset in the partition (Kafka), if it has one.
    pub offset: Option<i64>,
}

/// What a batch of messages became.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The rows, ready for one atomic write.
    pub prepared: PreparedLines,
    /// Messages that failed (wholly or in part): index in the batch and why.
    pub failed: Vec<(usize, String)>,
}

/// Decodes `messages` with `format`; `now_ns` is the time of rows without one.
pub fn decode(
    ingest: &Ingest,
    format: &Format,
    messages: &[Message],
    now_ns: i64,
) -> Result<Decoded, IngestError> {
    match format {
        Format::LineProtocol { precision } => {
            let mut body = Vec::with_capacity(messages.iter().map(|m| m.payload.len() + 1).sum());
            // The first line number of each message.
            let mut starts = Vec::with_capacity(messages.len());
            let mut next_line = 1usize;
            for m in messages {
                starts.push(next_line);
                body.extend_from_slice(&m.payload);
                if !m.payload.ends_with(b"\n") {
                    body.push(b'\n');
                }
                next_line += m.payload.iter().filter(|&&b| b == b'\n').count()
                    + usize::from(!m.payload.ends_with(b"\n"));
            }
            let mut parsed = lineproto::parse(&body, *precision, now_ns);
            if messages.iter().any(|m| !m.tags.is_empty()) {
                for line in &mut parsed.lines {
                    let m = &messages[message_of(&starts, line.line)];
                    add_tags(line, &m.tags);
                }
            }
            finish(ingest, parsed, &starts)
        }
        Format::Json(json) => {
            let mut parsed = ParsedLines::default();
            let mut starts = Vec::with_capacity(messages.len());
            // The values live here while the lines borrow their strings.
            let mut values: Vec<Json> = Vec::with_capacity(messages.len());
            let mut errors: Vec<(usize, String)> = Vec::new();
            for (i, m) in messages.iter().enumerate() {
                match serde_json::from_slice::<Json>(&m.payload) {
                    Ok(v) => values.push(v),
                    Err(e) => {
                        values.push(Json::Null);
                        errors.push((i, format!("not JSON: {e}")));
                    }
                }
            }
            let mut next_line = 1usize;
            for (i, (m, v)) in messages.iter().zip(&values).enumerate() {
                starts.push(next_line);
                let objects: Vec<&serde_json::Map<String, Json>> = match v {
                    Json::Object(o) => vec![o],
                    Json::Array(items) => {
                        let objs: Vec<_> = items.iter().filter_map(Json::as_object).collect();
                        if objs.len() != items.len() {
                            parsed.errors.push(LineError {
                                line: next_line,
                                message: "a JSON array must hold objects only".into(),
                            });
                            next_line += 1;
                            continue;
                        }
                        objs
                    }
                    Json::Null if errors.last().is_some_and(|(e, _)| *e == i) => {
                        next_line += 1;
                        continue;
                    }
                    _ => {
                        parsed.errors.push(LineError {
                            line: next_line,
                            message: "a JSON message must be an object (or an array of objects)"
                                .into(),
                        });
                        next_line += 1;
                        continue;
                    }
                };
                if objects.is_empty() {
                    next_line += 1;
                    continue;
                }
                for o in objects {
                    match json_line(json, o, next_line, now_ns) {
                        Ok(mut line) => {
                            add_tags(&mut line, &m.tags);
                            parsed.lines.push(line);
                        }
                        Err(message) => parsed.errors.push(LineError {
                            line: next_line,
                            message,
                        }),
                    }
                    next_line += 1;
                }
            }
            let mut decoded = finish(ingest, parsed, &starts)?;
            decoded.failed.extend(errors);
            decoded.failed.sort_by_key(|(i, _)| *i);
            Ok(decoded)
        }
    }
}

/// Index of the message holding line `line`, given each message's first line.
fn message_of(starts: &[usize], line: usize) -> usize {
    starts.partition_point(|&s| s <= line).saturating_sub(1)
}

/// Adds origin tags to a line (a tag the line sets itself wins).
fn add_tags<'a>(line: &mut Line<'a>, tags: &'a [(String, String)]) {
    for (k, v) in tags {
        if !line.tags.iter().any(|(lk, _)| lk == k) {
            line.tags.push((Cow::Borrowed(k), Cow::Borrowed(v)));
        }
    }
}

/// Prepares the lines and attributes every rejected line to its message.
fn finish(
    ingest: &Ingest,
    parsed: ParsedLines<'_>,
    starts: &[usize],
) -> Result<Decoded, IngestError> {
    let prepared = ingest.prepare_lines(parsed)?;
    let mut failed: Vec<(usize, String)> = Vec::new();
    let mut more = 0usize;
    for e in &prepared.errors {
        let m = message_of(starts, e.line);
        let within = e.line - starts.get(m).copied().unwrap_or(1) + 1;
        match failed.last_mut() {
            Some((last, _)) if *last == m => more += 1,
            _ => {
                flush_more(&mut failed, &mut more);
                failed.push((m, format!("line {within}: {}", e.message)));
            }
        }
    }
    flush_more(&mut failed, &mut more);
    Ok(Decoded { prepared, failed })
}

/// Notes how many more lines of the last failed message were rejected.
fn flush_more(failed: &mut [(usize, String)], more: &mut usize) {
    if *more > 0
        && let Some((_, text)) = failed.last_mut()
    {
        text.push_str(&format!(" (and {more} more rejected lines)"));
    }
    *more = 0;
}

/// One JSON object as a line of the format's table.
fn json_line<'a>(
    format: &'a JsonFormat,
    object: &'a serde_json::Map<String, Json>,
    line: usize,
    now_ns: i64,
) -> Result<Line<'a>, String> {
    let mut time_ns = now_ns;
    let mut tags = Vec::new();
    let mut fields = Vec::new();
    for (key, value) in object {
        if format.time_key.as_deref() == Some(key.as_str()) {
            time_ns = json_time(value, format.time_format)
                .map_err(|e| format!("time key \"{key}\": {e}"))?;
            continue;
        }
        if format.tag_keys.iter().any(|t| t == key) {
            let text = match value {
                Json::String(s) => Cow::Borrowed(s.as_str()),
                Json::Number(n) => Cow::Owned(n.to_string()),
                Json::Bool(b) => Cow::Owned(b.to_string()),
                Json::Null => continue,
                _ => return Err(format!("tag key \"{key}\" holds an object or array")),
            };
            tags.push((Cow::Borrowed(key.as_str()), text));
            continue;
        }
        let v = match value {
            // Every number is a float, whatever its spelling, so that 1 and 1.5 in two
            // messages never conflict over the column's type.
            Json::Number(n) => Value::Float(
                n.as_f64()
                    .ok_or_else(|| format!("key \"{key}\": number {n} is out of range"))?,
            ),
            Json::Bool(b) => Value::Bool(*b),
            Json::String(s) => Value::Str(s.as_str()),
            Json::Null => continue,
            Json::Object(_) | Json::Array(_) => {
                return Err(format!(
                    "key \"{key}\" holds a nested object or array; only flat objects are read"
                ));
            }
        };
        fields.push((Cow::Borrowed(key.as_str()), v));
    }
    if let Some(key) = &format.time_key
        && !object.contains_key(key)
    {
        return Err(format!("the object has no time key \"{key}\""));
    }
    if fields.is_empty() {
        return Err("the object has no field (every key is a tag, the time or null)".into());
    }
    Ok(Line {
        line,
        measurement: Cow::Borrowed(format.table.as_str()),
        tags,
        fields,
        time_ns,
    })
}

/// A JSON time value in nanoseconds.
fn json_time(value: &Json, format: TimeFormat) -> Result<i64, String> {
    let scale = |n: &serde_json::Number, unit: f64| -> Result<i64, String> {
        if let Some(i) = n.as_i64() {
            return i
                .checked_mul(unit as i64)
                .ok_or_else(|| format!("{n} is out of range"));
        }
        let f = n.as_f64().ok_or_else(|| format!("{n} is not a number"))? * unit;
        if f.is_finite() && f.abs() < 9.2e18 {
            Ok(f as i64)
        } else {
            Err(format!("{n} is out of range"))
        }
    };
    match (value, format) {
        (Json::String(s), TimeFormat::Rfc3339) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("'{s}' is not an RFC 3339 time: {e}"))?
            .timestamp_nanos_opt()
            .ok_or_else(|| format!("'{s}' is out of range")),
        (Json::Number(n), TimeFormat::UnixSeconds) => scale(n, 1e9),
        (Json::Number(n), TimeFormat::UnixMillis) => scale(n, 1e6),
        (Json::Number(n), TimeFormat::UnixMicros) => scale(n, 1e3),
        (Json::Number(n), TimeFormat::UnixNanos | TimeFormat::Rfc3339) => scale(n, 1.0),
        (other, f) => Err(format!("{other} does not fit time_format {f:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_map_to_their_messages() {
        // Messages starting at lines 1, 3 and 4.
        let starts = [1, 3, 4];
        assert_eq!(message_of(&starts, 1), 0);
        assert_eq!(message_of(&starts, 2), 0);
        assert_eq!(message_of(&starts, 3), 1);
        assert_eq!(message_of(&starts, 4), 2);
        assert_eq!(message_of(&starts, 9), 2);
    }

    #[test]
    fn json_times_in_every_format() {
        let n = |s: &str| serde_json::from_str::<Json>(s).expect("json");
        assert_eq!(
            json_time(&n("1.5"), TimeFormat::UnixSeconds),
            Ok(1_500_000_000)
        );
        assert_eq!(
            json_time(&n("1500"), TimeFormat::UnixMillis),
            Ok(1_500_000_000)
        );
        assert_eq!(
            json_time(&n("\"1970-01-01T00:00:01Z\""), TimeFormat::Rfc3339),
            Ok(1_000_000_000)
        );
        assert!(json_time(&n("1e300"), TimeFormat::UnixSeconds).is_err());
        assert!(json_time(&n("true"), TimeFormat::UnixSeconds).is_err());
    }
}
