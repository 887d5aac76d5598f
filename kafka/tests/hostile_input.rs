//! Hostile input over raw sockets: length bombs, garbage and truncated frames close only the
//! offending connection; oversize frames are refused before allocation; another client keeps
//! working throughout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// A request frame: size, api key, version, correlation id, client id "t", body.
fn frame(api_key: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&api_key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&correlation.to_be_bytes());
    f.extend_from_slice(&1i16.to_be_bytes());
    f.push(b't');
    f.extend_from_slice(body);
    let mut out = (f.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&f);
    out
}

fn read_response(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size)?;
    let n = i32::from_be_bytes(size) as usize;
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// True when the peer closed the connection (EOF or reset) instead of answering.
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => {
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut
        }
    }
}

/// ApiVersions v0 round trip on `s`: the correlation id comes back and the error code is 0.
fn api_versions_ok(s: &mut TcpStream, correlation: i32) {
    s.write_all(&frame(18, 0, correlation, &[])).expect("write");
    let resp = read_response(s).expect("ApiVersions response");
    assert_eq!(&resp[0..4], &correlation.to_be_bytes());
    assert_eq!(&resp[4..6], &0i16.to_be_bytes(), "error code");
}

#[test]
fn metadata_length_bomb_closes_only_that_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), 0, &[]);
    let mut good = connect(b.port);
    api_versions_ok(&mut good, 1);

    let mut bad = connect(b.port);
    // MetadataRequest v0 whose topic array claims 2^31-1 entries.
    bad.write_all(&frame(3, 0, 7, &[0x7f, 0xff, 0xff, 0xff]))
        .expect("write");
    assert!(
        closed(&mut bad),
        "the length bomb must close the connection"
    );

    api_versions_ok(&mut good, 2);
}

#[test]
fn garbage_and_truncated_frames_close_only_that_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), 0, &[]);
    let mut good = connect(b.port);
    api_versions_ok(&mut good, 1);

    // Garbage: a plausible size followed by random bytes (unknown API key 0x4142).
    let mut garbage = connect(b.port);
    garbage
        .write_all(&[0, 0, 0, 12, 0x41, 0x42, 0x43, 0x44, 1, 2, 3, 4, 5, 6, 7, 8])
        .expect("write");
    assert!(closed(&mut garbage));

    // Truncated: a Produce frame whose body stops in the middle of its topic array.
    let mut truncated = connect(b.port);
    truncated
        .write_all(&frame(0, 9, 3, &[0x00, 0x01, 0xff]))
        .expect("write");
    assert!(closed(&mut truncated));

    // Negative and oversize frame sizes are refused before any allocation.
    let mut negative = connect(b.port);
    negative.write_all(&(-5i32).to_be_bytes()).expect("write");
    assert!(closed(&mut negative));
    let mut huge = connect(b.port);
    huge.write_all(&i32::MAX.to_be_bytes()).expect("write");
    assert!(closed(&mut huge));

    // A frame that ends early (client hangs up mid-frame) does not disturb anyone.
    let mut half = connect(b.port);
    half.write_all(&[0, 0, 1, 0, 0, 18]).expect("write");
    drop(half);

    api_versions_ok(&mut good, 2);
}

#[test]
fn frames_above_socket_request_max_bytes_close_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), 0, &[("socket.request.max.bytes", "4096")]);
    let mut s = connect(b.port);
    s.write_all(&4097i32.to_be_bytes()).expect("write");
    assert!(closed(&mut s));
    let mut ok = connect(b.port);
    api_versions_ok(&mut ok, 9);
}

#[test]
fn unsupported_api_versions_version_gets_v0_error_with_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), 0, &[]);
    let mut s = connect(b.port);
    // ApiVersions v99 (flexible header: an empty tagged-field section, then a body the broker
    // cannot know): answered with a v0 body carrying UNSUPPORTED_VERSION (35).
    s.write_all(&frame(18, 99, 5, &[0, 1, 2, 3]))
        .expect("write");
    let resp = read_response(&mut s).expect("response");
    assert_eq!(&resp[0..4], &5i32.to_be_bytes());
    assert_eq!(&resp[4..6], &35i16.to_be_bytes());
    let count = i32::from_be_bytes([resp[6], resp[7], resp[8], resp[9]]);
    assert!(count > 10, "the table lists the supported APIs");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), 0, &[]);
    let mut s = connect(b.port);
    let mut batch = Vec::new();
    for c in 0..50 {
        // Alternate ApiVersions and Metadata (v1, all topics).
        if c % 2 == 0 {
            batch.extend(frame(18, 0, c, &[]));
        } else {
            batch.extend(frame(3, 1, c, &[0xff, 0xff, 0xff, 0xff]));
        }
    }
    s.write_all(&batch).expect("write");
    for c in 0..50i32 {
        let resp = read_response(&mut s).expect("response");
        assert_eq!(&resp[0..4], &c.to_be_bytes(), "response {c} out of order");
    }
}

#[test]
fn a_stopped_broker_releases_its_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut b = common::start_in(dir.path(), 0, &[]);
    let port = b.port;
    let mut s = connect(port);
    api_versions_ok(&mut s, 1);
    b.stop();
    assert!(closed(&mut s), "connections are closed on shutdown");
    let again = common::start_in(dir.path(), port, &[]);
    let mut s = connect(again.port);
    api_versions_ok(&mut s, 2);
}
