//! Connection sync between members of a cluster: the wire format (records and
//! authenticated datagrams) and the ring a worker hands its connection events to
//! the management core on.
//!
//! A worker pushes a record when a connection opens or changes state
//! ([`SyncProducer`]); the management core batches the records into datagrams
//! ([`message::seal`]) and sends them to the other members, and installs what
//! they send ([`message::open`], then `WorkerCommand::SyncInstall` to the owner
//! worker). The management core also sends every live connection periodically and
//! to a member that asks (a bulk transfer), so a member's copies outlive lost
//! datagrams and a restarted member catches up.

pub mod message;
mod outbox;
pub mod record;

pub use message::{DatagramError, Header, Kind, ReplayWindow};
pub use outbox::{outbox, SyncConsumer, SyncProducer};
pub use record::{RecordError, RecordWords, SyncConn, RECORD_LEN};
