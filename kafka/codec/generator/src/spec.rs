//! The subset of Kafka's JSON message-spec format the generator understands.

use serde_json::Value;
use std::fmt;

/// A spec could not be understood.
#[derive(Debug)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(msg.into()))
}

/// A version range; `None` in [`Field`] means "no versions".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub lo: i16,
    /// Inclusive; `i16::MAX` for an open range (`"3+"`).
    pub hi: i16,
}

impl Versions {
    pub fn parse(s: &str) -> Result<Option<Versions>, SpecError> {
        let s = s.trim();
        let num = |t: &str| {
            t.trim()
                .parse::<i16>()
                .map_err(|e| SpecError(format!("bad version {t:?}: {e}")))
        };
        if s == "none" {
            return Ok(None);
        }
        if let Some(lo) = s.strip_suffix('+') {
            return Ok(Some(Versions {
                lo: num(lo)?,
                hi: i16::MAX,
            }));
        }
        if let Some((lo, hi)) = s.split_once('-') {
            return Ok(Some(Versions {
                lo: num(lo)?,
                hi: num(hi)?,
            }));
        }
        let v = num(s)?;
        Ok(Some(Versions { lo: v, hi: v }))
    }

    pub fn contains(&self, v: i16) -> bool {
        self.lo <= v && v <= self.hi
    }

    pub fn intersect(a: Option<Versions>, b: Option<Versions>) -> Option<Versions> {
        let (a, b) = (a?, b?);
        let lo = a.lo.max(b.lo);
        let hi = a.hi.min(b.hi);
        (lo <= hi).then_some(Versions { lo, hi })
    }
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hi == i16::MAX {
            write!(f, "{}+", self.lo)
        } else if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    Bool,
    Int8,
    Int16,
    Uint16,
    Int32,
    Int64,
    Float64,
    Uuid,
    String,
    Bytes,
    Records,
    Array(Box<Type>),
    Struct(String),
}

impl Type {
    pub fn parse(s: &str) -> Type {
        if let Some(inner) = s.strip_prefix("[]") {
            return Type::Array(Box::new(Type::parse(inner)));
        }
        match s {
            "bool" => Type::Bool,
            "int8" => Type::Int8,
            "int16" => Type::Int16,
            "uint16" => Type::Uint16,
            "int32" => Type::Int32,
            "int64" => Type::Int64,
            "float64" => Type::Float64,
            "uuid" => Type::Uuid,
            "string" => Type::String,
            "bytes" => Type::Bytes,
            "records" => Type::Records,
            other => Type::Struct(other.to_string()),
        }
    }

