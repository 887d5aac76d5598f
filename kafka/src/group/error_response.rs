//! A group API's response that carries one error code for everything the request named: what
//! the coordinator answers when it could not serve the request at all (its offsets log failed,
//! or it is stopping), instead of closing the connection. Kafka's `getErrorResponse` does the
//! same: each group, topic partition or member named in the request gets the code.
//!
//! Which code, from [`GroupError::kafka_code`]: a failed offsets log is NOT_COORDINATOR (Kafka's
//! mapping of KAFKA_STORAGE_ERROR for the coordinator), a busy log or a stopping coordinator is
//! COORDINATOR_NOT_AVAILABLE; a request that does not decode still closes the connection.

use bytes::Bytes;
use kiln_kafka_codec::Reader;
use kiln_kafka_codec::generated::{
    delete_groups_request, delete_groups_response, describe_groups_request,
    describe_groups_response, find_coordinator_request, find_coordinator_response,
    heartbeat_response, join_group_request, join_group_response, leave_group_request,
    leave_group_response, list_groups_response, offset_commit_request, offset_commit_response,
    offset_delete_request, offset_delete_response, offset_fetch_request, offset_fetch_response,
    sync_group_response,
};

use super::GroupError;
use super::codes;
use kiln_engine::log::LogError;

impl GroupError {
    /// The Kafka error code a client gets for this failure, or `None` when the request itself
    /// is at fault (it does not decode, or asks for an API this coordinator does not serve) and
    /// the connection is closed, as Kafka closes it.
    #[must_use]
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            GroupError::UnsupportedApi { .. } | GroupError::Decode(_) => None,
            GroupError::Storage {
                source: LogError::Busy(_),
                ..
            }
            | GroupError::NoOffsetsTopic
            | GroupError::Closed => Some(codes::COORDINATOR_NOT_AVAILABLE),
            GroupError::Storage { .. }
            | GroupError::DeferredWrite(_)
            | GroupError::ListDir { .. } => Some(codes::NOT_COORDINATOR),
            GroupError::Encode(_) | GroupError::Batch(_) | GroupError::Record(_) => {
                Some(codes::UNKNOWN_SERVER_ERROR)
            }
        }
    }
}

