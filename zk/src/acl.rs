//! ACL schemes (world, auth, digest, ip, super) and permission checks, as in ZooKeeper's
//! `ZooKeeperServer.checkACL` / `PrepRequestProcessor.fixupACL` and the built-in authentication
//! providers. Pure functions; SHA-1 and base64 are implemented here because a digest id is the only
//! place either is needed.

use crate::proto::{Acl, Code, Id};

/// `DigestAuthenticationProvider.generateDigest`: `user:base64(sha1("user:password"))`.
pub fn generate_digest(id_password: &str) -> String {
    let user = id_password.split(':').next().unwrap_or("");
    format!("{user}:{}", base64(&sha1(id_password.as_bytes())))
}

/// The ids a connection gains from an `AuthPacket`, or `None` (AUTHFAILED) for a scheme that has
/// no provider. `super_digest` is `DigestAuthenticationProvider.superDigest`.
pub fn authenticate(
    scheme: &str,
    auth: &[u8],
    client_ip: &str,
    super_digest: Option<&str>,
) -> Option<Vec<Id>> {
    match scheme {
        "digest" => {
            let text = String::from_utf8_lossy(auth);
            let digest = generate_digest(&text);
            let mut ids = Vec::new();
            if super_digest == Some(digest.as_str()) {
                ids.push(Id::new("super", ""));
            }
            ids.push(Id::new("digest", &digest));
            Some(ids)
        }
        "ip" => Some(vec![Id::new("ip", client_ip)]),
        _ => None,
    }
}

/// Whether `auth` (a connection's ids) grants any bit of `perm` on a node with `acl`.
pub fn check(acl: &[Acl], perm: i32, auth: &[Id]) -> Result<(), Code> {
    if acl.is_empty() || auth.iter().any(|a| a.scheme == "super") {
        return Ok(());
    }
    for a in acl {
        if a.perms & perm == 0 {
            continue;
        }
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return Ok(());
        }
        for who in auth {
            if who.scheme == a.id.scheme && matches(&a.id.scheme, &who.id, &a.id.id) {
                return Ok(());
            }
        }
    }
    Err(Code::NoAuth)
}

fn matches(scheme: &str, id: &str, acl_expr: &str) -> bool {
    match scheme {
        "ip" => ip_matches(id, acl_expr),
        _ => id == acl_expr,
    }
}

fn is_authenticated_scheme(scheme: &str) -> bool {
    matches!(scheme, "digest" | "super")
}

fn is_valid_id(scheme: &str, id: &str) -> bool {
    match scheme {
        "digest" => id.split(':').count() == 2,
        "ip" => parse_ip_expr(id).is_some(),
        _ => false,
    }
}

/// `PrepRequestProcessor.fixupACL`: expands `auth` entries into the connection's authenticated ids,
/// validates the rest, drops duplicates. An empty list or an invalid entry is INVALIDACL.
pub fn fixup(acl: &[Acl], auth: &[Id]) -> Result<Vec<Acl>, Code> {
    if acl.is_empty() {
        return Err(Code::InvalidAcl);
    }
    let mut out: Vec<Acl> = Vec::with_capacity(acl.len());
    let push = |a: Acl, out: &mut Vec<Acl>| {
        if !out.contains(&a) {
            out.push(a);
        }
    };
    for a in acl {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            push(a.clone(), &mut out);
        } else if a.id.scheme == "auth" {
            let mut any = false;
            for who in auth.iter().filter(|w| is_authenticated_scheme(&w.scheme)) {
                any = true;
                push(
                    Acl {
                        perms: a.perms,
                        id: who.clone(),
                    },
                    &mut out,
                );
            }
            if !any {
                return Err(Code::InvalidAcl);
            }
        } else if is_valid_id(&a.id.scheme, &a.id.id) {
            push(a.clone(), &mut out);
        } else {
            return Err(Code::InvalidAcl);
        }
    }
    Ok(out)
}

/// `getACL` without ADMIN shows digest ids with the hash masked as `user:x`.
pub fn mask_digests(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.id.scheme == "digest" {
                let user = a.id.id.split(':').next().unwrap_or("");
                Acl {
                    perms: a.perms,
                    id: Id::new("digest", &format!("{user}:x")),
                }
            } else {
                a.clone()
            }
        })
        .collect()
}

fn parse_ip(s: &str) -> Option<Vec<u8>> {
    if let Ok(v4) = s.parse::<std::net::Ipv4Addr>() {
        return Some(v4.octets().to_vec());
    }
    s.parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|v6| v6.octets().to_vec())
}

fn parse_ip_expr(expr: &str) -> Option<(Vec<u8>, usize)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<usize>().ok()?)),
        None => (expr, None),
    };
    let bytes = parse_ip(addr)?;
    let bits = bits.unwrap_or(bytes.len() * 8);
    if bits > bytes.len() * 8 {
        return None;
    }
    Some((bytes, bits))
}

fn ip_matches(client: &str, expr: &str) -> bool {
    let (Some(client), Some((net, bits))) = (parse_ip(client), parse_ip_expr(expr)) else {
        return false;
    };
    if client.len() != net.len() {
        return false;
    }
    let mut left = bits;
    for (c, n) in client.iter().zip(net.iter()) {
        if left == 0 {
            break;
        }
        let take = left.min(8);
        let mask: u8 = if take == 8 { 0xff } else { !(0xffu8 >> take) };
        if c & mask != n & mask {
            return false;
        }
        left -= take;
    }
    true
}

/// SHA-1 (FIPS 180-4); only used to form digest ids.
pub fn sha1(msg: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let bit_len = (msg.len() as u64).wrapping_mul(8);
    let mut data = msg.to_vec();
    data.push(0x80);
    while data.len() % 64 != 56 {
        data.push(0);
    }
    data.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in data.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_and_base64_match_known_vectors() {
        assert_eq!(base64(&sha1(b"abc")), "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn digest_matches_zookeeper_format() {
        // The digest of super:test as given in ZooKeeper's administrator guide.
        assert_eq!(
            generate_digest("super:test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
    }

    #[test]
    fn auth_scheme_expands_to_digest_ids() {
        let auth = vec![Id::new("ip", "127.0.0.1"), Id::new("digest", "u:h")];
        let acl = vec![Acl {
            perms: perms_all(),
            id: Id::new("auth", ""),
        }];
        assert_eq!(
            fixup(&acl, &auth).unwrap(),
            vec![Acl {
                perms: perms_all(),
                id: Id::new("digest", "u:h")
            }]
        );
        assert_eq!(fixup(&acl, &auth[..1]), Err(Code::InvalidAcl));
        assert_eq!(fixup(&[], &auth), Err(Code::InvalidAcl));
    }

    fn perms_all() -> i32 {
        crate::proto::perms::ALL
    }

    #[test]
    fn ip_acl_matches_prefix() {
        assert!(ip_matches("10.1.2.3", "10.1.0.0/16"));
        assert!(!ip_matches("10.2.2.3", "10.1.0.0/16"));
        assert!(ip_matches("127.0.0.1", "127.0.0.1"));
        let acl = vec![Acl {
            perms: 1,
            id: Id::new("ip", "127.0.0.0/8"),
        }];
        assert!(check(&acl, 1, &[Id::new("ip", "127.0.0.1")]).is_ok());
        assert_eq!(
            check(&acl, 2, &[Id::new("ip", "127.0.0.1")]),
            Err(Code::NoAuth)
        );
        assert!(check(&acl, 2, &[Id::new("super", "")]).is_ok());
    }
}
