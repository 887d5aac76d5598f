//! DescribeCluster (key 60): this broker, as controller of a one-node cluster.

use std::rc::Rc;

use kiln_kafka_codec::ResponseBody;
use kiln_kafka_codec::generated::describe_cluster_request::DescribeClusterRequest;
use kiln_kafka_codec::generated::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};

use super::Ctx;
use super::metadata::AUTHORIZED_OPERATIONS_OMITTED;
use crate::error_code;
use crate::shard::ShardState;

/// DescribeCluster endpoint type for brokers (v1+).
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(shard: &Rc<ShardState>, _ctx: Ctx, req: DescribeClusterRequest) -> ResponseBody {
    let shared = &shard.shared;
    let ep = shared.advertised();
    let mut resp = DescribeClusterResponse {
        endpoint_type: req.endpoint_type,
        cluster_id: shared.cluster_id.clone(),
        controller_id: shared.config.broker_id,
        brokers: vec![DescribeClusterBroker {
            broker_id: shared.config.broker_id,
            host: ep.host,
            port: i32::from(ep.port),
            rack: None,
            is_fenced: false,
        }],
        cluster_authorized_operations: AUTHORIZED_OPERATIONS_OMITTED,
        ..Default::default()
    };
    if req.endpoint_type != ENDPOINT_BROKERS {
        resp.error_code = error_code::INVALID_REQUEST;
        resp.error_message = Some("only broker endpoints are served".to_string());
        resp.brokers.clear();
    }
    ResponseBody::DescribeCluster(resp)
}
