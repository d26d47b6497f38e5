//! The options of `CREATE SOURCE`, checked when the source is created: every option is known,
//! every value parses, required ones are there. Secrets are kept but never shown back.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::lineproto::Precision;

/// Option names whose values are never shown (in `eddy_sources`, in logs, in errors).
pub const SECRET_OPTIONS: [&str; 2] = ["sasl_password", "password"];

/// Largest payload kept in a dead letter, by default.
const DEAD_LETTER_BYTES_DEFAULT: usize = 1024;
/// Most messages written in one commit, by default.
const BATCH_MESSAGES_DEFAULT: usize = 10_000;
/// Most payload bytes written in one commit.
const BATCH_BYTES_DEFAULT: usize = 16 << 20;

/// Why a definition is refused.
pub type OptionError = String;

/// How a message's payload becomes rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// InfluxDB line protocol, one or many lines per message.
    LineProtocol {
        /// Unit of the lines' timestamps.
        precision: Precision,
    },
    /// One flat JSON object per message (or an array of them).
    Json(JsonFormat),
}

/// How a flat JSON object becomes a row.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonFormat {
    /// The table written to.
    pub table: String,
    /// The key holding the time; absent: the time the message arrived.
    pub time_key: Option<String>,
    /// How the time is written.
    pub time_format: TimeFormat,
    /// Keys that are tags; every other key is a field.
    pub tag_keys: Vec<String>,
}

/// How a JSON time value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// An RFC 3339 string (`2024-01-01T00:00:00Z`), or a number of the `precision` given
    /// when the value is a number.
    Rfc3339,
    /// A number of seconds (may have a fraction).
    UnixSeconds,
    /// A number of milliseconds.
    UnixMillis,
    /// A number of microseconds.
    UnixMicros,
    /// A number of nanoseconds.
    UnixNanos,
}

/// Options every source has.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    /// The payload format.
    pub format: Format,
    /// Most payload bytes kept in a dead letter.
    pub dead_letter_bytes: usize,
    /// Most messages per commit.
    pub batch_messages: usize,
    /// Most payload bytes per commit.
    pub batch_bytes: usize,
}

/// Where a Kafka source starts in a partition it has no position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest message kept.
    Earliest,
    /// Only messages produced from now on.
    Latest,
}

/// A Kafka source's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaOptions {
    /// Bootstrap brokers, `host:port,...`.
    pub brokers: String,
    /// The topic read.
    pub topic: String,
    /// The consumer group (offsets are committed there for lag tools).
    pub group_id: String,
    /// A fixed partition list: no group rebalancing, this node owns these partitions.
    pub partitions: Option<Vec<i32>>,
    /// Where to start without a stored position.
    pub start: Start,
    /// librdkafka's `security.protocol` (`plaintext` or `sasl_plaintext`).
    pub security_protocol: Option<String>,
    /// SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub sasl_mechanism: Option<String>,
    /// SASL user.
    pub sasl_username: Option<String>,
    /// SASL password (secret).
    pub sasl_password: Option<String>,
    /// Options every source has.
    pub common: Common,
}

/// An MQTT source's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttOptions {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Topic filters subscribed to (wildcards `+` and `#`).
    pub topics: Vec<String>,
    /// QoS of the subscriptions: 0 or 1.
    pub qos: u8,
    /// `sensors/{site}/{device}`: topic levels that become tags.
    pub topic_tags: Option<TopicTags>,
    /// The MQTT client id (the broker keeps a persistent session under it).
    pub client_id: String,
    /// A clean session forgets what was sent while Eddy was away; the default keeps it.
    pub clean_session: bool,
    /// User name.
    pub username: Option<String>,
    /// Password (secret).
    pub password: Option<String>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Options every source has.
    pub common: Common,
}

/// A topic template: literal levels must match, `{name}` levels become tag `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTags {
    levels: Vec<TemplateLevel>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateLevel {
    Literal(String),
    Tag(String),
    Any,
}

