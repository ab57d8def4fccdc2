//! CRL rollback and freshness.
