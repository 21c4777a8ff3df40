//! A Client ID Metadata Document (MCP 2026-07-28's preferred client registration) served by the
//! demo client itself, over https on loopback.
//!
//! Instead of registering (RFC 7591), the client publishes a JSON document describing itself and
//! presents the document's URL as its `client_id`; the authorization server fetches it. The URL
//! must be https, so this server makes a throwaway self-signed certificate for `127.0.0.1` and
//! `localhost` in-process, writes it to a PEM file that the provider is given as its extra trusted
//! root (`--cimd-ca-file`), and serves one document. A real client publishes its document on its
//! own public https origin; only a development provider (`--cimd-allow-loopback`) fetches from
//! loopback at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse as _;
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/oauth/client-metadata.json";
/// Bound on one TLS handshake, so a silent peer cannot hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running document server.
pub struct MetadataDocumentServer {
    url: String,
    ca_file: PathBuf,
    fetches: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl MetadataDocumentServer {
    /// Makes the certificate (written to `dir` as `client-metadata-ca.pem`) and serves, at
    /// `https://127.0.0.1:<free port>/oauth/client-metadata.json`, the document of a public client
    /// named `client_name` that redirects to `redirect_uri`, with the authorization code and
    /// refresh token grants.
    pub async fn start(dir: &Path, client_name: &str, redirect_uri: &str) -> anyhow::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .context("making the document server's certificate")?;
        let ca_file = dir.join("client-metadata-ca.pem");
        std::fs::write(&ca_file, certified.cert.pem())
            .with_context(|| format!("writing {}", ca_file.display()))?;
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![certified.cert.der().clone()],
                certified.signing_key.into(),
            )?;
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://{}{DOCUMENT_PATH}", listener.local_addr()?);
        // `client_id` must equal the URL exactly, and the redirect URI must be one of these.
        let document = json!({
            "client_id": url,
            "client_name": client_name,
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        })
        .to_string();
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let router = Router::new().route(
            DOCUMENT_PATH,
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let document = document.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::CACHE_CONTROL, "max-age=300"),
                        ],
                        document,
                    )
                        .into_response()
                }
            }),
        );
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let router = router.clone();
                tokio::spawn(async move {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router))
                        .await;
                });
            }
        });
        Ok(Self {
            url,
            ca_file,
            fetches,
            task,
        })
    }

    /// The document URL: the client's `client_id`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The PEM file of the certificate, for the provider's `--cimd-ca-file`.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// How many times the document was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for MetadataDocumentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
