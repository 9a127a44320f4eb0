//! Tests of the lease guard (filled in below).
