//! `eddy serve`: opens the node (storage, views, write path, query engine) and runs the front
//! ends until SIGTERM or Ctrl-C, then stops accepting, flushes and exits cleanly.

use eddy_ingest::FrontEnd;
use eddy_server::node::Node;
use tokio::sync::watch;

use crate::config::Config;

/// Runs the server with a resolved configuration.
pub async fn run(config: Config) -> Result<(), String> {
    if !config.http_addr.ip().is_loopback() && !config.http.requires_password() {
        return Err(format!(
            "refusing to listen for HTTP on {}: listening beyond loopback requires authentication; configure pg_users (--user NAME:PASSWORD) or bind to 127.0.0.1",
            config.http_addr
        ));
    }
    if !config.pg_addr.ip().is_loopback() && !config.pg.requires_password() {
        return Err(format!(
            "refusing to listen for Postgres on {}: listening beyond loopback requires authentication; configure pg_users (and pg_auth = scram-sha-256) or bind to 127.0.0.1",
            config.pg_addr
        ));
    }
    if !config.flight_addr.ip().is_loopback() && !config.flight.requires_password() {
        return Err(format!(
            "refusing to listen for Flight SQL on {}: listening beyond loopback requires authentication; configure pg_users (--user NAME:PASSWORD) or bind to 127.0.0.1",
            config.flight_addr
        ));
    }
    if let Some(addr) = config.ilp_tcp_addr
        && !addr.ip().is_loopback()
        && !config.ilp_tcp_allow_remote
    {
        return Err(format!(
            "refusing to listen for line protocol over TCP on {addr}: line protocol over TCP has no authentication, so anyone who can reach the port can write; bind to 127.0.0.1, or pass --ilp-tcp-allow-remote (ilp_tcp_allow_remote = true) if the network is trusted"
        ));
    }
    if let eddy_storage::WalSync::IntervalMs(ms) = config.storage.wal_sync {
        tracing::warn!(
            interval_ms = ms,
            "wal_sync = interval: writes are acknowledged before fsync; an operating-system or \
             power failure can lose up to the last {ms} ms of acknowledged writes (a crash of \
             the eddy process alone loses nothing)"
        );
    }
    let pg_front = eddy_server::pg::PgFrontEnd::new(&config.pg)?;
    // A bad TLS certificate or key stops the server here, not Flight SQL later.
    config.flight.check()?;
    let shutdown = shutdown_signal();
    // Continuous aggregates are rebuilt before any front end accepts writes.
    let node = Node::open(config.storage.clone(), config.query_memory_bytes_max).await?;
    let pg_front = pg_front.with_metrics(node.metrics.pg.clone());
    let (db, query) = (node.db.clone(), node.query.clone());
    // Bound first: once HTTP and Postgres accept connections, so does line protocol.
    let ilp_listener = match config.ilp_tcp_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for line protocol over TCP on {addr}: {e}"))?,
        ),
        None => None,
    };
    let flight_listener = tokio::net::TcpListener::bind(config.flight_addr)
        .await
        .map_err(|e| {
            format!(
                "cannot listen for Flight SQL on {}: {e}",
                config.flight_addr
            )
        })?;
    let flight_addr = flight_listener.local_addr().unwrap_or(config.flight_addr);
    let http_listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| format!("cannot listen for HTTP on {}: {e}", config.http_addr))?;
    let pg_listener = tokio::net::TcpListener::bind(config.pg_addr)
        .await
        .map_err(|e| format!("cannot listen for Postgres on {}: {e}", config.pg_addr))?;
    tracing::info!(
        http = %config.http_addr,
        http_auth = config.http.requires_password(),
        postgres = %config.pg_addr,
        flight = %flight_addr,
        flight_tls = config.flight.tls.is_some(),
        ilp_tcp = %config
            .ilp_tcp_addr
            .map_or_else(|| "off".to_string(), |a| a.to_string()),
        "eddy is ready"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ilp = ilp_listener.map(|listener| {
        tokio::spawn(eddy_server::ilp_tcp::serve(
            listener,
            node.ingest.for_front_end(FrontEnd::IlpTcp),
            stopped(stop_rx.clone()),
        ))
    });
    let flight = tokio::spawn(eddy_server::flight::serve(
        flight_listener,
        node.clone(),
        config.flight.clone(),
        stopped(stop_rx.clone()),
    ));
    let http = tokio::spawn(eddy_server::http::serve(
        http_listener,
        node,
        config.http.clone(),
        stopped(stop_rx.clone()),
    ));
    let sources = query.sources().clone();
    let pg = tokio::spawn(pg_front.serve(pg_listener, query, stopped(stop_rx.clone())));
    // Stream sources resume where their committed offsets say, once writes are accepted.
    sources.start_all();

    shutdown.await;
    tracing::info!("shutting down: flushing memtables");
    let _ = stop_tx.send(true);
    // Each source commits the batch in hand and hands its partitions back to the group.
    sources.shutdown().await;
    let _ = http.await;
    let _ = pg.await;
    if let Ok(Err(e)) = flight.await {
        tracing::error!(error = %e, "Flight SQL stopped with an error");
    }
    // Each line-protocol connection writes what it has received, then closes.
    if let Some(ilp) = ilp {
        let _ = ilp.await;
    }
    tokio::task::spawn_blocking(move || db.close())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("flush at shutdown failed (data is safe in the WAL): {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// The signals that stop the server, registered before any port is bound: a SIGTERM that
/// arrives once a port accepts connections must stop the server cleanly, not kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
