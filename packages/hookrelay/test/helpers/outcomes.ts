import { newId } from '../../src/core/ids.js';
import { DeliveryStatus } from '../../src/storage/models.js';
import type { ClaimedDelivery, DeliveryOutcome } from '../../src/storage/storage.js';

export interface OutcomeOptions {
  createdAt: number;
  /** A 2xx, a 500, or a refusal made without a request (status code 0). */
  result?: 'success' | 'failure' | 'refused';
  /** When a failed delivery is due again; null: it is given up. */
  retryAt?: number | null;
  /** What failure tracking counts (the dispatcher passes null for refusals). */
  health?: DeliveryOutcome['health'];
  url?: string;
  attemptId?: string;
}

/**
 * The outcome of one attempt at a claimed delivery, shaped as the dispatcher records it: the
 * attempt succeeded or failed (never pending), and a failed delivery is due again at `retryAt`.
 */
export function outcomeOf(claim: ClaimedDelivery, { createdAt, result = 'success', retryAt = null, health = null, url = 'https://example.com/hook', attemptId }: OutcomeOptions): DeliveryOutcome {
  const succeeded = result === 'success';
  return {
    deliveryId: claim.deliveryId,
    leaseToken: claim.leaseToken,
    nextAttemptAt: succeeded ? null : retryAt,
    health,
    attempt: {
      id: attemptId ?? newId('atmpt', createdAt),
      msgId: claim.msgId,
      endpointId: claim.endpointId,
      appId: claim.appId,
      url,
      status: succeeded ? DeliveryStatus.Success : DeliveryStatus.Fail,
      responseStatusCode: succeeded ? 200 : result === 'failure' ? 500 : 0,
      response: succeeded ? 'ok' : 'oops',
      responseDurationMs: 3,
      triggerType: claim.triggerType,
      errorCode: null,
      createdAt,
    },
  };
}
