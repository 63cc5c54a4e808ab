//! A generic, order-preserving YAML value: kubeconfig files are read into it, edited in place, and written back, so
//! every field the plugin does not know about (and the order of keys) survives the round trip. A typed struct would
//! silently drop whatever it does not model.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// Why a YAML text could not be read or written, or a node did not have the shape an edit needs.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("expected a mapping to set {key:?} in, found {found}")]
    NotAMapping { key: String, found: &'static str },
    #[error("{key:?} should be a {expected}, found {found}")]
    WrongShape { key: String, expected: &'static str, found: &'static str },
    #[error(transparent)]
    Parse(Box<serde_saphyr::Error>),
    #[error(transparent)]
    Write(Box<serde_saphyr::SerializeError>),
}

/// Any YAML node. Mappings keep their keys in file order.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Yaml {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    String(String),
    Seq(Vec<Yaml>),
    Map(Vec<(Yaml, Yaml)>),
}

impl Yaml {
    pub fn str(s: impl Into<String>) -> Yaml {
        Yaml::String(s.into())
    }

    /// An empty mapping.
    pub fn map() -> Yaml {
        Yaml::Map(Vec::new())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Yaml::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Yaml]> {
        match self {
            Yaml::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter_mut().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string under `key`, when it is one.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Yaml::as_str)
    }

    /// Sets `key` of a mapping (appended when new, replaced in place otherwise). A null node becomes a mapping
    /// first (YAML writes an empty mapping as nothing: `preferences:`); any other non-mapping is an error.
    pub fn set(&mut self, key: &str, value: Yaml) -> Result<(), YamlError> {
        if *self == Yaml::Null {
            *self = Yaml::map();
        }
        match self {
            Yaml::Map(entries) => {
                match entries.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
                    Some((_, v)) => *v = value,
                    None => entries.push((Yaml::str(key), value)),
                }
                Ok(())
            }
            other => Err(YamlError::NotAMapping { key: key.to_owned(), found: other.kind() }),
        }
    }

    /// The mapping under `key`, created when missing or null.
    pub fn map_at(&mut self, key: &str) -> Result<&mut Yaml, YamlError> {
        match self.get(key) {
            Some(Yaml::Map(_)) => {}
            Some(Yaml::Null) | None => self.set(key, Yaml::map())?,
            Some(other) => return Err(other.wrong_shape(key, "mapping")),
        }
        Ok(self.get_mut(key).expect("just set"))
    }

    /// The sequence under `key`, created when missing or null.
    pub fn seq_at(&mut self, key: &str) -> Result<&mut Vec<Yaml>, YamlError> {
        match self.get(key) {
            Some(Yaml::Seq(_)) => {}
            Some(Yaml::Null) | None => self.set(key, Yaml::Seq(Vec::new()))?,
            Some(other) => return Err(other.wrong_shape(key, "list")),
        }
        match self.get_mut(key) {
            Some(Yaml::Seq(items)) => Ok(items),
            _ => unreachable!("just set to a sequence"),
        }
    }

    /// Removes `key` from a mapping; true when it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        match self {
            Yaml::Map(entries) => {
                let before = entries.len();
                entries.retain(|(k, _)| k.as_str() != Some(key));
                entries.len() != before
            }
            _ => false,
        }
    }

    fn wrong_shape(&self, key: &str, expected: &'static str) -> YamlError {
        YamlError::WrongShape { key: key.to_owned(), expected, found: self.kind() }
    }

    fn kind(&self) -> &'static str {
        match self {
            Yaml::Null => "null",
            Yaml::Bool(_) => "a boolean",
            Yaml::Int(_) | Yaml::UInt(_) | Yaml::Float(_) => "a number",
            Yaml::String(_) => "a string",
            Yaml::Seq(_) => "a list",
            Yaml::Map(_) => "a mapping",
        }
    }
}

