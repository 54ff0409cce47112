//! Serde adapter for a field kept as one JSON string inside a postcard frame, so the
//! surrounding encoding (which is not self-describing) never depends on the field's own fields:
//! later fields with defaults change neither the on-disk nor the gossip layout. Used with
//! `#[serde(with = "crate::json_field")]` (bucket props, the security state).

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    let json = serde_json::to_string(v).map_err(S::Error::custom)?;
    s.serialize_str(&json)
}

pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    let json = String::deserialize(d)?;
    serde_json::from_str(&json)
        .map_err(|e| D::Error::custom(format!("{} as JSON: {e}", std::any::type_name::<T>())))
}
