-- oidc_auth_share (ratio): authentications to cloud and secret stores made
-- with a short-lived OIDC identity, out of all whose identity kind is known.
--
-- Inputs: secret_access and auth rows from AWS CloudTrail, HashiCorp Vault
-- and Kubernetes audit logs. Vault writes each request twice (request and
-- response); the request half is normalized with outcome 'pending' and is
-- left out so nothing is counted twice.
SELECT
    CAST(event_time AS DATE) AS day,
    org,
    repo,
    CASE WHEN identity_kind = 'oidc' THEN 1.0 ELSE 0.0 END AS numerator,
    1.0 AS denominator
FROM events
WHERE category IN ('secret_access', 'auth')
  AND source IN ('cloudtrail', 'vault_audit', 'k8s_audit')
  AND identity_kind <> 'unknown'
  AND outcome <> 'pending'
