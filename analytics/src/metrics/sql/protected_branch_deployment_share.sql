-- protected_branch_deployment_share (ratio): deployments of the
-- repository's default branch, out of deployments where the source says
-- whether the ref is the default branch. Deployments are counted once, as
-- in progressive_delivery_share; a deployment is from the default branch
-- only if every row of it says so.
WITH deployments_once AS (
    SELECT
        max(org) AS org,
        repo,
        min(event_time) AS started_at,
        bool_and(vcs_ref_is_default) AS from_default
    FROM deployments
    WHERE approval_state IS NULL
    GROUP BY
        source,
        repo,
        coalesce(deployment_environment_name, ''),
        coalesce(cicd_pipeline_run_id, vcs_ref_head_revision, correlation_id, event_id)
)
SELECT
    CAST(started_at AS DATE) AS day,
    org,
    repo,
    CASE WHEN from_default THEN 1.0 ELSE 0.0 END AS numerator,
    1.0 AS denominator
FROM deployments_once
WHERE from_default IS NOT NULL
