//! Connection states and timeouts, after IPVS (net/netfilter/ipvs/ip_vs_proto_tcp.c).
//!
//! IPVS does not run a full TCP state machine: it sees both directions only in NAT
//! (and here FULLNAT), and only the client's side in DR and TUNNEL. Each packet picks
//! one of three tables by direction (INPUT client->server, OUTPUT server->client,
//! INPUT_ONLY when replies bypass the balancer), one row by the strongest flag it
//! carries (RST, then SYN, then FIN, then ACK), and the column by the current state.
//! A packet with none of those flags moves the connection to CLOSE, as in IPVS.
//! The tables below are IPVS's default ones (not the `secure_tcp` variants).

use std::fmt;
use std::time::Duration;

/// TCP header flag bits (byte 13 of the TCP header) that drive the state machine.
pub mod tcp_flags {
    /// The sender has no more data: a side closes.
    pub const FIN: u8 = 0x01;
    /// Opens a connection (synchronises sequence numbers).
    pub const SYN: u8 = 0x02;
    /// Aborts the connection.
    pub const RST: u8 = 0x04;
    /// Push; not one of the flags that pick a transition, so a packet carrying only
    /// PSH moves the connection to CLOSE.
    pub const PSH: u8 = 0x08;
    /// The acknowledgement number is valid; set on every segment after the first SYN.
    pub const ACK: u8 = 0x10;
}

/// IPVS's TCP connection states, numbered as in IPVS (`IP_VS_TCP_S_*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum TcpState {
    /// Just created, before its first packet moved it on.
    None = 0,
    /// An ACK after the client's SYN (or on a flow first seen mid-stream): data flows.
    Established = 1,
    /// A SYN seen travelling from the real server towards the client.
    SynSent = 2,
    /// The client's SYN seen; the handshake is not complete.
    SynRecv = 3,
    /// A FIN on an established connection from the real server, or from the client
    /// when replies bypass us.
    FinWait = 4,
    /// Both sides' FINs seen, or a FIN during the handshake.
    TimeWait = 5,
    /// Reset, or a packet with none of SYN, FIN, ACK and RST.
    Close = 6,
    /// A FIN from the client on an established connection whose replies pass through us.
    CloseWait = 7,
    /// IPVS's LAST_ACK; no transition of the default tables leads here.
    LastAck = 8,
    /// IPVS's LISTEN; no transition of the default tables leads here.
    Listen = 9,
    /// IPVS's SYNACK; no transition of the default tables leads here.
    SynAck = 10,
}

/// Which IPVS transition table a packet is looked up in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TcpDir {
    /// Client to server, on a connection whose replies come back through us.
    Input,
    /// Server to client.
    Output,
    /// Client to server, on a connection whose replies bypass us (DR, TUNNEL).
    InputOnly,
}

