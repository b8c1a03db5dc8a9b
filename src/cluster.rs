//! Throwaway PostgreSQL cluster harness.
