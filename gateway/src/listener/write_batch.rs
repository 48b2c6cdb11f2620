//! The writes of one turn of a connection's task, sent as one.
//!
//! An HTTP/2 connection's task writes the frames its streams handed it since
//! its last turn, and h2 flushes the socket after each DATA frame larger than
//! 256 bytes (it chains such a payload instead of copying it, and must flush
//! it before it can take the next frame). So a turn that answers N small
//! messages costs N `sendto` calls, and on loopback each runs the receiver's
//! TCP path too.
//!
//! [`WriteBatch`] copies small writes into one buffer and answers a flush
//! without writing, after waking the task. The held bytes go out in one write
//! the next time the task touches the connection: its next read (which an
//! HTTP/2 connection's task makes on every turn, so on the turn it was woken
//! for, after the other tasks that were ready have handed it their frames), a
//! write that does not fit, or the shutdown. An owner must read on every
//! turn while bytes are held; one that does not could leave them unsent.
//!
//! Bounds: at most [`MAX_HELD`] bytes are held; a write of [`DIRECT`] bytes or
//! more is not copied (what is held goes first, then the write itself). The
//! buffer is allocated on the first write and freed after a send when it grew
//! past 16 KiB, so an idle connection holds none or a small one.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

/// Most bytes held per connection.
pub const MAX_HELD: usize = 32 * 1024;
/// A write at least this large goes to the socket without a copy.
pub const DIRECT: usize = 8 * 1024;
/// The buffer is freed after a send when it grew past this.
const KEPT: usize = 16 * 1024;

/// Bytes written but not yet sent, and how many of them were sent.
#[derive(Debug, Default)]
pub struct WriteBatch {
    held: Vec<u8>,
    sent: usize,
    /// Bytes went to the socket's writer since its last flush.
    unflushed: bool,
}

