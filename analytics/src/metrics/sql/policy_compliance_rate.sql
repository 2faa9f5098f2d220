-- policy_compliance_rate (ratio): policy evaluations that passed, out of
-- all evaluations with a verdict (success, failure, warning, denied).
-- Warnings count as not compliant.
SELECT
    CAST(event_time AS DATE) AS day,
    org,
    repo,
    CASE WHEN outcome = 'success' THEN 1.0 ELSE 0.0 END AS numerator,
    1.0 AS denominator
FROM policy_results
WHERE outcome IN ('success', 'failure', 'warning', 'denied')
