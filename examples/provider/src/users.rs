//! End users: the users file, demo accounts and password verification (argon2id PHC strings).
//!
//! The users file is TOML (or JSON when its name ends in `.json`):
//!
//! ```toml
//! [[users]]
//! username = "alice"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"   # from `oauth-provider hash-password`
//! scopes = ["read", "write"]
//! ```

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// One end user.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name; also the token's `sub` and `username`.
    pub username: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// Scopes the user may grant; a token gets the requested scopes ∩ these.
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<User>,
}

/// Errors loading users.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The file could not be read.
    #[error("cannot read users file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not valid TOML/JSON of the expected shape.
    #[error("invalid users file: {0}")]
    Parse(String),
    /// A user entry is invalid.
    #[error("invalid user {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// Demo accounts enabled by `--demo`: (username, password, scopes).
pub const DEMO_ACCOUNTS: [(&str, &str, &[&str]); 3] = [
    ("alice", "password123", &["read", "write"]),
    ("bob", "secret456", &["read"]),
    ("admin", "admin789", &["read", "write", "admin"]),
];

/// Argon2id hashes of the demo passwords, precomputed with `oauth-provider hash-password` so that
/// starting a demo server costs no hashing. Same order as [`DEMO_ACCOUNTS`].
const DEMO_HASHES: [&str; 3] = [
    "$argon2id$v=19$m=19456,t=2,p=1$qCt9OeTRNZCZs8V9NjNrgQ$1eKe/P3vatP21uRfZn+NX0lxnxUjJ4GUEoXD7dSpP6U",
    "$argon2id$v=19$m=19456,t=2,p=1$pjyxw5eICe5GDN65mc+zVQ$T4a836wptsLzNJSRacI73ECG4JfFrWaIdtvQaqlwTxo",
    "$argon2id$v=19$m=19456,t=2,p=1$2ycS+VDmF7M3QmtfpmknpQ$6ZaJW7Vi+DKDM1OhYlKphYt0AGxwmI06YG3K5UqS2F0",
];

/// Hash verified when the username is unknown, so that a wrong username costs as much time as a
/// wrong password (no user enumeration by timing). Its password is random and was discarded.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$UFfDQyf6aPJTh6AFCuI6og$bHci9NP65U4afwu5IkS5yCCzvrWiHb1PH+E/HCbTrsE";

/// Hashes a password into an argon2id PHC string with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Working memory for argon2 verifications, kept and reused between them.
///
/// Argon2 allocates its whole memory cost (~19 MiB with the default parameters) for every
/// computation. Allocating it per verification lets the allocator keep a copy per thread that
/// ever ran one (glibc arenas), so the resident set grew with the number of threads rather than
/// with the number of verifications in flight. A fixed set of reused buffers, one per hashing
/// slot, makes the memory exactly slots × memory cost.
#[derive(Default)]
pub struct HashMemory(Vec<Block>);

impl HashMemory {
    /// Bytes held.
    pub fn len_bytes(&self) -> usize {
        self.0.len() * std::mem::size_of::<Block>()
    }
}

/// Checks a password against a PHC string, using `memory` as argon2's working memory (grown to
/// the hash's memory cost if needed). Malformed hashes never verify (fail closed); the hash
/// output is compared in constant time.
fn verify_password(password: &str, phc: &str, memory: &mut HashMemory) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) =
        (Algorithm::try_from(hash.algorithm), Params::try_from(&hash))
    else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.0.len() < blocks {
        memory.0.resize(blocks, Block::default());
    }
    let mut computed = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    argon2
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut computed,
            &mut memory.0[..blocks],
        )
        .is_ok()
        && bool::from(computed.ct_eq(expected.as_bytes()))
}

/// The set of users who can log in.
#[derive(Clone, Debug, Default)]
pub struct UserDirectory {
    users: HashMap<String, User>,
}

impl UserDirectory {
    /// An empty directory (nobody can log in).
    pub fn new() -> Self {
        Self::default()
    }

