-- Which replica (COCREATE_INSTANCE) handled each event: replicas of a service
-- share its durable consumers, and this shows that each consumed, and that
-- an event was handled by one of them, once. Empty for events handled before.
alter table inbox add column handled_by text not null default '';
