//! Caps on the TCP connections the server holds: in all (so idle or slow sockets cannot use up
//! the process's descriptors and starve `/healthz` and every other client) and per source
//! address (so one client cannot take the whole budget). A connection over a cap is answered
//! `503 Service Unavailable` with `Retry-After` (plain HTTP; a TLS listener just closes it),
//! counted and logged, before any request is read. Header and idle timeouts are the server's
//! (`first_request_timeout` and hyper's header read timeout), set where it is built.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use axum_server::accept::Accept;
use dashmap::DashMap;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::metrics;

/// What a connection over a cap is told on a plain HTTP listener.
const FULL_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain\r\nContent-Length: 32\r\nConnection: close\r\n\r\n\
server is at its connection cap\n";

/// Seconds between two warnings about refused connections (each is counted; the log says so
/// once in a while rather than once per socket of a flood).
const WARN_EVERY_S: u64 = 10;

/// The caps.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections held at once, all sources.
    pub total: usize,
    /// Connections held at once from one source address.
    pub per_address: usize,
}

impl ConnectionLimits {
    /// `self` with `total` lowered so the open connections leave `reserve` of the process's
    /// descriptor limit (`descriptors`) for files, the database, the broker and logs.
    pub fn within_descriptors(self, descriptors: Option<u64>, reserve: u64) -> Self {
        let Some(limit) = descriptors else {
            return self;
        };
        let fits = usize::try_from(limit.saturating_sub(reserve).max(1)).unwrap_or(usize::MAX);
        if fits < self.total {
            info!(
                configured = self.total,
                descriptors = limit,
                cap = fits,
                "connection cap lowered to fit the descriptor limit"
            );
        }
        ConnectionLimits {
            total: self.total.min(fits),
            ..self
        }
    }
}

/// Counts held connections and refuses those over a cap; wraps the server's acceptor.
#[derive(Clone)]
pub struct CappedAcceptor {
    limits: ConnectionLimits,
    /// Whether the listener speaks plain HTTP (a refused connection is answered 503).
    plain_http: bool,
    held: Arc<Held>,
}

#[derive(Default)]
struct Held {
    total: AtomicUsize,
    by_address: DashMap<IpAddr, usize>,
    warned_at_s: AtomicU64,
}

impl CappedAcceptor {
    pub fn new(limits: ConnectionLimits, plain_http: bool) -> Self {
        metrics::describe();
        CappedAcceptor {
            limits,
            plain_http,
            held: Arc::default(),
        }
    }

    /// Takes a slot for a connection from `address`, or says which cap it is over.
    fn claim(&self, address: IpAddr) -> Result<Slot, &'static str> {
        let total = self.held.total.fetch_add(1, Ordering::AcqRel) + 1;
        // Held from here, so a refusal gives the total back as it returns.
        let mut slot = Slot {
            held: self.held.clone(),
            address,
            counted: false,
        };
        if total > self.limits.total {
            return Err("total");
        }
        let mut entry = self.held.by_address.entry(address).or_insert(0);
        if *entry >= self.limits.per_address {
            return Err("per_address");
        }
        *entry += 1;
        drop(entry);
        slot.counted = true;
        metrics::connections_held(total);
        Ok(slot)
    }

    fn warn_refused(&self, address: IpAddr, cap: &'static str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.held.warned_at_s.load(Ordering::Relaxed);
        if now >= last + WARN_EVERY_S
            && self
                .held
                .warned_at_s
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                %address,
                cap,
                total = self.limits.total,
                per_address = self.limits.per_address,
                "connections refused at a cap (winnerr_gateway_connections_refused_total counts each)"
            );
        }
    }
}

/// A held connection's place under the caps, given back when the connection closes.
struct Slot {
    held: Arc<Held>,
    address: IpAddr,
    /// Whether the per-address count was raised (a refused claim raised only the total).
    counted: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.counted {
            if let dashmap::Entry::Occupied(mut entry) = self.held.by_address.entry(self.address) {
                *entry.get_mut() -= 1;
                if *entry.get() == 0 {
                    entry.remove();
                }
            }
        }
        let total = self.held.total.fetch_sub(1, Ordering::AcqRel) - 1;
        if self.counted {
            metrics::connections_held(total);
        }
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for CappedAcceptor {
    type Stream = Capped;
    type Service = S;
    type Future = BoxFuture<'static, io::Result<(Capped, S)>>;

    fn accept(&self, mut stream: TcpStream, service: S) -> Self::Future {
        let acceptor = self.clone();
        Box::pin(async move {
            let address = stream.peer_addr()?.ip();
            match acceptor.claim(address) {
                Ok(slot) => Ok((
                    Capped {
                        stream,
                        _slot: slot,
                    },
                    service,
                )),
                Err(cap) => {
                    metrics::connection_refused(cap);
                    acceptor.warn_refused(address, cap);
                    if acceptor.plain_http {
                        // Best effort: the client may already be gone.
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_millis(200),
                            stream.write_all(FULL_RESPONSE),
                        )
                        .await;
                        let _ = stream.shutdown().await;
                    }
                    Err(io::Error::other(format!("connection over the {cap} cap")))
                }
            }
        })
    }
}

/// A connection that holds its slot under the caps until it is dropped.
pub struct Capped {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_come_back_when_connections_close() {
        let acceptor = CappedAcceptor::new(
            ConnectionLimits {
                total: 3,
                per_address: 2,
            },
            true,
        );
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = acceptor.claim(a).unwrap();
        let _second = acceptor.claim(a).unwrap();
        assert_eq!(acceptor.claim(a).err(), Some("per_address"));
        let _third = acceptor.claim(b).unwrap();
        assert_eq!(acceptor.claim(b).err(), Some("total"));
        drop(first);
        assert!(
            acceptor.claim(a).is_ok(),
            "the closed connection's slot is free again"
        );
        assert_eq!(acceptor.held.total.load(Ordering::Relaxed), 2);
        assert_eq!(acceptor.held.by_address.get(&a).map(|n| *n), Some(1));
    }

    #[test]
    fn the_total_cap_fits_the_descriptor_limit() {
        let limits = ConnectionLimits {
            total: 10_000,
            per_address: 500,
        };
        assert_eq!(limits.within_descriptors(Some(256), 64).total, 192);
        assert_eq!(limits.within_descriptors(Some(1 << 20), 64).total, 10_000);
        assert_eq!(limits.within_descriptors(None, 64).total, 10_000);
    }
}
