-- static_keys_in_use (distinct count): long-lived static credentials (AWS
-- access keys, Vault userpass/approle secrets) seen acting, counted by
-- their credential id. The runner counts distinct `key`s per day and over
-- the whole window.
SELECT
    CAST(event_time AS DATE) AS day,
    org,
    repo,
    identity_id AS key
FROM events
WHERE identity_kind = 'static_key'
  AND identity_id IS NOT NULL
