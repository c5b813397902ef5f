import { Type, type Static } from 'typebox';
import type { Attempt } from '../../storage/models.js';
import { iso, ListResponse, StringEnum, Timestamp } from './common.js';
import { MessageOut } from './message.js';

const STATUS_TEXT = ['success', 'pending', 'fail', 'sending'] as const;

export const MessageAttemptOut = Type.Object(
  {
    id: Type.String({ examples: ['atmpt_1srOrx2ZWZBpBUvZwXKQmoEYga2'] }),
    url: Type.String(),
    response: Type.String(),
    responseStatusCode: Type.Integer(),
    responseDurationMs: Type.Integer(),
    status: Type.Integer({ description: '0 success, 1 pending, 2 fail, 3 sending' }),
    statusText: StringEnum(STATUS_TEXT),
    triggerType: Type.Integer({ description: '0 scheduled, 1 manual' }),
    msgId: Type.String(),
    endpointId: Type.String(),
    timestamp: Timestamp,
    msg: Type.Optional(Type.Unsafe<MessageOut>({ ...MessageOut, description: "The attempt's message, in lists asked for with_msg=true (absent if the message was deleted)" })),
  },
  { title: 'MessageAttemptOut' },
);
export type MessageAttemptOut = Static<typeof MessageAttemptOut>;

export const ListResponseMessageAttemptOut = ListResponse(MessageAttemptOut, 'ListResponseMessageAttemptOut');

export function toMessageAttemptOut(attempt: Attempt, msg?: MessageOut): MessageAttemptOut {
  return {
    ...(msg !== undefined ? { msg } : {}),
    id: attempt.id,
    url: attempt.url,
    response: attempt.response,
    responseStatusCode: attempt.responseStatusCode,
    responseDurationMs: attempt.responseDurationMs,
    status: attempt.status,
    statusText: STATUS_TEXT[attempt.status] ?? 'fail',
    triggerType: attempt.triggerType,
    msgId: attempt.msgId,
    endpointId: attempt.endpointId,
    timestamp: iso(attempt.createdAt),
  };
}
