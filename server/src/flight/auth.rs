//! Who may use Flight SQL. With no users configured, anyone may (the server then listens on
//! loopback only, see `eddy serve`), and a handshake answers a token that nothing checks.
//! With users, every call but the handshake needs credentials in its `authorization` header:
//!
//! - `Basic base64(user:password)` on any call (what ADBC and pyarrow send to the handshake,
//!   and what a client without a handshake may send every time);
//! - `Bearer <token>`, where the token is one a handshake issued, or a configured user's
//!   password, or `user:password` (a static token, as Grafana's data source sends; the same
//!   rule as the HTTP API's).
//!
//! The handshake takes `Basic` credentials (from the header, or a `BasicAuth` message in the
//! first handshake payload, as older clients send) and answers a fresh random token in the
//! `authorization: Bearer <token>` response header and in the payload, which is how arrow-rs,
//! pyarrow, ADBC and Grafana read it. Issued tokens live until the server stops; at most
//! [`TOKENS_MAX`] are kept, the oldest forgotten first (its client then logs in again).
//! Passwords are compared in constant time, and every user is compared whichever matches.

use std::collections::{HashMap, VecDeque};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use parking_lot::Mutex;
use rand::Rng as _;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Most issued tokens remembered at once; past it, the oldest is forgotten.
pub const TOKENS_MAX: usize = 10_000;

/// The user a call runs as (empty when no users are configured and none was named), kept in
/// the request's extensions for `eddy_queries`.
#[derive(Debug, Clone, Default)]
pub(super) struct User(pub String);

/// The configured users and the tokens issued to them.
pub(super) struct Auth {
    users: Vec<(String, String)>,
    tokens: Mutex<Tokens>,
}

/// Issued tokens, with their order of issue for forgetting the oldest.
#[derive(Default)]
struct Tokens {
    users: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Auth {
    /// Checks calls against `users` (none: every call is allowed).
    pub(super) fn new(users: &[(String, String)]) -> Auth {
        Auth {
            users: users.to_vec(),
            tokens: Mutex::new(Tokens::default()),
        }
    }

    /// Whether calls need credentials.
    fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether a handshake without an `authorization` header must read its credentials from
    /// the first message's payload.
    pub(super) fn wants_payload(&self, metadata: &MetadataMap) -> bool {
        self.required() && metadata.get("authorization").is_none()
    }

    /// The user a call's `authorization` header proves, or `Unauthenticated`.
    pub(super) fn check(&self, metadata: &MetadataMap) -> Result<User, Status> {
        let header = authorization(metadata)?;
        if !self.required() {
            // Nothing to check; a Basic header still names the user for `eddy_queries`.
            return Ok(header
                .and_then(|h| basic_credentials(&h))
                .map(|(user, _)| User(user))
                .unwrap_or_default());
        }
        let Some(header) = header else {
            return Err(Status::unauthenticated(
                "authentication required: log in with a handshake (Basic user:password) and \
                 send its token as authorization: Bearer <token>, or send Basic credentials",
            ));
        };
        let (scheme, credentials) = split_scheme(&header);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => match basic_credentials(&header) {
                Some((user, password)) if self.user_password(&user, &password) => Ok(User(user)),
                _ => Err(wrong()),
            },
            "bearer" => {
                if let Some(user) = self.tokens.lock().users.get(credentials) {
                    return Ok(User(user.clone()));
                }
                self.static_token(credentials).map(User).ok_or_else(|| {
                    Status::unauthenticated(
                        "authentication failed: unknown token (tokens last until the server \
                         restarts; log in again with a handshake)",
                    )
                })
            }
            _ => Err(Status::unauthenticated(
                "unsupported authorization scheme: use Basic or Bearer",
            )),
        }
    }

    /// Logs a handshake in, from its `authorization` header or else `payload` (the first
    /// handshake message's). Returns the user and a new token.
    pub(super) fn handshake(
        &self,
        metadata: &MetadataMap,
        payload: Option<&[u8]>,
    ) -> Result<(User, String), Status> {
        let header = authorization(metadata)?;
        let credentials = header
            .as_deref()
            .and_then(basic_credentials)
            .or_else(|| payload.and_then(basic_auth_message));
        let user = match credentials {
            Some((user, password)) if self.user_password(&user, &password) => User(user),
            Some(_) if self.required() => return Err(wrong()),
            Some((user, _)) => User(user),
            None if self.required() => {
                // A client that already holds a token may renew it.
                return self.check(metadata).map(|user| {
                    let token = self.issue(&user.0);
                    (user, token)
                });
            }
            None => User::default(),
        };
        let token = self.issue(&user.0);
        Ok((user, token))
    }

