//! TLS checks, keepalived's SSL_GET: a handshake with the server and, with a path,
//! an HTTP GET over it. rustls with the ring provider.
//!
//! As keepalived's SSL_GET, the certificate is not verified unless `verify: true`
//! (a check asks whether the server is up, not whether it is who it claims to be);
//! then it is verified against `ca_file` or the system's bundle, for the `sni` name
//! or, without one, the server's address.

use super::{expect_status, http_status, left, CheckError};
use ferrovs_core::config::HealthCheckConfig;
use ferrovs_core::service::endpoint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned,
};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

/// The trusted CAs of `verify: true` without a `ca_file`: Debian's bundle.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Accepts any certificate, but still checks the handshake's signatures with it:
/// the server must hold the key of the certificate it shows.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
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
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// ring's provider. rustls 0.23.48 deprecated it for lacking post-quantum key
/// exchange, which a health check does not need; aws-lc, the other provider,
/// would bring cmake and a C library of its own into the build.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The client configuration without certificate verification, built once.
fn unverified() -> Result<Arc<ClientConfig>, CheckError> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = provider();
            let verifier = AnyCertificate(provider.signature_verification_algorithms);
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(CheckError::Local)
}

/// The client configuration trusting the CAs of `file`, read again when the file
/// changes.
fn verified(file: &Path) -> Result<Arc<ClientConfig>, CheckError> {
    type Cache = HashMap<PathBuf, (SystemTime, Arc<ClientConfig>)>;
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let local = |e: &dyn std::fmt::Display| CheckError::Local(format!("{}: {e}", file.display()));
    let modified = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .map_err(|e| local(&e))?;
    let mut cache = CACHE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((at, config)) = cache.get(file) {
        if *at == modified {
            return Ok(config.clone());
        }
    }
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(file).map_err(|e| local(&e))? {
        let cert = cert.map_err(|e| local(&e))?;
        // A certificate webpki cannot use as a trust anchor is left out, as
        // OpenSSL-based tools do.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(local(&"no usable CA certificate"));
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| local(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    cache.insert(file.to_path_buf(), (modified, config.clone()));
    Ok(config)
}

/// A failed TLS exchange, named.
fn tls_error(e: std::io::Error) -> CheckError {
    if super::timed_out(&e) {
        return CheckError::Server("timed out".into());
    }
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => CheckError::Server(format!("TLS: {tls}")),
        None => CheckError::of(e),
    }
}

/// One TLS check of `target`.
pub(super) fn check(
    target: SocketAddr,
    check: &HealthCheckConfig,
    deadline: Instant,
) -> Result<(), CheckError> {
    let config = if check.verify {
        let file = check.ca_file.as_deref().unwrap_or(Path::new(SYSTEM_BUNDLE));
        verified(file)?
    } else {
        unverified()?
    };
    let name = match &check.sni {
        Some(sni) => ServerName::try_from(sni.trim_end_matches('.').to_string())
            .map_err(|e| CheckError::Local(format!("sni {sni}: {e}")))?,
        // No SNI is sent for an address; with `verify`, the certificate must name it.
        None => ServerName::IpAddress(target.ip().into()),
    };
    let tcp = TcpStream::connect_timeout(&target, check.timeout).map_err(CheckError::of)?;
    let conn =
        ClientConnection::new(config, name).map_err(|e| CheckError::Local(format!("TLS: {e}")))?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if Instant::now() >= deadline {
            return Err(CheckError::Server(format!(
                "TLS handshake not complete within {:?}",
                check.timeout
            )));
        }
        tls.sock
            .set_read_timeout(Some(left(deadline)))
            .and_then(|()| tls.sock.set_write_timeout(Some(left(deadline))))
            .map_err(CheckError::of)?;
        tls.conn.complete_io(&mut tls.sock).map_err(tls_error)?;
    }
    if !check.tls_get {
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
        return Ok(());
    }
    let host = match &check.sni {
        Some(sni) => sni.trim_end_matches('.').to_string(),
        None => endpoint(target.ip(), target.port()),
    };
    let status = http_status(
        &mut tls,
        &host,
        &check.path,
        deadline,
        |s: &mut StreamOwned<ClientConnection, TcpStream>, d| s.sock.set_read_timeout(Some(d)),
    )
    .map_err(|e| match e {
        CheckError::Server(why) if why.starts_with("no HTTP status") => CheckError::Server(why),
        other => other,
    })?;
    expect_status(status, check.expect_status)
}
