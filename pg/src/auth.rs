//! Who may connect over the Postgres protocol: anyone on loopback (trust), or users from the
//! configuration with a password checked as cleartext, md5 or SCRAM-SHA-256; TLS from a
//! certificate and key; and the connection limit. Passwords are held in memory only as
//! configured (md5 and SCRAM derive their secrets from them at start).

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::md5pass::{Md5PasswordAuthStartupHandler, hash_md5_password};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{
    ClientInfo, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{PgMetrics, Refusal};
use crate::wire::PgConnection;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No password (loopback only).
    Trust,
    /// Cleartext password (use with TLS).
    Password,
    /// PostgreSQL's md5 challenge.
    Md5,
    /// SCRAM-SHA-256, PostgreSQL's default since version 14.
    ScramSha256,
}

impl std::str::FromStr for AuthMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "trust" => Ok(Self::Trust),
            "password" | "cleartext" => Ok(Self::Password),
            "md5" => Ok(Self::Md5),
            "scram-sha-256" | "scram" => Ok(Self::ScramSha256),
            other => Err(format!(
                "pg_auth = \"{other}\" is not valid: use trust, password, md5 or scram-sha-256"
            )),
        }
    }
}

/// Postgres front-end security and limits.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// How clients authenticate.
    pub auth: AuthMethod,
    /// Users and their passwords.
    pub users: Vec<(String, String)>,
    /// PEM certificate chain and private key for TLS, if TLS is offered.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Most logged-in (or logging-in) connections at once; a start-up message over it is
    /// refused with SQLSTATE 53300. A connection takes its place when its start-up message
    /// arrives, not when it is accepted.
    pub connections_max: usize,
    /// How long a new connection may stay silent before its first bytes (the start-up or TLS
    /// request) arrive; it is closed after that.
    pub startup_packet_timeout: Duration,
    /// How long a connection may take from accept to the end of login (PostgreSQL's
    /// `authentication_timeout`); it is closed after that.
    pub authentication_timeout: Duration,
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            auth: AuthMethod::Trust,
            users: Vec::new(),
            tls: None,
            connections_max: 256,
            startup_packet_timeout: Duration::from_secs(5),
            authentication_timeout: Duration::from_secs(60),
        }
    }
}

impl PgConfig {
    /// Whether clients must authenticate (so listening beyond loopback is safe).
    pub fn requires_password(&self) -> bool {
        self.auth != AuthMethod::Trust && !self.users.is_empty()
    }
}

/// Secrets derived from the configured users, shared by all connections.
#[derive(Debug)]
pub(super) struct Users {
    method: AuthMethod,
    plain: HashMap<String, String>,
    /// Per user: salt and SCRAM salted password.
    scram: HashMap<String, (Vec<u8>, Vec<u8>)>,
}

fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    b
}

impl Users {
    /// Derives what each method needs; SCRAM's key stretching runs once here, not per login.
    pub(super) fn new(config: &PgConfig) -> Result<Users, String> {
        if config.auth != AuthMethod::Trust && config.users.is_empty() {
            return Err(format!(
                "pg_auth = {:?} needs at least one user (pg_users = [\"name:password\"])",
                config.auth
            ));
        }
        let plain: HashMap<String, String> = config.users.iter().cloned().collect();
        let scram = if config.auth == AuthMethod::ScramSha256 {
            plain
                .iter()
                .map(|(u, p)| {
                    let salt = random_bytes(16);
                    let salted = gen_salted_password(p, &salt, SCRAM_ITERATIONS);
                    (u.clone(), (salt, salted))
                })
                .collect()
        } else {
            HashMap::new()
        };
        Ok(Users {
            method: config.auth,
            plain,
            scram,
        })
    }
}

fn auth_failed(user: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        "28P01".to_owned(),
        format!("password authentication failed for user \"{user}\""),
    )))
}

/// Looks up a login's secret in the form its method checks.
#[derive(Debug, Clone)]
pub(super) struct UserSource(pub Arc<Users>);

#[async_trait]
impl AuthSource for UserSource {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        let users = &self.0;
        match users.method {
            AuthMethod::ScramSha256 => {
                let (salt, salted) = users.scram.get(user).ok_or_else(|| auth_failed(user))?;
                Ok(Password::new(Some(salt.clone()), salted.clone()))
            }
            AuthMethod::Md5 => {
                let pw = users.plain.get(user).ok_or_else(|| auth_failed(user))?;
                let salt = random_bytes(4);
                let hashed = hash_md5_password(user, pw, &salt);
                Ok(Password::new(Some(salt), hashed.into_bytes()))
            }
            AuthMethod::Password | AuthMethod::Trust => {
                let pw = users.plain.get(user).ok_or_else(|| auth_failed(user))?;
                Ok(Password::new(None, pw.as_bytes().to_vec()))
            }
        }
    }
}

/// Start-up parameters as PostgreSQL reports them (pgwire's defaults name pgwire in
/// server_version and differ in DateStyle).
pub(super) fn server_parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = crate::settings::PG_SERVER_VERSION.to_string();
    p.date_style = "ISO, MDY".to_string();
    p.time_zone = "UTC".to_string();
    p
}

