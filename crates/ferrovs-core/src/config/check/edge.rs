//! What a service's TCP connections carry through ferrovs besides the client's
//! bytes: `proxy_protocol`.

use super::*;

impl Checker<'_> {
    /// `proxy_protocol`: a header only ferrovs can put in a TCP stream whose
    /// sequence numbers it translates, so TCP in NAT or FULLNAT.
    pub(super) fn proxy_protocol(
        &mut self,
        path: &str,
        raw: &RawService,
        protocol: Option<Protocol>,
        mode: Option<ForwardMode>,
    ) -> Option<ProxyProtocol> {
        let Some(text) = &raw.proxy_protocol else {
            return Some(ProxyProtocol::None);
        };
        let path = format!("{path}.proxy_protocol");
        let version: ProxyProtocol = self.keyword(&path, text)?;
        if version == ProxyProtocol::None {
            return Some(version);
        }
        if let Some(p @ Protocol::Udp) = protocol {
            self.error(
                &path,
                format!(
                    "the Proxy Protocol header goes ahead of a TCP stream; this service is {p}"
                ),
            );
            return None;
        }
        if let Some(m @ (ForwardMode::Dr | ForwardMode::Tunnel)) = mode {
            self.error(
                &path,
                format!(
                    "the header shifts the stream's sequence numbers, which only nat and \
                     fullnat translate back (the server's replies pass through ferrovs); \
                     this service is {m}"
                ),
            );
            return None;
        }
        Some(version)
    }
}
