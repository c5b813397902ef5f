import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import semver from 'semver';

// The Node versions Hookrelay says it runs on must be ones its installed dependencies run on. A
// dependency that moves to a newer Node (or to ES modules only, which `require()` loads only from
// Node 20.19 on) breaks `npm start` on the older Node 20 releases we claim, while the tests, on
// this machine's newer Node 20, keep passing. The lockfile records each package's `engines`.
// (That happened: fastify's light-my-request moved to cookie 2 and @fastify/static to
// content-disposition 3, both ES modules only and Node 22 only, and `hookrelay serve` failed on
// Node 20.18 with ERR_REQUIRE_ESM. The root package.json's `overrides` keep cookie 1.x and
// content-disposition 2.x: the same functions, as CommonJS, for Node 18 and later.)

interface LockEntry {
  version?: string;
  engines?: { node?: string } | string[];
}

const readJson = (path: string) => JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8'));
const rootPackage = readJson('../../../../package.json') as { engines: { node: string } };
const platformPackage = readJson('../../package.json') as { engines: { node: string } };
const lock = readJson('../../../../package-lock.json') as { packages: Record<string, LockEntry> };

test('the monorepo and the platform package claim the same Node versions', () => {
  assert.equal(platformPackage.engines.node, rootPackage.engines.node);
  assert.ok(semver.validRange(rootPackage.engines.node), `engines.node "${rootPackage.engines.node}" is a valid range`);
});

test('every locked dependency runs on the oldest Node we claim and on the Node running this test', () => {
  const claimed = rootPackage.engines.node;
  const oldest = semver.minVersion(claimed)!.version;
  const versions = [oldest, process.version];
  const refusing: string[] = [];
  let checked = 0;
  for (const [path, entry] of Object.entries(lock.packages)) {
    const range = !entry.engines || Array.isArray(entry.engines) ? undefined : entry.engines.node;
    if (!path.startsWith('node_modules/') || range === undefined) continue;
    checked += 1;
    for (const version of versions) {
      if (!semver.satisfies(version, range)) refusing.push(`${path.slice('node_modules/'.length)}@${entry.version} wants node ${range}, not ${version}`);
    }
  }
  assert.ok(checked > 20, `the lockfile lists engines for ${checked} packages`);
  assert.deepEqual(refusing, [], `dependencies that do not run on Node ${versions.join(' or ')} (claimed: ${claimed})`);
});
