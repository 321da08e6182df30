"""What every cocreate service shares: config, the gRPC server bootstrap (health,
reflection, auth, error mapping, request logs, graceful shutdown), readiness
and liveness (readiness.py), Prometheus metrics (metrics.py), the Postgres
pool and migrations, the transactional outbox and its relay, the inbox consumer
and the event envelope, JetStream requests through a cluster's elections
(jetstream.py), gRPC channels to a service's replicas (channels.py) and the
event topology page (topology.py). A service's own code never repeats any of
these."""
