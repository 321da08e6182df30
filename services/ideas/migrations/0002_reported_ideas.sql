-- The moderation queue (ListReportedIdeas): reported ideas, most reported
-- first, keyset-paged with id as the tie-breaker.
create index ideas_reported on ideas (report_count desc, id desc) where report_count > 0;
create index ideas_product_reported on ideas (product_id, report_count desc, id desc)
    where report_count > 0;
