//! Connection settings.
