//! The one query layer of the SQL backends: every [`Storage`] method of SQLite and PostgreSQL
//! is written once, in [`sql_storage!`], and expanded for each backend.
//!
//! Both databases run the same statements. Placeholders are `$n` everywhere (SQLite reads `$n`
//! as the n-th argument, as PostgreSQL does; sqlx's `QueryBuilder` numbers its own), booleans are
//! compared as `consumed = false` / set as `consumed = true` (SQLite's `true` and `false` are 1
//! and 0), `RETURNING` and `ON CONFLICT … DO UPDATE … WHERE` read the same in both. What is
//! left differs by design and is the [`Dialect`] each backend implements:
//!
//! - how a writing transaction starts: SQLite's `BEGIN IMMEDIATE` takes the database's one write
//!   lock first (so the busy handler applies and no `SQLITE_BUSY_SNAPSHOT` occurs), PostgreSQL's
//!   `BEGIN` takes nothing;
//! - the locks that make check-then-write steps atomic ([`Lock`]): PostgreSQL takes a
//!   transaction-scoped advisory lock per cap, per grant family, for key rotation and for the
//!   cleanup; SQLite already holds its write lock, so every lock is granted at once;
//! - row locking before a refresh rotation (`SELECT … FOR UPDATE`, PostgreSQL only).
//!
//! Why a macro, and neither sqlx's `Any` driver nor code generic over `sqlx::Database`: `Any`
//! connects from a URL only, so SQLite's connection settings (WAL, busy timeout, the
//! single-connection in-memory pool) and typed columns would be lost; generic code needs a
//! higher-ranked bound per bound type and per executor on every function, which hides the SQL.
//! The macro expands the same source into each backend's module, where it is ordinary,
//! monomorphic sqlx code checked against that driver.

use sqlx::{Database, Transaction};

use super::StorageResult;

