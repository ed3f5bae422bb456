//! Parsing and validating whole config files.

use sluice_proxy_config::{AuditSink, Auth, ConfigError, Duration, ProxyConfig};

const FULL: &str = r#"
upstream:
  url: http://127.0.0.1:8000
phabricator:
  url: https://phabricator.example.com/api/
redis:
  address: redis.infra.svc:6379
  failMode: closed
entryPoints:
  - name: phabricator-mcp
    listen: 0.0.0.0:8080
    auth:
      mode: phabricatorToken
      verify:
        cacheTtl: 10m
    tools:
      deny: ["pha_passphrase_*"]
  - name: public
    listen: 0.0.0.0:8081
    pathPrefix: /ai
    publicUrl: https://phabricator.example.com/ai
    auth:
      mode: serviceAccount
      audience: http://public.tools.svc
      allowed: ["agents/*", "ci/builder"]
    upstreamToken:
      file: /var/run/sluice/upstream-token/token
    rateLimits:
      - name: per-caller
        by: [identity, tool]
        requests: 60
        period: 1m
        methods: [tools/call]
        scope: global
"#;

#[test]
fn a_full_config_parses_validates_and_round_trips() {
    let config = ProxyConfig::from_yaml(FULL).unwrap();
    assert_eq!(config.entry_points.len(), 2);
    match &config.entry_points[0].auth {
        Auth::PhabricatorToken(p) => {
            assert_eq!(
                p.verify.as_ref().unwrap().cache_ttl,
                Duration::from_secs(600)
            );
        }
        other => panic!("unexpected auth {other:?}"),
    }
    let again = ProxyConfig::from_yaml(&config.to_yaml().unwrap()).unwrap();
    assert_eq!(again, config);
}

#[test]
fn unknown_fields_are_refused_with_their_name() {
    let text = FULL.replace("failMode: closed", "failMode: closed\n  pasword: x");
    let err = ProxyConfig::from_yaml(&text).unwrap_err().to_string();
    assert!(err.contains("pasword"), "{err}");
    let text = FULL.replace("cacheTtl: 10m", "cacheTTL: 10m");
    let err = ProxyConfig::from_yaml(&text).unwrap_err().to_string();
    assert!(err.contains("cacheTTL"), "{err}");
}

#[test]
fn rule_violations_name_their_path() {
    let text = FULL
        .replace("listen: 0.0.0.0:8081", "listen: 0.0.0.0:8080")
        .replace("pathPrefix: /ai", "pathPrefix: /ai/");
    let Err(ConfigError::Invalid(problems)) = ProxyConfig::from_yaml(&text) else {
        panic!("expected an invalid config");
    };
    let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"entryPoints[1].listen"), "{problems:?}");
    assert!(paths.contains(&"entryPoints[1].pathPrefix"), "{problems:?}");
}

#[test]
fn global_limits_need_redis_and_bad_patterns_are_named() {
    let text = FULL
        .replace(
            "redis:\n  address: redis.infra.svc:6379\n  failMode: closed\n",
            "",
        )
        .replace("pha_passphrase_*", "pha:passphrase");
    let Err(ConfigError::Invalid(problems)) = ProxyConfig::from_yaml(&text) else {
        panic!("expected an invalid config");
    };
    let text = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("entryPoints[1].rateLimits[0].scope: scope global needs the top-level redis"),
        "{text}"
    );
    assert!(text.contains("entryPoints[0].tools.deny[0]"), "{text}");
}

#[test]
fn redis_tls_and_acl_user_parse_and_bad_ones_are_named() {
    let with = |redis: &str| {
        FULL.replace(
            "redis:\n  address: redis.infra.svc:6379\n  failMode: closed\n",
            redis,
        )
    };
    let ok = ProxyConfig::from_yaml(&with(
        "redis:\n  address: redis.infra.svc:6380\n  tls:\n    caFile: /etc/sluice/redis-ca/ca.crt\n  usernameFile: /etc/sluice/redis/username\n  passwordFile: /etc/sluice/redis/password\n",
    ))
    .unwrap();
    let redis = ok.redis.unwrap();
    assert_eq!(
        redis.tls.unwrap().ca_file.unwrap(),
        std::path::Path::new("/etc/sluice/redis-ca/ca.crt")
    );
    assert!(redis.username_file.is_some());

    let Err(ConfigError::Invalid(problems)) = ProxyConfig::from_yaml(&with(
        "redis:\n  address: rediss://redis.infra.svc:6380\n  tls: {}\n  usernameFile: /u\n",
    )) else {
        panic!("expected an invalid config");
    };
    let text = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("redis.address: must be host:port"), "{text}");
    assert!(
        text.contains("redis.usernameFile: needs redis.passwordFile"),
        "{text}"
    );
    assert!(
        ProxyConfig::from_yaml(&with(
            "redis:\n  address: r:6379\n  tls:\n    serverNam: x\n"
        ))
        .is_err(),
        "unknown tls fields are refused"
    );
}