    /// A new random token for `user` (remembered only when credentials are required).
    fn issue(&self, user: &str) -> String {
        let mut rng = rand::rng();
        let (high, low): (u128, u128) = (rng.random(), rng.random());
        let token = format!("{high:032x}{low:032x}");
        if self.required() {
            let mut tokens = self.tokens.lock();
            while tokens.order.len() >= TOKENS_MAX {
                if let Some(old) = tokens.order.pop_front() {
                    tokens.users.remove(&old);
                }
            }
            tokens.order.push_back(token.clone());
            tokens.users.insert(token.clone(), user.to_string());
        }
        token
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

    /// The user whose password `token` is, or who `user:password` names.
    fn static_token(&self, token: &str) -> Option<String> {
        let mut found = None;
        for (u, p) in &self.users {
            if ct_eq(p.as_bytes(), token.as_bytes()) && found.is_none() {
                found = Some(u.clone());
            }
        }
        if let Some((user, password)) = token.split_once(':')
            && self.user_password(user, password)
        {
            found = Some(user.to_string());
        }
        found
    }
}

fn wrong() -> Status {
    Status::unauthenticated("authentication failed: wrong user name or password")
}

/// The `authorization` header, if any; an error when it is not text.
fn authorization(metadata: &MetadataMap) -> Result<Option<String>, Status> {
    match metadata.get("authorization") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim().to_string()))
            .map_err(|_| Status::unauthenticated("the authorization header is not ASCII text")),
    }
}

/// `("Basic", "dXNlcjpwdw==")` of `Basic dXNlcjpwdw==`.
fn split_scheme(header: &str) -> (&str, &str) {
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    (scheme, rest.trim())
}

/// The user and password of a `Basic` header.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, credentials) = split_scheme(header);
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64_STANDARD.decode(credentials).ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    let (user, password) = pair.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The user and password of a Flight `BasicAuth` message (`username` is field 2, `password`
/// field 3), as pyarrow's older `authenticate` sends in the first handshake payload.
fn basic_auth_message(payload: &[u8]) -> Option<(String, String)> {
    use prost::Message as _;
    let auth = arrow_flight::BasicAuth::decode(payload).ok()?;
    if auth.username.is_empty() {
        return None;
    }
    Some((auth.username, auth.password))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().expect("ASCII"));
        m
    }

    fn auth() -> Auth {
        Auth::new(&[("alice".to_string(), "s3cret".to_string())])
    }

    #[test]
    fn basic_credentials_log_in_and_the_token_works_afterwards() {
        let a = auth();
        // alice:s3cret
        let (user, token) = a
            .handshake(&with_header("Basic YWxpY2U6czNjcmV0"), None)
            .expect("right password");
        assert_eq!(user.0, "alice");
        assert_eq!(token.len(), 64);
        let user = a
            .check(&with_header(&format!("Bearer {token}")))
            .expect("issued token");
        assert_eq!(user.0, "alice");
        // alice:wrong
        let e = a
            .handshake(&with_header("Basic YWxpY2U6d3Jvbmc="), None)
            .expect_err("wrong password");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(a.check(&MetadataMap::new()).is_err());
        assert!(a.check(&with_header("Bearer nope")).is_err());
        assert!(a.check(&with_header("Digest x")).is_err());
        // Static tokens: the password, or user:password.
        assert_eq!(
            a.check(&with_header("Bearer s3cret")).expect("password").0,
            "alice"
        );
        assert_eq!(
            a.check(&with_header("Bearer alice:s3cret"))
                .expect("pair")
                .0,
            "alice"
        );
        assert_eq!(
            a.check(&with_header("Basic YWxpY2U6czNjcmV0"))
                .expect("basic")
                .0,
            "alice"
        );
    }

    #[test]
    fn a_basic_auth_payload_logs_in_too() {
        use prost::Message as _;
        let a = auth();
        let payload = arrow_flight::BasicAuth {
            username: "alice".into(),
            password: "s3cret".into(),
        }
        .encode_to_vec();
        let (user, _) = a
            .handshake(&MetadataMap::new(), Some(&payload))
            .expect("payload credentials");
        assert_eq!(user.0, "alice");
        assert!(a.handshake(&MetadataMap::new(), None).is_err());
    }

    #[test]
    fn without_users_everything_is_allowed() {
        let a = Auth::new(&[]);
        assert!(a.check(&MetadataMap::new()).is_ok());
        assert!(a.check(&with_header("Bearer anything")).is_ok());
        let (_, token) = a.handshake(&MetadataMap::new(), None).expect("handshake");
        assert!(!token.is_empty());
        assert!(a.tokens.lock().users.is_empty(), "nothing to remember");
    }

    #[test]
    fn the_oldest_tokens_are_forgotten_past_the_limit() {
        let a = auth();
        let first = a.issue("alice");
        for _ in 0..TOKENS_MAX {
            a.issue("alice");
        }
        assert_eq!(a.tokens.lock().users.len(), TOKENS_MAX);
        assert!(a.check(&with_header(&format!("Bearer {first}"))).is_err());
    }
}
