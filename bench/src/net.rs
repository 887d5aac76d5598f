//! Blocking length-prefixed frames over TCP (both Kafka and ZooKeeper prefix every frame with
//! a big-endian `i32` size).

use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Connects with `TCP_NODELAY` (requests are written whole; Nagle would only add delay).
pub fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"));
    for sa in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(io::Error::new(
        last.kind(),
        format!("connect {addr}: {last}"),
    ))
}

/// Reads frames into a reused buffer.
pub struct FrameReader {
    inner: BufReader<TcpStream>,
    buf: Vec<u8>,
    frame_max: usize,
}

impl FrameReader {
    pub fn new(stream: TcpStream, frame_max: usize) -> Self {
        Self {
            inner: BufReader::with_capacity(256 * 1024, stream),
            buf: Vec::new(),
            frame_max,
        }
    }

    /// The next frame's bytes (without the size prefix).
    pub fn next_frame(&mut self) -> io::Result<&[u8]> {
        let mut len = [0u8; 4];
        self.inner.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= self.frame_max)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("frame size {len} outside 0..={}", self.frame_max),
                )
            })?;
        self.buf.resize(len, 0);
        self.inner.read_exact(&mut self.buf)?;
        Ok(&self.buf)
    }
}

/// Writes a whole frame (already carrying its size prefix).
pub fn write_all(stream: &mut TcpStream, frame: &[u8]) -> io::Result<()> {
    stream.write_all(frame)
}

impl FrameReader {
    /// The next frame as an owned buffer (for decoders that keep slices of it).
    pub fn next_frame_owned(&mut self) -> io::Result<Vec<u8>> {
        self.next_frame()?;
        Ok(std::mem::take(&mut self.buf))
    }

    /// The socket, e.g. to set a read timeout.
    pub fn get_ref(&self) -> &TcpStream {
        self.inner.get_ref()
    }
}
