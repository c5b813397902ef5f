import { matchesChannels, matchesEventType } from '../core/event-type-filter.js';
import type { Endpoint, Message } from '../storage/models.js';
import type { FanOut } from '../storage/storage.js';

/** The endpoints a message goes to: enabled, subscribed to its event type, sharing a channel if they name any. */
export const fanOutMessage: FanOut = (endpoints: readonly Endpoint[], message: Message) =>
  endpoints.filter((e) => !e.disabled && matchesEventType(e.filterTypes, message.eventType) && matchesChannels(e.channels, message.channels));
