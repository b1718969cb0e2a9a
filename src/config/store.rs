//! `[session.store]`: one Redis (or Valkey) endpoint, the primary that Redis
//! Sentinel names, or a Redis Cluster; credentials from files, never quoted in
//! an error.
//!
//! The Sentinel URL follows the form Harbor and others accept
//! (`redis+sentinel://host1:26379,host2:26379/master-name[/db]`,
//! `rediss+sentinel://` for TLS to the sentinels and the data nodes). It may not
//! carry credentials: the data nodes' ACL user and password come from
//! `username` and `password_file`, the sentinels' (when they ask for one) from
//! `sentinel_username` and `sentinel_password_file`. A cluster is named by some
//! of its nodes (`redis+cluster://node1:6379,node2:6379`, `rediss+cluster://`
//! for TLS), with the same credential keys as a single endpoint.
//!
//! `ca_file` (TLS URLs only) replaces the system roots for every connection
//! the store makes: the data nodes, the sentinels and the cluster's nodes.

use std::path::Path;
use std::time::Duration;

use url::Url;

use super::{ConfigError, invalid, non_zero, raw};
use crate::secret::SecretString;

/// Sentinel's default port.
const SENTINEL_PORT: u16 = 26379;

/// Redis's default port (cluster nodes).
const REDIS_PORT: u16 = 6379;

/// At most this many sentinels in one URL.
const MAX_SENTINELS: usize = 16;

/// `[session.store]`, validated.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Where the store is: one URL, or the primary the sentinels name.
    pub endpoint: StoreEndpoint,
    /// The ACL user of the data nodes (`session.store.username`).
    pub username: Option<String>,
    /// A password read from `session.store.password_file`.
    pub password: Option<SecretString>,
    /// The CA certificates of `session.store.ca_file` (PEM, each checked usable as a trust
    /// anchor): trusted instead of the system roots. Only with a TLS URL.
    pub ca_pem: Option<Vec<u8>>,
    pub key_prefix: String,
    pub local_cache_ttl: Duration,
    pub timeout: Duration,
    /// Replicas that must acknowledge a session write (`WAIT`) before it counts as done; 0: off.
    pub min_replica_acks: u32,
}

/// Where the store is.
#[derive(Clone, Debug)]
pub enum StoreEndpoint {
    /// A `redis://` or `rediss://` URL (may hold a password, hence secret).
    Url(SecretString),
    /// The primary of a Sentinel-monitored group.
    Sentinel(SentinelConfig),
    /// A Redis Cluster, found through these nodes (`(host, port)`; any one answering suffices).
    Cluster { nodes: Vec<(String, u16)>, tls: bool },
}

/// A `redis+sentinel://` (or `rediss+sentinel://`) URL, parsed, and the sentinels' credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelConfig {
    /// The sentinels, `(host, port)`, in the configured order.
    pub nodes: Vec<(String, u16)>,
    /// The monitored group's name (`sentinel monitor <name> ...`).
    pub master_name: String,
    /// The database number on the data nodes.
    pub db: i64,
    /// TLS to the sentinels and to the data nodes they name.
    pub tls: bool,
    /// The sentinels' ACL user, if they ask for one.
    pub username: Option<String>,
    /// The sentinels' password, from `session.store.sentinel_password_file`.
    pub password: Option<SecretString>,
}

