//! Ends connections that hold a task without making progress: a client that
//! sends a request's head too slowly (one byte a second would keep it forever)
//! is cut off when the head is not complete within a deadline of its first
//! byte, and a keep-alive connection with nothing sent either way between
//! requests is closed after a while. Bodies are timed by the code that reads
//! them; a request being answered is never cut off here.
//!
//! One timer per connection serves both, armed lazily: activity only records
//! the time, and a timer that fires early is set again for the deadline then
//! due. (poem's own idle timeout woke a task of its own on every read and
//! write and set its timer again each time, about 2% of a chat turn.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;

use memchr::memmem::Finder;
use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Where a connection is in its current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: nothing received since the last answer began.
    Idle,
    /// Receiving a head; `tail` holds the last bytes seen, to find its end.
    Head { tail: [u8; 3] },
    /// The head is complete; the server answers next.
    Request,
    /// HTTP/2 in the clear: requests go on side by side, with no heads to
    /// time; the connection only ends when it idles.
    Multiplexed,
}

/// How an HTTP/2 connection opens (its preface's first bytes, which a client
/// sends in one piece).
const HTTP2_PREFACE: &[u8] = b"PRI ";

/// How long a connection may take, phase by phase.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a head's first byte to its blank line.
    pub head: Duration,
    /// With nothing sent either way between requests.
    pub idle: Duration,
}

/// A connection whose request heads must arrive in time, and which ends when
/// it idles too long.
pub struct Guarded<T> {
    inner: T,
    phase: Phase,
    limits: Limits,
    /// When the current head began (`Head`), or when the last byte went
    /// either way (`Idle`, `Multiplexed`).
    since: Instant,
    /// Fires at or before the deadline of the current phase.
    timer: Pin<Box<Sleep>>,
}

impl<T> Guarded<T> {
    pub fn new(inner: T, limits: Limits) -> Self {
        let now = Instant::now();
        Self {
            inner,
            phase: Phase::Idle,
            limits,
            since: now,
            timer: Box::pin(tokio::time::sleep_until(now + limits.idle)),
        }
    }

    /// Follows the bytes a client sent: a head ends at the first blank line.
    fn saw(&mut self, bytes: &[u8]) {
        let tail = match self.phase {
            Phase::Request => return,
            Phase::Head { tail } => tail,
            Phase::Idle | Phase::Multiplexed if bytes.is_empty() => return,
            Phase::Multiplexed => {
                self.since = Instant::now();
                return;
            }
            Phase::Idle => {
                self.since = Instant::now();
                if bytes.starts_with(HTTP2_PREFACE) {
                    self.phase = Phase::Multiplexed;
                    return;
                }
                [0; 3]
            }
        };
        self.phase = match head_end(tail, bytes) {
            Some(_) => Phase::Request,
            None => Phase::Head {
                tail: last_three(tail, bytes),
            },
        };
    }

    /// Bytes went out: an answer began, or goes on. The idle deadline starts
    /// over, and the timer is set to wake this connection's task: hyper may
    /// not read again until the socket has something for it.
    fn wrote(&mut self, cx: &mut Context<'_>) {
        match self.phase {
            Phase::Head { .. } => return,
            Phase::Request => self.phase = Phase::Idle,
            Phase::Idle | Phase::Multiplexed => {}
        }
        self.since = Instant::now();
        // Not overdue: the idle time has only just begun.
        let _ = self.poll_overdue(cx);
    }

    /// The deadline of the current phase; none while a request is answered.
    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Request => None,
            Phase::Head { .. } => Some(self.since + self.limits.head),
            Phase::Idle | Phase::Multiplexed => Some(self.since + self.limits.idle),
        }
    }

    /// Ready once the current phase has run past its deadline.
    fn poll_overdue(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(due) = self.deadline() else {
            return Poll::Pending;
        };
        loop {
            if self.timer.deadline() > due {
                self.timer.as_mut().reset(due);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Fired: either this deadline passed, or an earlier one the
            // activity since has moved on from.
            if Instant::now() >= due {
                return Poll::Ready(());
            }
            self.timer.as_mut().reset(due);
        }
    }
}

/// Where the blank line that ends a head is, in `bytes` that follow `tail`.
fn head_end(tail: [u8; 3], bytes: &[u8]) -> Option<usize> {
    const END: &[u8; 4] = b"\r\n\r\n";
    // The end may straddle the previous read and this one.
    for taken in 1..=3.min(bytes.len()) {
        let kept = 4 - taken;
        if tail[3 - kept..] == END[..kept] && bytes[..taken] == END[kept..] {
            return Some(taken);
        }
    }
    static FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(END));
    FINDER.find(bytes).map(|at| at + 4)
}

