//! In-memory backend: one `std::sync::Mutex` around plain maps.
//!
//! The lock is never held across an `.await` (no method awaits while holding it), so it cannot
//! serialise the server behind slow I/O; each operation is a short critical section, which is
//! also what makes the compare-and-set operations atomic.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{Admission, PendingCaps, Rotation, Storage, StorageResult};
use crate::model::{
    Announcement, AuthorizationCode, Client, Fanout, InteractionStage, OutboxEntry,
    PendingAuthorization, SigningKey, SsfEvent, StorageStats, Stream, StreamStatus, TokenKind,
    TokenRecord, UnixTime, UserChange, UserOverride, VerificationKey,
};

/// Where an outbox row stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RowState {
    Pending,
    Done,
}

/// An outbox row.
#[derive(Clone)]
struct OutboxRow {
    entry: OutboxEntry,
    state: RowState,
    next_attempt_at: i64,
    lease_until: i64,
    done_at: i64,
}

/// A token with its rotation lineage.
#[derive(Clone)]
struct StoredToken {
    record: TokenRecord,
    /// The refresh token this one was issued in exchange for.
    parent: Option<String>,
    /// When this refresh token was rotated.
    rotated_at: Option<UnixTime>,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<String, Client>,
    /// Anonymous clients not used yet: client id -> deleted after.
    unused_clients: HashMap<String, UnixTime>,
    /// Pending authorizations with the address that started them.
    pending: HashMap<String, (PendingAuthorization, String)>,
    codes: HashMap<String, AuthorizationCode>,
    tokens: HashMap<String, StoredToken>,
    /// family id -> remember until
    revoked_families: HashMap<String, UnixTime>,
    /// Oldest first; at most one with `retire_at == None`.
    signing_keys: Vec<SigningKey>,
    /// SSF streams by id.
    streams: BTreeMap<String, Stream>,
    /// The outbox by row id.
    outbox: BTreeMap<i64, OutboxRow>,
    /// The last outbox row id.
    outbox_id: i64,
    /// Runtime user state.
    user_overrides: HashMap<String, UserOverride>,
}

impl Inner {
    /// The unexpired access tokens `of` selects, sorted, for the token-revoked events of
    /// `announce`: none when it announces no token revocation.
    fn revoked_access_jtis(
        &self,
        announce: &Announcement<'_>,
        of: impl Fn(&TokenRecord) -> bool,
    ) -> Vec<String> {
        if announce.token_revoked_by.is_none() {
            return Vec::new();
        }
        let mut jtis: Vec<String> = self
            .tokens
            .values()
            .map(|t| &t.record)
            .filter(|t| t.kind == TokenKind::Access && t.expires_at > announce.now && of(t))
            .map(|t| t.jti.clone())
            .collect();
        jtis.sort();
        jtis
    }

    fn current_key(&self) -> Option<&SigningKey> {
        self.signing_keys
            .iter()
            .find(|k| k.public.retire_at.is_none())
    }

    fn family_revoked(&self, family_id: &str) -> bool {
        self.revoked_families.contains_key(family_id)
    }

    fn insert_tokens(&mut self, tokens: &[TokenRecord], parent: Option<&str>) {
        for t in tokens {
            self.tokens.insert(
                t.token_hash.clone(),
                StoredToken {
                    record: t.clone(),
                    parent: parent.map(str::to_owned),
                    rotated_at: None,
                },
            );
        }
    }

