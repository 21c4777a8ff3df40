//! The signature algorithms a JWT may use here: asymmetric ones only.

use std::fmt;

/// A JWS signature algorithm (RFC 7518 §3.1, RFC 8037) accepted for access tokens.
///
/// Only asymmetric algorithms exist here. A resource server verifies with the issuer's *public*
/// key; an HMAC algorithm would need the issuer's signing secret, and accepting one with a public
/// key is the classic algorithm-confusion attack (the public key used as an HMAC secret). `none`
/// is not an algorithm at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwsAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

/// The kind of key an algorithm verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFamily {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl JwsAlgorithm {
    /// Every algorithm, in the order of their names in RFC 7518.
    pub const ALL: [JwsAlgorithm; 9] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// What an issuer accepts unless told otherwise: the algorithms authorization servers use in
    /// practice.
    pub const DEFAULT_ALLOWED: [JwsAlgorithm; 4] =
        [Self::RS256, Self::PS256, Self::ES256, Self::EdDSA];

    /// The `alg` name (RFC 7518 §3.1).
    pub fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The algorithm named `name`, compared exactly (`alg` is case-sensitive); `None` for any
    /// other name, `none` and the HMAC algorithms included.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    pub(crate) fn family(self) -> KeyFamily {
        match self {
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                KeyFamily::Rsa
            }
            Self::ES256 => KeyFamily::EcP256,
            Self::ES384 => KeyFamily::EcP384,
            Self::EdDSA => KeyFamily::Ed25519,
        }
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_is_an_algorithm() {
        for alg in JwsAlgorithm::ALL {
            assert_eq!(JwsAlgorithm::from_name(alg.name()), Some(alg));
        }
        for name in [
            "none", "None", "HS256", "HS384", "HS512", "es256", "RS256 ", "",
        ] {
            assert_eq!(JwsAlgorithm::from_name(name), None, "{name:?}");
        }
    }
}
