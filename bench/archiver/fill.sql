-- The benchmark's rows: psql -v day=YYYY-MM-DD -v rows=N -v tenants=T -f fill.sql
-- (the same statement as `archiver_bench fill`, in one go).
INSERT INTO audit_events (tenant_id, event_id, occurred_at, received_at, category, action, outcome,
                         actor_id, actor_type, actor_display, actor_ip, actor_user_agent, resource_type, resource_id,
                         changes, metadata, correlation_id, trace_parent, source_service, source_version, source_region,
                         schema_version, event_hash, kinesis_shard, kinesis_seq)
                     SELECT 'tenant-' || (g % :tenants), gen_random_uuid(),
                            (:'day'::date::timestamp + make_interval(secs => (g * 86399.0 / :rows::float8))) AT TIME ZONE 'UTC',
                            (:'day'::date::timestamp + make_interval(secs => (g * 86399.0 / :rows::float8) + 0.2)) AT TIME ZONE 'UTC',
                            'audit', (ARRAY['user.login','user.logout','document.update','role.grant'])[1 + g % 4],
                            CASE WHEN g % 11 = 0 THEN 'failure' ELSE 'success' END,
                            'user-' || (g % 5000), 'user', 'User ' || (g % 5000), '10.1.' || (g % 250) || '.' || (g % 199),
                            'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0', 'document', 'doc-' || (g % 100000),
                            CASE WHEN g % 5 = 0 THEN jsonb_build_object('before', jsonb_build_object('title', 'draft ' || g), 'after', jsonb_build_object('title', 'final ' || g)) END,
                            jsonb_build_object('request_id', md5(g::text), 'plan', 'enterprise', 'seats', g % 100),
                            md5(g::text || 'c'), '00-' || md5(g::text) || md5(g::text || 't') || '-01',
                            'docs-api', '1.42.0', 'eu-west-1', 1,
                            sha256(('e' || g || :'day'::text)::bytea), 'shardId-00000000000' || (g % 4), (49650000000000000000 + g)::text
                       FROM generate_series(1, :rows) g;
