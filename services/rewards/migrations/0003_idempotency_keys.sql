-- Remembered answers are keyed by `Service.Method` (idempotency.Mutations
-- derives it from the request's RPC). Keys stored before had the bare method
-- name.
update idempotent_requests set method = 'RewardsService.' || method where method not like '%.%';
