//! What an idle tunnelled connection costs in memory, guarded.
//!
//! Each connection is one tokio task whose future holds the handler's
//! state for the connection's whole life, sized for the largest state the
//! handler may ever be in. Issue 17 found the handlers at 6.9 KiB
//! (outbound) and 8.5 KiB (inbound) per connection, most of it copies of
//! the TLS connection passed by value through nested async functions and
//! set-up futures kept in idle relays. These tests keep them small.

/// Size of the future an async function with five arguments returns.
fn future_of_5<A, B, C, D, E, F>(_: fn(A, B, C, D, E) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// Size of the future an async function with four arguments returns.
fn future_of_4<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// The budget for one connection's task (either direction), in bytes.
const TASK_BUDGET: usize = 3 * 1024;

#[test]
fn an_idle_connection_task_stays_small() {
    let outbound = future_of_5(super::handle_outbound as fn(_, _, _, _, _) -> _);
    let inbound = future_of_4(super::handle_inbound as fn(_, _, _, _) -> _);
    assert!(
        outbound <= TASK_BUDGET && inbound <= TASK_BUDGET,
        "connection tasks: outbound {outbound} B, inbound {inbound} B (budget {TASK_BUDGET} B): \
         box the TLS stream and short-lived set-up futures instead of keeping them inline"
    );
}
