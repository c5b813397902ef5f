import type { EndpointRow } from '../db-schema.js';
import type { Endpoint } from '../models.js';

export function endpointFromRow(row: EndpointRow): Endpoint {
  return {
    id: row.id,
    appId: row.app_id,
    uid: row.uid,
    url: row.url,
    description: row.description,
    disabled: row.disabled === 1,
    filterTypes: row.filter_types ? (JSON.parse(row.filter_types) as string[]) : null,
    channels: row.channels ? (JSON.parse(row.channels) as string[]) : null,
    rateLimit: row.rate_limit,
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    headers: JSON.parse(row.headers) as Record<string, string>,
    version: row.version,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