    /// The demo accounts ([`DEMO_ACCOUNTS`]).
    pub fn demo_users() -> Vec<User> {
        DEMO_ACCOUNTS
            .iter()
            .zip(DEMO_HASHES)
            .map(|((name, _, scopes), hash)| User {
                username: (*name).to_owned(),
                password_hash: hash.to_owned(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            })
            .collect()
    }

    /// Reads a users file (TOML, or JSON for `*.json`).
    pub fn load_file(path: &Path) -> Result<Vec<User>, UsersError> {
        let text = std::fs::read_to_string(path)?;
        let file: UsersFile = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| UsersError::Parse(e.to_string()))?
        } else {
            toml::from_str(&text).map_err(|e| UsersError::Parse(e.to_string()))?
        };
        Ok(file.users)
    }

    /// Adds users, validating each entry; a later entry with the same name is an error.
    pub fn add(&mut self, users: Vec<User>) -> Result<(), UsersError> {
        for user in users {
            if user.username.is_empty() || user.username.len() > 200 {
                return Err(UsersError::Invalid(user.username, "bad username length"));
            }
            if PasswordHash::new(&user.password_hash).is_err() {
                return Err(UsersError::Invalid(
                    user.username,
                    "password_hash is not a PHC string",
                ));
            }
            if user
                .scopes
                .iter()
                .any(|s| crate::scope::parse(s).is_none_or(|set| set.len() != 1))
            {
                return Err(UsersError::Invalid(user.username, "invalid scope"));
            }
            if self.users.contains_key(&user.username) {
                return Err(UsersError::Invalid(user.username, "duplicate username"));
            }
            self.users.insert(user.username.clone(), user);
        }
        Ok(())
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when nobody can log in.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Returns the user when the password is right. Unknown users and wrong passwords take the
    /// same time and give the same `None`. Allocates its own working memory; the server uses
    /// [`authenticate_with`](Self::authenticate_with) with reused memory.
    pub fn authenticate(&self, username: &str, password: &str) -> Option<&User> {
        self.authenticate_with(username, password, &mut HashMemory::default())
    }

    /// [`authenticate`](Self::authenticate) with `memory` as argon2's working memory.
    pub fn authenticate_with(
        &self,
        username: &str,
        password: &str,
        memory: &mut HashMemory,
    ) -> Option<&User> {
        self.authenticate_over(username, password, None, memory)
    }

    /// [`authenticate_with`](Self::authenticate_with) with the user's runtime state applied
    /// over the file: a changed password replaces the file's, and a disabled user is refused
    /// (after the same hashing work as a wrong password). An override of a user the directory
    /// does not know changes nothing.
    pub fn authenticate_over(
        &self,
        username: &str,
        password: &str,
        runtime: Option<&crate::model::UserOverride>,
        memory: &mut HashMemory,
    ) -> Option<&User> {
        let runtime = runtime.filter(|o| o.username == username);
        match self.users.get(username) {
            Some(_) if runtime.is_some_and(|o| o.disabled) => {
                let _ = verify_password(password, DUMMY_HASH, memory);
                None
            }
            Some(user) => {
                let hash = runtime
                    .and_then(|o| o.password_hash.as_deref())
                    .unwrap_or(&user.password_hash);
                verify_password(password, hash, memory).then_some(user)
            }
            None => {
                let _ = verify_password(password, DUMMY_HASH, memory);
                None
            }
        }
    }

    /// The user of that name, if the directory knows it.
    pub fn get(&self, username: &str) -> Option<&User> {
        self.users.get(username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_hashes_match_demo_passwords() {
        let mut dir = UserDirectory::new();
        dir.add(UserDirectory::demo_users()).unwrap();
        for (name, password, _) in DEMO_ACCOUNTS {
            assert!(dir.authenticate(name, password).is_some(), "{name}");
        }
        assert!(dir.authenticate("alice", "wrong").is_none());
        assert!(dir.authenticate("nobody", "password123").is_none());
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn hashed_passwords_verify() {
        let phc = hash_password("s3cret").unwrap();
        let mut memory = HashMemory::default();
        assert!(verify_password("s3cret", &phc, &mut memory));
        assert!(!verify_password("s3cre", &phc, &mut memory));
        assert!(!verify_password("s3cret", "not a phc string", &mut memory));
        // The memory is kept at the hash's memory cost (19 MiB) and reused.
        assert_eq!(memory.len_bytes(), 19456 * 1024);
        assert!(verify_password("s3cret", &phc, &mut memory));
        // Hashes of other parameters and algorithms verify too (the memory grows as needed).
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x10,
            Params::new(32 * 1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let other = argon2i.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(verify_password("pw", &other, &mut memory));
        assert!(!verify_password("px", &other, &mut memory));
        assert_eq!(memory.len_bytes(), 32 * 1024 * 1024);
    }

    #[test]
    fn users_file_toml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("users.toml");
        std::fs::write(
            &toml_path,
            format!(
                "[[users]]\nusername = \"carol\"\npassword_hash = \"{}\"\nscopes = [\"read\"]\n",
                DEMO_HASHES[0]
            ),
        )
        .unwrap();
        let users = UserDirectory::load_file(&toml_path).unwrap();
        assert_eq!(users[0].username, "carol");
        let json_path = dir.path().join("users.json");
        std::fs::write(
            &json_path,
            serde_json::json!({"users": [{"username": "dave", "password_hash": DEMO_HASHES[1], "scopes": []}]}).to_string(),
        )
        .unwrap();
        let mut directory = UserDirectory::new();
        directory.add(users).unwrap();
        directory
            .add(UserDirectory::load_file(&json_path).unwrap())
            .unwrap();
        assert_eq!(directory.len(), 2);
        assert!(directory.authenticate("carol", "password123").is_some());
        let dup = directory.add(UserDirectory::load_file(&json_path).unwrap());
        assert!(matches!(
            dup,
            Err(UsersError::Invalid(_, "duplicate username"))
        ));
    }
}
