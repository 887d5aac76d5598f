//! One client connection: frame reading, request dispatch and in-order responses.
//!
//! ```text
//!  socket --read--> [size i32][frame] --dispatch--> Reply::Ready / Reply::Deferred --queue-->
//!  writer task: awaits each queued reply in order --write--> socket
//! ```
//!
//! 1. The reader reads into a buffer of [`READ_BYTES`] (one receive usually brings several
//!    pipelined requests) and takes whole frames out of it without copying; a frame's 4-byte size
//!    above `socket.request.max.bytes` (or below the smallest possible header) closes the
//!    connection before anything is allocated for it.
//! 2. Each frame is dispatched in turn. Requests of one connection are *started* in order:
//!    a Produce is appended before the next request is dispatched, so pipelined batches of one
//!    producer land in order. What remains (waiting for the write, or for the covering fsync for
//!    acks=-1) is deferred.
//! 3. Replies go into a queue bounded by `queued.max.requests`; the writer task awaits them in
//!    queue order, so responses leave in request order whatever finishes first. Replies that are
//!    complete when the writer gets to them leave together in one vectored write.
//! 4. A frame that does not decode closes only this connection (Kafka does the same).
//! 5. A connection that sends no request within `kiln.connection.first.request.timeout.ms`, or
//!    nothing for `connections.max.idle.ms` after that, is closed: idle sockets cannot hold every
//!    descriptor and `max.connections` slot.

use std::cell::Cell;
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};
use kiln_engine::rt::buf::{IntoInner, IoBuf};
use kiln_engine::rt::io::{AsyncRead, AsyncWriteExt};
use kiln_engine::rt::{self, TcpStream};

use crate::handlers::{self, FetchMemory, Reply};
use crate::shard::ShardState;

/// The smallest valid request frame: api key, version, correlation id, client id length.
pub const FRAME_BYTES_MIN: i32 = 10;

/// Bytes a connection asks for per receive (more when a frame is larger).
pub const READ_BYTES: usize = 128 * 1024;

/// Replies' chunks written with one vectored write at most (below the kernel's IOV_MAX).
const WRITE_CHUNKS_MAX: usize = 512;

/// Response bytes gathered into one vectored write at most (a larger reply still goes whole).
const WRITE_BYTES_MAX: usize = 4 << 20;

/// A `Bytes` that compio can write from without copying.
pub struct WireBuf(pub Bytes);

impl IoBuf for WireBuf {
    fn as_init(&self) -> &[u8] {
        &self.0
    }
}

/// Why a connection ended abnormally (logged at debug level; the client sees a closed socket).
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {size} bytes is outside 10..={max} (socket.request.max.bytes)")]
    FrameSize { size: i32, max: i32 },
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("encoding a response: {0}")]
    Encode(#[from] kiln_kafka_codec::EncodeError),
    #[error("closing the connection after an acks=0 produce failed")]
    AcksZeroFailure,
    #[error("the broker is stopping")]
    Stopping,
    #[error("nothing received for {ms} ms ({key})")]
    Idle { ms: u64, key: &'static str },
}

/// Serves one accepted connection until it closes. Always releases its connection slot.
pub async fn serve(shard: Rc<ShardState>, stream: TcpStream) {
    let stream = Rc::new(stream);
    let r = serve_inner(&shard, stream).await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection closed");
    }
    shard
        .shared
        .connections
        .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
}

async fn serve_inner(shard: &Rc<ShardState>, stream: Rc<TcpStream>) -> Result<(), ConnError> {
    let queue_max = shard.shared.config.queued_requests_max as usize;
    let (tx, rx) = flume::bounded::<Reply>(queue_max);
    let writer_stream = stream.clone();
    // The writer ends when the reader drops `tx` and the queue is drained, or on a write error.
    let writer = rt::spawn(async move { write_loop(writer_stream, rx).await });
    let peer_host = stream
        .peer_addr()
        .map_or_else(|_| "/unknown".to_string(), |a| format!("/{}", a.ip()));
    let read_result = read_loop(shard, &stream, &peer_host, &tx).await;
    drop(tx);
    let write_result = writer.await.unwrap_or(Ok(()));
    read_result.and(write_result)
}

