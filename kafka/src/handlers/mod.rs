//! Request dispatch and one module per Kafka API.
//!
//! [`dispatch`] reads the request header, refuses versions that are not advertised, decodes the
//! body with the generated codec and calls the API's handler. Handlers return typed results;
//! Kafka error codes appear only when they fill in the response. Group-coordinator APIs are
//! forwarded, body bytes untouched, to the `GroupService` on shard 0.
//!
//! [`SUPPORTED`] is the single source of truth for ApiVersions: an API is listed only when its
//! handler implements every version in the range (Produce shows min 0, see `api_versions`).

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod fetch;
pub mod group;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;

use std::rc::Rc;

use bytes::Bytes;
use kiln_kafka_codec::frame;
use kiln_kafka_codec::generated::ResponseHeader;
use kiln_kafka_codec::{ChunkWriter, Reader, RequestBody, ResponseBody, Writer};

use crate::conn::ConnError;
use crate::shard::{LocalFuture, ShardState};

/// (api_key, min, max) of every API this broker's own handlers implement.
pub const SUPPORTED: &[(i16, i16, i16)] = &[
    (0, 3, 12), // Produce (advertised with min 0)
    (1, 4, 17), // Fetch
    (2, 1, 7),  // ListOffsets
    (3, 0, 12), // Metadata
    (18, 0, 4), // ApiVersions
    (19, 2, 7), // CreateTopics
    (20, 1, 6), // DeleteTopics
    (21, 0, 2), // DeleteRecords
    (22, 0, 5), // InitProducerId
    (23, 2, 4), // OffsetForLeaderEpoch
    (32, 1, 4), // DescribeConfigs
    (33, 0, 2), // AlterConfigs
    (37, 0, 3), // CreatePartitions
    (44, 0, 1), // IncrementalAlterConfigs
    (60, 0, 1), // DescribeCluster
];

/// The version range this broker serves for `api_key`, own handlers and group APIs together.
pub fn supported_range(api_key: i16) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .chain(crate::group::GROUP_API_VERSIONS.iter())
        .find(|(k, _, _)| *k == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// What the connection writes for one request.
pub enum Reply {
    /// Nothing (acks=0 Produce).
    None,
    /// A complete response frame, as chunks.
    Ready(Vec<Bytes>),
    /// A Fetch response whose record bytes count against the shard's fetch memory until written.
    Held(Vec<Bytes>, FetchMemory),
    /// A response that completes later (acks=-1 waits for the fsync); `Ok(None)` writes nothing.
    Deferred(LocalFuture<Result<Option<Vec<Bytes>>, ConnError>>),
}

/// Record bytes of one Fetch response counted in `ShardState::fetch_memory_bytes`; released when
/// dropped (after the response was written, or when the connection died).
pub struct FetchMemory {
    shard: Rc<ShardState>,
    bytes: u64,
}

impl FetchMemory {
    /// Counts `bytes` against `shard`'s fetch memory.
    pub fn hold(shard: &Rc<ShardState>, bytes: u64) -> Self {
        shard
            .fetch_memory_bytes
            .set(shard.fetch_memory_bytes.get() + bytes);
        FetchMemory {
            shard: shard.clone(),
            bytes,
        }
    }
}

impl Drop for FetchMemory {
    fn drop(&mut self) {
        let s = &self.shard.fetch_memory_bytes;
        s.set(s.get().saturating_sub(self.bytes));
    }
}

/// The header fields a handler needs.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub correlation_id: i32,
    pub api_key: i16,
    pub version: i16,
}

/// Encodes a response body with its header and size prefix. Large record values stay shared.
pub fn encode(ctx: Ctx, body: &ResponseBody) -> Result<Vec<Bytes>, ConnError> {
    let mut w = ChunkWriter::new();
    frame::encode_response(ctx.correlation_id, ctx.version, body, &mut w)?;
    let size = i32::try_from(w.written()).map_err(|_| {
        ConnError::Encode(kiln_kafka_codec::EncodeError::TooLong {
            field: "frame",
            len: w.written(),
        })
    })?;
    let mut chunks = Vec::with_capacity(4);
    chunks.push(Bytes::copy_from_slice(&size.to_be_bytes()));
    chunks.extend(w.into_chunks());
    Ok(chunks)
}

/// Frames an already encoded body (from the group coordinator) with the response header.
pub fn frame_body(ctx: Ctx, body: &[u8]) -> Result<Vec<Bytes>, ConnError> {
    let mut head = Vec::with_capacity(16);
    head.extend_from_slice(&[0; 4]);
    ResponseHeader {
        correlation_id: ctx.correlation_id,
    }
    .encode(
        &mut head,
        frame::response_header_version(ctx.api_key, ctx.version),
    )?;
    let size = head.len() - 4 + body.len();
    let size = i32::try_from(size).map_err(|_| {
        ConnError::Encode(kiln_kafka_codec::EncodeError::TooLong {
            field: "frame",
            len: size,
        })
    })?;
    head[..4].copy_from_slice(&size.to_be_bytes());
    Ok(vec![Bytes::from(head), Bytes::copy_from_slice(body)])
}