impl WriteBatch {
    /// An empty batch; its buffer is allocated on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when bytes are held.
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Takes `bufs` whole: copied when small, else written through after
    /// what is held.
    pub fn poll_write_vectored<W: AsyncWrite + ?Sized>(
        &mut self,
        mut io: Pin<&mut W>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum::<usize>();
        if len >= DIRECT || self.held.len() + len > MAX_HELD {
            ready!(self.poll_send(io.as_mut(), cx))?;
            if len >= DIRECT {
                return io.poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            self.held.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    /// [`Self::poll_write_vectored`] of one buffer.
    pub fn poll_write<W: AsyncWrite + ?Sized>(
        &mut self,
        io: Pin<&mut W>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(io, cx, &[IoSlice::new(buf)])
    }

    /// A flush: with bytes held, the task is woken to send them on its next
    /// turn (the module docs), and the flush is done; with none, the
    /// socket's own flush.
    pub fn poll_flush<W: AsyncWrite + ?Sized>(
        &mut self,
        io: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.held.is_empty() {
            ready!(io.poll_flush(cx))?;
            self.unflushed = false;
            return Poll::Ready(Ok(()));
        }
        cx.waker().wake_by_ref();
        Poll::Ready(Ok(()))
    }

    /// Writes what is held; ready once it is all written and flushed.
    pub fn poll_send<W: AsyncWrite + ?Sized>(
        &mut self,
        mut io: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(io.as_mut().poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
            self.unflushed = true;
        }
        self.held.clear();
        self.sent = 0;
        if self.held.capacity() > KEPT {
            // A connection that goes quiet keeps at most this much.
            self.held = Vec::new();
        }
        if self.unflushed {
            ready!(io.poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Sends what is held, then shuts the write side.
    pub fn poll_shutdown<W: AsyncWrite + ?Sized>(
        &mut self,
        mut io: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_send(io.as_mut(), cx))?;
        io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    use super::*;

    /// A socket that records each write it is given, and can be full.
    #[derive(Default)]
    struct Socket {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        shut: bool,
        /// Takes at most this many bytes per write; 0: full (pending).
        room: Option<usize>,
    }

    impl AsyncWrite for Socket {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let n = self.room.map_or(buf.len(), |r| r.min(buf.len()));
            if n == 0 {
                return Poll::Pending;
            }
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = all.len();
            self.writes.push(all);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    /// Counts the wake-ups of the task.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn task() -> (Arc<Wakes>, Waker) {
        let wakes = Arc::new(Wakes::default());
        (wakes.clone(), Waker::from(wakes))
    }

    /// Writes `frame` and flushes, as h2 does for each chained DATA frame.
    fn write_and_flush(batch: &mut WriteBatch, socket: &mut Socket, cx: &mut Context<'_>, frame: &[u8]) {
        let head = &frame[..9];
        let payload = &frame[9..];
        let written =
            batch.poll_write_vectored(Pin::new(&mut *socket), cx, &[IoSlice::new(head), IoSlice::new(payload)]);
        assert!(matches!(written, Poll::Ready(Ok(n)) if n == frame.len()));
        assert!(matches!(batch.poll_flush(Pin::new(&mut *socket), cx), Poll::Ready(Ok(()))));
    }

    #[test]
    fn the_frames_of_one_turn_leave_in_one_write_on_the_next() {
        let (wakes, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let mut socket = Socket::default();
        let mut batch = WriteBatch::new();
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1053]).collect();
        for f in &frames {
            write_and_flush(&mut batch, &mut socket, &mut cx, f);
        }
        // Nothing written yet; the task was asked to come back.
        assert!(socket.writes.is_empty());
        assert!(wakes.0.load(Ordering::Relaxed) >= 1);
        assert!(batch.is_holding());
        // Its next turn (the read) sends all of it, in order, in one write.
        assert!(matches!(batch.poll_send(Pin::new(&mut socket), &mut cx), Poll::Ready(Ok(()))));
        assert_eq!(socket.writes, vec![frames.concat()]);
        assert_eq!(socket.flushes, 1);
        assert!(!batch.is_holding());
        // A flush with nothing held is the socket's own.
        assert!(matches!(batch.poll_flush(Pin::new(&mut socket), &mut cx), Poll::Ready(Ok(()))));
        assert_eq!(socket.flushes, 2);
    }

    #[test]
    fn a_large_write_is_not_copied_and_follows_what_is_held() {
        let (_, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let mut socket = Socket::default();
        let mut batch = WriteBatch::new();
        write_and_flush(&mut batch, &mut socket, &mut cx, &[1u8; 100]);
        let large = vec![2u8; DIRECT];
        assert!(matches!(batch.poll_write(Pin::new(&mut socket), &mut cx, &large), Poll::Ready(Ok(n)) if n == DIRECT));
        assert_eq!(socket.writes, vec![vec![1u8; 100], large]);
        assert!(!batch.is_holding());
    }

    #[test]
    fn no_more_than_max_held_is_held() {
        let (_, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let mut socket = Socket::default();
        let mut batch = WriteBatch::new();
        let frame = vec![3u8; DIRECT - 1];
        let mut total = 0;
        while total <= MAX_HELD {
            write_and_flush(&mut batch, &mut socket, &mut cx, &frame);
            total += frame.len();
        }
        // The frame that would have gone past the cap sent what was held first.
        assert_eq!(socket.writes.len(), 1);
        assert!(socket.writes[0].len() <= MAX_HELD);
        assert!(batch.held.len() <= MAX_HELD && batch.held.capacity() <= MAX_HELD);
        // A buffer that grew past 16 KiB is given back once sent; a smaller
        // one is kept for the next turn.
        assert!(matches!(batch.poll_send(Pin::new(&mut socket), &mut cx), Poll::Ready(Ok(()))));
        assert!(batch.held.capacity() > 0 && batch.held.capacity() <= KEPT);
        for _ in 0..3 {
            write_and_flush(&mut batch, &mut socket, &mut cx, &frame);
        }
        assert!(batch.held.capacity() > KEPT);
        assert!(matches!(batch.poll_send(Pin::new(&mut socket), &mut cx), Poll::Ready(Ok(()))));
        assert_eq!(batch.held.capacity(), 0);
    }

    #[test]
    fn a_full_socket_keeps_the_bytes_until_it_takes_them() {
        let (_, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let mut socket = Socket { room: Some(0), ..Socket::default() };
        let mut batch = WriteBatch::new();
        write_and_flush(&mut batch, &mut socket, &mut cx, &[4u8; 1000]);
        assert!(batch.poll_send(Pin::new(&mut socket), &mut cx).is_pending());
        // A write that does not fit waits too (back-pressure to h2).
        let frame = vec![5u8; DIRECT - 1];
        let mut pending = false;
        for _ in 0..(MAX_HELD / frame.len() + 1) {
            match batch.poll_write(Pin::new(&mut socket), &mut cx, &frame) {
                Poll::Pending => {
                    pending = true;
                    break;
                }
                Poll::Ready(r) => assert!(r.is_ok()),
            }
        }
        assert!(pending);
        // Room again, 700 bytes a write: all of it goes, in order.
        socket.room = Some(700);
        let held = batch.held.clone();
        assert!(matches!(batch.poll_send(Pin::new(&mut socket), &mut cx), Poll::Ready(Ok(()))));
        assert_eq!(socket.writes.concat(), held);
        assert!(socket.writes.iter().all(|w| w.len() <= 700));
        assert_eq!(socket.flushes, 1);
    }

    #[test]
    fn shutdown_sends_what_is_held_first() {
        let (_, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let mut socket = Socket::default();
        let mut batch = WriteBatch::new();
        write_and_flush(&mut batch, &mut socket, &mut cx, b"goaway frame....");
        assert!(matches!(batch.poll_shutdown(Pin::new(&mut socket), &mut cx), Poll::Ready(Ok(()))));
        assert_eq!(socket.writes, vec![b"goaway frame....".to_vec()]);
        assert!(socket.shut);
    }
}