impl TopicTags {
    /// Parses `sensors/{site}/{device}` (`+` matches a level without naming it).
    pub fn parse(template: &str) -> Result<TopicTags, OptionError> {
        let mut levels = Vec::new();
        for level in template.split('/') {
            levels.push(if let Some(name) = level.strip_prefix('{') {
                let name = name.strip_suffix('}').ok_or_else(|| {
                    format!("topic_tags level \"{level}\" opens a brace it does not close")
                })?;
                if name.is_empty() || name.contains(['{', '}']) {
                    return Err(format!("topic_tags level \"{level}\" is not a tag name"));
                }
                TemplateLevel::Tag(name.to_string())
            } else if level == "+" {
                TemplateLevel::Any
            } else {
                TemplateLevel::Literal(level.to_string())
            });
        }
        if !levels.iter().any(|l| matches!(l, TemplateLevel::Tag(_))) {
            return Err(format!(
                "topic_tags \"{template}\" names no tag: write levels as {{name}}, e.g. sensors/{{site}}/{{device}}"
            ));
        }
        Ok(TopicTags { levels })
    }

    /// The tags a topic gives; `None` when the topic does not fit the template.
    pub fn tags(&self, topic: &str) -> Option<Vec<(String, String)>> {
        let parts: Vec<&str> = topic.split('/').collect();
        if parts.len() != self.levels.len() {
            return None;
        }
        let mut out = Vec::new();
        for (level, part) in self.levels.iter().zip(parts) {
            match level {
                TemplateLevel::Literal(l) if l != part => return None,
                TemplateLevel::Tag(name) => out.push((name.clone(), part.to_string())),
                _ => {}
            }
        }
        Some(out)
    }
}

/// A checked definition.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// `FROM KAFKA`.
    Kafka(KafkaOptions),
    /// `FROM MQTT`.
    Mqtt(MqttOptions),
}

impl SourceSpec {
    /// The options every source has.
    pub fn common(&self) -> &Common {
        match self {
            SourceSpec::Kafka(k) => &k.common,
            SourceSpec::Mqtt(m) => &m.common,
        }
    }
}

