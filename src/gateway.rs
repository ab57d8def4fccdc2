//! One site gateway: wiring config, policy, TLS, proxy and audit for `pairgate run`.