/// Validates `[session.store]`; `None` when no URL is set (cookie mode).
pub(super) fn validate_store(raw: raw::RawSessionStore) -> Result<Option<StoreConfig>, ConfigError> {
    let Some(url) = raw.url else {
        let needs_url = [
            ("session.store.password_file", raw.password_file.is_some()),
            ("session.store.username", raw.username.is_some()),
            ("session.store.sentinel_username", raw.sentinel_username.is_some()),
            ("session.store.sentinel_password_file", raw.sentinel_password_file.is_some()),
            ("session.store.ca_file", raw.ca_file.is_some()),
        ];
        if let Some((key, _)) = needs_url.into_iter().find(|(_, set)| *set) {
            return Err(invalid(key, "needs session.store.url"));
        }
        return Ok(None);
    };
    let scheme = url.expose().split_once("://").map_or("", |(scheme, _)| scheme).to_ascii_lowercase();
    let endpoint = if scheme == "redis+cluster" || scheme == "rediss+cluster" {
        refuse_sentinel_credentials(raw.sentinel_username.is_some(), raw.sentinel_password_file.is_some())?;
        if raw.min_replica_acks > 0 {
            return Err(invalid("session.store.min_replica_acks", "is not supported with a cluster (yet); set 0"));
        }
        let (nodes, tls) = parse_cluster_url(url.expose())?;
        StoreEndpoint::Cluster { nodes, tls }
    } else if is_sentinel_url(url.expose()) {
        let mut sentinel = parse_sentinel_url(url.expose())?;
        sentinel.username =
            raw.sentinel_username.map(|name| acl_user("session.store.sentinel_username", name)).transpose()?;
        sentinel.password = raw
            .sentinel_password_file
            .as_deref()
            .map(|path| read_password("session.store.sentinel_password_file", path))
            .transpose()?;
        StoreEndpoint::Sentinel(sentinel)
    } else {
        refuse_sentinel_credentials(raw.sentinel_username.is_some(), raw.sentinel_password_file.is_some())?;
        validate_single_url(&url, raw.password_file.is_some(), raw.username.is_some())?;
        StoreEndpoint::Url(url)
    };
    let ca_pem = raw.ca_file.as_deref().map(|path| read_ca(path, uses_tls(&endpoint))).transpose()?;
    let password =
        raw.password_file.as_deref().map(|path| read_password("session.store.password_file", path)).transpose()?;
    let username = raw.username.map(|name| acl_user("session.store.username", name)).transpose()?;
    let prefix_ok = !raw.key_prefix.is_empty()
        && raw.key_prefix.len() <= 64
        && raw.key_prefix.bytes().all(|b| b.is_ascii_graphic() && b != b'*' && b != b'?');
    if !prefix_ok {
        return Err(invalid("session.store.key_prefix", "must be 1-64 printable characters without '*' or '?'"));
    }
    if raw.local_cache_ttl > Duration::from_secs(60) {
        return Err(invalid("session.store.local_cache_ttl", "must be at most one minute"));
    }
    if raw.min_replica_acks > 16 {
        return Err(invalid("session.store.min_replica_acks", "must be at most 16"));
    }
    Ok(Some(StoreConfig {
        endpoint,
        username,
        password,
        ca_pem,
        key_prefix: raw.key_prefix,
        local_cache_ttl: raw.local_cache_ttl,
        timeout: non_zero("session.store.timeout", raw.timeout)?,
        min_replica_acks: raw.min_replica_acks,
    }))
}

/// Whether the store's connections use TLS (then `ca_file` applies).
fn uses_tls(endpoint: &StoreEndpoint) -> bool {
    match endpoint {
        StoreEndpoint::Url(url) => url.expose().get(..9).is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://")),
        StoreEndpoint::Sentinel(sentinel) => sentinel.tls,
        StoreEndpoint::Cluster { tls, .. } => *tls,
    }
}

/// `session.store.ca_file`: PEM CA certificates, each usable as a trust anchor;
/// refused with a plaintext URL (a CA there would suggest a protection that is not there).
fn read_ca(path: &Path, tls: bool) -> Result<Vec<u8>, ConfigError> {
    const KEY: &str = "session.store.ca_file";
    if !tls {
        return Err(invalid(KEY, "needs a TLS URL (rediss://, rediss+sentinel:// or rediss+cluster://)"));
    }
    super::load_roots(KEY, path)?;
    std::fs::read(path).map_err(|error| invalid(KEY, format!("cannot read {}: {error}", path.display())))
}

fn refuse_sentinel_credentials(username: bool, password_file: bool) -> Result<(), ConfigError> {
    if username {
        return Err(invalid("session.store.sentinel_username", "needs a redis+sentinel:// URL"));
    }
    if password_file {
        return Err(invalid("session.store.sentinel_password_file", "needs a redis+sentinel:// URL"));
    }
    Ok(())
}

fn is_sentinel_url(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("redis+sentinel") || scheme.eq_ignore_ascii_case("rediss+sentinel")
}