/// Encodes into `out` the response to `(api_key, version, body)` with `code` for every group,
/// partition and member the request names. Fails only when the body does not decode or the
/// response does not encode.
pub fn encode(
    api_key: i16,
    version: i16,
    body: Bytes,
    code: i16,
    message: &str,
    out: &mut Vec<u8>,
) -> Result<(), GroupError> {
    let v = version;
    let mut r = Reader::new(body);
    match api_key {
        8 => {
            let req = offset_commit_request::OffsetCommitRequest::decode(&mut r, v)?;
            offset_commit_response::OffsetCommitResponse {
                throttle_time_ms: 0,
                topics: req
                    .topics
                    .into_iter()
                    .map(|t| offset_commit_response::OffsetCommitResponseTopic {
                        name: t.name,
                        topic_id: t.topic_id,
                        partitions: t
                            .partitions
                            .into_iter()
                            .map(|p| offset_commit_response::OffsetCommitResponsePartition {
                                partition_index: p.partition_index,
                                error_code: code,
                            })
                            .collect(),
                    })
                    .collect(),
            }
            .encode(out, v)?;
        }
        9 => {
            use offset_fetch_response as resp;
            let req = offset_fetch_request::OffsetFetchRequest::decode(&mut r, v)?;
            let partition = |partition_index| resp::OffsetFetchResponsePartition {
                partition_index,
                committed_offset: -1,
                committed_leader_epoch: -1,
                metadata: None,
                error_code: code,
            };
            let groups = req
                .groups
                .into_iter()
                .map(|g| resp::OffsetFetchResponseGroup {
                    group_id: g.group_id,
                    topics: g
                        .topics
                        .unwrap_or_default()
                        .into_iter()
                        .map(|t| resp::OffsetFetchResponseTopics {
                            name: t.name,
                            topic_id: t.topic_id,
                            partitions: t
                                .partition_indexes
                                .into_iter()
                                .map(|i| resp::OffsetFetchResponsePartitions {
                                    partition_index: i,
                                    committed_offset: -1,
                                    committed_leader_epoch: -1,
                                    metadata: None,
                                    error_code: code,
                                })
                                .collect(),
                        })
                        .collect(),
                    error_code: code,
                })
                .collect();
            resp::OffsetFetchResponse {
                throttle_time_ms: 0,
                // Before v2 there is no top-level code: each partition carries it.
                topics: req
                    .topics
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| resp::OffsetFetchResponseTopic {
                        name: t.name,
                        partitions: t.partition_indexes.into_iter().map(partition).collect(),
                    })
                    .collect(),
                error_code: code,
                groups,
            }
            .encode(out, v)?;
        }
        10 => {
            let req = find_coordinator_request::FindCoordinatorRequest::decode(&mut r, v)?;
            // "Not the coordinator" is no answer to "who is?": Kafka says "none available".
            let code = if code == codes::NOT_COORDINATOR {
                codes::COORDINATOR_NOT_AVAILABLE
            } else {
                code
            };
            use find_coordinator_response::{Coordinator, FindCoordinatorResponse};
            // v0-3 answer one key at the top level; v4+ a list (the top-level fields are absent).
            let resp = if v < 4 {
                FindCoordinatorResponse {
                    error_code: code,
                    error_message: (v >= 1).then(|| message.to_owned()),
                    node_id: -1,
                    host: String::new(),
                    port: -1,
                    ..Default::default()
                }
            } else {
                FindCoordinatorResponse {
                    coordinators: req
                        .coordinator_keys
                        .into_iter()
                        .map(|key| Coordinator {
                            key,
                            node_id: -1,
                            host: String::new(),
                            port: -1,
                            error_code: code,
                            error_message: Some(message.to_owned()),
                        })
                        .collect(),
                    ..Default::default()
                }
            };
            resp.encode(out, v)?;
        }
        11 => {
            let req = join_group_request::JoinGroupRequest::decode(&mut r, v)?;
            join_group_response::JoinGroupResponse {
                error_code: code,
                generation_id: -1,
                member_id: req.member_id,
                ..Default::default()
            }
            .encode(out, v)?;
        }
        12 => heartbeat_response::HeartbeatResponse {
            throttle_time_ms: 0,
            error_code: code,
        }
        .encode(out, v)?,
        13 => {
            let req = leave_group_request::LeaveGroupRequest::decode(&mut r, v)?;
            leave_group_response::LeaveGroupResponse {
                throttle_time_ms: 0,
                error_code: code,
                members: req
                    .members
                    .into_iter()
                    .map(|m| leave_group_response::MemberResponse {
                        member_id: m.member_id,
                        group_instance_id: m.group_instance_id,
                        error_code: code,
                    })
                    .collect(),
            }
            .encode(out, v)?;
        }
        14 => sync_group_response::SyncGroupResponse {
            error_code: code,
            ..Default::default()
        }
        .encode(out, v)?,
        15 => {
            let req = describe_groups_request::DescribeGroupsRequest::decode(&mut r, v)?;
            describe_groups_response::DescribeGroupsResponse {
                throttle_time_ms: 0,
                groups: req
                    .groups
                    .into_iter()
                    .map(|group_id| describe_groups_response::DescribedGroup {
                        error_code: code,
                        error_message: (v >= 6).then(|| message.to_owned()),
                        group_id,
                        authorized_operations: i32::MIN,
                        ..Default::default()
                    })
                    .collect(),
            }
            .encode(out, v)?;
        }
        16 => list_groups_response::ListGroupsResponse {
            throttle_time_ms: 0,
            error_code: code,
            groups: Vec::new(),
        }
        .encode(out, v)?,
        42 => {
            let req = delete_groups_request::DeleteGroupsRequest::decode(&mut r, v)?;
            delete_groups_response::DeleteGroupsResponse {
                throttle_time_ms: 0,
                results: req
                    .groups_names
                    .into_iter()
                    .map(|group_id| delete_groups_response::DeletableGroupResult {
                        group_id,
                        error_code: code,
                    })
                    .collect(),
            }
            .encode(out, v)?;
        }
        47 => {
            // Kafka answers a coordinator-level failure of OffsetDelete with the top-level code.
            offset_delete_request::OffsetDeleteRequest::decode(&mut r, v)?;
            offset_delete_response::OffsetDeleteResponse {
                error_code: code,
                throttle_time_ms: 0,
                topics: Vec::new(),
            }
            .encode(out, v)?;
        }
        _ => {
            return Err(GroupError::UnsupportedApi {
                api_key,
                api_version: version,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GROUP_API_VERSIONS;
    use kiln_kafka_codec::generated::{heartbeat_request, list_groups_request, sync_group_request};

    /// A request of `api_key` at `v` naming one group, one member and one partition.
    fn request(api_key: i16, v: i16) -> Vec<u8> {
        let mut w = Vec::new();
        let r = match api_key {
            8 => offset_commit_request::OffsetCommitRequest {
                group_id: "g".into(),
                topics: vec![offset_commit_request::OffsetCommitRequestTopic {
                    name: "t".into(),
                    partitions: vec![offset_commit_request::OffsetCommitRequestPartition {
                        partition_index: 2,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }
            .encode(&mut w, v),
            9 => offset_fetch_request::OffsetFetchRequest {
                group_id: if v < 8 { "g".into() } else { String::new() },
                topics: if v < 8 {
                    Some(vec![offset_fetch_request::OffsetFetchRequestTopic {
                        name: "t".into(),
                        partition_indexes: vec![2],
                    }])
                } else {
                    offset_fetch_request::OffsetFetchRequest::default().topics
                },
                groups: if v >= 8 {
                    vec![offset_fetch_request::OffsetFetchRequestGroup {
                        group_id: "g".into(),
                        ..Default::default()
                    }]
                } else {
                    Vec::new()
                },
                ..Default::default()
            }
            .encode(&mut w, v),
            10 => find_coordinator_request::FindCoordinatorRequest {
                key: if v < 4 { "g".into() } else { String::new() },
                coordinator_keys: if v >= 4 { vec!["g".into()] } else { Vec::new() },
                ..Default::default()
            }
            .encode(&mut w, v),
            11 => join_group_request::JoinGroupRequest {
                group_id: "g".into(),
                member_id: "m".into(),
                protocol_type: "consumer".into(),
                ..Default::default()
            }
            .encode(&mut w, v),
            12 => heartbeat_request::HeartbeatRequest {
                group_id: "g".into(),
                ..Default::default()
            }
            .encode(&mut w, v),
            13 => leave_group_request::LeaveGroupRequest {
                group_id: "g".into(),
                member_id: if v < 3 { "m".into() } else { String::new() },
                members: if v >= 3 {
                    vec![leave_group_request::MemberIdentity {
                        member_id: "m".into(),
                        ..Default::default()
                    }]
                } else {
                    Vec::new()
                },
            }
            .encode(&mut w, v),
            14 => sync_group_request::SyncGroupRequest {
                group_id: "g".into(),
                ..Default::default()
            }
            .encode(&mut w, v),
            15 => describe_groups_request::DescribeGroupsRequest {
                groups: vec!["g".into()],
                ..Default::default()
            }
            .encode(&mut w, v),
            16 => list_groups_request::ListGroupsRequest::default().encode(&mut w, v),
            42 => delete_groups_request::DeleteGroupsRequest {
                groups_names: vec!["g".into()],
            }
            .encode(&mut w, v),
            47 => offset_delete_request::OffsetDeleteRequest {
                group_id: "g".into(),
                ..Default::default()
            }
            .encode(&mut w, v),
            other => panic!("no request for api {other}"),
        };
        r.expect("request encodes");
        w
    }

    /// The first error code in a response (skipping throttle time where it leads).
    fn codes_in(api_key: i16, v: i16, body: Vec<u8>) -> Vec<i16> {
        let mut r = Reader::new(Bytes::from(body));
        match api_key {
            8 => offset_commit_response::OffsetCommitResponse::decode(&mut r, v)
                .expect("decodes")
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
            9 => {
                let resp =
                    offset_fetch_response::OffsetFetchResponse::decode(&mut r, v).expect("decodes");
                if v >= 8 {
                    resp.groups.iter().map(|g| g.error_code).collect()
                } else {
                    resp.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                        .collect()
                }
            }
            10 => {
                let resp = find_coordinator_response::FindCoordinatorResponse::decode(&mut r, v)
                    .expect("decodes");
                if v >= 4 {
                    resp.coordinators.iter().map(|c| c.error_code).collect()
                } else {
                    vec![resp.error_code]
                }
            }
            11 => vec![
                join_group_response::JoinGroupResponse::decode(&mut r, v)
                    .expect("decodes")
                    .error_code,
            ],
            12 => vec![
                heartbeat_response::HeartbeatResponse::decode(&mut r, v)
                    .expect("decodes")
                    .error_code,
            ],
            13 => {
                let resp =
                    leave_group_response::LeaveGroupResponse::decode(&mut r, v).expect("decodes");
                let mut c = vec![resp.error_code];
                c.extend(resp.members.iter().map(|m| m.error_code));
                c
            }
            14 => vec![
                sync_group_response::SyncGroupResponse::decode(&mut r, v)
                    .expect("decodes")
                    .error_code,
            ],
            15 => describe_groups_response::DescribeGroupsResponse::decode(&mut r, v)
                .expect("decodes")
                .groups
                .iter()
                .map(|g| g.error_code)
                .collect(),
            16 => vec![
                list_groups_response::ListGroupsResponse::decode(&mut r, v)
                    .expect("decodes")
                    .error_code,
            ],
            42 => delete_groups_response::DeleteGroupsResponse::decode(&mut r, v)
                .expect("decodes")
                .results
                .iter()
                .map(|g| g.error_code)
                .collect(),
            47 => vec![
                offset_delete_response::OffsetDeleteResponse::decode(&mut r, v)
                    .expect("decodes")
                    .error_code,
            ],
            other => panic!("no response for api {other}"),
        }
    }

    #[test]
    fn every_group_api_at_every_version_carries_the_code() {
        for &(key, min, max) in GROUP_API_VERSIONS {
            for v in min..=max {
                let mut out = Vec::new();
                encode(
                    key,
                    v,
                    Bytes::from(request(key, v)),
                    codes::NOT_COORDINATOR,
                    "offsets log failed",
                    &mut out,
                )
                .unwrap_or_else(|e| panic!("api {key} v{v}: {e}"));
                let got = codes_in(key, v, out);
                let want = if key == 10 {
                    codes::COORDINATOR_NOT_AVAILABLE
                } else {
                    codes::NOT_COORDINATOR
                };
                assert!(
                    !got.is_empty() && got.iter().all(|c| *c == want),
                    "api {key} v{v}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn failures_map_to_kafka_codes() {
        let busy = GroupError::Storage {
            op: "append",
            dir: "d".into(),
            source: LogError::Busy("truncating"),
        };
        assert_eq!(busy.kafka_code(), Some(codes::COORDINATOR_NOT_AVAILABLE));
        let failed = GroupError::Storage {
            op: "append",
            dir: "d".into(),
            source: LogError::Failed {
                dir: "d".into(),
                reason: "EIO".into(),
            },
        };
        assert_eq!(failed.kafka_code(), Some(codes::NOT_COORDINATOR));
        assert_eq!(
            GroupError::Closed.kafka_code(),
            Some(codes::COORDINATOR_NOT_AVAILABLE)
        );
        assert_eq!(
            GroupError::UnsupportedApi {
                api_key: 68,
                api_version: 0
            }
            .kafka_code(),
            None
        );
    }
}