/// The options with secrets replaced, for display.
pub fn redacted(options: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    options
        .iter()
        .map(|(k, v)| {
            let shown = if SECRET_OPTIONS.contains(&k.as_str()) {
                "********".to_string()
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

/// Reads options, taking each as it is used, so leftovers are unknown options.
struct Reader<'a> {
    kind: &'a str,
    options: BTreeMap<String, String>,
}

impl Reader<'_> {
    fn take(&mut self, name: &str) -> Option<String> {
        self.options.remove(name)
    }

    fn required(&mut self, name: &str, example: &str) -> Result<String, OptionError> {
        match self.take(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(format!(
                "a {} source needs option {name} (for example {name} '{example}')",
                self.kind
            )),
        }
    }

    fn number<T>(
        &mut self,
        name: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, OptionError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        match self.take(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<T>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(format!(
                    "option {name} must be a number from {} to {}, got '{v}'",
                    range.start(),
                    range.end()
                )),
            },
        }
    }

    fn boolean(&mut self, name: &str, default: bool) -> Result<bool, OptionError> {
        match self.take(name) {
            None => Ok(default),
            Some(v) => match v.trim().to_lowercase().as_str() {
                "true" | "on" | "yes" | "1" => Ok(true),
                "false" | "off" | "no" | "0" => Ok(false),
                _ => Err(format!("option {name} must be true or false, got '{v}'")),
            },
        }
    }

    fn common(&mut self) -> Result<Common, OptionError> {
        let format = match self
            .take("format")
            .unwrap_or_else(|| "line_protocol".into())
            .to_lowercase()
            .as_str()
        {
            "line_protocol" | "lineprotocol" | "influx" | "ilp" => {
                let precision = match self.take("precision") {
                    None => Precision::Nanosecond,
                    Some(p) => Precision::parse(&p).ok_or_else(|| {
                        format!("option precision must be ns, us, ms or s, got '{p}'")
                    })?,
                };
                Format::LineProtocol { precision }
            }
            "json" => {
                let table = self.required("table", "readings")?;
                let time_format = match self
                    .take("time_format")
                    .unwrap_or_else(|| "rfc3339".into())
                    .to_lowercase()
                    .as_str()
                {
                    "rfc3339" | "iso8601" => TimeFormat::Rfc3339,
                    "unix" | "unix_s" | "s" => TimeFormat::UnixSeconds,
                    "unix_ms" | "ms" => TimeFormat::UnixMillis,
                    "unix_us" | "us" => TimeFormat::UnixMicros,
                    "unix_ns" | "ns" => TimeFormat::UnixNanos,
                    other => {
                        return Err(format!(
                            "option time_format must be rfc3339, unix_s, unix_ms, unix_us or unix_ns, got '{other}'"
                        ));
                    }
                };
                let tag_keys = self.take("tag_keys").map(|t| list(&t)).unwrap_or_default();
                Format::Json(JsonFormat {
                    table,
                    time_key: self.take("time_key"),
                    time_format,
                    tag_keys,
                })
            }
            other => {
                return Err(format!(
                    "option format must be 'line_protocol' or 'json', got '{other}'"
                ));
            }
        };
        Ok(Common {
            format,
            dead_letter_bytes: self.number(
                "dead_letter_bytes",
                DEAD_LETTER_BYTES_DEFAULT,
                0..=1 << 20,
            )?,
            batch_messages: self.number("batch_messages", BATCH_MESSAGES_DEFAULT, 1..=1_000_000)?,
            batch_bytes: self.number("batch_bytes", BATCH_BYTES_DEFAULT, 1024..=256 << 20)?,
        })
    }

    fn finish(self) -> Result<(), OptionError> {
        match self.options.keys().next() {
            None => Ok(()),
            Some(unknown) => Err(format!(
                "unknown option {unknown} for a {} source (see docs/sources.md for the options)",
                self.kind
            )),
        }
    }
}

/// A comma-separated list, trimmed, without empty items.
fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks a definition: `kind` is `kafka` or `mqtt`, `options` as `CREATE SOURCE` gave them
/// (names lower case). `name` is the source's, for defaults.
pub fn parse(
    name: &str,
    kind: &str,
    options: &BTreeMap<String, String>,
) -> Result<SourceSpec, OptionError> {
    let mut r = Reader {
        kind,
        options: options.clone(),
    };
    let spec = match kind {
        "kafka" => {
            let brokers = r.required("brokers", "localhost:9092")?;
            let topic = r.required("topic", "telegraf")?;
            let group_id = r.take("group_id").unwrap_or_else(|| format!("eddy-{name}"));
            let partitions = match r.take("partitions") {
                None => None,
                Some(p) => {
                    let parsed: Result<Vec<i32>, _> =
                        list(&p).iter().map(|x| x.parse::<i32>()).collect();
                    match parsed {
                        Ok(v) if !v.is_empty() && v.iter().all(|&x| x >= 0) => Some(v),
                        _ => {
                            return Err(format!(
                                "option partitions must list partition numbers, e.g. '0,1,2', got '{p}'"
                            ));
                        }
                    }
                }
            };
            let start = match r
                .take("start")
                .unwrap_or_else(|| "earliest".into())
                .to_lowercase()
                .as_str()
            {
                "earliest" => Start::Earliest,
                "latest" => Start::Latest,
                other => {
                    return Err(format!(
                        "option start must be 'earliest' or 'latest', got '{other}'"
                    ));
                }
            };
            let security_protocol = r.take("security_protocol").map(|s| s.to_lowercase());
            if let Some(p) = &security_protocol
                && !["plaintext", "sasl_plaintext"].contains(&p.as_str())
            {
                return Err(format!(
                    "option security_protocol must be plaintext or sasl_plaintext (this build has no TLS for Kafka), got '{p}'"
                ));
            }
            let sasl_mechanism = r.take("sasl_mechanism").map(|s| s.to_uppercase());
            if let Some(m) = &sasl_mechanism
                && !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&m.as_str())
            {
                return Err(format!(
                    "option sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got '{m}'"
                ));
            }
            SourceSpec::Kafka(KafkaOptions {
                brokers,
                topic,
                group_id,
                partitions,
                start,
                security_protocol,
                sasl_mechanism,
                sasl_username: r.take("sasl_username"),
                sasl_password: r.take("sasl_password"),
                common: r.common()?,
            })
        }
        "mqtt" => {
            let url = r.required("url", "mqtt://localhost:1883")?;
            let (host, port) = parse_mqtt_url(&url)?;
            let topics = list(&r.required("topics", "sensors/#")?);
            for t in &topics {
                check_topic_filter(t)?;
            }
            let qos = r.number("qos", 1u8, 0..=1)?;
            let topic_tags = r
                .take("topic_tags")
                .map(|t| TopicTags::parse(&t))
                .transpose()?;
            let client_id = r
                .take("client_id")
                .unwrap_or_else(|| format!("eddy-{name}"));
            if client_id.is_empty() || client_id.len() > 128 {
                return Err("option client_id must have 1 to 128 characters".into());
            }
            let clean_session = r.boolean("clean_session", false)?;
            let keep_alive = Duration::from_secs(r.number("keep_alive_s", 30u64, 5..=3600)?);
            SourceSpec::Mqtt(MqttOptions {
                host,
                port,
                topics,
                qos,
                topic_tags,
                client_id,
                clean_session,
                username: r.take("username"),
                password: r.take("password"),
                keep_alive,
                common: r.common()?,
            })
        }
        other => {
            return Err(format!(
                "unknown source type {other}: Eddy reads FROM KAFKA or FROM MQTT"
            ));
        }
    };
    r.finish()?;
    Ok(spec)
}

