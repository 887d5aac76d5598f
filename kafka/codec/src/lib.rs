//! # kiln-kafka-codec
//!
//! Kafka wire-protocol messages for Kiln, generated from Kafka's official JSON message specs
//! (Kafka 4.1) by `kiln-kafka-codec-generator`. The crate is a pure codec: **no I/O, no
//! async**, no sockets or buffers it does not own. Bytes in, structs out, and back.
//!
//! ## What is here
//! - [`generated`]: one module per spec message (`generated::metadata_request`, ...), each
//!   with the message struct and its nested structs. Every request, response, the request
//!   and response headers and the consumer-protocol data types are generated.
//! - [`ApiKey`]: every API with its key, name and supported versions; it also knows which
//!   header version each API/version uses ([`ApiKey::request_header_version`],
//!   [`ApiKey::response_header_version`]; the ApiVersions response header is always v0).
//! - [`RequestBody`] / [`ResponseBody`]: one variant per API, with `decode(api_key,
//!   version, reader)` dispatchers, so a broker can decode any request.
//! - [`frame`]: whole-frame helpers (header + body) and [`wire`]: the bounded [`Reader`],
//!   the [`Writer`] sink (with [`ChunkWriter`] for vectored, copy-free record output),
//!   [`Uuid`] and the error types.
//!
//! ## Naming convention
//! - Struct names are the spec names, unchanged: `MetadataRequest`,
//!   `MetadataResponseTopic`, `FetchableTopicResponse`. Nested struct names are only unique
//!   within one message, so each message has its own module; the top-level message structs
//!   are also re-exported from [`generated`] (`generated::MetadataRequest`).
//! - Field names are the spec names in `snake_case` (`ClientSoftwareName` ->
//!   `client_software_name`); a Rust keyword gets a trailing underscore (`Match` -> `match_`).
//! - Each message has `pub const API_KEY`, `MIN_VERSION`, `MAX_VERSION`,
//!   `FLEXIBLE_MIN_VERSION` and `NAME`.
//! - Every struct has `decode(&mut Reader, version) -> Result<Self, DecodeError>` and
//!   `encode(&self, &mut impl Writer, version) -> Result<(), EncodeError>` (a `Vec<u8>` is a
//!   `Writer`). Top-level messages reject versions outside `MIN_VERSION..=MAX_VERSION`.
//!
//! ## Types
//! `int8/16/32/64` -> `i8/i16/i32/i64`, `uint16` -> `u16`, `float64` -> `f64`, `uuid` ->
//! [`Uuid`], `string` -> `String`, `bytes` and `records` -> [`bytes::Bytes`] (slices of the
//! input frame: record batches are never copied on decode), `[]T` -> `Vec<T>`. A field that
//! is nullable in any version is an `Option`; `Default` gives each field the spec's
//! `default` (so a nullable field without a `"null"` default defaults to `Some(empty)`, as
//! in Kafka's Java code). Fields a version does not carry keep their default on decode; on
//! encode, a non-default value in a version that cannot carry it is an
//! [`EncodeError::UnsupportedField`] unless the spec marks the field `ignorable`. Known
//! tagged fields are decoded and encoded (written only when not at their default); unknown
//! tagged fields are skipped.
//!
//! ## Bounding guarantee
//! Every length and count read from the wire is checked against the bytes actually left in
//! the frame **before** anything is allocated: an array of `n` elements needs `n *
//! min_element_size` bytes to remain, a string or byte array of `n` bytes needs `n`. Up-front
//! reservation is further capped (64 KiB per array), so memory grows only with bytes
//! actually decoded. Negative lengths other than -1 for nullable values, null where the
//! version forbids it, varints longer than 5 (or 10) bytes, strings longer than
//! [`wire::MAX_STRING_LEN`] (as in Kafka), invalid UTF-8 and structs nested deeper than
//! [`wire::MAX_DEPTH`] are errors. Decoding never panics; every
//! [`DecodeError`] names the field (`Message.field`) and the byte offset, and for short
//! input how many bytes were needed and available. For example the 4-byte MetadataRequest
//! v0 body `7f ff ff ff` (an array claiming 2^31-1 topics) is rejected without allocating.
//!
//! ## How it is checked
//! - `tests/generated_up_to_date.rs` regenerates the code from the specs and compares.
//! - `tests/roundtrip.rs`: every request and response, every version, pseudo-random values
//!   (the generated `sample` functions, driven by [`Sampler`]) encode, decode to the same
//!   value and re-encode to the same bytes; golden bytes for tagged fields.
//! - `tests/differential.rs`: the same encodings decode and re-encode byte-identically with
//!   the independent `kafka-protocol` crate.
//! - `tests/no_panic.rs` and the `fuzz/` target: truncated, corrupted and arbitrary input
//!   never panics; accepted input re-encodes stably.
//! - `benches/codec.rs`: Produce v9 and Fetch v16 with 16 x 16 KiB of records.
//!
//! ## Decoding a request frame
//! ```
//! use bytes::Bytes;
//! use kiln_kafka_codec::{frame, RequestBody};
//!
//! // The bytes after the 4-byte size prefix: a MetadataRequest v1 asking for all topics.
//! let frame_bytes = Bytes::from_static(&[
//!     0, 3, 0, 1, // api key 3 (Metadata), version 1
//!     0, 0, 0, 7, // correlation id 7
//!     0, 2, b'm', b'e', // client id "me"
//!     0xff, 0xff, 0xff, 0xff, // topics: null (all topics)
//! ]);
//! let req = frame::decode_request_frame(frame_bytes).unwrap();
//! assert_eq!(req.header.correlation_id, 7);
//! let RequestBody::Metadata(m) = req.body else { panic!("not Metadata") };
//! assert_eq!(m.topics, None);
//! ```
//!
//! A request whose header parses but whose body does not should still be answered: call
//! [`frame::read_request_header`] first, then [`RequestBody::decode`]. In particular an
//! ApiVersions request of a version newer than [`ApiKey::max_version`] gets
//! [`DecodeError::UnsupportedVersion`]; Kafka answers it with an ApiVersions v0 response
//! carrying error code 35 (UNSUPPORTED_VERSION) and its supported ranges.
//!
//! ## Encoding a response frame
//! ```
//! use kiln_kafka_codec::{frame, ResponseBody};
//! use kiln_kafka_codec::generated::api_versions_response::{ApiVersion, ApiVersionsResponse};
//!
//! let resp = ApiVersionsResponse {
//!     api_keys: vec![ApiVersion { api_key: 18, min_version: 0, max_version: 4 }],
//!     ..Default::default()
//! };
//! let mut out = Vec::new();
//! frame::encode_response_frame(7, 3, &ResponseBody::ApiVersions(resp), &mut out).unwrap();
//! // size prefix, then correlation id with no header tagged fields (ApiVersions uses v0).
//! assert_eq!(&out[4..8], &7i32.to_be_bytes());
//! ```

#[allow(clippy::derivable_impls, clippy::field_reassign_with_default)]
pub mod generated;

pub mod compression;
pub mod frame;
pub mod wire;

pub use generated::{ApiKey, RequestBody, ResponseBody};
pub use wire::{ChunkWriter, DecodeError, EncodeError, Reader, Sampler, Uuid, Writer};