/// Never quotes the URL: it may carry a password.
fn validate_single_url(url: &SecretString, password_from_file: bool, username_set: bool) -> Result<(), ConfigError> {
    const SHAPE: &str = "must be a redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// \
                         or rediss+cluster:// URL";
    let parsed = Url::parse(url.expose()).map_err(|_| invalid("session.store.url", SHAPE))?;
    if !matches!(parsed.scheme(), "redis" | "rediss") || parsed.host().is_none() {
        return Err(invalid("session.store.url", format!("{SHAPE} with a host")));
    }
    redis::IntoConnectionInfo::into_connection_info(url.expose())
        .map_err(|_| invalid("session.store.url", "is not a usable Redis URL"))?;
    if password_from_file && parsed.password().is_some() {
        return Err(invalid("session.store.password_file", "the URL already holds a password; use one or the other"));
    }
    if username_set && !parsed.username().is_empty() {
        return Err(invalid("session.store.username", "the URL already names a user; use one or the other"));
    }
    Ok(())
}

/// `redis+sentinel://host1[:port],host2[:port]/master-name[/db]`; errors never quote the URL.
pub(super) fn parse_sentinel_url(url: &str) -> Result<SentinelConfig, ConfigError> {
    const KEY: &str = "session.store.url";
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid(KEY, "is not a URL"))?;
    let tls = scheme.eq_ignore_ascii_case("rediss+sentinel");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(invalid(
            KEY,
            "a Sentinel URL carries no credentials: use session.store.username and password_file \
             (and sentinel_username, sentinel_password_file for the sentinels)",
        ));
    }
    if path.contains(['?', '#']) {
        return Err(invalid(KEY, "a Sentinel URL takes no query or fragment"));
    }
    let mut nodes = Vec::new();
    for node in authority.split(',') {
        nodes.push(parse_node(node, SENTINEL_PORT)?);
    }
    if nodes.len() > MAX_SENTINELS {
        return Err(invalid(KEY, format!("names more than {MAX_SENTINELS} sentinels")));
    }
    let mut segments = path.split('/');
    let master_name = segments.next().unwrap_or_default();
    let master_ok = !master_name.is_empty()
        && master_name.len() <= 128
        && master_name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !master_ok {
        return Err(invalid(KEY, "needs the master name as its path (letters, digits, '-', '_', '.'): /<master-name>"));
    }
    let db = match segments.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse::<i64>()
            .ok()
            .filter(|db| (0..=15_000).contains(db))
            .ok_or_else(|| invalid(KEY, "the database after the master name must be a number"))?,
    };
    if segments.next().is_some_and(|extra| !extra.is_empty()) {
        return Err(invalid(KEY, "has path segments after /<master-name>/<db>"));
    }
    Ok(SentinelConfig { nodes, master_name: master_name.to_owned(), db, tls, username: None, password: None })
}

/// `redis+cluster://node1[:port],node2[:port][/]`: the nodes and whether to use TLS.
pub(super) fn parse_cluster_url(url: &str) -> Result<(Vec<(String, u16)>, bool), ConfigError> {
    const KEY: &str = "session.store.url";
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid(KEY, "is not a URL"))?;
    let tls = scheme.eq_ignore_ascii_case("rediss+cluster");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(invalid(KEY, "a cluster URL carries no credentials: use session.store.username and password_file"));
    }
    if !path.is_empty() {
        return Err(invalid(KEY, "a cluster URL has no path, query or database (a cluster has database 0 only)"));
    }
    let nodes = authority.split(',').map(|node| parse_node(node, REDIS_PORT)).collect::<Result<Vec<_>, _>>()?;
    if nodes.len() > MAX_SENTINELS {
        return Err(invalid(KEY, format!("names more than {MAX_SENTINELS} nodes")));
    }
    Ok((nodes, tls))
}

/// One `host[:port]` of a Sentinel or cluster URL (`[v6]:port` for IPv6), checked by the URL parser.
fn parse_node(node: &str, default_port: u16) -> Result<(String, u16), ConfigError> {
    const KEY: &str = "session.store.url";
    if node.is_empty() {
        return Err(invalid(KEY, "names an empty node address"));
    }
    let parsed = Url::parse(&format!("redis://{node}/"))
        .map_err(|_| invalid(KEY, "has a node address that is not host:port"))?;
    let host = match parsed.host() {
        Some(url::Host::Domain(domain)) if !domain.is_empty() => domain.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(invalid(KEY, "has a node address without a host")),
    };
    if parsed.path() != "/" || !parsed.username().is_empty() || parsed.query().is_some() || parsed.fragment().is_some()
    {
        return Err(invalid(KEY, "has a node address that is not host:port"));
    }
    Ok((host, parsed.port().unwrap_or(default_port)))
}

