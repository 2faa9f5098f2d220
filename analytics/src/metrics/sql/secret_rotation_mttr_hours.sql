-- secret_rotation_mttr_hours (mean): hours from a secret's exposure to the
-- next write or rotation of a secret in the same repository.
--
-- Exposure: the first sighting of a secret-scanner finding (gitleaks,
-- trufflehog, or a rule id or message naming a secret, token or key, but
-- not a dependency vulnerability id), identified by repository, tool, rule
-- and location, so the same leak re-reported by every scan is one exposure.
-- Rotation: a successful secret write in a secret store (secret_access) or
-- a repository secret created or updated in the CI system (audit_log).
-- Exposures without a later rotation are open: denominator 0, open 1.
WITH exposures AS (
    SELECT
        max(org) AS org,
        repo,
        concat_ws('|', tool_name, rule_id, code_location) AS fingerprint,
        min(event_time) AS exposed_at
    FROM findings
    WHERE repo IS NOT NULL
      AND (
          lower(coalesce(tool_name, '')) IN ('gitleaks', 'trufflehog')
          OR (
              concat_ws(' ', rule_id, message) ~* '(secret|token|key)'
              AND NOT coalesce(rule_id, '') ~* '^(cve|ghsa)-'
          )
      )
    GROUP BY repo, tool_name, rule_id, code_location
),
rotations AS (
    SELECT repo, event_time AS rotated_at
    FROM secret_access
    WHERE repo IS NOT NULL
      AND outcome = 'success'
      AND (
          action IN (
              'secret.create', 'secret.update', 'secret.write', 'secret.patch',
              'secretsmanager.PutSecretValue', 'secretsmanager.RotateSecret',
              'secretsmanager.UpdateSecret', 'secretsmanager.CreateSecret'
          )
          OR action LIKE '%.rotate%'
      )
    UNION ALL
    SELECT repo, event_time AS rotated_at
    FROM audit_log
    WHERE category = 'config_change'
      AND target_type = 'secret'
      AND repo IS NOT NULL
      AND outcome IN ('success', 'unknown')
      AND (action LIKE '%create%' OR action LIKE '%update%' OR action LIKE '%rotate%')
),
matched AS (
    SELECT
        e.org,
        e.repo,
        e.exposed_at,
        min(r.rotated_at) AS rotated_at
    FROM exposures AS e
    LEFT JOIN rotations AS r ON r.repo = e.repo AND r.rotated_at >= e.exposed_at
    GROUP BY e.org, e.repo, e.fingerprint, e.exposed_at
)
SELECT
    CAST(exposed_at AS DATE) AS day,
    org,
    repo,
    CASE
        WHEN rotated_at IS NULL THEN 0.0
        ELSE (date_part('epoch', rotated_at) - date_part('epoch', exposed_at)) / 3600.0
    END AS numerator,
    CASE WHEN rotated_at IS NULL THEN 0.0 ELSE 1.0 END AS denominator,
    CASE WHEN rotated_at IS NULL THEN 1 ELSE 0 END AS open
FROM matched
