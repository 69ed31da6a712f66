//! The byte stream under a session: TCP (TCP_NODELAY), optionally TLS (rustls with the ring
//! provider), with an inactivity timeout on every read and write.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::{Endpoint, ImapError, Result};

/// A stream whose reads and writes fail with `TimedOut` when they make no progress for `timeout`.
/// The clock only runs while an operation is waiting, and restarts on every bit of progress, so a
/// long transfer that keeps moving is never cut, and a silent server is noticed after `timeout`.
pub(crate) struct Timed<S> {
    inner: S,
    timeout: Duration,
    read_sleep: Option<Pin<Box<Sleep>>>,
    write_sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> Timed<S> {
    pub(crate) fn new(inner: S, timeout: Duration) -> Self {
        Timed {
            inner,
            timeout,
            read_sleep: None,
            write_sleep: None,
        }
    }
}

fn check_timer(
    slot: &mut Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    cx: &mut Context<'_>,
    what: &str,
) -> Poll<io::Error> {
    let sleep = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
    match sleep.as_mut().poll(cx) {
        Poll::Ready(()) => {
            *slot = None;
            Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no {what} progress for {}s", timeout.as_secs()),
            ))
        }
        Poll::Pending => Poll::Pending,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_sleep = None;
                Poll::Ready(r)
            }
            Poll::Pending => check_timer(&mut this.read_sleep, this.timeout, cx, "read").map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.write_sleep = None;
                Poll::Ready(r)
            }
            Poll::Pending => check_timer(&mut this.write_sleep, this.timeout, cx, "write").map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                this.write_sleep = None;
                Poll::Ready(r)
            }
            Poll::Pending => check_timer(&mut this.write_sleep, this.timeout, cx, "write").map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(r) => {
                this.write_sleep = None;
                Poll::Ready(r)
            }
            Poll::Pending => check_timer(&mut this.write_sleep, this.timeout, cx, "write").map(Err),
        }
    }
}

/// Plain TCP or TLS over TCP.
pub(crate) enum ImapConn {
    Plain(Timed<TcpStream>),
    Tls(Box<tokio_rustls::client::TlsStream<Timed<TcpStream>>>),
}

impl fmt::Debug for ImapConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImapConn::Plain(t) => write!(f, "Plain({:?})", t.inner.peer_addr().ok()),
            ImapConn::Tls(t) => write!(f, "Tls({:?})", t.get_ref().0.inner.peer_addr().ok()),
        }
    }
}

impl AsyncRead for ImapConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapConn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapConn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapConn::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapConn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapConn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// TCP connect with the endpoint's timeout, TCP_NODELAY on.
pub(crate) async fn tcp_connect(ep: &Endpoint) -> Result<Timed<TcpStream>> {
    let addr = ep.addr();
    let stream =
        match tokio::time::timeout(ep.timeout, TcpStream::connect((ep.host.as_str(), ep.port)))
            .await
        {
            Err(_) => {
                return Err(ImapError::Connect {
                    addr,
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer within {}s", ep.timeout.as_secs()),
                    ),
                })
            }
            Ok(Err(source)) => return Err(ImapError::Connect { addr, source }),
            Ok(Ok(s)) => s,
        };
    // Without TCP_NODELAY a small write after a large one waits for the delayed ACK (~40 ms).
    stream
        .set_nodelay(true)
        .map_err(|source| ImapError::Connect {
            addr: addr.clone(),
            source,
        })?;
    Ok(Timed::new(stream, ep.timeout))
}

fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let res = rustls_native_certs::load_native_certs();
        for e in &res.errors {
            tracing::debug!("loading system CA certificates: {e}");
        }
        res.certs
    })
}

fn tls_err(ep: &Endpoint, reason: impl Into<String>) -> ImapError {
    ImapError::Tls {
        addr: ep.addr(),
        reason: reason.into(),
    }
}

/// Accepts any certificate (`insecure`): signatures are still checked so the handshake is sound,
/// but nobody vouches for the key.
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(ep: &Endpoint) -> Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(ep, format!("TLS setup: {e}")))?;
    let config = if ep.insecure {
        tracing::warn!(
            endpoint = %ep.label, addr = %ep.addr(),
            "TLS certificate verification is DISABLED (insecure): anyone in the path can read the password and the mail"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(native_roots().iter().cloned());
        tracing::trace!("system CA certificates: {added} added, {ignored} ignored");
        if let Some(path) = &ep.ca_file {
            let mut n = 0;
            let iter = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_err(ep, format!("cannot read CA file {}: {e}", path.display())))?;
            for cert in iter {
                let cert = cert.map_err(|e| {
                    tls_err(ep, format!("bad PEM in CA file {}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    tls_err(
                        ep,
                        format!("bad certificate in CA file {}: {e}", path.display()),
                    )
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(tls_err(
                    ep,
                    format!("no certificate in CA file {}", path.display()),
                ));
            }
        }
        if roots.is_empty() {
            return Err(tls_err(
                ep,
                "no trusted CA certificates (system store empty, no ca_file)",
            ));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// TLS handshake over `tcp`, verifying the certificate against `ep.host` (name or IP address).
pub(crate) async fn tls_handshake(ep: &Endpoint, tcp: Timed<TcpStream>) -> Result<ImapConn> {
    let config = client_config(ep)?;
    let name = ServerName::try_from(ep.host.clone())
        .map_err(|e| tls_err(ep, format!("{:?} is not a valid server name: {e}", ep.host)))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    match connector.connect(name, tcp).await {
        Ok(s) => Ok(ImapConn::Tls(Box::new(s))),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(ImapError::Timeout {
            command: "TLS handshake".into(),
            secs: ep.timeout.as_secs(),
        }),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ) =>
        {
            Err(tls_err(
                ep,
                format!("server closed the connection during the handshake: {e}"),
            ))
        }
        Err(e) => Err(tls_err(ep, e.to_string())),
    }
}
