//! A service's access lists and limits: `allow`, `deny`, `deny_action`,
//! `new_connections_per_source`, and its real servers' `max_connections` and
//! `min_connections`.

use super::*;

/// Most prefixes in one `allow` or `deny` list: the lists are matched per prefix
/// length (a hash probe each), so their length costs memory, not time.
const MAX_ACL_PREFIXES: usize = 65_536;
/// Most new connections a `new_connections_per_source` rate may name per period.
const MAX_SOURCE_RATE: u64 = 1_000_000;

impl Checker<'_> {
    /// `allow`, `deny`, `deny_action` and `new_connections_per_source` of the
    /// service at `path`.
    pub(super) fn access(
        &mut self,
        path: &str,
        raw: &RawService,
        protocol: Option<Protocol>,
        vip: Option<IpAddr>,
    ) -> Option<AccessConfig> {
        let allow = self.prefix_list(&format!("{path}.allow"), raw.allow.as_deref(), vip);
        let deny = self.prefix_list(&format!("{path}.deny"), raw.deny.as_deref(), vip);
        let action_path = format!("{path}.deny_action");
        let deny_action = match &raw.deny_action {
            None => Some(DenyAction::Drop),
            Some(text) => self
                .keyword::<DenyAction>(&action_path, text)
                .filter(|&action| match (action, protocol) {
                    (DenyAction::Rst, Some(p @ Protocol::Udp)) => {
                        self.error(
                            &action_path,
                            format!("rst answers a TCP SYN; this service is {p}"),
                        );
                        false
                    }
                    _ => true,
                }),
        };
        let new_connections_per_source = match &raw.new_connections_per_source {
            None => Some(None),
            Some(text) => self
                .source_rate(&format!("{path}.new_connections_per_source"), text)
                .map(Some),
        };
        Some(AccessConfig {
            allow: allow?,
            deny: deny?,
            deny_action: deny_action?,
            new_connections_per_source: new_connections_per_source?,
        })
    }

    /// A list of prefixes (an address alone is its host prefix) of the VIP's
    /// family, host bits zero, each once.
    fn prefix_list(
        &mut self,
        path: &str,
        raw: Option<&[String]>,
        vip: Option<IpAddr>,
    ) -> Option<Vec<IpNet>> {
        let texts = raw.unwrap_or_default();
        if texts.len() > MAX_ACL_PREFIXES {
            self.error(
                path,
                format!(
                    "{} prefixes exceed the limit of {MAX_ACL_PREFIXES}",
                    texts.len()
                ),
            );
            return None;
        }
        let mut nets = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let item = format!("{path}[{i}]");
            let net = match text.parse::<IpAddr>() {
                Ok(ip) => Some(IpNet::from(ip)),
                Err(_) => self.net(&item, text),
            };
            let net = net.filter(|&net| {
                if net.trunc() != net {
                    let message = format!(
                        "prefix {net} has host bits set; did you mean {}?",
                        net.trunc()
                    );
                    self.error(&item, message);
                    return false;
                }
                match vip {
                    Some(vip) if vip.is_ipv4() != net.addr().is_ipv4() => {
                        let message = format!(
                            "{net} is {} but the VIP {vip} is {}: its clients never match",
                            family(net.addr()),
                            family(vip)
                        );
                        self.error(&item, message);
                        false
                    }
                    _ => true,
                }
            });
            nets.push(net);
        }
        self.unique_items(path, None, &nets, "prefix");
        nets.into_iter().collect()
    }

    /// "N/s", "N/min" or "N/h": at most N new connections per period from one
    /// source address.
    fn source_rate(&mut self, path: &str, text: &str) -> Option<SourceRate> {
        let parsed = text.split_once('/').and_then(|(count, unit)| {
            let per = match unit.trim() {
                "s" => Duration::from_secs(1),
                "min" => Duration::from_secs(60),
                "h" => Duration::from_secs(3600),
                _ => return None,
            };
            Some((count.trim().parse::<u64>().ok()?, per))
        });
        let Some((count, per)) = parsed else {
            self.error(
                path,
                format!("`{text}` is not a rate: N/s, N/min or N/h, such as \"100/s\""),
            );
            return None;
        };
        if !(1..=MAX_SOURCE_RATE).contains(&count) {
            self.error(
                path,
                format!("{count} is out of range 1..={MAX_SOURCE_RATE} connections per period"),
            );
            return None;
        }
        Some(SourceRate {
            count: count as u32,
            per,
        })
    }

    /// A real server's `max_connections` and `min_connections` (IPVS's upper and
    /// lower thresholds): the lower one only with an upper one, and below it.
    pub(super) fn connection_limits(
        &mut self,
        path: &str,
        rs: &RawRealServer,
    ) -> Option<(u32, u32)> {
        let max_path = format!("{path}.max_connections");
        let min_path = format!("{path}.min_connections");
        let max = self.int::<u32>(
            &max_path,
            rs.max_connections.unwrap_or(0),
            0,
            u64::from(u32::MAX),
        );
        let min = self.int::<u32>(
            &min_path,
            rs.min_connections.unwrap_or(0),
            0,
            u64::from(u32::MAX),
        );
        let (max, min) = (max?, min?);
        if min > 0 && max == 0 {
            self.error(
                &min_path,
                "min_connections says when an overloaded server takes connections again; it needs max_connections",
            );
            return None;
        }
        if min > 0 && min >= max {
            self.error(
                &min_path,
                format!("{min} is not below max_connections {max}"),
            );
            return None;
        }
        Some((max, min))
    }
}