#[test]
fn redis_sentinel_parses_and_needs_exactly_one_way_to_redis() {
    let with = |redis: &str| {
        FULL.replace(
            "redis:\n  address: redis.infra.svc:6379\n  failMode: closed\n",
            redis,
        )
    };
    let ok = ProxyConfig::from_yaml(&with(
        "redis:\n  sentinel:\n    masterName: rl\n    addresses: [\"s-0.sentinel:26379\", \"[fd00::5]:26379\"]\n    passwordFile: /etc/sluice/sentinel/password\n",
    ))
    .unwrap();
    let redis = ok.redis.unwrap();
    assert_eq!(redis.address, None);
    let sentinel = redis.sentinel.unwrap();
    assert_eq!(sentinel.master_name, "rl");
    assert_eq!(sentinel.addresses.len(), 2);

    let problems = |redis: &str| match ProxyConfig::from_yaml(&with(redis)) {
        Err(ConfigError::Invalid(problems)) => problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("expected an invalid config, got {other:?}"),
    };
    let both = problems(
        "redis:\n  address: r:6379\n  sentinel:\n    masterName: rl\n    addresses: [\"s:26379\"]\n",
    );
    assert!(
        both.contains("redis.sentinel: give either redis.address or redis.sentinel"),
        "{both}"
    );
    let neither = problems("redis:\n  failMode: open\n");
    assert!(
        neither.contains("redis.address: needs redis.address or redis.sentinel"),
        "{neither}"
    );
    let bad = problems(
        "redis:\n  sentinel:\n    masterName: \"\"\n    addresses: [\"s:26379\", \"redis://s:26379\"]\n",
    );
    assert!(
        bad.contains("redis.sentinel.masterName: must not be empty"),
        "{bad}"
    );
    assert!(
        bad.contains("redis.sentinel.addresses[1]: must be host:port"),
        "{bad}"
    );
    let none = problems("redis:\n  sentinel:\n    masterName: rl\n    addresses: []\n");
    assert!(
        none.contains("redis.sentinel.addresses: needs at least one sentinel"),
        "{none}"
    );
}

#[test]
fn empty_huge_and_non_yaml_inputs_fail_cleanly() {
    assert!(matches!(
        ProxyConfig::from_yaml("  \n"),
        Err(ConfigError::Empty)
    ));
    let huge = "#".repeat(sluice_proxy_config::MAX_CONFIG_BYTES + 1);
    assert!(matches!(
        ProxyConfig::from_yaml(&huge),
        Err(ConfigError::TooLarge { .. })
    ));
    assert!(matches!(
        ProxyConfig::from_yaml("{{{"),
        Err(ConfigError::Parse(_))
    ));
    assert!(matches!(
        ProxyConfig::from_yaml("entryPoints: 3"),
        Err(ConfigError::Parse(_))
    ));
}

#[test]
fn rate_limits_count_tool_calls_unless_told_otherwise() {
    let text = FULL.replace("        methods: [tools/call]\n", "");
    let config = ProxyConfig::from_yaml(&text).unwrap();
    let rule = &config.entry_points[1].rate_limits[0];
    assert_eq!(rule.methods, ["tools/call"]);
    let text = FULL.replace("methods: [tools/call]", "methods: []");
    let err = ProxyConfig::from_yaml(&text).unwrap_err().to_string();
    assert!(
        err.contains("entryPoints[1].rateLimits[0].methods: needs at least one method"),
        "{err}"
    );
}

#[test]
fn trusted_proxies_are_cidrs_and_a_bad_one_is_named() {
    let text = FULL.replace(
        "    pathPrefix: /ai\n",
        "    pathPrefix: /ai\n    trustedProxies: [\"10.0.0.0/8\", \"fd00::/8\"]\n",
    );
    let config = ProxyConfig::from_yaml(&text).unwrap();
    assert_eq!(
        config.entry_points[1].trusted_proxies,
        ["10.0.0.0/8", "fd00::/8"]
    );
    assert!(config.entry_points[0].trusted_proxies.is_empty());
    let text = text.replace("fd00::/8", "10.0.0.1");
    let err = ProxyConfig::from_yaml(&text).unwrap_err().to_string();
    assert!(
        err.contains("entryPoints[1].trustedProxies[1]: \"10.0.0.1\" is not a CIDR"),
        "{err}"
    );
}

