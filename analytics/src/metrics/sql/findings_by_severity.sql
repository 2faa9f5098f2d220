-- findings_by_severity (breakdown): distinct scanner findings seen, by
-- severity and tool. A finding is identified by repository, tool, rule and
-- location, so one issue re-reported by every scan counts once per day and
-- once over the window.
SELECT
    CAST(event_time AS DATE) AS day,
    org,
    repo,
    coalesce(severity, 'unknown') AS severity,
    coalesce(tool_name, 'unknown') AS tool_name,
    concat_ws('|', repo, tool_name, rule_id, code_location, CASE WHEN rule_id IS NULL THEN event_id END) AS key
FROM findings
