-- persistent_runners_with_secrets (drill-down): jobs that ran on a runner
-- known to be persistent (runner_ephemeral = false) in a pipeline run that
-- also touched a secret store: the run id and repository of the job match
-- a secret_access row. A persistent runner keeps what such a job leaves
-- behind (files, caches, process memory) for the next job.
--
-- Persistence as in ephemeral_runner_share: said by a source, or a
-- self-hosted runner name that took more than one job.
WITH reused_runners AS (
    SELECT cicd_worker_name AS runner
    FROM pipeline_jobs
    WHERE runner_hosting = 'self_hosted' AND cicd_worker_name IS NOT NULL
    GROUP BY cicd_worker_name
    HAVING count(DISTINCT coalesce(cicd_pipeline_task_run_id, event_id)) > 1
),
persistent_jobs AS (
    SELECT
        max(j.org) AS org,
        j.repo,
        j.cicd_pipeline_run_id AS run_id,
        coalesce(j.cicd_pipeline_task_run_id, j.event_id) AS job_id,
        max(j.cicd_pipeline_task_name) AS job,
        max(j.cicd_worker_name) AS runner,
        min(j.event_time) AS first_seen
    FROM pipeline_jobs AS j
    LEFT JOIN reused_runners AS r ON r.runner = j.cicd_worker_name
    WHERE (j.runner_ephemeral = false OR (j.runner_ephemeral IS NULL AND r.runner IS NOT NULL))
      AND j.cicd_pipeline_run_id IS NOT NULL
      AND j.repo IS NOT NULL
    GROUP BY j.repo, j.cicd_pipeline_run_id, coalesce(j.cicd_pipeline_task_run_id, j.event_id)
),
run_secrets AS (
    SELECT
        repo,
        cicd_pipeline_run_id AS run_id,
        count(*) AS secret_accesses,
        array_agg(DISTINCT target_name) AS secrets
    FROM secret_access
    WHERE cicd_pipeline_run_id IS NOT NULL
      AND repo IS NOT NULL
      AND outcome <> 'pending'
    GROUP BY repo, cicd_pipeline_run_id
)
SELECT
    CAST(j.first_seen AS DATE) AS day,
    j.org,
    j.repo,
    j.run_id,
    j.job_id,
    j.job,
    j.runner,
    s.secret_accesses,
    s.secrets
FROM persistent_jobs AS j
JOIN run_secrets AS s ON s.repo = j.repo AND s.run_id = j.run_id
