import type { FastifyInstance, FastifyServerOptions, RouteOptions } from 'fastify';

/**
 * Ajv runs with coerceTypes (query strings are text), and its coercion turns the strings
 * "Infinity", "-Infinity" and "1e309" into ±Infinity: `"Infinity" == +"Infinity"` and
 * `!(Infinity % 1)` both hold, so even an integer accepts it. The coerced value is not type-checked
 * again, and Ajv skips minimum/maximum for non-finite numbers, so ±Infinity passed every bound
 * and reached SQL (a 500) or was stored. A JSON number 1e309 was already refused (it is not
 * coerced); only the string form got through.
 *
 * The fix is here, once for every route: FINITE_KEYWORD refuses a non-finite number, and
 * installFiniteNumbers adds it to every integer and number in each route's request schemas
 * (query string, body, path, headers) as the route is registered, so no schema can forget it.
 * It runs after coercion, on the value the handler would get: a 422 `validation` naming the field.
 */
export const FINITE_KEYWORD = 'x-finite';

/** What Fastify's `ajv.plugins` takes (Ajv's Plugin type, reached through Fastify's own types). */
type AjvPlugin = Extract<NonNullable<NonNullable<FastifyServerOptions['ajv']>['plugins']>[number], (...args: never[]) => unknown>;

/** An Ajv plugin (Fastify's `ajv.plugins`): defines FINITE_KEYWORD. */
export const finiteNumbersAjvPlugin: AjvPlugin = (ajv) =>
  ajv.addKeyword({
    keyword: FINITE_KEYWORD,
    schemaType: 'boolean',
    errors: false,
    error: { message: 'must be a finite number' },
    validate: (enabled: boolean, data: unknown) => !enabled || typeof data !== 'number' || Number.isFinite(data),
  });

const REQUEST_PARTS = ['body', 'querystring', 'query', 'params', 'headers'] as const;

/** Adds FINITE_KEYWORD to the number and integer schemas of every route registered from now on. */
export function installFiniteNumbers(app: FastifyInstance): void {
  app.addHook('onRoute', (route: RouteOptions) => {
    const schema = route.schema as Record<string, unknown> | undefined;
    if (!schema) return;
    let changed: Record<string, unknown> | null = null;
    for (const part of REQUEST_PARTS) {
      const original = schema[part];
      if (original === undefined) continue;
      const marked = withFiniteNumbers(original);
      if (marked !== original) (changed ??= { ...schema })[part] = marked;
    }
    // A copy: the schema objects are module constants shared by several routes.
    if (changed) route.schema = changed;
  });
}

/** Subschema keywords that hold one schema, a list of them, or a map of them. */
const ONE = ['items', 'additionalProperties', 'not', 'if', 'then', 'else', 'contains'];
const LIST = ['anyOf', 'oneOf', 'allOf', 'prefixItems'];
const MAP = ['properties', 'patternProperties'];

/** The schema with FINITE_KEYWORD on each numeric node; the same object when none needs it. */
export function withFiniteNumbers(schema: unknown): unknown {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) return schema;
  const node = schema as Record<string, unknown>;
  let out: Record<string, unknown> | null = null;
  const set = (key: string, value: unknown) => {
    if (value !== node[key]) (out ??= { ...node })[key] = value;
  };
  const types = Array.isArray(node['type']) ? (node['type'] as unknown[]) : [node['type']];
  if ((types.includes('integer') || types.includes('number')) && node[FINITE_KEYWORD] !== true) set(FINITE_KEYWORD, true);
  for (const key of ONE) if (key in node) set(key, withFiniteNumbers(node[key]));
  for (const key of LIST) {
    const list = node[key];
    if (!Array.isArray(list)) continue;
    const marked = list.map(withFiniteNumbers);
    if (marked.some((item, i) => item !== list[i])) set(key, marked);
  }
  for (const key of MAP) {
    const map = node[key];
    if (map === null || typeof map !== 'object') continue;
    const entries = Object.entries(map as Record<string, unknown>);
    const marked = entries.map(([name, sub]) => [name, withFiniteNumbers(sub)] as const);
    if (marked.some(([, sub], i) => sub !== entries[i]![1])) set(key, Object.fromEntries(marked));
  }
  return out ?? node;
}
