-- Remembered answers are keyed by `Service.Method` (idempotency.Mutations
-- derives it from the request's RPC). Keys stored before had the bare method
-- name; NotificationService keys already named theirs.
update idempotent_requests set method = 'VoteService.' || method where method not like '%.%';