/// Parses one YAML document (an empty text is `Null`).
pub fn parse(text: &str) -> Result<Yaml, YamlError> {
    if text.trim().is_empty() {
        return Ok(Yaml::Null);
    }
    serde_saphyr::from_str(text).map_err(|e| YamlError::Parse(Box::new(e)))
}

/// Writes `value` as block YAML, the way kubectl lays out a kubeconfig (compact list indentation, no folded
/// scalars: certificate data stays one line).
pub fn to_string(value: &Yaml) -> Result<String, YamlError> {
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    serde_saphyr::to_string_with_options(value, options).map_err(|e| YamlError::Write(Box::new(e)))
}

impl Serialize for Yaml {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Yaml::Null => s.serialize_unit(),
            Yaml::Bool(b) => s.serialize_bool(*b),
            Yaml::Int(i) => s.serialize_i64(*i),
            Yaml::UInt(u) => s.serialize_u64(*u),
            Yaml::Float(f) => s.serialize_f64(*f),
            Yaml::String(v) => s.serialize_str(v),
            Yaml::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Yaml::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Yaml, D::Error> {
        d.deserialize_any(YamlVisitor)
    }
}

struct YamlVisitor;

impl<'de> Visitor<'de> for YamlVisitor {
    type Value = Yaml;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }

    fn visit_none<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
        Yaml::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Yaml, E> {
        Ok(Yaml::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Yaml, E> {
        Ok(Yaml::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Yaml, E> {
        Ok(Yaml::UInt(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Yaml, E> {
        Ok(Yaml::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Yaml, E> {
        Ok(Yaml::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Yaml, E> {
        Ok(Yaml::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Yaml::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry()? {
            entries.push((k, v));
        }
        Ok(Yaml::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_order_types_and_unknown_fields() {
        let text = "\
zeta: 1
alpha:
  nested: [a, b]
  flag: true
  quoted: 'true'
  number: '0123'
list:
- name: x
  extra: {deep: [1, 2.5, null]}
empty: {}
nothing:
";
        let doc = parse(text).unwrap();
        let keys: Vec<_> = match &doc {
            Yaml::Map(e) => e.iter().map(|(k, _)| k.as_str().unwrap().to_owned()).collect(),
            _ => panic!(),
        };
        assert_eq!(keys, ["zeta", "alpha", "list", "empty", "nothing"]);
        let written = to_string(&doc).unwrap();
        assert_eq!(parse(&written).unwrap(), doc, "{written}");
        // Strings that look like other types stay strings.
        assert_eq!(doc.get("alpha").unwrap().get("quoted"), Some(&Yaml::str("true")));
        assert!(written.contains("quoted: \"true\"") || written.contains("quoted: 'true'"), "{written}");
        assert_eq!(parse(&written).unwrap().get("alpha").unwrap().get_str("number"), Some("0123"));
    }

    #[test]
    fn long_strings_stay_on_one_line() {
        let mut doc = Yaml::map();
        let data = "QUJD".repeat(500);
        doc.set("certificate-authority-data", Yaml::str(&data)).unwrap();
        let written = to_string(&doc).unwrap();
        assert_eq!(written.trim_end(), format!("certificate-authority-data: {data}"));
    }

    #[test]
    fn set_creates_and_replaces_in_place() {
        let mut doc = parse("a: 1\nb: 2\nc:\n").unwrap();
        doc.set("a", Yaml::Int(9)).unwrap();
        doc.set("d", Yaml::str("new")).unwrap();
        doc.map_at("c").unwrap().set("x", Yaml::Bool(true)).unwrap();
        assert_eq!(to_string(&doc).unwrap(), "a: 9\nb: 2\nc:\n  x: true\nd: new\n");
        assert!(doc.set_at_scalar_fails());
    }

    impl Yaml {
        fn set_at_scalar_fails(&mut self) -> bool {
            self.get_mut("a").unwrap().set("k", Yaml::Null).is_err()
        }
    }
}
