//! What a service's TCP connections carry through ferrovs besides the client's
//! bytes: `proxy_protocol`; and who answers its SYNs: `syn_proxy`.

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

    /// `syn_proxy`: the connection to the real server has other sequence numbers
    /// than the one to the client, so TCP in NAT or FULLNAT.
    pub(super) fn syn_proxy(
        &mut self,
        path: &str,
        raw: &RawService,
        protocol: Option<Protocol>,
        mode: Option<ForwardMode>,
    ) -> Option<bool> {
        if raw.syn_proxy != Some(true) {
            return Some(false);
        }
        let path = format!("{path}.syn_proxy");
        if let Some(p @ Protocol::Udp) = protocol {
            self.error(
                &path,
                format!("a SYN proxy answers TCP SYNs; this service is {p}"),
            );
            return None;
        }
        if let Some(m @ (ForwardMode::Dr | ForwardMode::Tunnel)) = mode {
            self.error(
                &path,
                format!(
                    "a SYN proxy translates the sequence numbers of the server's replies, \
                     which pass through ferrovs only in nat and fullnat; this service is {m}"
                ),
            );
            return None;
        }
        let v6_vip = raw.vip.parse::<IpAddr>().is_ok_and(|v| v.is_ipv6());
        let v4_local = raw
            .local_addresses
            .iter()
            .flatten()
            .any(|a| a.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4()));
        if v6_vip && v4_local {
            self.error(
                &path,
                "a NAT64 service (IPv6 VIP, IPv4 local addresses) cannot be SYN-proxied",
            );
            return None;
        }
        Some(true)
    }
}
