-- progressive_delivery_share (ratio): deployments rolled out as canary or
-- blue/green, out of deployments whose strategy is known.
--
-- One deployment is one (source, repository, environment, pipeline run or
-- revision or correlation id) — its status updates are the same deployment.
-- Approval decisions (rows with an approval_state) are not deployments.
WITH deployments_once AS (
    SELECT
        max(org) AS org,
        repo,
        min(event_time) AS started_at,
        max(deploy_strategy) AS strategy
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
    CASE WHEN strategy IN ('canary', 'blue_green') THEN 1.0 ELSE 0.0 END AS numerator,
    1.0 AS denominator
FROM deployments_once
WHERE strategy IS NOT NULL