/// `mqtt://host:port` (or `tcp://`); the port defaults to 1883.
fn parse_mqtt_url(url: &str) -> Result<(String, u16), OptionError> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| {
            if url.starts_with("mqtts://") || url.starts_with("ssl://") {
                format!("url '{url}': MQTT over TLS is not supported by this build yet")
            } else {
                format!("url must look like mqtt://host:1883, got '{url}'")
            }
        })?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("url '{url}' has a bad port '{p}'"))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("url must look like mqtt://host:1883, got '{url}'"));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// A topic filter as MQTT allows it: `#` only as the whole last level, `+` only as a whole level.
fn check_topic_filter(filter: &str) -> Result<(), OptionError> {
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let ok = match *level {
            "#" => i + 1 == levels.len(),
            "+" => true,
            l => !l.contains(['#', '+']),
        };
        if !ok {
            return Err(format!(
                "topic filter '{filter}' is not valid MQTT: '#' may only be the last level and '+' a whole level"
            ));
        }
    }
    if filter.is_empty() {
        return Err("a topic filter may not be empty".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kafka_needs_brokers_and_topic_and_knows_its_options() {
        let e = parse("s", "kafka", &opts(&[("topic", "t")])).expect_err("no brokers");
        assert!(e.contains("brokers"), "{e}");
        let e = parse(
            "s",
            "kafka",
            &opts(&[("brokers", "b:1"), ("topic", "t"), ("colour", "red")]),
        )
        .expect_err("unknown option");
        assert!(e.contains("colour"), "{e}");
        let SourceSpec::Kafka(k) =
            parse("s", "kafka", &opts(&[("brokers", "b:1"), ("topic", "t")])).expect("ok")
        else {
            panic!("kafka");
        };
        assert_eq!(k.group_id, "eddy-s");
        assert_eq!(k.start, Start::Earliest);
    }

    #[test]
    fn mqtt_urls_filters_and_templates_are_checked() {
        assert_eq!(
            parse_mqtt_url("mqtt://localhost:1884").expect("url"),
            ("localhost".into(), 1884)
        );
        assert!(parse_mqtt_url("http://x").is_err());
        assert!(check_topic_filter("a/#/b").is_err());
        assert!(check_topic_filter("a/b+").is_err());
        check_topic_filter("a/+/b/#").expect("valid");
        let t = TopicTags::parse("sensors/{site}/+/{device}").expect("template");
        assert_eq!(
            t.tags("sensors/paris/x/d1"),
            Some(vec![
                ("site".into(), "paris".into()),
                ("device".into(), "d1".into())
            ])
        );
        assert_eq!(t.tags("sensors/paris/d1"), None);
        assert_eq!(t.tags("other/paris/x/d1"), None);
        assert!(TopicTags::parse("sensors/{site").is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let shown = redacted(&opts(&[("password", "hunter2"), ("url", "mqtt://h")]));
        assert_eq!(shown["password"], "********");
        assert_eq!(shown["url"], "mqtt://h");
    }
}
