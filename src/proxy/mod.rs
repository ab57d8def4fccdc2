//! Moving bytes between local clients, the peer gateway and local targets.
