//! Security Event Tokens (RFC 8417) of outbox rows: the row's claims plus the stream's `aud`
//! and the row's `jti`, signed with the current signing key (published at `/jwks`).

use serde_json::Value;

use crate::keys::{self, KeyError};
use crate::model::{OutboxEntry, SigningKey};

/// The SET of `entry` for a stream whose audience is `aud` (the owning client's id).
pub fn sign(key: &SigningKey, entry: &OutboxEntry, aud: &str) -> Result<String, KeyError> {
    let mut claims = entry.claims.clone();
    if let Value::Object(map) = &mut claims {
        map.insert("aud".to_owned(), Value::String(aud.to_owned()));
        map.insert("jti".to_owned(), Value::String(entry.jti.clone()));
    } else {
        return Err(KeyError::Encoding(
            "claims of an outbox row are not an object",
        ));
    }
    keys::sign_set(key, &claims)
}