/// One connection's claim on the connection limits. It holds a place among the connections
/// that have not logged in yet from accept until login completes, and one of the
/// `connections_max` slots from its start-up message on. Whatever it still holds is given
/// back when the connection ends and the last reference to it is dropped.
pub(super) struct Admission {
    /// The `connections_max` slots shared by all connections.
    slots: Arc<Semaphore>,
    connections_max: usize,
    /// This connection's slot, once its start-up message has arrived.
    slot: parking_lot::Mutex<Option<OwnedSemaphorePermit>>,
    /// This connection's place among those not logged in yet, until it logs in.
    pending: parking_lot::Mutex<Option<OwnedSemaphorePermit>>,
    logged_in: AtomicBool,
    /// Where a refusal is counted.
    metrics: PgMetrics,
}

impl Admission {
    /// The claim of a connection just accepted, holding its place among those logging in.
    pub(super) fn new(
        slots: Arc<Semaphore>,
        connections_max: usize,
        pending: OwnedSemaphorePermit,
        metrics: PgMetrics,
    ) -> Admission {
        Admission {
            slots,
            connections_max,
            slot: parking_lot::Mutex::new(None),
            pending: parking_lot::Mutex::new(Some(pending)),
            logged_in: AtomicBool::new(false),
            metrics,
        }
    }

    /// Takes a connection slot, unless one is held already; false when all are taken.
    fn take_slot(&self) -> bool {
        let mut slot = self.slot.lock();
        if slot.is_none() {
            *slot = self.slots.clone().try_acquire_owned().ok();
        }
        slot.is_some()
    }

    /// Records that login completed, and gives back the place among those logging in.
    fn finish_login(&self) {
        self.logged_in.store(true, Ordering::Release);
        drop(self.pending.lock().take());
    }

    /// Whether the connection has logged in.
    pub(super) fn is_logged_in(&self) -> bool {
        self.logged_in.load(Ordering::Acquire)
    }
}

/// How one connection authenticates.
enum Method {
    Trust(Arc<PgConnection>),
    Cleartext(CleartextPasswordAuthStartupHandler<UserSource, DefaultServerParameterProvider>),
    Md5(Md5PasswordAuthStartupHandler<UserSource, DefaultServerParameterProvider>),
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
}

/// Backend pids for the password methods. pgwire gives each password handler a counter of
/// its own, and there is one handler per connection, so without this every password login
/// would get pid 100000 and `pg_cancel_backend(pid)` could not tell sessions apart.
static BACKEND_PIDS: LazyLock<Arc<dyn PidSecretKeyGenerator>> =
    LazyLock::new(|| Arc::new(RandomPidSecretKeyGenerator::default()));

/// The start-up handler of one connection: takes a connection slot when the start-up message
/// arrives (or refuses it, over the limit), authenticates by the configured method, and
/// records when login completes.
pub(super) struct Startup {
    method: Method,
    admission: Arc<Admission>,
}

impl Startup {
    /// A handler for a new connection (md5 and SCRAM keep per-login state, so one each).
    pub(super) fn new(
        users: &Arc<Users>,
        conn: &Arc<PgConnection>,
        admission: Arc<Admission>,
    ) -> Startup {
        let source = UserSource(users.clone());
        let pids = || Arc::clone(&*BACKEND_PIDS);
        let method = match users.method {
            // pgwire's trust handler already draws pids from one process-wide counter.
            AuthMethod::Trust => Method::Trust(conn.clone()),
            AuthMethod::Password => Method::Cleartext(
                CleartextPasswordAuthStartupHandler::new(source, server_parameters())
                    .with_pid_secret_key_generator(pids()),
            ),
            AuthMethod::Md5 => Method::Md5(
                Md5PasswordAuthStartupHandler::new(Arc::new(source), Arc::new(server_parameters()))
                    .with_pid_secret_key_generator(pids()),
            ),
            AuthMethod::ScramSha256 => {
                let mut scram = ScramAuth::new(Arc::new(source));
                scram.set_iterations(SCRAM_ITERATIONS);
                Method::Scram(
                    SASLAuthStartupHandler::new(Arc::new(server_parameters()))
                        .with_scram(scram)
                        .with_pid_secret_key_generator(pids()),
                )
            }
        };
        Startup { method, admission }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // The slot is taken when the client asks to log in, not at accept, so connections
        // that never send a start-up message keep no logged-in client out. Cancel requests
        // never come here (pgwire answers them itself), so they need no slot.
        if matches!(message, PgWireFrontendMessage::Startup(_)) && !self.admission.take_slot() {
            self.admission.metrics.refused(Refusal::TooManyClients);
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_owned(),
                "53300".to_owned(),
                format!(
                    "sorry, too many clients already (pg_connections_max = {})",
                    self.admission.connections_max
                ),
            ))));
        }
        match &self.method {
            Method::Trust(c) => StartupHandler::on_startup(c.as_ref(), client, message).await?,
            Method::Cleartext(h) => h.on_startup(client, message).await?,
            Method::Md5(h) => h.on_startup(client, message).await?,
            Method::Scram(h) => h.on_startup(client, message).await?,
        }
        // Every method ends a successful login by sending ReadyForQuery and entering that
        // state; a failed one returns an error above.
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            self.admission.finish_login();
        }
        Ok(())
    }
}

/// The TLS acceptor for the configured certificate and key.
pub(super) fn tls_acceptor(config: &PgConfig) -> Result<Option<TlsAcceptor>, String> {
    use pgwire::tokio::tokio_rustls::rustls::ServerConfig;
    use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
    use pgwire::tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let Some((cert, key)) = &config.tls else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read TLS key {}: {e}", key.display()))?;
    let mut tls = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("invalid TLS certificate or key: {e}"))?;
    // PostgreSQL 17 clients may open TLS directly; they require this ALPN protocol.
    tls.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(tls))))
}
