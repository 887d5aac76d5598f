//! A reader for Java `.properties` files, the format of Kafka's `server.properties`.
//!
//! Supported: `#` and `!` comment lines, `key=value`, `key: value` and `key value` separators,
//! backslash line continuations, and the escapes `\t \n \r \f \\ \uXXXX`. Later keys replace earlier
//! ones, as in `java.util.Properties`. Pure: no I/O.

use std::collections::BTreeMap;

/// Parses `text` into key/value pairs. Never fails: Java's loader accepts any text.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        // An odd number of trailing backslashes continues the line.
        let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        if let Some((k, v)) = split_pair(&logical) {
            out.insert(k, v);
        }
        logical.clear();
    }
    if !logical.is_empty()
        && let Some((k, v)) = split_pair(&logical)
    {
        out.insert(k, v);
    }
    out
}

fn split_pair(line: &str) -> Option<(String, String)> {
    let mut key = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    key.push(unescape(n, &mut chars));
                }
            }
            '=' | ':' => break,
            c if c.is_whitespace() => {
                // Whitespace ends the key; an `=` or `:` may follow it.
                while let Some(n) = chars.peek() {
                    if n.is_whitespace() {
                        chars.next();
                    } else {
                        break;
                    }
                }
                if let Some(n) = chars.peek()
                    && (*n == '=' || *n == ':')
                {
                    chars.next();
                }
                break;
            }
            c => key.push(c),
        }
    }
    while let Some(n) = chars.peek() {
        if n.is_whitespace() {
            chars.next();
        } else {
            break;
        }
    }
    let mut value = String::new();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                value.push(unescape(n, &mut chars));
            }
        } else {
            value.push(c);
        }
    }
    if key.is_empty() {
        return None;
    }
    // Kafka trims values (`AbstractConfig` parses with trim()).
    Some((key, value.trim_end().to_string()))
}

fn unescape(c: char, rest: &mut std::iter::Peekable<std::str::Chars<'_>>) -> char {
    match c {
        't' => '\t',
        'n' => '\n',
        'r' => '\r',
        'f' => '\u{c}',
        'u' => {
            let hex: String = rest.by_ref().take(4).collect();
            u32::from_str_radix(&hex, 16)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}')
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_separators_comments_and_continuations() {
        let p = parse(
            "# comment\n! bang\nbroker.id=0\nlisteners = PLAINTEXT://:9092\nlog.dirs: /tmp/a\n\
             num.partitions 3\nzookeeper.connect=h1:2181,\\\n   h2:2181\nempty=\n",
        );
        assert_eq!(p["broker.id"], "0");
        assert_eq!(p["listeners"], "PLAINTEXT://:9092");
        assert_eq!(p["log.dirs"], "/tmp/a");
        assert_eq!(p["num.partitions"], "3");
        assert_eq!(p["zookeeper.connect"], "h1:2181,h2:2181");
        assert_eq!(p["empty"], "");
        assert_eq!(p.len(), 6);
    }

    #[test]
    fn later_keys_win_and_escapes_decode() {
        let p = parse("a=1\na=2\nb=x\\ty\\u0041\n");
        assert_eq!(p["a"], "2");
        assert_eq!(p["b"], "x\tyA");
    }
}
