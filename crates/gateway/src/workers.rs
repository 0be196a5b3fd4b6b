//! Serving threads: one single-threaded runtime per core, all accepting from the one
//! listening socket.
//!
//! A request's work — the client connection, the guards, the upstream connection that
//! carries it — stays on the thread that accepted the connection, so the bytes of a
//! call are allocated, handed on and freed on one thread, and no wake-up crosses to
//! another core. The listening socket is shared (each thread registers a duplicate of
//! it), not a `SO_REUSEPORT` group that any process of the same user could join. The
//! kernel hands each new connection to whichever idle thread accepts first. The price
//! is that work does not move: a connection, and every call on it, stays where it was
//! accepted (decision 0009).
//!
//! Everything else — setup, timers, sinks, stdio supervisors, the admin listener —
//! runs on the runtime that called [`crate::run`].

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::thread::JoinHandle;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

thread_local! {
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The serving thread this code runs on, if it runs on one.
fn current() -> Option<usize> {
    INDEX.with(Cell::get)
}

/// One value per serving thread, and one more for every other thread: a per-thread
/// connection pool keeps each upstream connection on the thread whose calls use it.
#[derive(Debug)]
pub(crate) struct PerWorker<T> {
    each: Box<[T]>,
}

impl<T> PerWorker<T> {
    /// `workers + 1` values, made in order.
    pub(crate) fn new<E>(
        workers: usize,
        mut make: impl FnMut() -> Result<T, E>,
    ) -> Result<Self, E> {
        let each = (0..=workers)
            .map(|_| make())
            .collect::<Result<Vec<_>, E>>()?;
        Ok(Self {
            each: each.into_boxed_slice(),
        })
    }

    /// This thread's value.
    pub(crate) fn get(&self) -> &T {
        let last = self.each.len() - 1;
        &self.each[current().map_or(last, |i| i.min(last))]
    }
}

/// The running serving threads.
pub(crate) struct Workers {
    served: Vec<oneshot::Receiver<()>>,
    exit: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` threads; each serves `serve(listener)` on its own duplicate of
    /// `listener` until that future ends, then keeps its runtime (and the connections
    /// registered with it) running until [`Workers::exit`], which also ends a `serve`
    /// still running.
    pub(crate) fn start<S, F>(
        n: usize,
        listener: &std::net::TcpListener,
        serve: S,
    ) -> io::Result<Self>
    where
        S: Fn(tokio::net::TcpListener) -> F + Clone + Send + 'static,
        F: Future<Output = ()>,
    {
        let exit = CancellationToken::new();
        let mut served = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let socket = listener.try_clone()?;
            socket.set_nonblocking(true)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (done, done_rx) = oneshot::channel();
            let serve = serve.clone();
            let exit = exit.clone();
            let thread = std::thread::Builder::new()
                .name(format!("palisade-srv-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(Some(i)));
                    runtime.block_on(async move {
                        let serving = async {
                            match tokio::net::TcpListener::from_std(socket) {
                                Ok(l) => serve(l).await,
                                Err(e) => tracing::error!(worker = i, error = %e, "cannot serve"),
                            }
                            let _ = done.send(());
                            std::future::pending::<()>().await;
                        };
                        // `exit` also ends a `serve` that is still waiting for
                        // connections to finish.
                        tokio::select! {
                            () = serving => {}
                            () = exit.cancelled() => {}
                        }
                    });
                })?;
            served.push(done_rx);
            threads.push(thread);
        }
        Ok(Self {
            served,
            exit,
            threads,
        })
    }

    /// Resolves once every thread's `serve` has ended.
    pub(crate) async fn served(&mut self) {
        for s in std::mem::take(&mut self.served) {
            let _ = s.await;
        }
    }

    /// Stops the threads' runtimes (dropping whatever they still run) and waits for them.
    pub(crate) async fn exit(self) {
        self.exit.cancel();
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}
