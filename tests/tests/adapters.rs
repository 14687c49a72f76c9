//! Real sockets on loopback: one scenario suite run against each adapter and against
//! mixed clusters. Every scenario runs under a deadline so a hang fails.

use std::time::Duration;

use whisper_tests::adapters::Kind::{Mio, Smol, Tokio};
use whisper_tests::adapters::scenarios::{
    broadcast_reaches_all, connect_and_exchange, garbage_is_closed, mutual_dial_settles,
    query_gets_replies, reconnect, records_converge, restart_catches_up, shutdown_closes,
    slow_peer_is_closed, started_an_hour_apart,
};
use whisper_tests::adapters::with_deadline;

const LIMIT: Duration = Duration::from_secs(25);

macro_rules! scenario {
    ($($name:ident => $body:expr;)*) => {$(
        #[test]
        fn $name() {
            with_deadline(stringify!($name), LIMIT, || $body);
        }
    )*};
}

scenario! {
    tokio_mesh => connect_and_exchange(&[Tokio, Tokio, Tokio]);
    smol_mesh => connect_and_exchange(&[Smol, Smol, Smol]);
    mio_mesh => connect_and_exchange(&[Mio, Mio, Mio]);
    mixed_mesh => connect_and_exchange(&[Tokio, Smol, Mio, Tokio, Smol, Mio]);

    tokio_reconnect => reconnect(Tokio, Tokio);
    smol_reconnect => reconnect(Smol, Smol);
    mio_reconnect => reconnect(Mio, Mio);
    mixed_reconnect_tokio_to_mio => reconnect(Tokio, Mio);
    mixed_reconnect_mio_to_smol => reconnect(Mio, Smol);
    mixed_reconnect_smol_to_tokio => reconnect(Smol, Tokio);

    tokio_garbage => garbage_is_closed(Tokio, Mio);
    smol_garbage => garbage_is_closed(Smol, Tokio);
    mio_garbage => garbage_is_closed(Mio, Smol);

    tokio_shutdown => shutdown_closes(Tokio, Smol);
    smol_shutdown => shutdown_closes(Smol, Mio);
    mio_shutdown => shutdown_closes(Mio, Tokio);

    tokio_slow_peer => slow_peer_is_closed(Tokio, Smol);
    smol_slow_peer => slow_peer_is_closed(Smol, Mio);
    mio_slow_peer => slow_peer_is_closed(Mio, Tokio);

    mixed_mutual_dial_tokio_mio => mutual_dial_settles(Tokio, Mio);
    mixed_mutual_dial_smol_tokio => mutual_dial_settles(Smol, Tokio);
    mixed_mutual_dial_mio_smol => mutual_dial_settles(Mio, Smol);

    tokio_broadcast => broadcast_reaches_all(&[Tokio, Tokio, Tokio]);
    smol_broadcast => broadcast_reaches_all(&[Smol, Smol, Smol]);
    mio_broadcast => broadcast_reaches_all(&[Mio, Mio, Mio]);
    mixed_broadcast => broadcast_reaches_all(&[Tokio, Smol, Mio, Tokio, Smol]);

    tokio_records_converge => records_converge(&[Tokio; 5], 1_000);
    smol_records_converge => records_converge(&[Smol; 5], 1_000);
    mio_records_converge => records_converge(&[Mio; 5], 1_000);
    mixed_records_converge => records_converge(&[Tokio, Smol, Mio, Tokio, Smol], 1_000);

    tokio_query => query_gets_replies(&[Tokio, Tokio, Tokio]);
    smol_query => query_gets_replies(&[Smol, Smol, Smol]);
    mio_query => query_gets_replies(&[Mio, Mio, Mio]);
    mixed_query => query_gets_replies(&[Mio, Tokio, Smol]);

    tokio_restart => restart_catches_up(&[Tokio, Tokio], Tokio);
    smol_restart => restart_catches_up(&[Smol, Smol], Smol);
    mio_restart => restart_catches_up(&[Mio, Mio], Mio);
    mixed_restart => restart_catches_up(&[Tokio, Smol], Mio);

    tokio_started_an_hour_apart => started_an_hour_apart(Tokio, Tokio);
    smol_started_an_hour_apart => started_an_hour_apart(Smol, Smol);
    mio_started_an_hour_apart => started_an_hour_apart(Mio, Mio);
    mixed_started_an_hour_apart => started_an_hour_apart(Mio, Tokio);
}
