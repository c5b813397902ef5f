import { test } from 'node:test';
import assert from 'node:assert/strict';
import { componentLogger, createLogger } from '../src/observability/logger.js';

test('each log line names its component once, also for a component derived from another', () => {
  const lines: string[] = [];
  const api = createLogger('info', 'api', { write: (line: string) => void lines.push(line) });
  const retention = componentLogger(api, 'retention');
  const nested = componentLogger(retention, 'sweeper');
  api.info('from the api');
  retention.info({ deleted: 3 }, 'from retention');
  nested.debug('below the level');
  nested.warn('from the sweeper');

  assert.equal(lines.length, 3, 'the level is shared');
  for (const line of lines) assert.equal(line.match(/"component"/g)?.length, 1, line);
  assert.deepEqual(
    lines.map((line) => JSON.parse(line) as { component: string; msg: string }).map(({ component, msg }) => [component, msg]),
    [['api', 'from the api'], ['retention', 'from retention'], ['sweeper', 'from the sweeper']],
  );
  assert.equal((JSON.parse(lines[1]!) as { deleted: number }).deleted, 3);
});