/// An ACL user name: 1-128 printable characters, no spaces.
fn acl_user(key: &str, name: String) -> Result<String, ConfigError> {
    if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(key, "must be 1-128 printable characters without spaces"));
    }
    Ok(name)
}

fn read_password(key: &str, path: &Path) -> Result<SecretString, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| invalid(key, format!("cannot read {}: {error}", path.display())))?;
    let password = text.trim();
    if password.is_empty() {
        return Err(invalid(key, format!("{} is empty", path.display())));
    }
    Ok(SecretString::new(password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(url: &str) -> String {
        match parse_sentinel_url(url) {
            Err(ConfigError::Invalid { key, problem }) => {
                assert_eq!(key, "session.store.url");
                assert!(!problem.contains("s3cret"), "the URL is quoted: {problem}");
                problem
            }
            other => panic!("{url} parsed: {other:?}"),
        }
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_the_master_and_the_database() {
        let parsed = parse_sentinel_url("redis+sentinel://s1:26380,10.0.0.2,[::1]:26381/mymaster").unwrap();
        assert_eq!(parsed.nodes, [("s1".to_owned(), 26380), ("10.0.0.2".to_owned(), 26379), ("::1".to_owned(), 26381)]);
        assert_eq!(parsed.master_name, "mymaster");
        assert_eq!(parsed.db, 0);
        assert!(!parsed.tls);
        let parsed = parse_sentinel_url("rediss+sentinel://s1/group-a.eu_1/3").unwrap();
        assert!(parsed.tls);
        assert_eq!((parsed.master_name.as_str(), parsed.db), ("group-a.eu_1", 3));
        assert_eq!(parse_sentinel_url("redis+sentinel://s1/m/").unwrap().db, 0);
    }

    #[test]
    fn sentinel_urls_are_parsed_strictly_and_never_quoted() {
        assert!(problem("redis+sentinel://user:s3cret@s1/m").contains("no credentials"));
        assert!(problem("redis+sentinel://:s3cret@s1/m").contains("no credentials"));
        assert!(problem("redis+sentinel://s1").contains("master name"));
        assert!(problem("redis+sentinel://s1/").contains("master name"));
        assert!(problem("redis+sentinel://s1/a b").contains("master name"));
        assert!(problem("redis+sentinel://s1/m/x").contains("database"));
        assert!(problem("redis+sentinel://s1/m/-1").contains("database"));
        assert!(problem("redis+sentinel://s1/m/0/extra").contains("after"));
        assert!(problem("redis+sentinel://s1/m?password=s3cret").contains("query"));
        assert!(problem("redis+sentinel://s1,,s2/m").contains("empty"));
        assert!(problem("redis+sentinel://s1:99999/m").contains("host:port"));
        assert!(problem("redis+sentinel://s1:x/m").contains("host:port"));
        assert!(problem("redis+sentinel://:26379/m").contains("host"));
        let many = vec!["s"; MAX_SENTINELS + 1].join(",");
        assert!(problem(&format!("redis+sentinel://{many}/m")).contains("more than"));
    }

    #[test]
    fn cluster_urls_name_nodes_and_nothing_else() {
        let (nodes, tls) = parse_cluster_url("redis+cluster://n1,10.0.0.2:7000/").unwrap();
        assert_eq!(nodes, [("n1".to_owned(), 6379), ("10.0.0.2".to_owned(), 7000)]);
        assert!(!tls);
        assert!(parse_cluster_url("rediss+cluster://n1:6380").unwrap().1);
        for bad in ["redis+cluster://u:s3cret@n1", "redis+cluster://n1/0", "redis+cluster://n1?x=1", "redis+cluster://"]
        {
            let Err(ConfigError::Invalid { key, problem }) = parse_cluster_url(bad) else { panic!("{bad} parsed") };
            assert_eq!(key, "session.store.url");
            assert!(!problem.contains("s3cret"), "{problem}");
        }
    }
}
