// The SQL of chatd_accept_batch(), created by migration 0006_accept_batch and replaced by
// 0007_conversation_version. Applied migrations are never edited: to change the function, add a
// migration that replaces it (create or replace); acceptBatchSql() keeps each applied version's text
// (0006's is what it was, byte for byte: a database migrating from empty runs both).
//
// One call = one group-commit flush, run as one autocommit statement (one round trip, whatever the
// batch size). Inside, two statements, each with its own snapshot (READ COMMITTED):
//   1. lock every conversation of the batch, creating the missing ones, in session-id order: an
//      INSERT … ON CONFLICT DO UPDATE … WHERE false locks an existing row without writing it, and
//      the ORDER BY makes every batch (on every node) take its locks in the same order, so batches
//      that share conversations queue on the first shared row instead of deadlocking;
//   2. with the locks held (so its fresh snapshot sees every earlier writer's commit), one
//      statement: the idempotency lookup, seqs per conversation in arrival order (a visitor's
//      message to a resolved conversation first gets the reopen system message), the messages,
//      their outbox rows, each conversation's new head (seq, status, counters, read pointers, last
//      message) and its conversation_updated event with the summary (summary.ts's toSummary, in SQL).
// Answers one row per item, in item order: 'foreign' (the session is another tenant's), 'existing'
// (an earlier message has this idempotency key: its row, for accept.ts to call it a duplicate or
// a conflict), or 'created' (its seq, the reopen system message's id, and on the conversation's
// last item of the batch the conversation_updated event).
//
// p_now: the flush's ISO time; p_convs: [{t, s, u, f}] per conversation (tenant, session, userId,
// fingerprint: stored when the row is created); p_items: [{o, id, t, s, st, si, sv, tx, k, h, m,
// at, r}] per item (ordinal, message id, tenant, session, sender type/id/verified, text,
// clientMessageId, content hash, meta, ISO createdAt, may reopen); p_sys_*: the reopen system
// message's text, its hash and its meta without the event.
//
// The event's version: 0006 used the conversation's last seq, which a read or a contact did not move
// (two different summaries at one version); since 0007 it is conversations.version, one more on
// every change that writes a conversation_updated event (summary.ts).
function acceptBatchSql(migration: '0006' | '0007'): string {
  const v7 = migration === '0007';
  return `
create or replace function chatd_accept_batch(p_now text, p_convs json, p_items json, p_sys_text text, p_sys_hash text, p_sys_meta jsonb)
returns table (r_o integer, r_kind text, r_seq integer, r_sys_id uuid, r_update jsonb, r_id uuid, r_sender_type text,
               r_verified boolean, r_text text, r_hash text, r_meta jsonb, r_created_at timestamptz)
language plpgsql
as $fn$
begin
  insert into conversations as c (id, tenant_id, session_id, user_id, fingerprint, created_at, updated_at)
  select gen_random_uuid(), v.t, v.s, v.u, v.f, p_now::timestamptz, p_now::timestamptz
  from json_to_recordset(p_convs) as v(t text, s text, u text, f text)
  order by v.s
  on conflict (session_id) do update set updated_at = excluded.updated_at where false;

  return query
  with items as materialized (
    select x.o, x.id, x.t, x.s, x.st, x.si, x.sv, x.tx, x.k, x.h, x.m, x.at, x.r,
           cv.id as conv_id, cv.tenant_id = x.t as mine, cv.status as conv_status, cv.last_seq as conv_seq
    from json_to_recordset(p_items) as x(o integer, id uuid, t text, s text, st text, si text, sv boolean, tx text, k text,
                                         h text, m jsonb, at text, r boolean)
    -- LATERAL … LIMIT 1 (not flattened into a join): one index probe per item. A plain join let the
    -- cached generic plan (which guesses 100 items) hash a sequential scan of the whole table
    -- instead, slower as the table grows.
    cross join lateral (select c.id, c.tenant_id, c.status, c.last_seq from conversations c where c.session_id = x.s limit 1) cv
  ),
  existing as materialized (
    select i.o, m.id, m.seq, m.sender_type, m.sender_verified, m.text, m.content_hash, m.meta, m.created_at
    from items i
    -- Every column of messages_idempotency_key, tenant first (see above: one probe per item).
    cross join lateral (
      select m.id, m.seq, m.sender_type, m.sender_verified, m.text, m.content_hash, m.meta, m.created_at
      from messages m
      where m.tenant_id = i.t and m.conversation_id = i.conv_id and m.sender_id = i.si and m.client_message_id = i.k
      limit 1
    ) m
    where i.mine and i.k is not null
  ),
  live as (
    select i.*,
           min(i.o) filter (where i.conv_status = 'resolved' and i.r and i.st in ('visitor', 'user'))
             over (partition by i.conv_id) as reopen_o
    from items i
    where i.mine and not exists (select 1 from existing e where e.o = i.o)
  ),
  numbered as materialized (
    select l.*,
           l.conv_seq + (row_number() over w)::integer + case when l.o >= l.reopen_o then 1 else 0 end as seq,
           case when l.o = l.reopen_o then gen_random_uuid() end as sys_id,
           max(l.o) over c as last_o,
           max(l.o) filter (where l.st = 'agent') over c as agent_o,
           max(l.o) filter (where l.st <> 'agent') over c as other_o
    from live l
    window w as (partition by l.conv_id order by l.o), c as (partition by l.conv_id)
  ),
  heads as (
    select n.conv_id,
           max(n.seq) as last_seq,
           count(*)::integer as n,
           bool_or(n.sys_id is not null) as reopened,
           max(n.seq) filter (where n.st = 'agent') as agent_seq,
           max(n.seq) filter (where n.st <> 'agent') as other_seq,
           (count(*) filter (where n.st <> 'agent' and (n.agent_o is null or n.o > n.agent_o)))::integer as other_after,
           (count(*) filter (where n.st = 'agent' and (n.other_o is null or n.o > n.other_o)))::integer as agent_after,
           bool_or(n.agent_o is not null) as has_agent,
           bool_or(n.other_o is not null) as has_other
    from numbered n
    group by n.conv_id
  ),
  advanced as (
    update conversations c set
      last_seq = h.last_seq,
${v7 ? '      version = c.version + 1,\n' : ''}      status = case when h.reopened then 'open' else c.status end,
      message_count = c.message_count + h.n,
      unread_by_agents = h.other_after + case when h.has_agent then 0 else c.unread_by_agents end,
      unread_by_visitor = h.agent_after + case when h.has_other then 0 else c.unread_by_visitor end,
      agents_read_seq = coalesce(h.agent_seq, c.agents_read_seq),
      visitor_read_seq = coalesce(h.other_seq, c.visitor_read_seq),
      last_message_id = lm.id,
      last_activity_at = lm.at::timestamptz,
      updated_at = p_now::timestamptz
    from heads h
    join numbered lm on lm.conv_id = h.conv_id and lm.o = lm.last_o
    where c.id = h.conv_id
    returning c.id, c.tenant_id, c.session_id, c.status, c.assignee, c.user_id, c.contact_name, c.contact_email,
              c.unread_by_agents, c.message_count, c.last_seq, c.created_at,${v7 ? ' c.version,' : ''}
              lm.id as lm_id, lm.tx as lm_text, lm.st as lm_st, lm.si as lm_si, lm.sv as lm_sv, lm.at as lm_at, lm.o as lm_o
  ),
  upd as materialized (
    select a.id as conv_id, a.lm_o,
           jsonb_build_object(
             'id', gen_random_uuid(), 'tenantId', a.tenant_id, 'sessionId', a.session_id, 'version', ${v7 ? 'a.version' : 'a.last_seq'}, 'at', p_now,
             'conversation', jsonb_build_object(
               'sessionId', a.session_id,
               'status', a.status,
               'assignee', a.assignee,
               'visitor',
                 case when a.user_id is not null
                   then jsonb_build_object('type', 'user', 'id', a.user_id, 'userId', a.user_id, 'verified', true)
                   else jsonb_build_object('type', 'visitor', 'id', a.session_id, 'verified', false)
                 end
                 || case when coalesce(a.contact_name, '') <> '' then jsonb_build_object('name', a.contact_name) else '{}'::jsonb end
                 || case when coalesce(a.contact_email, '') <> '' then jsonb_build_object('email', a.contact_email) else '{}'::jsonb end,
               'lastMessage', jsonb_build_object(
                 'id', a.lm_id, 'text', left(a.lm_text, 200),
                 'sender', jsonb_build_object('type', a.lm_st, 'id', a.lm_si, 'verified', a.lm_sv),
                 'createdAt', a.lm_at),
               'unreadCount', a.unread_by_agents,
               'messageCount', a.message_count,
               'online', false,
               'createdAt', to_char(a.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'lastActivityAt', a.lm_at)) as u
    from advanced a
  ),
  events as (
    insert into conversation_outbox (id, tenant_id, conversation_id, version, summary)
    select (u.u ->> 'id')::uuid, u.u ->> 'tenantId', u.conv_id, (u.u ->> 'version')::integer, u.u from upd u
  ),
  inserted as (
    insert into messages (id, tenant_id, conversation_id, session_id, seq, sender_type, sender_id, sender_verified, text,
                          client_message_id, content_hash, meta, created_at)
    select q.id, q.t, q.conv_id, q.s, q.seq, q.st, q.si, q.sv, q.tx, q.k, q.h, q.m, q.at::timestamptz
    from (
      select n.sys_id as id, n.t, n.conv_id, n.s, n.seq - 1 as seq, 'system' as st, 'chatd' as si, true as sv, p_sys_text as tx,
             null::text as k, p_sys_hash as h,
             p_sys_meta || jsonb_build_object('event', jsonb_build_object('type', 'conversation.status_changed', 'from', 'resolved',
               'to', 'open', 'by', jsonb_build_object('type', n.st, 'id', n.si))) as m,
             n.at, n.o
      from numbered n
      where n.sys_id is not null
      union all
      select n.id, n.t, n.conv_id, n.s, n.seq, n.st, n.si, n.sv, n.tx, n.k, n.h, n.m, n.at, n.o
      from numbered n
    ) q
    order by q.o, q.seq
    returning id
  ),
  outboxed as (
    insert into outbox (message_id) select id from inserted
  )
  select i.o, case when not i.mine then 'foreign' when e.o is not null then 'existing' else 'created' end,
         coalesce(n.seq, e.seq), n.sys_id, u.u, e.id, e.sender_type, e.sender_verified, e.text, e.content_hash, e.meta, e.created_at
  from items i
  left join existing e on e.o = i.o
  left join numbered n on n.o = i.o
  left join upd u on u.lm_o = i.o
  order by i.o;
end
$fn$`;
}

/** The function as migration 0006 created it. */
export const ACCEPT_BATCH_SQL_0006 = acceptBatchSql('0006');

/** The function as it is now (migration 0007). */
export const ACCEPT_BATCH_SQL = acceptBatchSql('0007');
