//! The only place TLS versions, the crypto provider and verifiers are chosen.