#[test]
fn the_upstream_check_has_defaults_and_sane_bounds_named_by_field() {
    let config = ProxyConfig::from_yaml(FULL).unwrap();
    let check = &config.upstream.check;
    assert_eq!(
        (check.interval, check.timeout, check.failure_threshold),
        (Duration::from_secs(10), Duration::from_secs(5), 3)
    );
    let with = |check: &str| {
        FULL.replace(
            "  url: http://127.0.0.1:8000\n",
            &format!("  url: http://127.0.0.1:8000\n  check:\n{check}"),
        )
    };
    let config = ProxyConfig::from_yaml(&with(
        "    interval: 2s\n    timeout: 500ms\n    failureThreshold: 1\n",
    ))
    .unwrap();
    assert_eq!(config.upstream.check.timeout, Duration::from_millis(500));
    let again = ProxyConfig::from_yaml(&config.to_yaml().unwrap()).unwrap();
    assert_eq!(again, config);

    let err = ProxyConfig::from_yaml(&with(
        "    interval: 50ms\n    timeout: 5s\n    failureThreshold: 0\n",
    ))
    .unwrap_err()
    .to_string();
    for problem in [
        "upstream.check.interval: must be at least 100ms",
        "upstream.check.timeout: must be shorter than upstream.check.interval (50ms)",
        "upstream.check.failureThreshold: must be at least 1",
    ] {
        assert!(err.contains(problem), "{err}");
    }
    let err = ProxyConfig::from_yaml(&with("    intervall: 5s\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("intervall"), "{err}");
}

#[test]
fn the_audit_log_goes_to_stdout_unless_a_file_is_named() {
    let config = ProxyConfig::from_yaml(FULL).unwrap();
    assert_eq!(config.log.audit.sink, AuditSink::Stdout);
    let with = |audit: &str| format!("log:\n  audit:\n{audit}{FULL}");
    let config = ProxyConfig::from_yaml(&with(
        "    sink: file\n    path: /var/log/sluice/audit.jsonl\n",
    ))
    .unwrap();
    assert_eq!(config.log.audit.sink, AuditSink::File);
    let again = ProxyConfig::from_yaml(&config.to_yaml().unwrap()).unwrap();
    assert_eq!(again, config);

    for (audit, problem) in [
        (
            "    sink: file\n",
            "log.audit.path: sink: file needs a path",
        ),
        (
            "    sink: file\n    path: audit.jsonl\n",
            "log.audit.path: must be an absolute path to a file",
        ),
        (
            "    sink: file\n    path: /\n",
            "log.audit.path: must be an absolute path to a file",
        ),
        (
            "    path: /var/log/audit.jsonl\n",
            "log.audit.path: only for sink: file",
        ),
        ("    sink: syslog\n", "syslog"),
    ] {
        let err = ProxyConfig::from_yaml(&with(audit))
            .unwrap_err()
            .to_string();
        assert!(err.contains(problem), "{audit}: {err}");
    }
}

#[test]
fn client_certificate_auth_needs_a_client_ca_named_by_field() {
    let mode = "    auth:\n      mode: phabricatorToken\n      verify:\n        cacheTtl: 10m\n";
    let with = |entry: &str| FULL.replace(mode, entry);
    let ok = ProxyConfig::from_yaml(&with(
        "    tls:\n      certFile: /tls/tls.crt\n      keyFile: /tls/tls.key\n      clientCaFile: /client-ca/ca.crt\n    auth:\n      mode: clientCertificate\n",
    ))
    .unwrap();
    let ep = &ok.entry_points[0];
    assert_eq!(ep.auth, Auth::ClientCertificate);
    assert_eq!(
        ep.tls.as_ref().and_then(|t| t.client_ca_file.as_deref()),
        Some(std::path::Path::new("/client-ca/ca.crt"))
    );

    for missing in [
        "    auth:\n      mode: clientCertificate\n",
        "    tls:\n      certFile: /tls/tls.crt\n      keyFile: /tls/tls.key\n    auth:\n      mode: clientCertificate\n",
    ] {
        let err = ProxyConfig::from_yaml(&with(missing))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "entryPoints[0].tls.clientCaFile: auth mode clientCertificate needs a client CA"
            ),
            "{err}"
        );
    }
}
