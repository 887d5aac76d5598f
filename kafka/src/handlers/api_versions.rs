//! ApiVersions (key 18): the versions this broker serves, exactly.
//!
//! Every API whose handler exists is listed with the range it implements, plus the group
//! coordinator's ranges. One deliberate exception (Kafka 4.0 does the same, KAFKA-18659): Produce
//! is advertised with min version 0 although v0-v2 are refused, because librdkafka disables
//! compression against a broker whose Produce minimum is above 0. The response header is always
//! v0 (no tagged fields), which the codec's header selection guarantees.

use kiln_kafka_codec::ResponseBody;
use kiln_kafka_codec::generated::api_versions_request::ApiVersionsRequest;
use kiln_kafka_codec::generated::api_versions_response::{ApiVersion, ApiVersionsResponse};

use super::{Ctx, SUPPORTED};
use crate::conn::ConnError;
use crate::error_code;

pub const API_KEY: i16 = 18;

/// The advertised table, sorted by key.
pub fn advertised() -> Vec<ApiVersion> {
    let mut v: Vec<ApiVersion> = SUPPORTED
        .iter()
        .chain(crate::group::GROUP_API_VERSIONS.iter())
        .map(|&(api_key, min, max)| ApiVersion {
            api_key,
            min_version: if api_key == 0 { 0 } else { min },
            max_version: max,
        })
        .collect();
    v.sort_by_key(|a| a.api_key);
    v.dedup_by_key(|a| a.api_key);
    v
}

pub fn handle(_ctx: Ctx, _req: &ApiVersionsRequest) -> ResponseBody {
    ResponseBody::ApiVersions(ApiVersionsResponse {
        error_code: error_code::NONE,
        api_keys: advertised(),
        ..Default::default()
    })
}

/// The answer to an ApiVersions version this broker does not know: v0 with UNSUPPORTED_VERSION
/// and the table, so the client can pick a version both sides speak.
pub fn unsupported(ctx: Ctx) -> Result<Vec<bytes::Bytes>, ConnError> {
    let body = ResponseBody::ApiVersions(ApiVersionsResponse {
        error_code: error_code::UNSUPPORTED_VERSION,
        api_keys: advertised(),
        ..Default::default()
    });
    super::encode(Ctx { version: 0, ..ctx }, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_min_is_advertised_as_zero_and_keys_are_unique() {
        let v = advertised();
        let produce = v.iter().find(|a| a.api_key == 0).expect("produce listed");
        assert_eq!(produce.min_version, 0);
        let mut keys: Vec<i16> = v.iter().map(|a| a.api_key).collect();
        keys.dedup();
        assert_eq!(keys.len(), v.len());
        // Transactions, KIP-848 and SASL are not advertised.
        for k in [17, 24, 25, 26, 28, 36, 68, 69] {
            assert!(
                v.iter().all(|a| a.api_key != k),
                "key {k} must not be advertised"
            );
        }
    }
}
