//! Development OpenID provider (loopback only), used by `portcullis demo` and the tests.
