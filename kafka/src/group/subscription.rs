//! Reading the topics out of a `ConsumerProtocolSubscription` (the member metadata of groups
//! whose protocol type is "consumer"), for OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC check.
//!
//! Every version (0-3) starts with `i16 version, [i32 count][i16 len, bytes] topics`; the rest
//! is not needed here. Counts and lengths are checked against the bytes present before use.

/// The subscribed topics, or `None` when the bytes are not a subscription.
#[must_use]
pub fn topics(metadata: &[u8]) -> Option<Vec<String>> {
    let version = i16::from_be_bytes(metadata.get(0..2)?.try_into().ok()?);
    if version < 0 {
        return None;
    }
    let count = i32::from_be_bytes(metadata.get(2..6)?.try_into().ok()?);
    let count = usize::try_from(count).ok()?;
    let mut pos = 6;
    // Each topic takes at least two bytes, which bounds the allocation by the input.
    if count > metadata.len().saturating_sub(pos) / 2 {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i16::from_be_bytes(metadata.get(pos..pos + 2)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        pos += 2;
        let name = metadata.get(pos..pos + len)?;
        pos += len;
        out.push(String::from_utf8(name.to_vec()).ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a v0 subscription, as consumers do.
    pub(crate) fn encode(topics: &[&str]) -> Vec<u8> {
        let mut out = vec![0, 0];
        out.extend_from_slice(&i32::try_from(topics.len()).expect("count").to_be_bytes());
        for t in topics {
            out.extend_from_slice(&i16::try_from(t.len()).expect("len").to_be_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        out.extend_from_slice(&(-1_i32).to_be_bytes());
        out
    }

    #[test]
    fn reads_topics_of_a_subscription() {
        assert_eq!(
            topics(&encode(&["a", "bc"])),
            Some(vec!["a".to_owned(), "bc".to_owned()])
        );
    }

    #[test]
    fn refuses_garbage_and_count_bombs() {
        assert_eq!(topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
        assert_eq!(topics(&[0]), None);
        assert_eq!(topics(&[0, 0, 0, 0, 0, 1, 0, 5, b'a']), None);
    }
}
