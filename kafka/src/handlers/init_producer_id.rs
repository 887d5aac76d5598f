//! InitProducerId (key 22): a producer id and epoch for an idempotent producer.
//!
//! A new producer gets a fresh id (unique across restarts, see [`crate::producer_ids`]) with
//! epoch 0. A producer that sends its current id and epoch (KIP-360, v3+) gets the same id with
//! the epoch bumped, or a fresh id when the epoch would overflow. Transactional ids are refused:
//! transactions are not implemented (and not advertised).

use std::rc::Rc;

use kiln_kafka_codec::ResponseBody;
use kiln_kafka_codec::generated::init_producer_id_request::InitProducerIdRequest;
use kiln_kafka_codec::generated::init_producer_id_response::InitProducerIdResponse;

use super::Ctx;
use crate::error_code;
use crate::shard::ShardState;

pub fn handle(shard: &Rc<ShardState>, _ctx: Ctx, req: InitProducerIdRequest) -> ResponseBody {
    let mut resp = InitProducerIdResponse {
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    if req.transactional_id.is_some() {
        resp.error_code = error_code::INVALID_REQUEST;
        return ResponseBody::InitProducerId(resp);
    }
    if req.producer_id >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch + 1;
        return ResponseBody::InitProducerId(resp);
    }
    let allocated = shard
        .shared
        .producer_ids
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allocate();
    match allocated {
        Ok(id) => {
            resp.producer_id = id;
            resp.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!(error = %e, "allocating a producer id");
            resp.error_code = error_code::KAFKA_STORAGE_ERROR;
        }
    }
    ResponseBody::InitProducerId(resp)
}
