//! Cuts off clients that send a request's head too slowly (one byte a second
//! keeps a connection, and a task, busy forever otherwise). Each request's head
//! must be complete within a deadline of its first byte; bodies are timed by
//! the code that reads them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Where a connection is in its current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: nothing sent since the last answer.
    Idle,
    /// Receiving a head; `tail` holds the last bytes seen, to find its end.
    Head { tail: [u8; 3] },
    /// The head is complete; the server answers next.
    Request,
}

/// A connection whose request heads must arrive in time.
pub struct Guarded<T> {
    inner: T,
    phase: Phase,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> Guarded<T> {
    pub fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            phase: Phase::Idle,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }

    /// Follows the bytes a client sent: a head ends at the first blank line.
    fn saw(&mut self, bytes: &[u8]) {
        let mut tail = match self.phase {
            Phase::Request => return,
            Phase::Head { tail } => tail,
            Phase::Idle => {
                if bytes.is_empty() {
                    return;
                }
                let at = Instant::now() + self.limit;
                self.deadline.as_mut().reset(at);
                [0; 3]
            }
        };
        for &byte in bytes {
            if tail == *b"\r\n\r" && byte == b'\n' {
                self.phase = Phase::Request;
                return;
            }
            tail = [tail[1], tail[2], byte];
        }
        self.phase = Phase::Head { tail };
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let received = buf.filled()[before..].to_vec();
                self.saw(&received);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if matches!(self.phase, Phase::Head { .. })
                    && self.deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent its request too slowly",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) && self.phase == Phase::Request {
            self.phase = Phase::Idle;
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Wraps every accepted connection in `Guarded` with a head deadline, and
/// turns off Nagle's algorithm: streamed replies are many small writes, and
/// each would otherwise wait for the client's delayed acknowledgement.
pub struct GuardedAcceptor {
    pub inner: TcpAcceptor,
    pub head_timeout: Duration,
}

impl Acceptor for GuardedAcceptor {
    type Io = Guarded<TcpStream>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        io.set_nodelay(true)?;
        Ok((Guarded::new(io, self.head_timeout), local, remote, scheme))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_head_is_complete_at_its_blank_line_even_split_across_reads() {
        let mut guarded = Guarded::new(tokio::io::empty(), Duration::from_secs(10));
        guarded.saw(b"GET / HTTP/1.1\r\nHost: x\r");
        assert!(matches!(guarded.phase, Phase::Head { .. }));
        guarded.saw(b"\n\r");
        assert!(matches!(guarded.phase, Phase::Head { .. }));
        guarded.saw(b"\n");
        assert_eq!(guarded.phase, Phase::Request);
    }
}
