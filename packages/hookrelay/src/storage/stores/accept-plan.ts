import type { Insertable } from 'kysely';
import type { Database, DeliveryRow } from '../db-schema.js';
import type { Endpoint, Message } from '../models.js';
import { DeliveryStatus, TriggerType } from '../models.js';
import type { AcceptedDelivery, AcceptItem, AcceptLease, AcceptOutcome, FanOut } from '../storage.js';
import { HookrelayError } from '../../core/errors.js';

/** A delivery row to insert, and the outcome entry that receives its id once inserted. */
export interface PlannedDelivery {
  row: Insertable<DeliveryRow> & { msg_id: string; endpoint_id: string };
  accepted: AcceptedDelivery;
}

export interface AcceptPlan {
  outcomes: AcceptOutcome[];
  deliveries: PlannedDelivery[];
  /** Completed idempotent responses; their reservation rows already exist (idempotency plugin). */
  idempotencyRows: Database['idempotency_keys'][];
}

/** Message columns as stored: channels and tags as JSON text. */
export function messageRow(m: Message): Omit<Database['messages'], 'expunged_at'> {
  return {
    id: m.id,
    app_id: m.appId,
    event_type: m.eventType,
    event_id: m.eventId,
    payload: m.payload,
    channels: m.channels ? JSON.stringify(m.channels) : null,
    tags: m.tags ? JSON.stringify(m.tags) : null,
    created_at: m.createdAt,
  };
}

/**
 * What a group commit writes once its messages are in: one delivery per endpoint that `fanOut`
 * picks (written already leased when `lease` accepts the endpoint), and the outcome of each item.
 * An item whose message was not inserted is a duplicate eventId. The same for every engine; only
 * how the rows are written differs.
 */
export function planAccept(items: readonly AcceptItem[], inserted: ReadonlySet<string>, endpointsByApp: ReadonlyMap<string, Endpoint[]>, fanOut: FanOut, lease: AcceptLease | null): AcceptPlan {
  const plan: AcceptPlan = { outcomes: [], deliveries: [], idempotencyRows: [] };
  for (const { message, idempotency } of items) {
    if (!inserted.has(message.id)) {
      plan.outcomes.push(duplicateEventOutcome(message));
      continue;
    }
    const mine: AcceptedDelivery[] = [];
    for (const endpoint of fanOut(endpointsByApp.get(message.appId) ?? [], message)) {
      const leased = lease !== null && lease.accepts(endpoint);
      const accepted: AcceptedDelivery = { deliveryId: 0, endpointId: endpoint.id, endpointUpdatedAt: endpoint.updatedAt, leased };
      mine.push(accepted);
      plan.deliveries.push({
        accepted,
        row: {
          msg_id: message.id,
          endpoint_id: endpoint.id,
          app_id: message.appId,
          status: DeliveryStatus.Pending,
          attempts: 0,
          next_attempt_at: leased ? lease!.until : message.createdAt,
          lease_token: leased ? lease!.token : null,
          trigger_type: TriggerType.Scheduled,
          created_at: message.createdAt,
          updated_at: message.createdAt,
        },
      });
    }
    if (idempotency) {
      plan.idempotencyRows.push({
        scope: idempotency.scope,
        key: idempotency.key,
        request_hash: '',
        status_code: idempotency.statusCode,
        response_body: idempotency.body,
        created_at: message.createdAt,
        expires_at: 0,
      });
    }
    plan.outcomes.push({ ok: true, deliveries: mine });
  }
  return plan;
}

/** The outcome of an item whose message was not inserted: its eventId is taken. */
export function duplicateEventOutcome(message: Message): AcceptOutcome {
  return { ok: false, error: new HookrelayError('duplicate_event_id', `A message with eventId "${message.eventId}" already exists in this application`) };
}

/**
 * Writes a group with `write`; if the group fails, writes its items one by one, so that one bad
 * item (its application deleted meanwhile) fails alone instead of failing its neighbours.
 */
export async function acceptEachOnFailure(items: readonly AcceptItem[], write: (group: readonly AcceptItem[]) => Promise<AcceptOutcome[]>): Promise<AcceptOutcome[]> {
  if (items.length === 0) return [];
  try {
    return await write(items);
  } catch (error) {
    if (items.length === 1) return [{ ok: false, error: toAcceptError(error) }];
    const outcomes: AcceptOutcome[] = [];
    for (const item of items) outcomes.push(...(await acceptEachOnFailure([item], write)));
    return outcomes;
  }
}

/** A failed group write as the error of its one item: a vanished application is 404. */
export function toAcceptError(error: unknown): Error {
  const code = (error as { code?: string }).code;
  if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY' || code === '23503') return new HookrelayError('not_found', 'Application not found');
  return error instanceof Error ? error : new Error(String(error));
}
