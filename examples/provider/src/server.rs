//! Running the server: storage, users, router, cleanup task and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use crate::config::{Config, StorageConfig};
use crate::state::AppState;
use crate::storage::{MemoryStorage, PostgresStorage, SqliteStorage, Storage, StorageError};
use crate::users::{UserDirectory, UsersError};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding or serving failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The storage backend could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The users file is invalid.
    #[error(transparent)]
    Users(#[from] UsersError),
    /// The clients file is invalid.
    #[error(transparent)]
    Clients(#[from] crate::clients::ClientsError),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The signing key could not be made or read.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
}

/// Checks and normalises the issuer: an `http`/`https` URL without path, query or fragment; the
/// trailing slash is removed. `None` gives `http://<addr>`.
pub fn normalise_issuer(issuer: Option<&str>, addr: SocketAddr) -> Result<String, Error> {
    let Some(issuer) = issuer else {
        return Ok(format!("http://{addr}"));
    };
    let url = Url::parse(issuer).map_err(|e| Error::Config(format!("issuer: {e}")))?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !ok {
        return Err(Error::Config(
            "issuer must be an http(s) URL without path, query or fragment".to_owned(),
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Refuses policy settings that would silently weaken the server: malformed resources,
/// registrable scopes outside `scopes_supported` or including the privileged scope, and a short
/// initial access token.
pub fn validate_policy(config: &Config) -> Result<(), Error> {
    for resource in config.known_resources() {
        if !crate::resource::is_valid(&resource) {
            return Err(Error::Config(format!(
                "resource {resource:?} is not an absolute URI without fragment"
            )));
        }
    }
    for scope in config.effective_registrable_scopes() {
        if scope == crate::config::PRIVILEGED_SCOPE {
            return Err(Error::Config(format!(
                "scope {scope:?} can never be registrable"
            )));
        }
        if !config.scopes_supported.contains(&scope) {
            return Err(Error::Config(format!(
                "registrable scope {scope:?} is not a supported scope"
            )));
        }
    }
    if config
        .registration_token
        .as_ref()
        .is_some_and(|t| t.expose().len() < MIN_REGISTRATION_TOKEN_LEN)
    {
        return Err(Error::Config(format!(
            "the registration token must have at least {MIN_REGISTRATION_TOKEN_LEN} characters"
        )));
    }
    Ok(())
}

/// Shortest accepted initial access token (it guards who may mint `client_credentials` clients).
pub const MIN_REGISTRATION_TOKEN_LEN: usize = 16;

/// Opens the configured storage backend.
pub async fn open_storage(config: &StorageConfig) -> Result<Arc<dyn Storage>, StorageError> {
    Ok(match config {
        StorageConfig::Memory => Arc::new(MemoryStorage::new()),
        StorageConfig::Sqlite { path } => Arc::new(SqliteStorage::open(path).await?),
        StorageConfig::Postgres(settings) => Arc::new(PostgresStorage::open(settings).await?),
    })
}

/// Rotates the signing key of the configured storage from outside a running server (the
/// `rotate-signing-key` command): the new key signs from the next token on, on every instance
/// using that database; the previous one stays published until `config.lifetimes.access_token`
/// from now. Refused for memory storage, whose keys live and die with one process (use
/// [`Server::rotate_signing_key`] there).
pub async fn rotate_signing_key(config: &Config) -> Result<crate::keys::KeyRotation, Error> {
    if config.storage == StorageConfig::Memory {
        return Err(Error::Config(
            "memory storage keeps its keys inside one server process: nothing to rotate here"
                .to_owned(),
        ));
    }
    let storage = open_storage(&config.storage).await?;
    let rotated = crate::keys::rotate(
        storage.as_ref(),
        config.lifetimes.access_token,
        config.clock.now(),
    )
    .await;
    storage.close().await;
    Ok(rotated?)
}

/// Changes a user of the configured storage from outside a running server (the `disable-user`,
/// `enable-user` and `set-user-password` commands), exactly as the admin endpoints do: the
/// change, the revocation of the user's grants and the SSF event are one transaction, and the
/// running instances' deliverers push the event (they look for new events every
/// `--ssf-poll-interval-ms`). The user must be in the users file (or a demo account with
/// `--demo`); the issuer must be configured, since the events name it. Refused for memory
/// storage.
pub async fn change_user(
    config: &Config,
    username: &str,
    change: &crate::model::UserChange,
) -> Result<crate::model::Fanout, Error> {
    use crate::model::UserChange;
    if config.storage == StorageConfig::Memory {
        return Err(Error::Config(
            "memory storage lives inside one server process: use the admin endpoints".to_owned(),
        ));
    }
    let Some(issuer) = config.issuer.as_deref() else {
        return Err(Error::Config(
            "--issuer is required: the events name the issuer the servers use".to_owned(),
        ));
    };
    let issuer = normalise_issuer(Some(issuer), SocketAddr::from(([127, 0, 0, 1], 0)))?;
    if load_users(config)?.get(username).is_none() {
        return Err(Error::Config(format!(
            "no user {username:?} in the users file"
        )));
    }
    let now = config.clock.now();
    let events = match change {
        UserChange::Password(_) => vec![crate::ssf::events::credential_change(
            &issuer, username, now,
        )],
        UserChange::Disable => vec![crate::ssf::events::account_disabled(&issuer, username, now)],
        UserChange::Enable => Vec::new(),
    };
    let announce = crate::model::Announcement {
        events: &events,
        // A password change ends the user's grants: their access tokens are announced too.
        token_revoked_by: matches!(change, UserChange::Password(_)).then_some(issuer.as_str()),
        now,
        now_ms: crate::ssf::now_ms(),
        max_pending_per_stream: config.ssf.max_pending_per_stream,
    };
    let remember_until = now
        + crate::state::secs(config.lifetimes.refresh_token)
        + crate::state::secs(config.lifetimes.access_token);
    let storage = open_storage(&config.storage).await?;
    let result = storage
        .change_user(username, change, remember_until, &announce)
        .await;
    storage.close().await;
    Ok(result?)
}

/// Builds the user directory from the users file and (if enabled) the demo accounts.
pub fn load_users(config: &Config) -> Result<UserDirectory, UsersError> {
    let mut users = UserDirectory::new();
    if let Some(path) = &config.users_file {
        users.add(UserDirectory::load_file(path)?)?;
    }
    if config.demo {
        users.add(UserDirectory::demo_users())?;
    }
    Ok(users)
}

/// A running authorization server.
///
/// Dropping it starts a graceful shutdown in the background; call [`Server::shutdown`] to wait for
/// it (and close the storage).
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    serve: Option<JoinHandle<std::io::Result<()>>>,
    cleanup: JoinHandle<()>,
    deliverer: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and starts serving.
    pub async fn bind(config: Config, addr: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr).await?;
        Self::start(config, listener).await
    }

    /// Starts serving on `listener` with the configured storage backend.
    pub async fn start(config: Config, listener: TcpListener) -> Result<Self, Error> {
        let storage = open_storage(&config.storage).await?;
        Self::start_with_storage(config, listener, storage).await
    }

    /// Starts serving on `listener` with a storage the caller opened (tests use this to inspect
    /// or share it). `config.storage` is ignored.
    pub async fn start_with_storage(
        config: Config,
        listener: TcpListener,
        storage: Arc<dyn Storage>,
    ) -> Result<Self, Error> {
        let addr = listener.local_addr()?;
        let issuer = normalise_issuer(config.issuer.as_deref(), addr)?;
        validate_policy(&config)?;
        let users = load_users(&config)?;
        let now = config.clock.now();
        // Made at the first start whatever the format, so `/jwks` always has the current key
        // and switching to JWTs later needs nothing else.
        let key = crate::keys::current(storage.as_ref(), now).await?;
        tracing::info!(kid = %key.public.kid, format = ?config.access_token_format, "access-token signing key loaded");
        drop(key);
        if config.demo {
            crate::seed::seed_demo_clients(storage.as_ref(), now).await?;
        }
        if let Some(path) = &config.clients_file {
            let resources = config.known_resources();
            let known = crate::clients::Known {
                scopes: &config.scopes_supported,
                resources: &resources,
            };
            for client in crate::clients::load_file(path, &known, now)? {
                storage.put_client(&client).await?;
            }
        }
        let cimd = crate::cimd::CimdFetcher::new(config.cimd.clone())
            .map_err(|e| Error::Config(e.to_string()))?;
        let state = AppState::new(&config, storage.clone(), users, issuer, cimd);
        let app = crate::router(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = tokio::spawn(async move {
            // Connect info gives handlers the TCP peer address that per-address limits use.
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // A dropped sender also means "stop".
                    let _ = stopped.await;
                })
                .await
        });
        let cleanup = crate::cleanup::spawn(storage, config.cleanup_interval, config.clock.clone());
        let deliverer = if config.ssf.deliver {
            Some(
                crate::ssf::deliver::spawn(state.clone())
                    .map_err(|e| Error::Config(format!("SSF push client: {e}")))?,
            )
        } else {
            None
        };
        tracing::info!(%addr, issuer = state.issuer(), "authorization server started");
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            serve: Some(serve),
            cleanup,
            deliverer,
        })
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The issuer identifier (no trailing slash); endpoint URLs are `issuer + "/token"` etc.
    pub fn issuer(&self) -> &str {
        self.state.issuer()
    }

    /// `http://<addr>`: where to send requests (differs from the issuer when one was configured).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes a new key the access-token signing key (see [`crate::keys::rotate`]); the previous
    /// one stays in `/jwks` until the last token it signed has expired. Other instances on the
    /// same database sign with the new key from their next token on.
    pub async fn rotate_signing_key(&self) -> Result<crate::keys::KeyRotation, Error> {
        Ok(crate::keys::rotate(
            self.state.storage().as_ref(),
            self.state.lifetimes().access_token,
            self.state.now(),
        )
        .await?)
    }

    /// The handlers' state (storage access for tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting connections, waits for in-flight requests, stops the cleanup task and
    /// closes the storage.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.cleanup.abort();
        if let Some(deliverer) = self.deliverer.take() {
            deliverer.abort();
        }
        let result = match self.serve.take() {
            Some(handle) => match handle.await {
                Ok(r) => r.map_err(Error::from),
                Err(e) => Err(Error::Io(std::io::Error::other(e))),
            },
            None => Ok(()),
        };
        self.state.storage().close().await;
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.cleanup.abort();
        if let Some(deliverer) = &self.deliverer {
            deliverer.abort();
        }
    }
}
