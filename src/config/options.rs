//! The table of libpq option names: what pgrepl implements, ignores (no-ops) and refuses.

/// The options pgrepl implements.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Opt {
    Host,
    HostAddr,
    Port,
    User,
    Password,
    Dbname,
    ApplicationName,
    FallbackApplicationName,
    ConnectTimeout,
    Replication,
    RequireAuth,
    SslMode,
    ChannelBinding,
    Options,
    Passfile,
    TargetSessionAttrs,
    SslRootCert,
    SslCert,
    SslKey,
    SslNegotiation,
    SslCertMode,
    SslSni,
    Keepalives,
    KeepalivesIdle,
    KeepalivesInterval,
    KeepalivesCount,
    TcpUserTimeout,
}

impl Opt {
    pub(super) fn name(self) -> &'static str {
        match self {
            Opt::Host => "host",
            Opt::HostAddr => "hostaddr",
            Opt::Port => "port",
            Opt::User => "user",
            Opt::Password => "password",
            Opt::Dbname => "dbname",
            Opt::ApplicationName => "application_name",
            Opt::FallbackApplicationName => "fallback_application_name",
            Opt::ConnectTimeout => "connect_timeout",
            Opt::Replication => "replication",
            Opt::RequireAuth => "require_auth",
            Opt::SslMode => "sslmode",
            Opt::ChannelBinding => "channel_binding",
            Opt::Options => "options",
            Opt::Passfile => "passfile",
            Opt::TargetSessionAttrs => "target_session_attrs",
            Opt::SslRootCert => "sslrootcert",
            Opt::SslCert => "sslcert",
            Opt::SslKey => "sslkey",
            Opt::SslNegotiation => "sslnegotiation",
            Opt::SslCertMode => "sslcertmode",
            Opt::SslSni => "sslsni",
            Opt::Keepalives => "keepalives",
            Opt::KeepalivesIdle => "keepalives_idle",
            Opt::KeepalivesInterval => "keepalives_interval",
            Opt::KeepalivesCount => "keepalives_count",
            Opt::TcpUserTimeout => "tcp_user_timeout",
        }
    }

    /// The environment variable libpq falls back to.
    pub(super) fn env_var(self) -> Option<&'static str> {
        Some(match self {
            Opt::Host => "PGHOST",
            Opt::HostAddr => "PGHOSTADDR",
            Opt::Port => "PGPORT",
            Opt::User => "PGUSER",
            Opt::Password => "PGPASSWORD",
            Opt::Dbname => "PGDATABASE",
            Opt::ApplicationName => "PGAPPNAME",
            Opt::ConnectTimeout => "PGCONNECT_TIMEOUT",
            Opt::RequireAuth => "PGREQUIREAUTH",
            Opt::SslMode => "PGSSLMODE",
            Opt::ChannelBinding => "PGCHANNELBINDING",
            Opt::Options => "PGOPTIONS",
            Opt::Passfile => "PGPASSFILE",
            Opt::TargetSessionAttrs => "PGTARGETSESSIONATTRS",
            Opt::SslRootCert => "PGSSLROOTCERT",
            Opt::SslCert => "PGSSLCERT",
            Opt::SslKey => "PGSSLKEY",
            Opt::SslNegotiation => "PGSSLNEGOTIATION",
            Opt::SslCertMode => "PGSSLCERTMODE",
            Opt::SslSni => "PGSSLSNI",
            Opt::FallbackApplicationName
            | Opt::Replication
            | Opt::Keepalives
            | Opt::KeepalivesIdle
            | Opt::KeepalivesInterval
            | Opt::KeepalivesCount
            | Opt::TcpUserTimeout => return None,
        })
    }
}

