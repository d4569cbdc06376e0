//! The HTTP server under the router: hyper's HTTP/1 and HTTP/2 with what `axum::serve`
//! leaves out and a shared box needs. A client that does not finish its request's headers
//! within `header_timeout` is cut off (so is a keep-alive connection idle that long), and at
//! most `max_connections` are open at once: one past it is closed as soon as it is accepted,
//! so a flood of half-open connections can never take the process's last file descriptor
//! (`accept: Too many open files` stopped every request, `/healthz` too).

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// A warning at most this often for the same trouble (a full connection table, accept errors).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(limits.header_timeout);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let (mut full_warned, mut error_warned) = (None::<Instant>, None::<Instant>);
    let due = |last: &mut Option<Instant>| {
        let now = Instant::now();
        let due = last.is_none_or(|t| now.duration_since(t) >= WARN_EVERY);
        if due {
            *last = Some(now);
        }
        due
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            got = listener.accept() => match got {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and the like: the connection waits in the backlog; try again soon.
                    if due(&mut error_warned) {
                        tracing::warn!(error = %e, "accepting a connection failed; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            if due(&mut full_warned) {
                tracing::warn!(
                    max = limits.max_connections,
                    "too many open connections (TRAINYARD_MAX_CONNECTIONS); closing new ones until some end"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let conn = graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
        tokio::spawn(async move {
            let _open = permit;
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
