//! In-memory backend: one `std::sync::Mutex` around plain maps.
//!
//! The lock is never held across an `.await` (no method awaits while holding it), so it cannot
//! serialise the server behind slow I/O; each operation is a short critical section, which is
//! also what makes the compare-and-set operations atomic.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{Storage, StorageResult};
use crate::model::{
    AuthorizationCode, Client, InteractionStage, PendingAuthorization, StorageStats, TokenKind,
    TokenRecord, UnixTime,
};

#[derive(Default)]
struct Inner {
    clients: HashMap<String, Client>,
    pending: HashMap<String, PendingAuthorization>,
    codes: HashMap<String, AuthorizationCode>,
    tokens: HashMap<String, TokenRecord>,
    /// family id -> remember until
    revoked_families: HashMap<String, UnixTime>,
}

impl Inner {
    fn family_revoked(&self, family_id: &str) -> bool {
        self.revoked_families.contains_key(family_id)
    }
}

/// Volatile storage for tests, demos and benchmarks. State is lost when the process exits.
#[derive(Default)]
pub struct MemoryStorage {
    inner: Mutex<Inner>,
}

impl MemoryStorage {
    /// Creates an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied operation behind (every
        // operation is a single map mutation), so recovering from poisoning is sound.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn put_client(&self, client: &Client) -> StorageResult<()> {
        self.lock()
            .clients
            .insert(client.client_id.clone(), client.clone());
        Ok(())
    }

    async fn get_client(&self, client_id: &str) -> StorageResult<Option<Client>> {
        Ok(self.lock().clients.get(client_id).cloned())
    }

    async fn put_pending(&self, pending: &PendingAuthorization) -> StorageResult<()> {
        self.lock()
            .pending
            .insert(pending.id_hash.clone(), pending.clone());
        Ok(())
    }

    async fn get_pending(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> StorageResult<Option<PendingAuthorization>> {
        Ok(self
            .lock()
            .pending
            .get(id_hash)
            .filter(|p| p.expires_at > now)
            .cloned())
    }

    async fn complete_login(
        &self,
        id_hash: &str,
        subject: &str,
        granted_scope: &str,
        new_csrf_hash: &str,
        now: UnixTime,
    ) -> StorageResult<bool> {
        let mut inner = self.lock();
        match inner.pending.get_mut(id_hash) {
            Some(p) if p.expires_at > now && p.stage == InteractionStage::Login => {
                p.stage = InteractionStage::Consent;
                p.subject = Some(subject.to_owned());
                p.granted_scope = Some(granted_scope.to_owned());
                p.csrf_hash = new_csrf_hash.to_owned();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn take_pending(
        &self,
        id_hash: &str,
        stage: InteractionStage,
        now: UnixTime,
    ) -> StorageResult<Option<PendingAuthorization>> {
        let mut inner = self.lock();
        let eligible = inner
            .pending
            .get(id_hash)
            .is_some_and(|p| p.expires_at > now && p.stage == stage);
        Ok(if eligible {
            inner.pending.remove(id_hash)
        } else {
            None
        })
    }

    async fn put_code(&self, code: &AuthorizationCode) -> StorageResult<()> {
        self.lock()
            .codes
            .insert(code.code_hash.clone(), code.clone());
        Ok(())
    }

    async fn get_code(
        &self,
        code_hash: &str,
        now: UnixTime,
    ) -> StorageResult<Option<AuthorizationCode>> {
        Ok(self
            .lock()
            .codes
            .get(code_hash)
            .filter(|c| c.expires_at > now)
            .cloned())
    }

    async fn consume_code(&self, code_hash: &str, now: UnixTime) -> StorageResult<bool> {
        let mut inner = self.lock();
        match inner.codes.get_mut(code_hash) {
            Some(c) if c.expires_at > now && !c.consumed => {
                c.consumed = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn put_tokens(&self, tokens: &[TokenRecord]) -> StorageResult<()> {
        let mut inner = self.lock();
        for t in tokens {
            inner.tokens.insert(t.token_hash.clone(), t.clone());
        }
        Ok(())
    }

    async fn get_token(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> StorageResult<Option<TokenRecord>> {
        let inner = self.lock();
        Ok(inner
            .tokens
            .get(token_hash)
            .filter(|t| t.expires_at > now && !inner.family_revoked(&t.family_id))
            .cloned())
    }

    async fn rotate_refresh_token(&self, token_hash: &str, now: UnixTime) -> StorageResult<bool> {
        let mut inner = self.lock();
        let revoked = match inner.tokens.get(token_hash) {
            Some(t) => inner.family_revoked(&t.family_id),
            None => return Ok(false),
        };
        match inner.tokens.get_mut(token_hash) {
            Some(t)
                if !revoked
                    && t.kind == TokenKind::Refresh
                    && t.expires_at > now
                    && !t.consumed =>
            {
                t.consumed = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke_family(&self, family_id: &str, remember_until: UnixTime) -> StorageResult<()> {
        let mut inner = self.lock();
        inner.tokens.retain(|_, t| t.family_id != family_id);
        let entry = inner
            .revoked_families
            .entry(family_id.to_owned())
            .or_insert(remember_until);
        *entry = (*entry).max(remember_until);
        Ok(())
    }

    async fn purge_expired(&self, now: UnixTime) -> StorageResult<u64> {
        let mut inner = self.lock();
        let before = count(&inner);
        inner.pending.retain(|_, p| p.expires_at > now);
        inner.codes.retain(|_, c| c.expires_at > now);
        inner.tokens.retain(|_, t| t.expires_at > now);
        inner.revoked_families.retain(|_, until| *until > now);
        Ok(before - count(&inner))
    }

    async fn stats(&self) -> StorageResult<StorageStats> {
        let inner = self.lock();
        Ok(StorageStats {
            clients: inner.clients.len() as u64,
            pending: inner.pending.len() as u64,
            codes: inner.codes.len() as u64,
            tokens: inner.tokens.len() as u64,
            revoked_families: inner.revoked_families.len() as u64,
        })
    }
}

fn count(inner: &Inner) -> u64 {
    (inner.pending.len() + inner.codes.len() + inner.tokens.len() + inner.revoked_families.len())
        as u64
}