/// The last three bytes of `tail` followed by `bytes`.
fn last_three(tail: [u8; 3], bytes: &[u8]) -> [u8; 3] {
    let mut joined = [tail[0], tail[1], tail[2], 0, 0, 0];
    let taken = bytes.len().min(3);
    joined[3..3 + taken].copy_from_slice(&bytes[bytes.len() - taken..]);
    [joined[taken], joined[taken + 1], joined[taken + 2]]
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.poll_overdue(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) if matches!(this.phase, Phase::Idle | Phase::Multiplexed) => {
                    // Nothing to answer: the connection ends as if the client
                    // had closed it.
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent its request too slowly",
                ))),
            },
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote(cx);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote(cx);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Wraps every accepted connection in `Guarded`, and turns off Nagle's
/// algorithm: streamed replies are many small writes, and each would
/// otherwise wait for the client's delayed acknowledgement.
pub struct GuardedAcceptor {
    pub inner: TcpAcceptor,
    pub limits: Limits,
}

impl Acceptor for GuardedAcceptor {
    type Io = Guarded<TcpStream>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        io.set_nodelay(true)?;
        Ok((Guarded::new(io, self.limits), local, remote, scheme))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const LIMITS: Limits = Limits {
        head: Duration::from_secs(10),
        idle: Duration::from_secs(120),
    };

    const HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    async fn read_some(guarded: &mut Guarded<DuplexStream>) -> io::Result<usize> {
        let mut buf = [0; 256];
        guarded.read(&mut buf).await
    }

    /// Asserts that the connection's next read ends it, `after` from now:
    /// closed when `timed_out` is false, cut off with an error when true.
    /// (Timers fire on the millisecond after their deadline.)
    async fn assert_ends(guarded: &mut Guarded<DuplexStream>, after: Duration, timed_out: bool) {
        let started = Instant::now();
        match read_some(guarded).await {
            Ok(n) => assert!(!timed_out && n == 0, "read {n} bytes"),
            Err(err) => assert!(timed_out && err.kind() == io::ErrorKind::TimedOut, "{err}"),
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed >= after && elapsed <= after + Duration::from_millis(2),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn a_head_ends_at_its_blank_line_wherever_the_reads_split_it() {
        for first in 0..=HEAD.len() {
            for second in first..=HEAD.len() {
                let mut guarded = Guarded::new(tokio::io::empty(), LIMITS);
                for (from, to) in [(0, first), (first, second), (second, HEAD.len())] {
                    if from < HEAD.len() {
                        assert_ne!(guarded.phase, Phase::Request, "{first} {second}");
                    }
                    guarded.saw(&HEAD[from..to]);
                }
                assert_eq!(guarded.phase, Phase::Request, "{first} {second}");
            }
        }
        let mut guarded = Guarded::new(tokio::io::empty(), LIMITS);
        guarded.saw(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody");
        assert_eq!(guarded.phase, Phase::Request);
        let mut guarded = Guarded::new(tokio::io::empty(), LIMITS);
        guarded.saw(b"GET / HTTP/1.1\r\nX: \r\r\n\n");
        assert!(matches!(guarded.phase, Phase::Head { tail } if &tail == b"\r\n\n"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_is_never_taken_for_a_slow_head_and_ends_when_idle() {
        const FRAME: &[u8] = &[0, 0, 0, 4, 1, 0, 0, 0, 0];
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guarded = Guarded::new(server, LIMITS);
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_some(&mut guarded).await.unwrap(), 24);
        guarded.write_all(FRAME).await.unwrap();
        // Frames, never a blank line, with pauses longer than a head may take.
        for _ in 0..3 {
            let (read, ()) = tokio::join!(read_some(&mut guarded), async {
                tokio::time::sleep(LIMITS.head * 2).await;
                client.write_all(FRAME).await.unwrap();
            });
            assert_eq!(read.unwrap(), FRAME.len());
            guarded.write_all(FRAME).await.unwrap();
        }
        assert_ends(&mut guarded, LIMITS.idle, false).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_idle_too_long_ends_as_if_the_client_closed_it() {
        let (_client, server) = tokio::io::duplex(1024);
        let mut guarded = Guarded::new(server, LIMITS);
        assert_ends(&mut guarded, LIMITS.idle, false).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_sent_too_slowly_is_cut_off_after_the_head_limit() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guarded = Guarded::new(server, LIMITS);
        tokio::time::sleep(Duration::from_secs(30)).await;
        client.write_all(&HEAD[..8]).await.unwrap();
        assert_eq!(read_some(&mut guarded).await.unwrap(), 8);
        assert_ends(&mut guarded, LIMITS.head, true).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_being_answered_is_never_cut_off_and_idling_counts_from_the_answer() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guarded = Guarded::new(server, LIMITS);
        tokio::time::sleep(LIMITS.idle / 2).await;
        client.write_all(HEAD).await.unwrap();
        assert_eq!(read_some(&mut guarded).await.unwrap(), HEAD.len());

        // The answer takes longer than both limits: the connection waits.
        let waited = tokio::time::timeout(LIMITS.idle * 3, read_some(&mut guarded)).await;
        assert!(waited.is_err(), "the connection ended while answering");

        guarded.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        tokio::time::sleep(LIMITS.idle / 2).await;
        // More of the answer: the idle time starts again.
        guarded
            .write_all(b"Content-Length: 0\r\n\r\n")
            .await
            .unwrap();
        assert_ends(&mut guarded, LIMITS.idle, false).await;
    }
}