impl TcpState {
    /// Every state, in IPVS order.
    pub const ALL: [TcpState; 11] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    /// The state's name as `ipvsadm -Lnc` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    /// Whether IPVS counts a connection in this state as active (`activeconns`,
    /// which the lc/wlc/sed/nq schedulers weigh) rather than inactive. Since Linux
    /// 4.7 ("ipvs: count pre-established TCP states as active") this is the
    /// handshake states as well as ESTABLISHED.
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck
        )
    }

    /// The state after a packet with TCP flags `flags` travelling `dir`.
    #[inline]
    pub fn next(self, dir: TcpDir, flags: u8) -> TcpState {
        match FlagRow::of(flags) {
            Some(row) => TRANSITIONS[dir as usize][row as usize][self as usize],
            None => TcpState::Close,
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Table row, chosen by the strongest flag of the packet (IPVS `tcp_state_idx`).
#[derive(Clone, Copy)]
enum FlagRow {
    Syn = 0,
    Fin = 1,
    Ack = 2,
    Rst = 3,
}

impl FlagRow {
    #[inline]
    fn of(flags: u8) -> Option<FlagRow> {
        if flags & tcp_flags::RST != 0 {
            Some(FlagRow::Rst)
        } else if flags & tcp_flags::SYN != 0 {
            Some(FlagRow::Syn)
        } else if flags & tcp_flags::FIN != 0 {
            Some(FlagRow::Fin)
        } else if flags & tcp_flags::ACK != 0 {
            Some(FlagRow::Ack)
        } else {
            None
        }
    }
}

/// `TRANSITIONS[dir][row][state]`, dir as [`TcpDir`], row as [`FlagRow`], state as
/// [`TcpState`]; IPVS's `tcp_states`.
#[rustfmt::skip]
const TRANSITIONS: [[[TcpState; 11]; 4]; 3] = {
    use TcpState::{
        Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA,
        Listen as LI, SynRecv as SR, SynSent as SS, TimeWait as TW,
    };
    [
        // INPUT
        //  NONE ESTAB SYN_S SYN_R FIN_W TIME_ CLOSE CL_WT L_ACK LISTN SYNAK
        [
            [SR,  ES,   ES,   SR,   SR,   SR,   SR,   SR,   SR,   SR,   SR], // syn
            [CL,  CW,   SS,   TW,   TW,   TW,   CL,   CW,   LA,   LI,   TW], // fin
            [ES,  ES,   SS,   ES,   FW,   TW,   CL,   CW,   CL,   LI,   ES], // ack
            [CL,  CL,   CL,   SR,   CL,   CL,   CL,   CL,   LA,   LI,   SR], // rst
        ],
        // OUTPUT
        [
            [SS,  ES,   SS,   SR,   SS,   SS,   SS,   SS,   SS,   LI,   SR], // syn
            [TW,  FW,   SS,   TW,   FW,   TW,   CL,   TW,   LA,   LI,   TW], // fin
            [ES,  ES,   SS,   ES,   FW,   TW,   CL,   CW,   LA,   ES,   ES], // ack
            [CL,  CL,   SS,   CL,   CL,   TW,   CL,   CL,   CL,   CL,   CL], // rst
        ],
        // INPUT_ONLY
        [
            [SR,  ES,   ES,   SR,   SR,   SR,   SR,   SR,   SR,   SR,   SR], // syn
            [CL,  FW,   SS,   TW,   FW,   TW,   CL,   CW,   LA,   LI,   TW], // fin
            [ES,  ES,   SS,   ES,   FW,   TW,   CL,   CW,   CL,   LI,   ES], // ack
            [CL,  CL,   CL,   SR,   CL,   CL,   CL,   CL,   LA,   LI,   CL], // rst
        ],
    ]
};

/// The state of a tracked connection: a TCP state, or UDP's single state.
#[derive(Clone, Copy, Eq, Debug)]
pub enum ConnState {
    /// A TCP connection, in one of IPVS's TCP states.
    Tcp(TcpState),
    /// A UDP flow: a single state, with the `udp` timeout.
    Udp,
}

/// Equal exactly when the derived comparison would say so, but one byte compare:
/// [`ConnState::index`] numbers every state apart, and UDP's number is the value
/// the compiler already stores for it (the first one after TCP's states).
impl PartialEq for ConnState {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.index() == other.index()
    }
}

/// Hashes what [`PartialEq`] compares, so equal states hash alike.
impl std::hash::Hash for ConnState {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.index().hash(state);
    }
}

impl ConnState {
    /// The state's name as `ipvsadm -Lnc` prints it (`UDP` for UDP).
    pub const fn name(self) -> &'static str {
        match self {
            ConnState::Tcp(s) => s.name(),
            ConnState::Udp => "UDP",
        }
    }

    /// Active in IPVS's sense (see [`TcpState::is_active`]); UDP is never active.
    pub const fn is_active(self) -> bool {
        match self {
            ConnState::Tcp(s) => s.is_active(),
            ConnState::Udp => false,
        }
    }

    /// Index into the per-state timeout table.
    const fn index(self) -> usize {
        match self {
            ConnState::Tcp(s) => s as usize,
            ConnState::Udp => UDP_INDEX,
        }
    }

    /// The state as one byte (IPVS's TCP state numbers, then UDP), for the sync
    /// wire format.
    pub const fn code(self) -> u8 {
        self.index() as u8
    }

    /// The state after a packet with TCP flags `flags` travelling `dir`, on codes
    /// (a connection record keeps its state as a code): UDP stays UDP.
    #[inline]
    pub(crate) fn next_code(code: u8, dir: TcpDir, flags: u8) -> u8 {
        match TcpState::ALL.get(usize::from(code)) {
            Some(s) => s.next(dir, flags) as u8,
            None => code,
        }
    }

    /// The state of a [`ConnState::code`], if it is one.
    pub fn from_code(code: u8) -> Option<ConnState> {
        if usize::from(code) == UDP_INDEX {
            return Some(ConnState::Udp);
        }
        TcpState::ALL
            .get(usize::from(code))
            .map(|s| ConnState::Tcp(*s))
    }
}

