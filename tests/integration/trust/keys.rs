//! Keys at rest.