/// A lock a check-then-write transaction takes before it reads.
#[derive(Clone, Copy, Debug)]
pub(super) enum Lock<'a> {
    /// The cap on unused anonymous clients.
    UnusedClients,
    /// The caps on pending authorizations.
    Pending,
    /// Signing-key rotation (two rotations at once would both retire the same key).
    SigningKeys,
    /// Changes to one grant family's tokens (rotation, the retry within the grace, revocation).
    Family(&'a str),
    /// The cleanup: one purger at a time; the only lock that is tried, not waited for.
    Cleanup,
    /// The cap on streams per client.
    Streams,
    /// One stream's cap on pending outbox rows, while events are queued for it. Taken in
    /// `stream_id` order when several streams get an event.
    StreamOutbox(&'a str),
}

/// What differs between the SQL backends (see the module docs).
pub(super) trait Dialect {
    /// The sqlx driver.
    type Db: Database;
    /// Locks the row of the refresh token `$1` before it is rotated, if the database needs it.
    const LOCK_TOKEN_ROW: Option<&'static str>;
    /// Claims due outbox rows (`$1` now, `$2` lease end, `$3` limit) so that concurrent
    /// claimers never get the same row: one statement under SQLite's write lock; on PostgreSQL
    /// `FOR UPDATE SKIP LOCKED` in the row selection.
    const CLAIM_OUTBOX: &'static str;
    /// Starts a transaction that will write.
    async fn begin_write(&self) -> StorageResult<Transaction<'static, Self::Db>>;
    /// Takes `lock` for the rest of the transaction. `false` only for a [`Lock::Cleanup`] held
    /// elsewhere.
    async fn lock(tx: &mut Transaction<'static, Self::Db>, lock: Lock<'_>) -> StorageResult<bool>;
}

/// Implements [`Storage`] for a backend type that implements [`Dialect`] and has an inherent
/// `pool()` (its sqlx pool).
///
/// [`Storage`]: super::Storage
macro_rules! sql_storage {
    ($backend:ty) => {
        const _: () = {
            use async_trait::async_trait;

            use $crate::model::{
                Announcement, AuthorizationCode, Client, Fanout, InteractionStage, OutboxEntry,
                PendingAuthorization, SigningKey, SsfEvent, StorageStats, Stream, StreamStatus,
                TokenRecord, UnixTime, UserChange, UserOverride, VerificationKey,
            };
            use $crate::storage::rows::{self, cap, to_json};
            use $crate::storage::sql::{Dialect, Lock};
            use $crate::storage::{Admission, PendingCaps, Rotation, Storage, StorageResult};

            type Db = <$backend as Dialect>::Db;

            impl $backend {
                /// Reads the row whose key is `$1` and that has not expired at `$2`.
                async fn find_live<T>(
                    &self,
                    sql: &'static str,
                    key: &str,
                    now: UnixTime,
                    decode: fn(&<Db as sqlx::Database>::Row) -> StorageResult<T>,
                ) -> StorageResult<Option<T>> {
                    sqlx::query(sql)
                        .bind(key)
                        .bind(now)
                        .fetch_optional(self.pool())
                        .await?
                        .as_ref()
                        .map(decode)
                        .transpose()
                }

                /// The client upsert (an upsert, not a replace: a replace deletes the row
                /// first, which would cascade to the client's codes and tokens).
                async fn upsert_client<'e>(
                    executor: impl sqlx::Executor<'e, Database = Db>,
                    client: &Client,
                ) -> StorageResult<()> {
                    sqlx::query(
                        "INSERT INTO clients (client_id, secret_hash, client_name, redirect_uris, \
                         grant_types, scope, auth_method, issued_at, resource_server, resources, \
                         dpop_bound_access_tokens) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                         ON CONFLICT (client_id) DO UPDATE SET \
                         secret_hash = excluded.secret_hash, client_name = excluded.client_name, \
                         redirect_uris = excluded.redirect_uris, \
                         grant_types = excluded.grant_types, scope = excluded.scope, \
                         auth_method = excluded.auth_method, issued_at = excluded.issued_at, \
                         resource_server = excluded.resource_server, \
                         resources = excluded.resources, \
                         dpop_bound_access_tokens = excluded.dpop_bound_access_tokens",
                    )
                    .bind(&client.client_id)
                    .bind(&client.secret_hash)
                    .bind(&client.client_name)
                    .bind(to_json(&client.redirect_uris))
                    .bind(to_json(&client.grant_types))
                    .bind(&client.scope)
                    .bind(client.auth_method.as_str())
                    .bind(client.issued_at)
                    .bind(client.resource_server)
                    .bind(to_json(&client.resources))
                    .bind(client.dpop_bound_access_tokens)
                    .execute(executor)
                    .await?;
                    Ok(())
                }

                /// Inserts a signing key; a conflict (another current key, or the same `kid`)
                /// inserts nothing. Returns whether it was stored.
                async fn insert_signing_key<'e>(
                    executor: impl sqlx::Executor<'e, Database = Db>,
                    key: &SigningKey,
                ) -> StorageResult<bool> {
                    let done = sqlx::query(
                        "INSERT INTO signing_keys \
                         (kid, algorithm, x, y, private_key, created_at, retire_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    )
                    .bind(&key.public.kid)
                    .bind(&key.public.algorithm)
                    .bind(&key.public.x)
                    .bind(&key.public.y)
                    .bind(key.private.expose())
                    .bind(key.public.created_at)
                    .bind(key.public.retire_at)
                    .execute(executor)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                /// The unexpired access tokens of a grant family (`by_family`) or of a user
                /// (`value` the subject), for the token-revoked events of `announce`: none when
                /// it announces no token revocation.
                async fn revoked_access_jtis(
                    tx: &mut sqlx::Transaction<'static, Db>,
                    by_family: bool,
                    value: &str,
                    announce: &Announcement<'_>,
                ) -> StorageResult<Vec<String>> {
                    if announce.token_revoked_by.is_none() {
                        return Ok(Vec::new());
                    }
                    let sql = if by_family {
                        "SELECT jti FROM tokens WHERE family_id = $1 AND kind = 'access' \
                         AND expires_at > $2 ORDER BY jti"
                    } else {
                        "SELECT jti FROM tokens WHERE subject = $1 AND kind = 'access' \
                         AND expires_at > $2 ORDER BY jti"
                    };
                    Ok(sqlx::query_scalar(sql)
                        .bind(value)
                        .bind(announce.now)
                        .fetch_all(&mut **tx)
                        .await?)
                }

                /// Writes `events` (and, for `token_revoked_by`, the token-revoked events of
                /// `revoked_jtis`) to the outbox: one row per event and per stream that is not
                /// disabled and delivers its type (only `only_stream`, whatever its types, when
                /// given), within each stream's cap of pending rows.
                async fn write_announcement(
                    tx: &mut sqlx::Transaction<'static, Db>,
                    announce: &Announcement<'_>,
                    revoked_jtis: &[String],
                    only_stream: Option<&str>,
                ) -> StorageResult<Fanout> {
                    let mut fanout = Fanout::default();
                    let mut events: Vec<SsfEvent> = announce.events.to_vec();
                    if let Some(issuer) = announce.token_revoked_by {
                        events.extend(revoked_jtis.iter().map(|jti| {
                            $crate::ssf::events::token_revoked(issuer, jti, announce.now)
                        }));
                    }
                    if events.is_empty() {
                        return Ok(fanout);
                    }
                    let streams: Vec<(String, String)> = match only_stream {
                        Some(id) => sqlx::query_as(
                            "SELECT stream_id, events_delivered FROM ssf_streams \
                             WHERE stream_id = $1 AND status <> 'disabled'",
                        )
                        .bind(id)
                        .fetch_all(&mut **tx)
                        .await?,
                        None => sqlx::query_as(
                            "SELECT stream_id, events_delivered FROM ssf_streams \
                             WHERE status <> 'disabled' ORDER BY stream_id",
                        )
                        .fetch_all(&mut **tx)
                        .await?,
                    };
                    for (stream_id, delivered) in streams {
                        let delivered: Vec<String> =
                            serde_json::from_str(&delivered).unwrap_or_default();
                        let wanted: Vec<&SsfEvent> = events
                            .iter()
                            .filter(|e| {
                                only_stream.is_some() || delivered.contains(&e.event_type)
                            })
                            .collect();
                        if wanted.is_empty() {
                            continue;
                        }
                        // Concurrent announcements to this stream count and fill its cap one
                        // after the other, or both could see room for their events.
                        <$backend as Dialect>::lock(tx, Lock::StreamOutbox(&stream_id)).await?;
                        let pending: i64 = sqlx::query_scalar(
                            "SELECT count(*) FROM ssf_outbox \
                             WHERE stream_id = $1 AND state = 'pending'",
                        )
                        .bind(&stream_id)
                        .fetch_one(&mut **tx)
                        .await?;
                        let room = cap(announce.max_pending_per_stream).saturating_sub(pending);
                        let room = usize::try_from(room.max(0)).unwrap_or(usize::MAX);
                        fanout.dropped += wanted.len().saturating_sub(room) as u64;
                        for event in wanted.into_iter().take(room) {
                            sqlx::query(
                                "INSERT INTO ssf_outbox (stream_id, jti, event_type, claims, \
                                 state, created_at, next_attempt_at) \
                                 VALUES ($1, $2, $3, $4, 'pending', $5, $5)",
                            )
                            .bind(&stream_id)
                            .bind($crate::tokens::random_id())
                            .bind(&event.event_type)
                            .bind(event.claims.to_string())
                            .bind(announce.now_ms)
                            .execute(&mut **tx)
                            .await?;
                            fanout.queued += 1;
                        }
                    }
                    Ok(fanout)
                }

                /// Deletes the pending outbox rows of a stream.
                async fn drop_pending(
                    tx: &mut sqlx::Transaction<'static, Db>,
                    stream_id: &str,
                ) -> StorageResult<()> {
                    sqlx::query("DELETE FROM ssf_outbox WHERE stream_id = $1 AND state = 'pending'")
                        .bind(stream_id)
                        .execute(&mut **tx)
                        .await?;
                    Ok(())
                }

                /// Inserts token rows, each with the given parent, as one statement (atomic on
                /// its own).
                async fn insert_tokens<'e>(
                    executor: impl sqlx::Executor<'e, Database = Db>,
                    tokens: &[TokenRecord],
                    parent_hash: Option<&str>,
                ) -> StorageResult<()> {
                    if tokens.is_empty() {
                        return Ok(());
                    }
                    let mut query = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO tokens (token_hash, kind, family_id, client_id, subject, \
                         scope, resource, jti, issued_at, expires_at, consumed, parent_hash, \
                         dpop_jkt) ",
                    );
                    query.push_values(tokens, |mut row, t| {
                        row.push_bind(t.token_hash.as_str())
                            .push_bind(t.kind.as_str())
                            .push_bind(t.family_id.as_str())
                            .push_bind(t.client_id.as_str())
                            .push_bind(t.subject.as_deref())
                            .push_bind(t.scope.as_str())
                            .push_bind(t.resource.as_deref())
                            .push_bind(t.jti.as_str())
                            .push_bind(t.issued_at)
                            .push_bind(t.expires_at)
                            .push_bind(t.consumed)
                            .push_bind(parent_hash)
                            .push_bind(t.dpop_jkt.as_deref());
                    });
                    query.build().execute(executor).await?;
                    Ok(())
                }
            }

            #[async_trait]
            impl Storage for $backend {
                async fn put_client(&self, client: &Client) -> StorageResult<()> {
                    Self::upsert_client(self.pool(), client).await
                }

                async fn register_client(
                    &self,
                    client: &Client,
                    unused_until: UnixTime,
                    max_unused: u64,
                    now: UnixTime,
                ) -> StorageResult<Admission> {
                    let mut tx = self.begin_write().await?;
                    Self::lock(&mut tx, Lock::UnusedClients).await?;
                    let unused: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM unused_clients WHERE expires_at > $1",
                    )
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    if unused >= cap(max_unused) {
                        return Ok(Admission::TotalFull);
                    }
                    Self::upsert_client(&mut *tx, client).await?;
                    sqlx::query(
                        "INSERT INTO unused_clients (client_id, expires_at) VALUES ($1, $2)",
                    )
                    .bind(&client.client_id)
                    .bind(unused_until)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(Admission::Stored)
                }

                async fn mark_client_used(&self, client_id: &str) -> StorageResult<()> {
                    sqlx::query("DELETE FROM unused_clients WHERE client_id = $1")
                        .bind(client_id)
                        .execute(self.pool())
                        .await?;
                    Ok(())
                }

                async fn get_client(&self, client_id: &str) -> StorageResult<Option<Client>> {
                    sqlx::query("SELECT * FROM clients WHERE client_id = $1")
                        .bind(client_id)
                        .fetch_optional(self.pool())
                        .await?
                        .as_ref()
                        .map(rows::client)
                        .transpose()
                }

                async fn put_pending(
                    &self,
                    p: &PendingAuthorization,
                    address: &str,
                    caps: PendingCaps,
                    now: UnixTime,
                ) -> StorageResult<Admission> {
                    // Counted and inserted under the cap's lock: concurrent requests (and
                    // processes) cannot both see "9 of 10" and both insert.
                    let mut tx = self.begin_write().await?;
                    Self::lock(&mut tx, Lock::Pending).await?;
                    let counts = sqlx::query(
                        "SELECT count(*) FILTER (WHERE origin = $1) AS mine, count(*) AS total \
                         FROM pending_authorizations WHERE expires_at > $2",
                    )
                    .bind(address)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    if rows::count(&counts, "mine")? >= caps.per_address {
                        return Ok(Admission::AddressFull);
                    }
                    if rows::count(&counts, "total")? >= caps.total {
                        return Ok(Admission::TotalFull);
                    }
                    sqlx::query(
                        "INSERT INTO pending_authorizations (id_hash, browser_hash, csrf_hash, \
                         client_id, redirect_uri, scope, state, code_challenge, resource, stage, \
                         subject, granted_scope, expires_at, origin, dpop_jkt) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                         $15)",
                    )
                    .bind(&p.id_hash)
                    .bind(&p.browser_hash)
                    .bind(&p.csrf_hash)
                    .bind(&p.client_id)
                    .bind(&p.redirect_uri)
                    .bind(&p.scope)
                    .bind(&p.state)
                    .bind(&p.code_challenge)
                    .bind(&p.resource)
                    .bind(p.stage.as_str())
                    .bind(&p.subject)
                    .bind(&p.granted_scope)
                    .bind(p.expires_at)
                    .bind(address)
                    .bind(&p.dpop_jkt)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(Admission::Stored)
                }

                async fn get_pending(
                    &self,
                    id_hash: &str,
                    now: UnixTime,
                ) -> StorageResult<Option<PendingAuthorization>> {
                    self.find_live(
                        "SELECT * FROM pending_authorizations \
                         WHERE id_hash = $1 AND expires_at > $2",
                        id_hash,
                        now,
                        rows::pending,
                    )
                    .await
                }

                async fn complete_login(
                    &self,
                    id_hash: &str,
                    subject: &str,
                    granted_scope: &str,
                    new_csrf_hash: &str,
                    now: UnixTime,
                ) -> StorageResult<bool> {
                    let done = sqlx::query(
                        "UPDATE pending_authorizations SET stage = 'consent', subject = $1, \
                         granted_scope = $2, csrf_hash = $3 \
                         WHERE id_hash = $4 AND stage = 'login' AND expires_at > $5",
                    )
                    .bind(subject)
                    .bind(granted_scope)
                    .bind(new_csrf_hash)
                    .bind(id_hash)
                    .bind(now)
                    .execute(self.pool())
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn take_pending(
                    &self,
                    id_hash: &str,
                    stage: InteractionStage,
                    now: UnixTime,
                ) -> StorageResult<Option<PendingAuthorization>> {
                    sqlx::query(
                        "DELETE FROM pending_authorizations \
                         WHERE id_hash = $1 AND stage = $2 AND expires_at > $3 RETURNING *",
                    )
                    .bind(id_hash)
                    .bind(stage.as_str())
                    .bind(now)
                    .fetch_optional(self.pool())
                    .await?
                    .as_ref()
                    .map(rows::pending)
                    .transpose()
                }

                async fn put_code(&self, c: &AuthorizationCode) -> StorageResult<()> {
                    sqlx::query(
                        "INSERT INTO authorization_codes (code_hash, client_id, redirect_uri, \
                         subject, scope, resource, code_challenge, family_id, issued_at, \
                         expires_at, consumed, dpop_jkt) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    )
                    .bind(&c.code_hash)
                    .bind(&c.client_id)
                    .bind(&c.redirect_uri)
                    .bind(&c.subject)
                    .bind(&c.scope)
                    .bind(&c.resource)
                    .bind(&c.code_challenge)
                    .bind(&c.family_id)
                    .bind(c.issued_at)
                    .bind(c.expires_at)
                    .bind(c.consumed)
                    .bind(&c.dpop_jkt)
                    .execute(self.pool())
                    .await?;
                    Ok(())
                }

                async fn get_code(
                    &self,
                    code_hash: &str,
                    now: UnixTime,
                ) -> StorageResult<Option<AuthorizationCode>> {
                    self.find_live(
                        "SELECT * FROM authorization_codes \
                         WHERE code_hash = $1 AND expires_at > $2",
                        code_hash,
                        now,
                        rows::code,
                    )
                    .await
                }

                async fn consume_code(
                    &self,
                    code_hash: &str,
                    now: UnixTime,
                ) -> StorageResult<bool> {
                    // One statement: SQLite runs one writer at a time; on PostgreSQL concurrent
                    // updates queue on the row's lock and each re-checks `consumed = false` on
                    // the committed row. Either way exactly one caller flips the flag.
                    let done = sqlx::query(
                        "UPDATE authorization_codes SET consumed = true \
                         WHERE code_hash = $1 AND consumed = false AND expires_at > $2",
                    )
                    .bind(code_hash)
                    .bind(now)
                    .execute(self.pool())
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn put_tokens(&self, tokens: &[TokenRecord]) -> StorageResult<()> {
                    // One statement: the rows become visible together or not at all.
                    Self::insert_tokens(self.pool(), tokens, None).await
                }

                async fn get_token(
                    &self,
                    token_hash: &str,
                    now: UnixTime,
                ) -> StorageResult<Option<TokenRecord>> {
                    self.find_live(
                        "SELECT * FROM tokens t WHERE t.token_hash = $1 AND t.expires_at > $2 \
                         AND NOT EXISTS \
                         (SELECT 1 FROM revoked_families f WHERE f.family_id = t.family_id)",
                        token_hash,
                        now,
                        rows::token,
                    )
                    .await
                }

                async fn rotate_refresh_token(
                    &self,
                    token_hash: &str,
                    now: UnixTime,
                    retry_since: UnixTime,
                    successors: &[TokenRecord],
                ) -> StorageResult<Rotation> {
                    // One transaction: the old token is consumed if and only if its successors
                    // are stored. Dropping `tx` without commit (early return, error, crash)
                    // rolls everything back.
                    let mut tx = self.begin_write().await?;
                    // A token's family never changes, so it can be read before locking.
                    let family: Option<String> =
                        sqlx::query_scalar("SELECT family_id FROM tokens WHERE token_hash = $1")
                            .bind(token_hash)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let Some(family) = family else {
                        return Ok(Rotation::Refused);
                    };
                    Self::lock(&mut tx, Lock::Family(&family)).await?;
                    if let Some(lock_row) = <$backend as Dialect>::LOCK_TOKEN_ROW {
                        sqlx::query(lock_row)
                            .bind(token_hash)
                            .execute(&mut *tx)
                            .await?;
                    }
                    let rotated = sqlx::query(
                        "UPDATE tokens SET consumed = true, rotated_at = $1 WHERE token_hash = $2 \
                         AND kind = 'refresh' AND consumed = false AND expires_at > $1 \
                         AND NOT EXISTS (SELECT 1 FROM revoked_families f \
                                         WHERE f.family_id = tokens.family_id)",
                    )
                    .bind(now)
                    .bind(token_hash)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    let outcome = if rotated {
                        Rotation::Rotated
                    } else {
                        // Every change to this family's tokens holds the family lock, so the
                        // children read here cannot be rotated or replaced before this
                        // transaction ends.
                        let retry = sqlx::query(
                            "SELECT 1 FROM tokens o WHERE o.token_hash = $1 AND o.kind = 'refresh' \
                             AND o.consumed = true AND o.rotated_at > $2 AND o.expires_at > $3 \
                             AND NOT EXISTS (SELECT 1 FROM revoked_families f \
                                             WHERE f.family_id = o.family_id) \
                             AND NOT EXISTS (SELECT 1 FROM tokens c \
                                             WHERE c.parent_hash = o.token_hash \
                                             AND c.rotated_at IS NOT NULL)",
                        )
                        .bind(token_hash)
                        .bind(retry_since)
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some();
                        if !retry {
                            return Ok(Rotation::Refused);
                        }
                        // The unused successors die: the access token is deleted; the refresh
                        // token is kept as consumed, so that presenting it later counts as
                        // reuse and revokes the family.
                        sqlx::query("DELETE FROM tokens WHERE parent_hash = $1 AND kind = 'access'")
                            .bind(token_hash)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query(
                            "UPDATE tokens SET consumed = true \
                             WHERE parent_hash = $1 AND kind = 'refresh'",
                        )
                        .bind(token_hash)
                        .execute(&mut *tx)
                        .await?;
                        Rotation::Replaced
                    };
                    Self::insert_tokens(&mut *tx, successors, Some(token_hash)).await?;
                    tx.commit().await?;
                    Ok(outcome)
                }

                async fn revoke_family(
                    &self,
                    family_id: &str,
                    remember_until: UnixTime,
                    announce: &Announcement<'_>,
                ) -> StorageResult<Fanout> {
                    let mut tx = self.begin_write().await?;
                    Self::lock(&mut tx, Lock::Family(family_id)).await?;
                    // A family revoked twice is remembered until the later deadline.
                    sqlx::query(
                        "INSERT INTO revoked_families (family_id, expires_at) VALUES ($1, $2) \
                         ON CONFLICT (family_id) DO UPDATE SET expires_at = excluded.expires_at \
                         WHERE excluded.expires_at > revoked_families.expires_at",
                    )
                    .bind(family_id)
                    .bind(remember_until)
                    .execute(&mut *tx)
                    .await?;
                    let jtis = Self::revoked_access_jtis(&mut tx, true, family_id, announce).await?;
                    sqlx::query("DELETE FROM tokens WHERE family_id = $1")
                        .bind(family_id)
                        .execute(&mut *tx)
                        .await?;
                    let fanout = Self::write_announcement(&mut tx, announce, &jtis, None).await?;
                    tx.commit().await?;
                    Ok(fanout)
                }

                async fn get_user_override(
                    &self,
                    username: &str,
                ) -> StorageResult<Option<UserOverride>> {
                    sqlx::query("SELECT * FROM user_overrides WHERE username = $1")
                        .bind(username)
                        .fetch_optional(self.pool())
                        .await?
                        .as_ref()
                        .map(rows::user_override)
                        .transpose()
                }

                async fn change_user(
                    &self,
                    username: &str,
                    change: &UserChange,
                    remember_until: UnixTime,
                    announce: &Announcement<'_>,
                ) -> StorageResult<Fanout> {
                    let mut tx = self.begin_write().await?;
                    let (hash, disabled, revoke) = match change {
                        UserChange::Password(hash) => (Some(hash.as_str()), None, true),
                        UserChange::Disable => (None, Some(true), true),
                        UserChange::Enable => (None, Some(false), false),
                    };
                    sqlx::query(
                        "INSERT INTO user_overrides (username, password_hash, disabled, \
                         updated_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (username) DO UPDATE SET \
                         password_hash = COALESCE(excluded.password_hash, \
                                                  user_overrides.password_hash), \
                         disabled = CASE WHEN $5 THEN excluded.disabled \
                                         ELSE user_overrides.disabled END, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(username)
                    .bind(hash)
                    .bind(disabled.unwrap_or(false))
                    .bind(announce.now)
                    .bind(disabled.is_some())
                    .execute(&mut *tx)
                    .await?;
                    // The unexpired access tokens the change ends, for token-revoked events: what
                    // receivers that check JWTs locally need to refuse them.
                    let jtis = if revoke {
                        Self::revoked_access_jtis(&mut tx, false, username, announce).await?
                    } else {
                        Vec::new()
                    };
                    if revoke {
                        sqlx::query(
                            "INSERT INTO revoked_families (family_id, expires_at) \
                             SELECT DISTINCT family_id, $2 FROM \
                             (SELECT family_id FROM tokens WHERE subject = $1 \
                              UNION SELECT family_id FROM authorization_codes \
                              WHERE subject = $1) AS f WHERE true \
                             ON CONFLICT (family_id) DO UPDATE SET \
                             expires_at = excluded.expires_at \
                             WHERE excluded.expires_at > revoked_families.expires_at",
                        )
                        .bind(username)
                        .bind(remember_until)
                        .execute(&mut *tx)
                        .await?;
                        for sql in [
                            "DELETE FROM tokens WHERE subject = $1",
                            "DELETE FROM authorization_codes WHERE subject = $1",
                            "DELETE FROM pending_authorizations WHERE subject = $1",
                        ] {
                            sqlx::query(sql).bind(username).execute(&mut *tx).await?;
                        }
                    }
                    let fanout = Self::write_announcement(&mut tx, announce, &jtis, None).await?;
                    tx.commit().await?;
                    Ok(fanout)
                }

                async fn create_stream(
                    &self,
                    stream: &Stream,
                    max_per_client: u64,
                ) -> StorageResult<bool> {
                    let mut tx = self.begin_write().await?;
                    Self::lock(&mut tx, Lock::Streams).await?;
                    let count: i64 =
                        sqlx::query_scalar("SELECT count(*) FROM ssf_streams WHERE client_id = $1")
                            .bind(&stream.client_id)
                            .fetch_one(&mut *tx)
                            .await?;
                    if count >= cap(max_per_client) {
                        return Ok(false);
                    }
                    let (endpoint_url, authorization_header) =
                        rows::delivery_columns(&stream.delivery);
                    sqlx::query(
                        "INSERT INTO ssf_streams (stream_id, client_id, delivery_method, \
                         endpoint_url, authorization_header, events_requested, \
                         events_delivered, description, status, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(&stream.stream_id)
                    .bind(&stream.client_id)
                    .bind(stream.delivery.method_name())
                    .bind(endpoint_url)
                    .bind(authorization_header)
                    .bind(to_json(&stream.events_requested))
                    .bind(to_json(&stream.events_delivered))
                    .bind(&stream.description)
                    .bind(stream.status.as_str())
                    .bind(stream.created_at)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn get_stream(&self, stream_id: &str) -> StorageResult<Option<Stream>> {
                    sqlx::query("SELECT * FROM ssf_streams WHERE stream_id = $1")
                        .bind(stream_id)
                        .fetch_optional(self.pool())
                        .await?
                        .as_ref()
                        .map(rows::stream)
                        .transpose()
                }

                async fn list_streams(&self, client_id: &str) -> StorageResult<Vec<Stream>> {
                    sqlx::query(
                        "SELECT * FROM ssf_streams WHERE client_id = $1 \
                         ORDER BY created_at, stream_id",
                    )
                    .bind(client_id)
                    .fetch_all(self.pool())
                    .await?
                    .iter()
                    .map(rows::stream)
                    .collect()
                }

                async fn update_stream(&self, stream: &Stream) -> StorageResult<bool> {
                    let mut tx = self.begin_write().await?;
                    let (endpoint_url, authorization_header) =
                        rows::delivery_columns(&stream.delivery);
                    let done = sqlx::query(
                        "UPDATE ssf_streams SET delivery_method = $1, endpoint_url = $2, \
                         authorization_header = $3, events_requested = $4, \
                         events_delivered = $5, description = $6, status = $7 \
                         WHERE stream_id = $8 AND client_id = $9",
                    )
                    .bind(stream.delivery.method_name())
                    .bind(endpoint_url)
                    .bind(authorization_header)
                    .bind(to_json(&stream.events_requested))
                    .bind(to_json(&stream.events_delivered))
                    .bind(&stream.description)
                    .bind(stream.status.as_str())
                    .bind(&stream.stream_id)
                    .bind(&stream.client_id)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Ok(false);
                    }
                    if stream.status == StreamStatus::Disabled {
                        Self::drop_pending(&mut tx, &stream.stream_id).await?;
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                async fn delete_stream(
                    &self,
                    stream_id: &str,
                    client_id: &str,
                ) -> StorageResult<bool> {
                    let mut tx = self.begin_write().await?;
                    let done = sqlx::query(
                        "DELETE FROM ssf_streams WHERE stream_id = $1 AND client_id = $2",
                    )
                    .bind(stream_id)
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Ok(false);
                    }
                    sqlx::query("DELETE FROM ssf_outbox WHERE stream_id = $1")
                        .bind(stream_id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn set_stream_status(
                    &self,
                    stream_id: &str,
                    client_id: &str,
                    status: StreamStatus,
                ) -> StorageResult<bool> {
                    let mut tx = self.begin_write().await?;
                    let done = sqlx::query(
                        "UPDATE ssf_streams SET status = $1 WHERE stream_id = $2 AND client_id = $3",
                    )
                    .bind(status.as_str())
                    .bind(stream_id)
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Ok(false);
                    }
                    if status == StreamStatus::Disabled {
                        Self::drop_pending(&mut tx, stream_id).await?;
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                async fn announce_to_stream(
                    &self,
                    stream_id: &str,
                    announce: &Announcement<'_>,
                ) -> StorageResult<Fanout> {
                    let mut tx = self.begin_write().await?;
                    let fanout =
                        Self::write_announcement(&mut tx, announce, &[], Some(stream_id)).await?;
                    tx.commit().await?;
                    Ok(fanout)
                }

                async fn claim_outbox(
                    &self,
                    now_ms: i64,
                    lease_until_ms: i64,
                    limit: u32,
                ) -> StorageResult<Vec<OutboxEntry>> {
                    let mut claimed = sqlx::query(<$backend as Dialect>::CLAIM_OUTBOX)
                        .bind(now_ms)
                        .bind(lease_until_ms)
                        .bind(i64::from(limit))
                        .fetch_all(self.pool())
                        .await?
                        .iter()
                        .map(rows::outbox_entry)
                        .collect::<StorageResult<Vec<_>>>()?;
                    claimed.sort_by_key(|e| e.id);
                    Ok(claimed)
                }

                async fn finish_outbox(
                    &self,
                    id: i64,
                    now_ms: i64,
                    error: Option<&str>,
                ) -> StorageResult<()> {
                    sqlx::query(
                        "UPDATE ssf_outbox SET state = $1, done_at = $2, lease_until = 0, \
                         last_error = $3 WHERE id = $4 AND state = 'pending'",
                    )
                    .bind(if error.is_some() { "failed" } else { "delivered" })
                    .bind(now_ms)
                    .bind(error)
                    .bind(id)
                    .execute(self.pool())
                    .await?;
                    Ok(())
                }

                async fn retry_outbox(
                    &self,
                    id: i64,
                    next_attempt_ms: i64,
                    error: &str,
                ) -> StorageResult<()> {
                    sqlx::query(
                        "UPDATE ssf_outbox SET next_attempt_at = $1, lease_until = 0, \
                         last_error = $2 WHERE id = $3 AND state = 'pending'",
                    )
                    .bind(next_attempt_ms)
                    .bind(error)
                    .bind(id)
                    .execute(self.pool())
                    .await?;
                    Ok(())
                }

                async fn pending_outbox(
                    &self,
                    stream_id: &str,
                    limit: u32,
                ) -> StorageResult<Vec<OutboxEntry>> {
                    sqlx::query(
                        "SELECT * FROM ssf_outbox WHERE stream_id = $1 AND state = 'pending' \
                         ORDER BY id LIMIT $2",
                    )
                    .bind(stream_id)
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
                    .await?
                    .iter()
                    .map(rows::outbox_entry)
                    .collect()
                }

                async fn acknowledge_outbox(
                    &self,
                    stream_id: &str,
                    jtis: &[&str],
                    now_ms: i64,
                    error: Option<&str>,
                ) -> StorageResult<u64> {
                    let mut tx = self.begin_write().await?;
                    let mut changed = 0;
                    for jti in jtis {
                        changed += sqlx::query(
                            "UPDATE ssf_outbox SET state = $1, done_at = $2, last_error = $3 \
                             WHERE stream_id = $4 AND jti = $5 AND state = 'pending'",
                        )
                        .bind(if error.is_some() { "failed" } else { "delivered" })
                        .bind(now_ms)
                        .bind(error)
                        .bind(stream_id)
                        .bind(*jti)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    }
                    tx.commit().await?;
                    Ok(changed)
                }

                async fn count_pending_outbox(&self, stream_id: &str) -> StorageResult<u64> {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM ssf_outbox WHERE stream_id = $1 AND state = 'pending'",
                    )
                    .bind(stream_id)
                    .fetch_one(self.pool())
                    .await?;
                    Ok(u64::try_from(n).unwrap_or(0))
                }

                async fn ensure_signing_key(
                    &self,
                    candidate: &SigningKey,
                ) -> StorageResult<SigningKey> {
                    // The unique index on the current key makes the insert a no-op for every
                    // loser of a first-start race (on PostgreSQL after waiting for the winner's
                    // insert to commit); the read then returns the winner's key.
                    Self::insert_signing_key(self.pool(), candidate).await?;
                    self.current_signing_key()
                        .await?
                        .ok_or_else(|| rows::corrupt("signing_keys: no current key after insert"))
                }

                async fn current_signing_key(&self) -> StorageResult<Option<SigningKey>> {
                    sqlx::query("SELECT * FROM signing_keys WHERE retire_at IS NULL")
                        .fetch_optional(self.pool())
                        .await?
                        .as_ref()
                        .map(rows::signing_key)
                        .transpose()
                }

                async fn rotate_signing_key(
                    &self,
                    new: &SigningKey,
                    retire_at: UnixTime,
                ) -> StorageResult<Option<String>> {
                    let mut tx = self.begin_write().await?;
                    Self::lock(&mut tx, Lock::SigningKeys).await?;
                    let retired: Option<String> = sqlx::query_scalar(
                        "UPDATE signing_keys SET retire_at = $1 WHERE retire_at IS NULL \
                         RETURNING kid",
                    )
                    .bind(retire_at)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if !Self::insert_signing_key(&mut *tx, new).await? {
                        return Err(rows::corrupt("signing_keys: the new key was not stored"));
                    }
                    tx.commit().await?;
                    Ok(retired)
                }

                async fn verification_keys(
                    &self,
                    now: UnixTime,
                ) -> StorageResult<Vec<VerificationKey>> {
                    // Oldest first; of two keys made in the same second, the retired one first.
                    sqlx::query(
                        "SELECT kid, algorithm, x, y, created_at, retire_at FROM signing_keys \
                         WHERE retire_at IS NULL OR retire_at > $1 \
                         ORDER BY created_at, retire_at IS NULL, kid",
                    )
                    .bind(now)
                    .fetch_all(self.pool())
                    .await?
                    .iter()
                    .map(rows::verification_key)
                    .collect()
                }

                async fn purge_expired(&self, now: UnixTime) -> StorageResult<u64> {
                    let mut tx = self.begin_write().await?;
                    if !Self::lock(&mut tx, Lock::Cleanup).await? {
                        tracing::debug!("another instance is purging expired rows; skipping");
                        return Ok(0);
                    }
                    let mut deleted = 0;
                    for sql in [
                        // Anonymous clients never used in time, with their pending
                        // authorizations (counted here; the remaining rows that refer to them
                        // cascade).
                        "DELETE FROM pending_authorizations WHERE client_id IN \
                         (SELECT client_id FROM unused_clients WHERE expires_at <= $1)",
                        "DELETE FROM clients WHERE client_id IN \
                         (SELECT client_id FROM unused_clients WHERE expires_at <= $1)",
                        "DELETE FROM pending_authorizations WHERE expires_at <= $1",
                        "DELETE FROM authorization_codes WHERE expires_at <= $1",
                        "DELETE FROM tokens WHERE expires_at <= $1",
                        "DELETE FROM revoked_families WHERE expires_at <= $1",
                        "DELETE FROM signing_keys WHERE retire_at <= $1",
                        // Delivered and failed events after their retention (outbox times are
                        // milliseconds).
                        "DELETE FROM ssf_outbox WHERE state <> 'pending' \
                         AND done_at <= $1 * 1000 - 86400000",
                    ] {
                        deleted += sqlx::query(sql)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                    }
                    // Events of streams that no longer exist (their client was deleted).
                    deleted += sqlx::query(
                        "DELETE FROM ssf_outbox WHERE NOT EXISTS \
                         (SELECT 1 FROM ssf_streams s WHERE s.stream_id = ssf_outbox.stream_id)",
                    )
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    tx.commit().await?;
                    Ok(deleted)
                }

                async fn stats(&self) -> StorageResult<StorageStats> {
                    let row = sqlx::query(rows::STATS).fetch_one(self.pool()).await?;
                    rows::stats(&row)
                }

                async fn close(&self) {
                    self.pool().close().await;
                }
            }
        };
    };
}
pub(super) use sql_storage;