/// What pgrepl does with a libpq option name.
pub(super) enum Known {
    /// Implemented.
    Implemented(Opt),
    /// Accepted and ignored when the value passes the check (a no-op for pgrepl); refused otherwise, with the
    /// reason given.
    Ignored(fn(&str) -> bool, &'static str),
    /// Refused: ignoring it could weaken security or change where pgrepl connects.
    Unsupported(&'static str),
}

pub(super) fn known(name: &str) -> Option<Known> {
    let key = match name {
        "host" => Opt::Host,
        "hostaddr" => Opt::HostAddr,
        "port" => Opt::Port,
        "user" => Opt::User,
        "password" => Opt::Password,
        "dbname" => Opt::Dbname,
        "application_name" => Opt::ApplicationName,
        "fallback_application_name" => Opt::FallbackApplicationName,
        "connect_timeout" => Opt::ConnectTimeout,
        "replication" => Opt::Replication,
        "require_auth" => Opt::RequireAuth,
        "sslmode" => Opt::SslMode,
        "channel_binding" => Opt::ChannelBinding,
        "options" => Opt::Options,
        "passfile" => Opt::Passfile,
        "target_session_attrs" => Opt::TargetSessionAttrs,
        "sslrootcert" => Opt::SslRootCert,
        "sslcert" => Opt::SslCert,
        "sslkey" => Opt::SslKey,
        "sslnegotiation" => Opt::SslNegotiation,
        "sslcertmode" => Opt::SslCertMode,
        "sslsni" => Opt::SslSni,
        "keepalives" => Opt::Keepalives,
        "keepalives_idle" => Opt::KeepalivesIdle,
        "keepalives_interval" => Opt::KeepalivesInterval,
        "keepalives_count" => Opt::KeepalivesCount,
        "tcp_user_timeout" => Opt::TcpUserTimeout,
        // GSSAPI settings only matter to GSSAPI authentication and encryption, which pgrepl does not do.
        "krbsrvname" | "gsslib" | "gssdelegation" => {
            return Some(Known::Ignored(|_| true, ""));
        }
        "gssencmode" => {
            return Some(Known::Ignored(
                |v| v == "disable" || v == "prefer",
                "pgrepl has no GSSAPI encryption; only \"disable\" and \"prefer\" are accepted",
            ))
        }
        // Obsolete (TLS compression is gone) or cosmetic.
        "sslcompression" => return Some(Known::Ignored(|_| true, "")),
        "load_balance_hosts" => {
            return Some(Known::Ignored(
                |v| v == "disable",
                "pgrepl tries hosts in order; only \"disable\" is accepted",
            ))
        }
        // pgrepl's TLS speaks TLS 1.2 and 1.3 only: these bounds are no-ops.
        "ssl_min_protocol_version" => {
            return Some(Known::Ignored(
                |v| ["", "TLSv1", "TLSv1.1", "TLSv1.2"].iter().any(|x| x.eq_ignore_ascii_case(v)),
                "pgrepl cannot raise the minimum TLS version above TLSv1.2",
            ))
        }
        "ssl_max_protocol_version" => {
            return Some(Known::Ignored(
                |v| v.is_empty() || v.eq_ignore_ascii_case("TLSv1.3"),
                "pgrepl cannot lower the maximum TLS version below TLSv1.3",
            ))
        }
        "service" => return Some(Known::Unsupported("pg_service.conf is not read")),
        "client_encoding" => return Some(Known::Unsupported("pgrepl always uses UTF8")),
        "sslpassword" => return Some(Known::Unsupported("encrypted client keys are not supported")),
        "sslcrl" | "sslcrldir" => return Some(Known::Unsupported("certificate revocation lists are not supported")),
        "sslkeylogfile" => return Some(Known::Unsupported("TLS key logging is not supported")),
        "requirepeer" => return Some(Known::Unsupported("checking the server process's user is not supported")),
        "min_protocol_version" | "max_protocol_version" => {
            return Some(Known::Unsupported("pgrepl speaks protocol 3.0 only"))
        }
        "oauth_issuer" | "oauth_client_id" | "oauth_client_secret" | "oauth_scope" => {
            return Some(Known::Unsupported("OAuth authentication is not supported"))
        }
        "scram_client_key" | "scram_server_key" => {
            return Some(Known::Unsupported("SCRAM pass-through keys are not supported"))
        }
        _ => return None,
    };
    Some(Known::Implemented(key))
}
