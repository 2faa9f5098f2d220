-- ephemeral_runner_share (ratio): completed jobs that ran on a single-use
-- runner, out of completed jobs whose runner's ephemerality is known.
--
-- A job reported by several sources (GitHub webhook, GitHub audit log, an
-- OpenTelemetry span, a GitLab build hook) is counted once: jobs are keyed
-- by repository and task run id. A job is ephemeral only if no source says
-- otherwise (bool_and ignores sources that do not know). Skipped jobs never
-- reached a runner and are left out.
--
-- Where no source says, a self-hosted runner whose name took more than one
-- job is persistent: single-use runners are registered afresh, under a new
-- name, for every job.
WITH reused_runners AS (
    SELECT cicd_worker_name AS runner
    FROM pipeline_jobs
    WHERE runner_hosting = 'self_hosted' AND cicd_worker_name IS NOT NULL
    GROUP BY cicd_worker_name
    HAVING count(DISTINCT coalesce(cicd_pipeline_task_run_id, event_id)) > 1
),
completed AS (
    SELECT
        j.org,
        j.repo,
        coalesce(j.cicd_pipeline_task_run_id, j.event_id) AS job,
        j.event_time,
        coalesce(
            j.runner_ephemeral,
            CASE WHEN r.runner IS NOT NULL THEN false END
        ) AS runner_ephemeral
    FROM pipeline_jobs AS j
    LEFT JOIN reused_runners AS r ON r.runner = j.cicd_worker_name
    WHERE (j.outcome IN ('success', 'failure', 'cancelled') OR j.action LIKE '%completed')
      AND j.outcome <> 'skipped'
),
jobs AS (
    SELECT
        max(org) AS org,
        repo,
        job,
        min(event_time) AS finished_at,
        bool_and(runner_ephemeral) AS ephemeral
    FROM completed
    GROUP BY repo, job
)
SELECT
    CAST(finished_at AS DATE) AS day,
    org,
    repo,
    CASE WHEN ephemeral THEN 1.0 ELSE 0.0 END AS numerator,
    1.0 AS denominator
FROM jobs
WHERE ephemeral IS NOT NULL
