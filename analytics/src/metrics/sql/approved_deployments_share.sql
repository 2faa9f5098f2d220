-- approved_deployments_share (ratio): production-like deployments that had
-- an approval, out of all production-like deployments.
--
-- Production-like: the environment name contains `prod` at the start of a
-- word (production, prod, eu-prod; not preprod). A deployment is approved
-- when a deployments row with approval_state 'approved' shares its pipeline
-- run (same repository and run id) or its environment and revision.
-- Deployments are counted once, as in progressive_delivery_share.
WITH deployments_once AS (
    SELECT
        max(org) AS org,
        repo,
        coalesce(deployment_environment_name, '') AS environment,
        max(cicd_pipeline_run_id) AS run_id,
        max(vcs_ref_head_revision) AS revision,
        min(event_time) AS started_at
    FROM deployments
    WHERE approval_state IS NULL
    GROUP BY
        source,
        repo,
        coalesce(deployment_environment_name, ''),
        coalesce(cicd_pipeline_run_id, vcs_ref_head_revision, correlation_id, event_id)
),
production AS (
    SELECT * FROM deployments_once WHERE environment ~* '(^|[^a-z])prod'
),
approved_runs AS (
    SELECT DISTINCT repo, cicd_pipeline_run_id AS run_id
    FROM deployments
    WHERE approval_state = 'approved' AND repo IS NOT NULL AND cicd_pipeline_run_id IS NOT NULL
),
approved_revisions AS (
    SELECT DISTINCT repo, deployment_environment_name AS environment, vcs_ref_head_revision AS revision
    FROM deployments
    WHERE approval_state = 'approved'
      AND repo IS NOT NULL
      AND deployment_environment_name IS NOT NULL
      AND vcs_ref_head_revision IS NOT NULL
)
SELECT
    CAST(p.started_at AS DATE) AS day,
    p.org,
    p.repo,
    CASE WHEN ar.run_id IS NOT NULL OR av.revision IS NOT NULL THEN 1.0 ELSE 0.0 END AS numerator,
    1.0 AS denominator
FROM production AS p
LEFT JOIN approved_runs AS ar ON ar.repo = p.repo AND ar.run_id = p.run_id
LEFT JOIN approved_revisions AS av
    ON av.repo = p.repo AND av.environment = p.environment AND av.revision = p.revision