impl fmt::Display for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const UDP_INDEX: usize = TcpState::ALL.len();

/// Idle timeouts per state; the configurable ones of `connections.timeouts`.
///
/// States without a field keep IPVS's fixed values: NONE 2 s, SYN_SENT 120 s,
/// LISTEN 120 s, SYNACK 120 s. `tcp_syn` is IPVS's SYN_RECV timeout.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Timeouts {
    /// ESTABLISHED.
    pub tcp_established: Duration,
    /// SYN_RECV.
    pub tcp_syn: Duration,
    /// FIN_WAIT.
    pub tcp_fin: Duration,
    /// TIME_WAIT.
    pub tcp_time_wait: Duration,
    /// CLOSE.
    pub tcp_close: Duration,
    /// CLOSE_WAIT.
    pub tcp_close_wait: Duration,
    /// LAST_ACK.
    pub tcp_last_ack: Duration,
    /// Any UDP flow.
    pub udp: Duration,
}

impl Default for Timeouts {
    /// The IPVS defaults (net/netfilter/ipvs/ip_vs_proto_{tcp,udp}.c): the one
    /// source of the defaults of `connections.timeouts` too.
    fn default() -> Self {
        Timeouts {
            tcp_established: Duration::from_secs(15 * 60),
            tcp_syn: Duration::from_secs(60),
            tcp_fin: Duration::from_secs(2 * 60),
            tcp_time_wait: Duration::from_secs(2 * 60),
            tcp_close: Duration::from_secs(10),
            tcp_close_wait: Duration::from_secs(60),
            tcp_last_ack: Duration::from_secs(30),
            udp: Duration::from_secs(5 * 60),
        }
    }
}

impl Timeouts {
    /// IPVS's fixed timeout of the NONE state.
    pub const TCP_NONE: Duration = Duration::from_secs(2);
    /// IPVS's fixed timeout of SYN_SENT, LISTEN and SYNACK.
    pub const TCP_SYN_SENT: Duration = Duration::from_secs(2 * 60);

    /// The idle timeout of a connection in `state`.
    pub fn for_state(&self, state: ConnState) -> Duration {
        match state {
            ConnState::Tcp(s) => match s {
                TcpState::None => Self::TCP_NONE,
                TcpState::Established => self.tcp_established,
                TcpState::SynSent | TcpState::Listen | TcpState::SynAck => Self::TCP_SYN_SENT,
                TcpState::SynRecv => self.tcp_syn,
                TcpState::FinWait => self.tcp_fin,
                TcpState::TimeWait => self.tcp_time_wait,
                TcpState::Close => self.tcp_close,
                TcpState::CloseWait => self.tcp_close_wait,
                TcpState::LastAck => self.tcp_last_ack,
            },
            ConnState::Udp => self.udp,
        }
    }
}

/// Timeouts in milliseconds indexed by state: what the packet path reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct TimeoutTable([u64; UDP_INDEX + 1]);

impl TimeoutTable {
    pub(crate) fn new(timeouts: &Timeouts) -> Self {
        let mut ms = [0u64; UDP_INDEX + 1];
        for state in TcpState::ALL
            .map(ConnState::Tcp)
            .into_iter()
            .chain([ConnState::Udp])
        {
            ms[state.index()] = duration_ms(timeouts.for_state(state));
        }
        TimeoutTable(ms)
    }

    #[inline]
    pub(crate) fn ms(&self, state: ConnState) -> u64 {
        self.0[state.index()]
    }

    /// [`Self::ms`] of a state code; 0 for a code no state has.
    #[inline]
    pub(crate) fn ms_of_code(&self, code: u8) -> u64 {
        self.0.get(usize::from(code)).copied().unwrap_or(0)
    }
}

