//! End-to-end tests of forwarding over loopback TCP.
