-- A member's redemptions, newest first (ListRedemptions pages by (created_at, id)).
create index redemptions_by_member on redemptions (member_id, created_at desc, id desc);