    /// The outbox write of an announcement (see the SQL backends' `write_announcement`).
    fn write_announcement(
        &mut self,
        announce: &Announcement<'_>,
        revoked_jtis: &[String],
        only_stream: Option<&str>,
    ) -> Fanout {
        let mut fanout = Fanout::default();
        let mut events: Vec<SsfEvent> = announce.events.to_vec();
        if let Some(issuer) = announce.token_revoked_by {
            events.extend(
                revoked_jtis
                    .iter()
                    .map(|jti| crate::ssf::events::token_revoked(issuer, jti, announce.now)),
            );
        }
        let streams: Vec<Stream> = self
            .streams
            .values()
            .filter(|s| s.status != StreamStatus::Disabled)
            .filter(|s| only_stream.is_none_or(|id| id == s.stream_id))
            .cloned()
            .collect();
        for stream in streams {
            let pending = self
                .outbox
                .values()
                .filter(|r| r.state == RowState::Pending && r.entry.stream_id == stream.stream_id)
                .count() as u64;
            let mut room = announce.max_pending_per_stream.saturating_sub(pending);
            for event in events.iter().filter(|e| {
                only_stream.is_some() || stream.events_delivered.contains(&e.event_type)
            }) {
                if room == 0 {
                    fanout.dropped += 1;
                    continue;
                }
                room -= 1;
                self.outbox_id += 1;
                let entry = OutboxEntry {
                    id: self.outbox_id,
                    stream_id: stream.stream_id.clone(),
                    jti: crate::tokens::random_id(),
                    event_type: event.event_type.clone(),
                    claims: event.claims.clone(),
                    attempts: 0,
                    created_at_ms: announce.now_ms,
                };
                self.outbox.insert(
                    entry.id,
                    OutboxRow {
                        entry,
                        state: RowState::Pending,
                        next_attempt_at: announce.now_ms,
                        lease_until: 0,
                        done_at: 0,
                    },
                );
                fanout.queued += 1;
            }
        }
        fanout
    }

    fn revoke(&mut self, family_id: &str, remember_until: UnixTime) {
        self.tokens.retain(|_, t| t.record.family_id != family_id);
        let entry = self
            .revoked_families
            .entry(family_id.to_owned())
            .or_insert(remember_until);
        *entry = (*entry).max(remember_until);
    }

    fn drop_pending(&mut self, stream_id: &str) {
        self.outbox
            .retain(|_, r| !(r.state == RowState::Pending && r.entry.stream_id == stream_id));
    }

