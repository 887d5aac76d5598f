//! One client connection: frame reading, request dispatch and in-order responses.
//!
//! ```text
//!  socket --read--> [size i32][frame] --dispatch--> Reply::Ready / Reply::Deferred --queue-->
//!  writer task: awaits each queued reply in order --write--> socket
//! ```
//!
//! 1. The reader reads a 4-byte size; a size above `socket.request.max.bytes` (or below the
//!    smallest possible header) closes the connection before anything is allocated.
//! 2. It reads the frame and dispatches it. Requests of one connection are *started* in order:
//!    a Produce is appended before the next request is read, so pipelined batches of one producer
//!    land in order. What remains (waiting for the covering fsync for acks=-1) is deferred.
//! 3. Replies go into a queue bounded by `queued.max.requests`; the writer task awaits them in
//!    queue order, so responses leave in request order whatever finishes first.
//! 4. A frame that does not decode closes only this connection (Kafka does the same).

use std::rc::Rc;

use bytes::Bytes;
use kiln_engine::rt::buf::IoBuf;
use kiln_engine::rt::io::{AsyncReadExt, AsyncWriteExt};
use kiln_engine::rt::{self, TcpStream};

use crate::handlers::{self, Reply};
use crate::shard::ShardState;

/// The smallest valid request frame: api key, version, correlation id, client id length.
pub const FRAME_BYTES_MIN: i32 = 10;

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
    loop {
        let rt::BufResult(res, size_buf) = reader.read_exact(vec![0u8; 4]).await;
        match res {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let size = i32::from_be_bytes([size_buf[0], size_buf[1], size_buf[2], size_buf[3]]);
        if !(FRAME_BYTES_MIN..=max).contains(&size) {
            return Err(ConnError::FrameSize { size, max });
        }
        let rt::BufResult(res, frame) = reader.read_exact(vec![0u8; size as usize]).await;
        res?;
        let reply = handlers::dispatch(shard, peer_host, Bytes::from(frame)).await?;
        if tx.send_async(reply).await.is_err() {
            // The writer failed; its error is reported by serve_inner.
            return Ok(());
        }
    }
}

async fn write_loop(stream: Rc<TcpStream>, rx: flume::Receiver<Reply>) -> Result<(), ConnError> {
    let mut writer: &TcpStream = &stream;
    while let Ok(reply) = rx.recv_async().await {
        let chunks = match reply {
            Reply::None => continue,
            Reply::Ready(chunks) => chunks,
            Reply::Held(chunks, memory) => {
                let bufs: Vec<WireBuf> = chunks.into_iter().map(WireBuf).collect();
                let rt::BufResult(res, bufs) = writer.write_vectored_all(bufs).await;
                drop(bufs);
                drop(memory);
                res?;
                continue;
            }
            Reply::Deferred(fut) => match fut.await? {
                Some(chunks) => chunks,
                None => continue,
            },
        };
        let bufs: Vec<WireBuf> = chunks.into_iter().map(WireBuf).collect();
        let rt::BufResult(res, _) = writer.write_vectored_all(bufs).await;
        res?;
    }
    Ok(())
}