async fn read_loop(
    shard: &Rc<ShardState>,
    stream: &Rc<TcpStream>,
    peer_host: &str,
    tx: &flume::Sender<Reply>,
) -> Result<(), ConnError> {
    let max = shard.shared.config.request_bytes_max;
    let mut reader: &TcpStream = stream;
    let mut buf = BytesMut::with_capacity(READ_BYTES);
    let activity = Rc::new(Activity {
        last: Cell::new(kiln_engine::clock::now()),
        requested: Cell::new(false),
        expired: Cell::new(None),
    });
    // Dropped (and so cancelled) when this loop returns.
    let _watchdog = rt::spawn(idle_watchdog(
        Rc::downgrade(stream),
        activity.clone(),
        shard.shared.config.first_request_timeout_ms,
        shard.shared.config.connections_max_idle_ms,
    ));
    loop {
        // Dispatch every whole frame already received.
        let mut want = 4;
        if let Some(head) = buf.get(..4) {
            let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            if !(FRAME_BYTES_MIN..=max).contains(&size) {
                return Err(ConnError::FrameSize { size, max });
            }
            want = 4 + size as usize;
            if buf.len() >= want {
                let mut frame = buf.split_to(want);
                frame.advance(4);
                activity.requested.set(true);
                let reply = handlers::dispatch(shard, peer_host, frame.freeze()).await?;
                if tx.send_async(reply).await.is_err() {
                    // The writer failed; its error is reported by serve_inner.
                    return Ok(());
                }
                continue;
            }
        }
        // Room for the rest of the frame, and for a useful receive.
        let spare = buf.capacity() - buf.len();
        let need = want.saturating_sub(buf.len()).max(4096);
        if spare < need {
            buf.reserve(need.max(READ_BYTES - buf.len().min(READ_BYTES)));
        }
        let at = buf.len();
        let rt::BufResult(res, slice) = reader.read(buf.slice(at..)).await;
        buf = slice.into_inner();
        if let Some((ms, key)) = activity.expired.get() {
            return Err(ConnError::Idle { ms, key });
        }
        activity.last.set(kiln_engine::clock::now());
        match res {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// When a connection last received bytes, whether it sent a request yet, and whether the
/// watchdog closed it (with the limit and its key).
struct Activity {
    last: Cell<std::time::Instant>,
    requested: Cell<bool>,
    expired: Cell<Option<(u64, &'static str)>>,
}

/// Closes a connection that received nothing for its deadline: `first_ms` until its first
/// request, then `idle_ms`. It shuts the socket down, so the pending read returns. One timer per
/// connection instead of one per read keeps the read path free of timer work.
async fn idle_watchdog(
    stream: std::rc::Weak<TcpStream>,
    activity: Rc<Activity>,
    first_ms: u64,
    idle_ms: u64,
) {
    loop {
        let (limit, key) = if activity.requested.get() {
            (idle_ms, "connections.max.idle.ms")
        } else {
            (first_ms, "kiln.connection.first.request.timeout.ms")
        };
        let quiet = kiln_engine::clock::ms_since(activity.last.get());
        if quiet >= limit {
            let Some(stream) = stream.upgrade() else {
                return;
            };
            activity.expired.set(Some((limit, key)));
            let fd = std::os::fd::AsRawFd::as_raw_fd(&*stream);
            // SAFETY: `fd` belongs to `stream`, which is alive here; shutdown(2) does not close it.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
            return;
        }
        kiln_engine::clock::sleep(std::time::Duration::from_millis(limit - quiet)).await;
    }
}

/// Takes `reply`'s chunks (and the fetch memory to release after writing) when it is complete
/// now; gives a deferred reply that is still pending back.
fn take_ready(
    reply: Reply,
    cx: &mut std::task::Context<'_>,
    chunks: &mut Vec<WireBuf>,
    held: &mut Vec<FetchMemory>,
) -> Result<Option<Reply>, ConnError> {
    match reply {
        Reply::None => {}
        Reply::Ready(c) => chunks.extend(c.into_iter().map(WireBuf)),
        Reply::Held(c, memory) => {
            chunks.extend(c.into_iter().map(WireBuf));
            held.push(memory);
        }
        Reply::Deferred(mut fut) => match fut.as_mut().poll(cx) {
            std::task::Poll::Ready(r) => {
                if let Some(c) = r? {
                    chunks.extend(c.into_iter().map(WireBuf));
                }
            }
            std::task::Poll::Pending => return Ok(Some(Reply::Deferred(fut))),
        },
    }
    Ok(None)
}

/// [`take_ready`] from async code: polls a deferred reply once, without waiting.
async fn try_take(
    reply: Reply,
    chunks: &mut Vec<WireBuf>,
    held: &mut Vec<FetchMemory>,
) -> Result<Option<Reply>, ConnError> {
    let mut slot = Some(reply);
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(
            slot.take()
                .map_or(Ok(None), |r| take_ready(r, cx, chunks, held)),
        )
    })
    .await
}

async fn write_loop(stream: Rc<TcpStream>, rx: flume::Receiver<Reply>) -> Result<(), ConnError> {
    let mut writer: &TcpStream = &stream;
    let mut chunks: Vec<WireBuf> = Vec::new();
    let mut held: Vec<FetchMemory> = Vec::new();
    let mut next: Option<Reply> = None;
    loop {
        let reply = match next.take() {
            Some(r) => r,
            None => match rx.recv_async().await {
                Ok(r) => r,
                Err(_) => return Ok(()),
            },
        };
        // The first reply is awaited; later ones join the write only when already complete.
        match reply {
            Reply::Deferred(fut) => {
                if let Some(c) = fut.await? {
                    chunks.extend(c.into_iter().map(WireBuf));
                }
            }
            other => next = try_take(other, &mut chunks, &mut held).await?,
        }
        let mut bytes: usize = chunks.iter().map(|c| c.0.len()).sum();
        while next.is_none() && chunks.len() < WRITE_CHUNKS_MAX && bytes < WRITE_BYTES_MAX {
            let Ok(r) = rx.try_recv() else { break };
            let before = chunks.len();
            next = try_take(r, &mut chunks, &mut held).await?;
            bytes += chunks[before..].iter().map(|c| c.0.len()).sum::<usize>();
        }
        if chunks.is_empty() {
            continue;
        }
        let rt::BufResult(res, bufs) = writer.write_vectored_all(std::mem::take(&mut chunks)).await;
        chunks = bufs;
        chunks.clear();
        held.clear();
        res?;
    }
}