/// A duration in whole milliseconds, saturating at `u64::MAX`.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::tcp_flags::{ACK, FIN, PSH, RST, SYN};
    use super::TcpDir::{Input, InputOnly, Output};
    use super::TcpState::*;
    use super::*;

    #[test]
    fn states_are_equal_only_to_themselves() {
        let all: Vec<ConnState> = TcpState::ALL
            .iter()
            .map(|&s| ConnState::Tcp(s))
            .chain([ConnState::Udp])
            .collect();
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                let structural = match (a, b) {
                    (ConnState::Tcp(x), ConnState::Tcp(y)) => x == y,
                    (ConnState::Udp, ConnState::Udp) => true,
                    _ => false,
                };
                assert_eq!(a == b, structural, "{a} vs {b}");
                assert_eq!(a == b, i == j);
            }
        }
    }

    /// Walks `steps` of (direction, flags, expected state) from NONE.
    fn walk(steps: &[(TcpDir, u8, TcpState)]) {
        let mut s = None;
        for (i, &(dir, flags, want)) in steps.iter().enumerate() {
            let got = s.next(dir, flags);
            assert_eq!(
                got, want,
                "step {i}: {s} --{dir:?} {flags:#04x}--> {got}, want {want}"
            );
            s = got;
        }
    }

    #[test]
    fn nat_handshake_and_client_close() {
        walk(&[
            (Input, SYN, SynRecv),
            (Output, SYN | ACK, SynRecv),
            (Input, ACK, Established),
            (Input, ACK | PSH, Established),
            (Output, ACK | PSH, Established),
            (Input, FIN | ACK, CloseWait),
            (Output, ACK, CloseWait),
            (Output, FIN | ACK, TimeWait),
            (Input, ACK, TimeWait),
        ]);
    }

    #[test]
    fn nat_server_closes_first() {
        walk(&[
            (Input, SYN, SynRecv),
            (Output, SYN | ACK, SynRecv),
            (Input, ACK, Established),
            (Output, FIN | ACK, FinWait),
            (Input, ACK, FinWait),
            (Input, FIN | ACK, TimeWait),
            (Output, ACK, TimeWait),
        ]);
    }

    #[test]
    fn dr_handshake_and_close_input_only() {
        walk(&[
            (InputOnly, SYN, SynRecv),
            (InputOnly, ACK, Established),
            (InputOnly, ACK | PSH, Established),
            (InputOnly, FIN | ACK, FinWait),
            (InputOnly, ACK, FinWait),
        ]);
        // The client's FIN while the handshake is in flight: SYN_RECV -> TIME_WAIT.
        walk(&[(InputOnly, SYN, SynRecv), (InputOnly, FIN, TimeWait)]);
    }

    #[test]
    fn rst_from_either_side() {
        for (dir, from, to) in [
            (Input, Established, Close),
            (Output, Established, Close),
            (InputOnly, Established, Close),
            // IPVS ignores a client RST during the handshake; the server's RST
            // closes it.
            (Input, SynRecv, SynRecv),
            (Output, SynRecv, Close),
            (InputOnly, SynRecv, SynRecv),
            (Input, LastAck, LastAck),
            (Output, LastAck, Close),
            (Output, TimeWait, TimeWait),
            (Input, SynAck, SynRecv),
            (InputOnly, SynAck, Close),
        ] {
            assert_eq!(from.next(dir, RST), to, "{dir:?} RST from {from}");
            // RST outranks every other flag.
            assert_eq!(from.next(dir, RST | SYN | FIN | ACK), to);
        }
    }

    #[test]
    fn syn_retransmit_and_reuse() {
        // A retransmitted SYN keeps SYN_RECV; a SYN on an established flow keeps it.
        assert_eq!(SynRecv.next(Input, SYN), SynRecv);
        assert_eq!(Established.next(Input, SYN), Established);
        assert_eq!(Established.next(InputOnly, SYN), Established);
        // A new SYN on a closing flow (port reuse) starts over in SYN_RECV.
        for s in [FinWait, TimeWait, Close, CloseWait, LastAck] {
            assert_eq!(s.next(Input, SYN), SynRecv, "SYN in {s}");
            assert_eq!(s.next(InputOnly, SYN), SynRecv, "SYN in {s}");
        }
        // SYN outranks FIN and ACK.
        assert_eq!(None.next(Input, SYN | FIN | ACK), SynRecv);
    }

    #[test]
    fn server_initiated_syn() {
        // A SYN from the server side (active FTP-like) goes to SYN_SENT.
        walk(&[(Output, SYN, SynSent), (Input, SYN | ACK, Established)]);
    }

    #[test]
    fn packet_without_rst_syn_fin_ack_closes() {
        for s in TcpState::ALL {
            for dir in [Input, Output, InputOnly] {
                assert_eq!(s.next(dir, 0), Close);
                assert_eq!(s.next(dir, PSH), Close);
                assert_eq!(s.next(dir, 0xe8), Close); // URG|ECE|CWR|PSH only
            }
        }
    }

    #[test]
    fn ack_on_unknown_flow_establishes() {
        // Current IPVS (older kernels went to CLOSE on INPUT) picks up a mid-stream
        // flow, e.g. after a restart, as ESTABLISHED from either side.
        for dir in [Input, Output, InputOnly] {
            assert_eq!(None.next(dir, ACK), Established);
        }
    }

    #[test]
    fn full_table_spot_checks() {
        // One column per table, read straight from IPVS's source.
        let col = |dir, s: TcpState| [SYN, FIN, ACK, RST].map(|f| s.next(dir, f));
        assert_eq!(
            col(Input, Established),
            [Established, CloseWait, Established, Close]
        );
        assert_eq!(
            col(Output, Established),
            [Established, FinWait, Established, Close]
        );
        assert_eq!(
            col(InputOnly, Established),
            [Established, FinWait, Established, Close]
        );
        assert_eq!(col(Input, Listen), [SynRecv, Listen, Listen, Listen]);
        assert_eq!(col(Output, Listen), [Listen, Listen, Established, Close]);
        assert_eq!(col(Output, SynSent), [SynSent, SynSent, SynSent, SynSent]);
        assert_eq!(
            col(Output, CloseWait),
            [SynSent, TimeWait, CloseWait, Close]
        );
        assert_eq!(col(Input, LastAck), [SynRecv, LastAck, Close, LastAck]);
        assert_eq!(col(Output, LastAck), [SynSent, LastAck, LastAck, Close]);
        assert_eq!(col(Output, None), [SynSent, TimeWait, Established, Close]);
    }

    #[test]
    fn active_states_match_ipvs() {
        let active: Vec<_> = TcpState::ALL
            .into_iter()
            .filter(|s| s.is_active())
            .collect();
        assert_eq!(active, [Established, SynSent, SynRecv, SynAck]);
        assert!(!ConnState::Udp.is_active());
        assert!(ConnState::Tcp(Established).is_active());
    }

    #[test]
    fn names_as_ipvsadm_prints_them() {
        let names = TcpState::ALL.map(TcpState::name);
        assert_eq!(
            names,
            [
                "NONE",
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "SYNACK"
            ]
        );
        assert_eq!(ConnState::Udp.name(), "UDP");
        assert_eq!(ConnState::Tcp(TimeWait).to_string(), "TIME_WAIT");
        // IPVS numbering is kept.
        for (i, s) in TcpState::ALL.into_iter().enumerate() {
            assert_eq!(s as usize, i);
        }
    }

    #[test]
    fn default_timeouts_are_ipvs_defaults() {
        let t = Timeouts::default();
        let secs = |s| t.for_state(s).as_secs();
        assert_eq!(secs(ConnState::Tcp(None)), 2);
        assert_eq!(secs(ConnState::Tcp(Established)), 900);
        assert_eq!(secs(ConnState::Tcp(SynSent)), 120);
        assert_eq!(secs(ConnState::Tcp(SynRecv)), 60);
        assert_eq!(secs(ConnState::Tcp(FinWait)), 120);
        assert_eq!(secs(ConnState::Tcp(TimeWait)), 120);
        assert_eq!(secs(ConnState::Tcp(Close)), 10);
        assert_eq!(secs(ConnState::Tcp(CloseWait)), 60);
        assert_eq!(secs(ConnState::Tcp(LastAck)), 30);
        assert_eq!(secs(ConnState::Tcp(Listen)), 120);
        assert_eq!(secs(ConnState::Tcp(SynAck)), 120);
        assert_eq!(secs(ConnState::Udp), 300);
    }

    #[test]
    fn timeout_table_follows_overrides_and_saturates() {
        let t = Timeouts {
            tcp_established: Duration::from_millis(1500),
            udp: Duration::MAX,
            ..Timeouts::default()
        };
        let table = TimeoutTable::new(&t);
        assert_eq!(table.ms(ConnState::Tcp(Established)), 1500);
        assert_eq!(table.ms(ConnState::Tcp(Close)), 10_000);
        assert_eq!(table.ms(ConnState::Tcp(None)), 2_000);
        assert_eq!(table.ms(ConnState::Udp), u64::MAX);
    }
}
