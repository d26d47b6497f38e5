//! Who may use the HTTP API. With no users configured, anyone may (the server then listens on
//! loopback only). With users, every route but `/health` and `/ping` needs a configured user's
//! password, sent the ways InfluxDB clients send credentials:
//!
//! - `Authorization: Basic base64(user:password)` (InfluxDB 1.x clients, curl `-u`);
//! - `Authorization: Token <token>` (InfluxDB 2.x clients, Telegraf's `influxdb_v2` output);
//! - `Authorization: Bearer <token>` (InfluxDB 3 clients);
//! - the `u` and `p` query parameters of `/write` (InfluxDB 1.x).
//!
//! A token is a configured user's password, or `user:password` (the form InfluxDB 2.x accepts
//! from 1.x clients). There are no separate tokens to configure: the users are the ones the
//! Postgres front end checks.
//!
//! Credentials are checked before the request body is read, so a client without them takes no
//! share of the in-flight body budget. Passwords are compared in constant time, and every user
//! is compared whichever matches.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The configured users, as the HTTP API checks them.
pub(super) struct Users {
    users: Vec<(String, String)>,
}

impl Users {
    pub(super) fn new(users: &[(String, String)]) -> Users {
        Users {
            users: users.to_vec(),
        }
    }

    /// Whether requests must carry credentials.
    pub(super) fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether `user` is configured with `password`.
    fn user_password(&self, user: &str, password: &str) -> bool {
        let mut ok = false;
        for (u, p) in &self.users {
            // `&` and `|`, not `&&` and `||`: every comparison runs.
            ok |= ct_eq(u.as_bytes(), user.as_bytes()) & ct_eq(p.as_bytes(), password.as_bytes());
        }
        ok
    }

    /// Whether `token` is a configured user's password, or `user:password` of one.
    fn token(&self, token: &str) -> bool {
        let mut ok = false;
        for (_, p) in &self.users {
            ok |= ct_eq(p.as_bytes(), token.as_bytes());
        }
        if let Some((user, password)) = token.split_once(':') {
            ok |= self.user_password(user, password);
        }
        ok
    }

    /// Checks the credentials of a request: its `Authorization` header, or else (on `/write`)
    /// its `u` and `p` query parameters, where `p` may also be a token.
    fn check(&self, authorization: Option<&HeaderValue>, u_p: Option<(&str, &str)>) -> Check {
        if let Some(value) = authorization {
            let Ok(value) = value.to_str() else {
                return Check::Wrong;
            };
            let value = value.trim();
            let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
            let credentials = credentials.trim();
            let ok = match scheme.to_ascii_lowercase().as_str() {
                "basic" => base64_decode(credentials)
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| {
                        s.split_once(':')
                            .map(|(user, password)| self.user_password(user, password))
                    })
                    .unwrap_or(false),
                "token" | "bearer" => !credentials.is_empty() && self.token(credentials),
                _ => return Check::Unsupported,
            };
            return if ok { Check::Ok } else { Check::Wrong };
        }
        match u_p {
            Some((user, password)) if self.user_password(user, password) | self.token(password) => {
                Check::Ok
            }
            Some(_) => Check::Wrong,
            None => Check::Missing,
        }
    }
}

enum Check {
    Ok,
    Missing,
    Wrong,
    Unsupported,
}

/// Middleware of the routes that need credentials.
pub(super) async fn require(
    State(users): State<Arc<Users>>,
    request: Request,
    next: Next,
) -> Response {
    let query = if request.uri().path() == "/write" {
        Query::<HashMap<String, String>>::try_from_uri(request.uri())
            .map(|q| q.0)
            .unwrap_or_default()
    } else {
        HashMap::new()
    };
    let u_p = match (query.get("u"), query.get("p")) {
        (u, Some(p)) => Some((u.map_or("", String::as_str), p.as_str())),
        (Some(u), None) => Some((u.as_str(), "")),
        (None, None) => None,
    };
    match users.check(request.headers().get(header::AUTHORIZATION), u_p) {
        Check::Ok => next.run(request).await,
        Check::Missing => unauthorized(
            "authentication required: send a configured user's password as \
             Authorization: Basic, Token or Bearer",
        ),
        Check::Wrong => unauthorized("authentication failed: wrong user name, password or token"),
        Check::Unsupported => unauthorized(
            "unsupported Authorization scheme: use Basic, Token or Bearer with a configured \
             user's password",
        ),
    }
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Basic realm=\"eddy\""),
            (header::CONTENT_TYPE, "application/json"),
        ],
        json!({"code": "unauthorized", "error": message, "message": message}).to_string(),
    )
        .into_response()
}

/// Compares two byte strings in time that depends on their lengths only, not on where they
/// differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// Decodes base64, standard or URL-safe alphabet, with or without padding.
pub(super) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A last group of one character holds less than a byte.
    if bits >= 6 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        Users::new(&[
            ("alice".to_string(), "s3cret".to_string()),
            ("bob".to_string(), "0ther:pw".to_string()),
        ])
    }

    fn header(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).unwrap()
    }

    fn ok(c: Check) -> bool {
        matches!(c, Check::Ok)
    }

    #[test]
    fn base64_round_trips_what_clients_send() {
        assert_eq!(base64_decode("YWxpY2U6czNjcmV0").unwrap(), b"alice:s3cret");
        assert_eq!(base64_decode("QQ==").unwrap(), b"A");
        assert_eq!(base64_decode("QUI").unwrap(), b"AB");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("Q").is_none());
        assert!(base64_decode("a b").is_none());
    }

    #[test]
    fn constant_time_comparison_is_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"ab\0", b"ab"));
    }

    #[test]
    fn every_form_of_credentials() {
        let u = users();
        let check = |v: &str| u.check(Some(&header(v)), None);
        assert!(ok(check("Basic YWxpY2U6czNjcmV0")));
        assert!(ok(check("basic YWxpY2U6czNjcmV0")));
        assert!(ok(check("Token s3cret")));
        assert!(ok(check("Token alice:s3cret")));
        assert!(ok(check("Bearer s3cret")));
        // A password may contain ':', as a token by itself or after the user name.
        assert!(ok(check("Token 0ther:pw")));
        assert!(ok(check("Bearer bob:0ther:pw")));
        assert!(matches!(check("Token wrong"), Check::Wrong));
        assert!(matches!(check("Token alice:0ther:pw"), Check::Wrong));
        assert!(matches!(check("Token "), Check::Wrong));
        assert!(matches!(check("Basic YWxpY2U6d3Jvbmc="), Check::Wrong));
        assert!(matches!(check("Basic !!!"), Check::Wrong));
        assert!(matches!(check("Digest x"), Check::Unsupported));
        assert!(ok(u.check(None, Some(("alice", "s3cret")))));
        // As InfluxDB 2.x lets 1.x clients do: any user name, a token as the password.
        assert!(ok(u.check(None, Some(("", "0ther:pw")))));
        assert!(ok(u.check(None, Some(("anyone", "alice:s3cret")))));
        assert!(matches!(
            u.check(None, Some(("alice", "nope"))),
            Check::Wrong
        ));
        assert!(matches!(u.check(None, None), Check::Missing));
        // The header wins over the query parameters.
        assert!(matches!(
            u.check(Some(&header("Token nope")), Some(("alice", "s3cret"))),
            Check::Wrong
        ));
    }
}