/// Handles one request frame (the bytes after the size prefix).
pub async fn dispatch(
    shard: &Rc<ShardState>,
    peer_host: &str,
    frame_bytes: Bytes,
) -> Result<Reply, ConnError> {
    let mut r = Reader::new(frame_bytes.clone());
    let header =
        frame::read_request_header(&mut r).map_err(|e| ConnError::Malformed(e.to_string()))?;
    let ctx = Ctx {
        correlation_id: header.correlation_id,
        api_key: header.request_api_key,
        version: header.request_api_version,
    };
    let supported =
        supported_range(ctx.api_key).is_some_and(|(min, max)| (min..=max).contains(&ctx.version));
    if ctx.api_key == api_versions::API_KEY && !supported {
        // KIP-511: answer with v0 and UNSUPPORTED_VERSION so the client can retry lower.
        return api_versions::unsupported(ctx).map(Reply::Ready);
    }
    if !supported {
        return Err(ConnError::Malformed(format!(
            "API key {} version {} is not supported",
            ctx.api_key, ctx.version
        )));
    }
    if crate::group::GROUP_API_VERSIONS
        .iter()
        .any(|(k, _, _)| *k == ctx.api_key)
    {
        let body = frame_bytes.slice(r.position()..);
        let client_id = header.client_id.clone().unwrap_or_default();
        return group::handle(shard, ctx, body, client_id, peer_host.to_string()).await;
    }
    let body = RequestBody::decode(ctx.api_key, ctx.version, &mut r)
        .map_err(|e| ConnError::Malformed(e.to_string()))?;
    let response = match body {
        RequestBody::ApiVersions(req) => api_versions::handle(ctx, &req),
        RequestBody::Metadata(req) => metadata::handle(shard, ctx, req).await,
        RequestBody::Produce(req) => return produce::handle(shard, ctx, req).await,
        RequestBody::Fetch(req) => {
            let (body, held) = fetch::handle(shard, ctx, req).await?;
            let memory = FetchMemory::hold(shard, held);
            return Ok(Reply::Held(encode(ctx, &body)?, memory));
        }
        RequestBody::ListOffsets(req) => list_offsets::handle(shard, ctx, req).await,
        RequestBody::CreateTopics(req) => create_topics::handle(shard, ctx, req).await,
        RequestBody::DeleteTopics(req) => delete_topics::handle(shard, ctx, req).await,
        RequestBody::CreatePartitions(req) => create_partitions::handle(shard, ctx, req).await,
        RequestBody::DeleteRecords(req) => delete_records::handle(shard, ctx, req).await,
        RequestBody::InitProducerId(req) => init_producer_id::handle(shard, ctx, req),
        RequestBody::OffsetForLeaderEpoch(req) => {
            offset_for_leader_epoch::handle(shard, ctx, req).await
        }
        RequestBody::DescribeConfigs(req) => describe_configs::handle(shard, ctx, req),
        RequestBody::AlterConfigs(req) => alter_configs::handle(shard, ctx, req).await,
        RequestBody::IncrementalAlterConfigs(req) => {
            incremental_alter_configs::handle(shard, ctx, req).await
        }
        RequestBody::DescribeCluster(req) => describe_cluster::handle(shard, ctx, req),
        other => {
            return Err(ConnError::Malformed(format!(
                "no handler for {}",
                other.api_key().name()
            )));
        }
    };
    Ok(Reply::Ready(encode(ctx, &response)?))
}

/// A per-partition operation run on the partition's owning shard.
pub type PartitionOp<W, R> = fn(Rc<ShardState>, String, i32, W) -> LocalFuture<R>;

/// Runs `op` for every `(topic, partition, input)` on the owning shard, grouped so each shard is
/// called once; results come back in input order.
pub async fn per_partition<W, R>(
    shard: &Rc<ShardState>,
    items: Vec<(String, i32, W)>,
    op: PartitionOp<W, R>,
) -> Result<Vec<R>, ConnError>
where
    W: Send + 'static,
    R: Send + 'static,
{
    let shards = shard.shared.shard_count();
    let n = items.len();
    let mut groups: Vec<Vec<(usize, String, i32, W)>> = (0..shards).map(|_| Vec::new()).collect();
    for (i, (topic, partition, w)) in items.into_iter().enumerate() {
        let owner = shard.shared.owner(&topic, partition);
        if let Some(g) = groups.get_mut(owner) {
            g.push((i, topic, partition, w));
        }
    }
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    for (target, group) in groups.into_iter().enumerate() {
        if group.is_empty() {
            continue;
        }
        let results = shard
            .call(target, move |s| {
                Box::pin(async move {
                    let mut rs = Vec::with_capacity(group.len());
                    for (i, topic, partition, w) in group {
                        rs.push((i, op(s.clone(), topic, partition, w).await));
                    }
                    rs
                })
            })
            .await
            .map_err(|_| ConnError::Stopping)?;
        for (i, r) in results {
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(r);
            }
        }
    }
    Ok(out.into_iter().flatten().collect())
}