    /// Deletes a client and everything that refers to it (the SQLite foreign keys cascade).
    fn delete_client(&mut self, client_id: &str) {
        self.clients.remove(client_id);
        self.unused_clients.remove(client_id);
        self.pending.retain(|_, (p, _)| p.client_id != client_id);
        self.codes.retain(|_, c| c.client_id != client_id);
        self.tokens.retain(|_, t| t.record.client_id != client_id);
        self.streams.retain(|_, s| s.client_id != client_id);
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

    async fn register_client(
        &self,
        client: &Client,
        unused_until: UnixTime,
        max_unused: u64,
        now: UnixTime,
    ) -> StorageResult<Admission> {
        let mut inner = self.lock();
        let live = inner
            .unused_clients
            .values()
            .filter(|until| **until > now)
            .count() as u64;
        if live >= max_unused {
            return Ok(Admission::TotalFull);
        }
        inner
            .clients
            .insert(client.client_id.clone(), client.clone());
        inner
            .unused_clients
            .insert(client.client_id.clone(), unused_until);
        Ok(Admission::Stored)
    }

    async fn mark_client_used(&self, client_id: &str) -> StorageResult<()> {
        self.lock().unused_clients.remove(client_id);
        Ok(())
    }

    async fn get_client(&self, client_id: &str) -> StorageResult<Option<Client>> {
        Ok(self.lock().clients.get(client_id).cloned())
    }

    async fn put_pending(
        &self,
        pending: &PendingAuthorization,
        address: &str,
        caps: PendingCaps,
        now: UnixTime,
    ) -> StorageResult<Admission> {
        let mut inner = self.lock();
        let (mut total, mut mine) = (0u64, 0u64);
        for (p, origin) in inner.pending.values() {
            if p.expires_at > now {
                total += 1;
                mine += u64::from(origin == address);
            }
        }
        if mine >= caps.per_address {
            return Ok(Admission::AddressFull);
        }
        if total >= caps.total {
            return Ok(Admission::TotalFull);
        }
        inner.pending.insert(
            pending.id_hash.clone(),
            (pending.clone(), address.to_owned()),
        );
        Ok(Admission::Stored)
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
            .map(|(p, _)| p)
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
            Some((p, _)) if p.expires_at > now && p.stage == InteractionStage::Login => {
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
            .is_some_and(|(p, _)| p.expires_at > now && p.stage == stage);
        Ok(if eligible {
            inner.pending.remove(id_hash).map(|(p, _)| p)
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
        self.lock().insert_tokens(tokens, None);
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
            .map(|t| &t.record)
            .filter(|t| t.expires_at > now && !inner.family_revoked(&t.family_id))
            .cloned())
    }

    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        now: UnixTime,
        retry_since: UnixTime,
        successors: &[TokenRecord],
    ) -> StorageResult<Rotation> {
        let mut inner = self.lock();
        let Some(old) = inner.tokens.get(token_hash) else {
            return Ok(Rotation::Refused);
        };
        let live = old.record.kind == TokenKind::Refresh
            && old.record.expires_at > now
            && !inner.family_revoked(&old.record.family_id);
        if !live {
            return Ok(Rotation::Refused);
        }
        if !old.record.consumed {
            if let Some(old) = inner.tokens.get_mut(token_hash) {
                old.record.consumed = true;
                old.rotated_at = Some(now);
            }
            inner.insert_tokens(successors, Some(token_hash));
            return Ok(Rotation::Rotated);
        }
        let within_grace = old.rotated_at.is_some_and(|at| at > retry_since);
        let is_child = |t: &StoredToken| t.parent.as_deref() == Some(token_hash);
        let successor_used = inner
            .tokens
            .values()
            .any(|t| is_child(t) && t.rotated_at.is_some());
        if !within_grace || successor_used {
            return Ok(Rotation::Refused);
        }
        // The unused successors die: the access token goes; the refresh token stays consumed,
        // so that presenting it later counts as reuse and revokes the family.
        inner
            .tokens
            .retain(|_, t| !(is_child(t) && t.record.kind == TokenKind::Access));
        for t in inner.tokens.values_mut().filter(|t| is_child(t)) {
            t.record.consumed = true;
        }
        inner.insert_tokens(successors, Some(token_hash));
        Ok(Rotation::Replaced)
    }

    async fn revoke_family(
        &self,
        family_id: &str,
        remember_until: UnixTime,
        announce: &Announcement<'_>,
    ) -> StorageResult<Fanout> {
        let mut inner = self.lock();
        let jtis = inner.revoked_access_jtis(announce, |t| t.family_id == family_id);
        inner.revoke(family_id, remember_until);
        Ok(inner.write_announcement(announce, &jtis, None))
    }

    async fn get_user_override(&self, username: &str) -> StorageResult<Option<UserOverride>> {
        Ok(self.lock().user_overrides.get(username).cloned())
    }

    async fn change_user(
        &self,
        username: &str,
        change: &UserChange,
        remember_until: UnixTime,
        announce: &Announcement<'_>,
    ) -> StorageResult<Fanout> {
        let mut inner = self.lock();
        let entry = inner
            .user_overrides
            .entry(username.to_owned())
            .or_insert_with(|| UserOverride {
                username: username.to_owned(),
                password_hash: None,
                disabled: false,
            });
        match change {
            UserChange::Password(hash) => entry.password_hash = Some(hash.clone()),
            UserChange::Disable => entry.disabled = true,
            UserChange::Enable => entry.disabled = false,
        }
        let mut jtis = Vec::new();
        if *change != UserChange::Enable {
            let mine = |s: &Option<String>| s.as_deref() == Some(username);
            // The unexpired access tokens the change ends, for token-revoked events.
            jtis = inner.revoked_access_jtis(announce, |t| mine(&t.subject));
            let mut families: Vec<String> = inner
                .tokens
                .values()
                .filter(|t| mine(&t.record.subject))
                .map(|t| t.record.family_id.clone())
                .collect();
            families.extend(
                inner
                    .codes
                    .values()
                    .filter(|c| c.subject == username)
                    .map(|c| c.family_id.clone()),
            );
            for family in families {
                inner.revoke(&family, remember_until);
            }
            inner.codes.retain(|_, c| c.subject != username);
            inner.pending.retain(|_, (p, _)| !mine(&p.subject));
        }
        Ok(inner.write_announcement(announce, &jtis, None))
    }

    async fn create_stream(&self, stream: &Stream, max_per_client: u64) -> StorageResult<bool> {
        let mut inner = self.lock();
        let count = inner
            .streams
            .values()
            .filter(|s| s.client_id == stream.client_id)
            .count() as u64;
        if count >= max_per_client {
            return Ok(false);
        }
        inner
            .streams
            .insert(stream.stream_id.clone(), stream.clone());
        Ok(true)
    }

    async fn get_stream(&self, stream_id: &str) -> StorageResult<Option<Stream>> {
        Ok(self.lock().streams.get(stream_id).cloned())
    }

    async fn list_streams(&self, client_id: &str) -> StorageResult<Vec<Stream>> {
        let mut streams: Vec<Stream> = self
            .lock()
            .streams
            .values()
            .filter(|s| s.client_id == client_id)
            .cloned()
            .collect();
        streams.sort_by(|a, b| (a.created_at, &a.stream_id).cmp(&(b.created_at, &b.stream_id)));
        Ok(streams)
    }

    async fn update_stream(&self, stream: &Stream) -> StorageResult<bool> {
        let mut inner = self.lock();
        match inner.streams.get_mut(&stream.stream_id) {
            Some(s) if s.client_id == stream.client_id => {
                *s = Stream {
                    created_at: s.created_at,
                    ..stream.clone()
                };
            }
            _ => return Ok(false),
        }
        if stream.status == StreamStatus::Disabled {
            inner.drop_pending(&stream.stream_id);
        }
        Ok(true)
    }

    async fn delete_stream(&self, stream_id: &str, client_id: &str) -> StorageResult<bool> {
        let mut inner = self.lock();
        if inner
            .streams
            .get(stream_id)
            .is_none_or(|s| s.client_id != client_id)
        {
            return Ok(false);
        }
        inner.streams.remove(stream_id);
        inner.outbox.retain(|_, r| r.entry.stream_id != stream_id);
        Ok(true)
    }

    async fn set_stream_status(
        &self,
        stream_id: &str,
        client_id: &str,
        status: StreamStatus,
    ) -> StorageResult<bool> {
        let mut inner = self.lock();
        match inner.streams.get_mut(stream_id) {
            Some(s) if s.client_id == client_id => s.status = status,
            _ => return Ok(false),
        }
        if status == StreamStatus::Disabled {
            inner.drop_pending(stream_id);
        }
        Ok(true)
    }

    async fn announce_to_stream(
        &self,
        stream_id: &str,
        announce: &Announcement<'_>,
    ) -> StorageResult<Fanout> {
        Ok(self
            .lock()
            .write_announcement(announce, &[], Some(stream_id)))
    }

    async fn claim_outbox(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StorageResult<Vec<OutboxEntry>> {
        let mut inner = self.lock();
        let Inner {
            outbox, streams, ..
        } = &mut *inner;
        let mut claimed = Vec::new();
        for row in outbox.values_mut() {
            if claimed.len() >= limit as usize {
                break;
            }
            let pushable = streams.get(&row.entry.stream_id).is_some_and(|s| {
                s.status == StreamStatus::Enabled
                    && matches!(s.delivery, crate::model::Delivery::Push { .. })
            });
            if row.state == RowState::Pending
                && row.next_attempt_at <= now_ms
                && row.lease_until <= now_ms
                && pushable
            {
                row.lease_until = lease_until_ms;
                row.entry.attempts += 1;
                claimed.push(row.entry.clone());
            }
        }
        Ok(claimed)
    }

    async fn finish_outbox(&self, id: i64, now_ms: i64, _error: Option<&str>) -> StorageResult<()> {
        if let Some(row) = self.lock().outbox.get_mut(&id)
            && row.state == RowState::Pending
        {
            row.state = RowState::Done;
            row.done_at = now_ms;
            row.lease_until = 0;
        }
        Ok(())
    }

    async fn retry_outbox(&self, id: i64, next_attempt_ms: i64, _error: &str) -> StorageResult<()> {
        if let Some(row) = self.lock().outbox.get_mut(&id)
            && row.state == RowState::Pending
        {
            row.next_attempt_at = next_attempt_ms;
            row.lease_until = 0;
        }
        Ok(())
    }

    async fn pending_outbox(&self, stream_id: &str, limit: u32) -> StorageResult<Vec<OutboxEntry>> {
        Ok(self
            .lock()
            .outbox
            .values()
            .filter(|r| r.state == RowState::Pending && r.entry.stream_id == stream_id)
            .take(limit as usize)
            .map(|r| r.entry.clone())
            .collect())
    }

    async fn acknowledge_outbox(
        &self,
        stream_id: &str,
        jtis: &[&str],
        now_ms: i64,
        _error: Option<&str>,
    ) -> StorageResult<u64> {
        let mut changed = 0;
        for row in self.lock().outbox.values_mut() {
            if row.state == RowState::Pending
                && row.entry.stream_id == stream_id
                && jtis.contains(&row.entry.jti.as_str())
            {
                row.state = RowState::Done;
                row.done_at = now_ms;
                changed += 1;
            }
        }
        Ok(changed)
    }

    async fn count_pending_outbox(&self, stream_id: &str) -> StorageResult<u64> {
        Ok(self
            .lock()
            .outbox
            .values()
            .filter(|r| r.state == RowState::Pending && r.entry.stream_id == stream_id)
            .count() as u64)
    }

    async fn ensure_signing_key(&self, candidate: &SigningKey) -> StorageResult<SigningKey> {
        let mut inner = self.lock();
        if let Some(current) = inner.current_key() {
            return Ok(current.clone());
        }
        inner.signing_keys.push(candidate.clone());
        Ok(candidate.clone())
    }

    async fn current_signing_key(&self) -> StorageResult<Option<SigningKey>> {
        Ok(self.lock().current_key().cloned())
    }

    async fn rotate_signing_key(
        &self,
        new: &SigningKey,
        retire_at: UnixTime,
    ) -> StorageResult<Option<String>> {
        let mut inner = self.lock();
        let mut retired = None;
        for key in &mut inner.signing_keys {
            if key.public.retire_at.is_none() {
                key.public.retire_at = Some(retire_at);
                retired = Some(key.public.kid.clone());
            }
        }
        inner.signing_keys.push(new.clone());
        Ok(retired)
    }

    async fn verification_keys(&self, now: UnixTime) -> StorageResult<Vec<VerificationKey>> {
        Ok(self
            .lock()
            .signing_keys
            .iter()
            .filter(|k| k.public.retire_at.is_none_or(|at| at > now))
            .map(|k| k.public.clone())
            .collect())
    }

    async fn purge_expired(&self, now: UnixTime) -> StorageResult<u64> {
        let mut inner = self.lock();
        let before = count(&inner);
        let abandoned: Vec<String> = inner
            .unused_clients
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for client_id in &abandoned {
            inner.delete_client(client_id);
        }
        inner.pending.retain(|_, (p, _)| p.expires_at > now);
        inner.codes.retain(|_, c| c.expires_at > now);
        inner.tokens.retain(|_, t| t.record.expires_at > now);
        inner.revoked_families.retain(|_, until| *until > now);
        inner
            .signing_keys
            .retain(|k| k.public.retire_at.is_none_or(|at| at > now));
        let cutoff = now * 1000 - crate::storage::OUTBOX_RETENTION_MS;
        let Inner {
            outbox, streams, ..
        } = &mut *inner;
        outbox.retain(|_, r| {
            streams.contains_key(&r.entry.stream_id)
                && !(r.state == RowState::Done && r.done_at <= cutoff)
        });
        Ok(before - count(&inner) + abandoned.len() as u64)
    }

    async fn stats(&self) -> StorageResult<StorageStats> {
        let inner = self.lock();
        Ok(StorageStats {
            clients: inner.clients.len() as u64,
            unused_clients: inner.unused_clients.len() as u64,
            pending: inner.pending.len() as u64,
            codes: inner.codes.len() as u64,
            tokens: inner.tokens.len() as u64,
            revoked_families: inner.revoked_families.len() as u64,
        })
    }
}

fn count(inner: &Inner) -> u64 {
    (inner.pending.len()
        + inner.codes.len()
        + inner.tokens.len()
        + inner.revoked_families.len()
        + inner.signing_keys.len()
        + inner.outbox.len()) as u64
}
