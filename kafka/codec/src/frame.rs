//! Whole frames: header version selection, header + body decoding and encoding.
//!
//! A Kafka frame on the wire is a big-endian `i32` size followed by that many bytes: a header,
//! then the body. The functions here take and produce the bytes after the size prefix
//! (except [`encode_response_frame`] and [`encode_request_frame`], which write the prefix
//! too, because the size is only known after encoding).

use crate::generated::{ApiKey, RequestBody, RequestHeader, ResponseBody, ResponseHeader};
use crate::wire::{DecodeError, EncodeError, Reader, Writer, put};
use bytes::Bytes;

impl ApiKey {
    /// Whether `version` uses the flexible encoding (compact lengths, tagged fields).
    /// Versions beyond the known maximum count as flexible if the API has flexible versions,
    /// as Kafka does, so a newer client's header still parses.
    pub fn is_flexible(self, version: i16) -> bool {
        self.flexible_min_version().is_some_and(|m| version >= m)
    }

    /// Whether Kiln can decode and encode `version` of this API.
    pub fn supports(self, version: i16) -> bool {
        (self.min_version()..=self.max_version()).contains(&version)
    }

    /// The minimum version to advertise in an ApiVersions response. Equal to
    /// [`ApiKey::min_version`] except for Produce, which Kafka 4.x advertises from 0 although
    /// it rejects v0-2: librdkafka disables compression when a broker's advertised Produce
    /// minimum is not 0.
    pub fn advertised_min_version(self) -> i16 {
        if self == ApiKey::Produce {
            0
        } else {
            self.min_version()
        }
    }

    /// The request header version used with `version` of this API: 2 for flexible versions
    /// (tagged fields after the client id), 1 otherwise.
    pub fn request_header_version(self, version: i16) -> i16 {
        if self.is_flexible(version) { 2 } else { 1 }
    }

    /// The response header version used with `version` of this API: 1 for flexible versions,
    /// 0 otherwise, and always 0 for ApiVersions, whose response a client must be able to
    /// read before it knows which versions the broker speaks.
    pub fn response_header_version(self, version: i16) -> i16 {
        if self != ApiKey::ApiVersions && self.is_flexible(version) {
            1
        } else {
            0
        }
    }
}

/// The request header version for a raw API key (1 for keys Kiln does not know, so their
/// correlation id can still be read).
pub fn request_header_version(api_key: i16, version: i16) -> i16 {
    ApiKey::from_i16(api_key).map_or(1, |k| k.request_header_version(version))
}

/// The response header version for a raw API key (0 for unknown keys).
pub fn response_header_version(api_key: i16, version: i16) -> i16 {
    ApiKey::from_i16(api_key).map_or(0, |k| k.response_header_version(version))
}

/// Reads a request header, choosing its version from the API key and version it starts
/// with. Works for unknown APIs and unsupported versions too, so the broker can answer
/// them with an error carrying the right correlation id.
pub fn read_request_header(r: &mut Reader) -> Result<RequestHeader, DecodeError> {
    let head = r.peek_rest();
    let (Some(k), Some(v)) = (head.get(0..2), head.get(2..4)) else {
        // Let the header decoder report the short frame with its field name.
        return RequestHeader::decode(r, 1);
    };
    let api_key = i16::from_be_bytes([k[0], k[1]]);
    let version = i16::from_be_bytes([v[0], v[1]]);
    RequestHeader::decode(r, request_header_version(api_key, version))
}

/// Decodes a request body for `api_key` at `version` from `r`.
pub fn decode_request(
    api_key: i16,
    version: i16,
    r: &mut Reader,
) -> Result<RequestBody, DecodeError> {
    RequestBody::decode(api_key, version, r)
}

/// Decodes a response body for `api_key` at `version` from `r`.
pub fn decode_response(
    api_key: i16,
    version: i16,
    r: &mut Reader,
) -> Result<ResponseBody, DecodeError> {
    ResponseBody::decode(api_key, version, r)
}

/// A decoded request frame.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestFrame {
    pub header: RequestHeader,
    pub body: RequestBody,
}

/// Decodes a whole request frame (the bytes after the size prefix). Bytes after the body
/// are ignored, as Kafka does. `records` fields in the body are slices of `frame`.
///
/// To answer a request whose body fails to decode, call [`read_request_header`] first and
/// keep the header: this function loses it on error.
pub fn decode_request_frame(frame: Bytes) -> Result<RequestFrame, DecodeError> {
    let mut r = Reader::new(frame);
    let header = read_request_header(&mut r)?;
    let body = RequestBody::decode(header.request_api_key, header.request_api_version, &mut r)?;
    Ok(RequestFrame { header, body })
}

/// Decodes a whole response frame (after the size prefix) for a request of `api_key` at
/// `version`.
pub fn decode_response_frame(
    api_key: i16,
    version: i16,
    frame: Bytes,
) -> Result<(ResponseHeader, ResponseBody), DecodeError> {
    let mut r = Reader::new(frame);
    let header = ResponseHeader::decode(&mut r, response_header_version(api_key, version))?;
    let body = ResponseBody::decode(api_key, version, &mut r)?;
    Ok((header, body))
}

fn patch_size(out: &mut [u8], start: usize) -> Result<(), EncodeError> {
    let len = out.len() - start - 4;
    let size = i32::try_from(len).map_err(|_| EncodeError::TooLong {
        field: "frame",
        len,
    })?;
    if let Some(slot) = out.get_mut(start..start + 4) {
        slot.copy_from_slice(&size.to_be_bytes());
    }
    Ok(())
}

/// Appends a complete response frame (size prefix, header, body) to `out`.
pub fn encode_response_frame(
    correlation_id: i32,
    version: i16,
    body: &ResponseBody,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    put::i32(out, 0);
    let header = ResponseHeader { correlation_id };
    header.encode(out, body.api_key().response_header_version(version))?;
    body.encode(out, version)?;
    patch_size(out, start)
}

/// Appends a complete request frame (size prefix, header, body) to `out`. The header's API
/// key and version are taken from `body` and `version`.
pub fn encode_request_frame(
    correlation_id: i32,
    client_id: Option<&str>,
    version: i16,
    body: &RequestBody,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    put::i32(out, 0);
    let key = body.api_key();
    let header = RequestHeader {
        request_api_key: key.key(),
        request_api_version: version,
        correlation_id,
        client_id: client_id.map(str::to_owned),
    };
    header.encode(out, key.request_header_version(version))?;
    body.encode(out, version)?;
    patch_size(out, start)
}

/// Encodes a response header and body into any [`Writer`] (no size prefix). With a
/// [`crate::ChunkWriter`], large `records` values stay shared; the frame size is
/// `w.written()` afterwards.
pub fn encode_response<W: Writer + ?Sized>(
    correlation_id: i32,
    version: i16,
    body: &ResponseBody,
    w: &mut W,
) -> Result<(), EncodeError> {
    let header = ResponseHeader { correlation_id };
    header.encode(w, body.api_key().response_header_version(version))?;
    body.encode(w, version)
}