    pub fn spec_name(&self) -> String {
        match self {
            Type::Bool => "bool".into(),
            Type::Int8 => "int8".into(),
            Type::Int16 => "int16".into(),
            Type::Uint16 => "uint16".into(),
            Type::Int32 => "int32".into(),
            Type::Int64 => "int64".into(),
            Type::Float64 => "float64".into(),
            Type::Uuid => "uuid".into(),
            Type::String => "string".into(),
            Type::Bytes => "bytes".into(),
            Type::Records => "records".into(),
            Type::Array(t) => format!("[]{}", t.spec_name()),
            Type::Struct(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: Type,
    pub versions: Option<Versions>,
    pub nullable: Option<Versions>,
    pub tag: Option<u32>,
    pub tagged: Option<Versions>,
    pub ignorable: bool,
    pub default: Option<String>,
    pub entity_type: Option<String>,
    /// A per-field override of the message's flexible versions (only the request header's
    /// client id uses it).
    pub flexible: Option<Option<Versions>>,
    /// Inline struct definition, for struct and struct-array fields.
    pub fields: Option<Vec<Field>>,
}

#[derive(Debug, Clone)]
pub struct StructDef {
    pub name: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
    Header,
    Data,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub name: String,
    pub kind: Kind,
    pub api_key: Option<i16>,
    pub valid: Versions,
    pub flexible: Option<Versions>,
    pub fields: Vec<Field>,
    pub common: Vec<StructDef>,
}

/// Removes `//` comments (outside string literals) so the text parses as JSON.
pub fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for n in chars.by_ref() {
                if n == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn parse_field(v: &Value) -> Result<Field, SpecError> {
    let name = get_str(v, "name").ok_or_else(|| SpecError(format!("field without name: {v}")))?;
    let ty = get_str(v, "type").ok_or_else(|| SpecError(format!("{name}: no type")))?;
    let versions = Versions::parse(
        get_str(v, "versions").ok_or_else(|| SpecError(format!("{name}: no versions")))?,
    )?;
    let nullable = match get_str(v, "nullableVersions") {
        Some(s) => Versions::parse(s)?,
        None => None,
    };
    let tagged = match get_str(v, "taggedVersions") {
        Some(s) => Versions::parse(s)?,
        None => None,
    };
    let tag = match v.get("tag") {
        Some(t) => Some(
            t.as_u64()
                .or_else(|| t.as_str().and_then(|s| s.trim().parse().ok()))
                .and_then(|t| u32::try_from(t).ok())
                .ok_or_else(|| SpecError(format!("{name}: bad tag {t}")))?,
        ),
        None => None,
    };
    if tag.is_some() != tagged.is_some() {
        return err(format!("{name}: tag and taggedVersions must come together"));
    }
    let ignorable = v.get("ignorable").and_then(Value::as_bool).unwrap_or(false);
    let default = match v.get("default") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let flexible = match get_str(v, "flexibleVersions") {
        Some(s) => Some(Versions::parse(s)?),
        None => None,
    };
    let fields = match v.get("fields") {
        Some(Value::Array(fs)) => Some(fs.iter().map(parse_field).collect::<Result<_, _>>()?),
        Some(_) => return err(format!("{name}: fields is not an array")),
        None => None,
    };
    Ok(Field {
        name: name.to_string(),
        ty: Type::parse(ty),
        versions,
        nullable,
        tag,
        tagged,
        ignorable,
        default,
        entity_type: get_str(v, "entityType").map(str::to_string),
        flexible,
        fields,
    })
}

/// Parses one spec file's text (comments allowed).
pub fn parse_message(src: &str) -> Result<Message, SpecError> {
    let json: Value = serde_json::from_str(&strip_comments(src))
        .map_err(|e| SpecError(format!("invalid JSON: {e}")))?;
    let name = get_str(&json, "name").ok_or_else(|| SpecError("no name".into()))?;
    let kind = match get_str(&json, "type") {
        Some("request") => Kind::Request,
        Some("response") => Kind::Response,
        Some("header") => Kind::Header,
        Some("data") => Kind::Data,
        other => return err(format!("{name}: unknown message type {other:?}")),
    };
    let api_key = match json.get("apiKey") {
        Some(k) => Some(
            k.as_i64()
                .and_then(|k| i16::try_from(k).ok())
                .ok_or_else(|| SpecError(format!("{name}: bad apiKey")))?,
        ),
        None => None,
    };
    let valid = Versions::parse(
        get_str(&json, "validVersions")
            .ok_or_else(|| SpecError(format!("{name}: no validVersions")))?,
    )?
    .ok_or_else(|| SpecError(format!("{name}: no valid versions")))?;
    let flexible = Versions::parse(get_str(&json, "flexibleVersions").unwrap_or("none"))?;
    let fields = match json.get("fields") {
        Some(Value::Array(fs)) => fs.iter().map(parse_field).collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    let mut common = Vec::new();
    if let Some(Value::Array(cs)) = json.get("commonStructs") {
        for c in cs {
            let cname = get_str(c, "name")
                .ok_or_else(|| SpecError(format!("{name}: unnamed common struct")))?;
            let fields = match c.get("fields") {
                Some(Value::Array(fs)) => fs.iter().map(parse_field).collect::<Result<_, _>>()?,
                _ => Vec::new(),
            };
            common.push(StructDef {
                name: cname.to_string(),
                fields,
            });
        }
    }
    Ok(Message {
        name: name.to_string(),
        kind,
        api_key,
        valid,
        flexible,
        fields,
        common,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ranges_parse() {
        assert_eq!(
            Versions::parse("3+").unwrap(),
            Some(Versions {
                lo: 3,
                hi: i16::MAX
            })
        );
        assert_eq!(
            Versions::parse("0-4").unwrap(),
            Some(Versions { lo: 0, hi: 4 })
        );
        assert_eq!(
            Versions::parse("7").unwrap(),
            Some(Versions { lo: 7, hi: 7 })
        );
        assert_eq!(Versions::parse("none").unwrap(), None);
        assert!(Versions::parse("x").is_err());
    }

    #[test]
    fn comments_are_stripped_outside_strings_only() {
        let src = "// header\n{ \"a\": \"http://x\", // trailing\n \"b\": 1 }";
        let v: Value = serde_json::from_str(&strip_comments(src)).unwrap();
        assert_eq!(v["a"], "http://x");
        assert_eq!(v["b"], 1);
    }

    #[test]
    fn a_message_parses_with_nested_and_tagged_fields() {
        let m = parse_message(
            r#"{ "apiKey": 99, "type": "request", "name": "XRequest", "validVersions": "0-2",
                 "flexibleVersions": "1+", "fields": [
                 { "name": "Items", "type": "[]Item", "versions": "0+", "fields": [
                   { "name": "Id", "type": "int32", "versions": "0+" } ] },
                 { "name": "Extra", "type": "string", "versions": "1+", "tag": "0",
                   "taggedVersions": "1+", "nullableVersions": "1+", "default": "null" } ] }"#,
        )
        .unwrap();
        assert_eq!(m.api_key, Some(99));
        assert_eq!(
            m.flexible,
            Some(Versions {
                lo: 1,
                hi: i16::MAX
            })
        );
        assert_eq!(
            m.fields[0].ty,
            Type::Array(Box::new(Type::Struct("Item".into())))
        );
        assert_eq!(m.fields[1].tag, Some(0));
        assert_eq!(m.fields[1].default.as_deref(), Some("null"));
    }
}
