//! [`OwnerKey`]: who a piece of server-side state belongs to.
//!
//! Without protocol sessions, a server that keeps state between tool calls hands the client a
//! handle and must make sure that only the principal it was created for can use it. Storing the
//! state under [`OwnerKey::scoped`] (`<owner>:<handle>`) does that without any check to forget:
//! another principal presenting the same handle looks up another key and finds nothing.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::Principal;

/// A fixed-size, non-reversible digest of a principal's identity: the issuer, subject and client
/// id, or the token itself when the principal names neither subject nor client (so that two such
/// tokens are two owners, never one shared "nobody").
///
/// Two tokens of one user from one client share an owner, so state survives token refresh;
/// the same user through another client is another owner, since that client was granted
/// separately.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OwnerKey([u8; 32]);

impl OwnerKey {
    /// The owner of `principal`; `None` when it names neither subject nor client and was not
    /// inserted by the bearer layer (no token to tell it apart from other anonymous principals),
    /// in which case nothing should be stored for it.
    pub fn of(principal: &Principal) -> Option<Self> {
        let mut hash = Sha256::new();
        if principal.subject().is_none() && principal.client_id().is_none() {
            hash.update(b"token\0");
            hash.update(principal.token_key()?);
        } else {
            hash.update(b"identity\0");
            for part in [
                principal.issuer(),
                principal.subject(),
                principal.client_id(),
            ] {
                // Length-prefixed, so that no two different triples hash alike.
                match part {
                    Some(text) => {
                        hash.update([1]);
                        hash.update((text.len() as u64).to_be_bytes());
                        hash.update(text.as_bytes());
                    }
                    None => hash.update([0]),
                }
            }
        }
        Some(Self(hash.finalize().into()))
    }

    /// The digest itself.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The storage key of `handle` for this owner: `<owner>:<handle>`, the owner in lowercase
    /// hex. Look state up only by this key, never by the bare handle.
    pub fn scoped(&self, handle: &str) -> String {
        format!("{self}:{handle}")
    }
}

impl From<OwnerKey> for [u8; 32] {
    fn from(owner: OwnerKey) -> Self {
        owner.0
    }
}

/// Lowercase hex of the digest.
impl fmt::Display for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerKey({self})")
    }
}
