#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { ConfigError, dataDirectory, loadConfig } from '../config/config.js';
import { startServer } from '../server/start-server.js';
import { loadMasterKey } from '../secrets/master-key.js';
import { SecretBox } from '../secrets/secret-box.js';
import { migrateDatabase, openStorage } from '../storage/open-storage.js';
import { generateApiKey, hashApiKey } from '../api/plugins/authenticate.js';
import { HOOKRELAY_VERSION } from '../core/version.js';

const USAGE = `hookrelay ${HOOKRELAY_VERSION}

Usage:
  hookrelay [serve] [--role ROLE]   start the API and the dispatcher (default); ROLE is
                                    all (default), api (HTTP API only) or worker (dispatcher
                                    only, with /health, /health/ready and /metrics)
  hookrelay migrate                 apply pending database migrations and exit
  hookrelay api-key create [--name NAME]
                                    create an admin API key and print it once
  hookrelay --help | --version

Settings come from environment variables (see README: Configuration).`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { name: { type: 'string' }, role: { type: 'string' }, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } },
  });
  if (values.help) return print(USAGE);
  if (values.version) return print(HOOKRELAY_VERSION);
  const [command = 'serve', sub] = positionals;
  // --role is HOOKRELAY_ROLE given on the command line: parsed and checked as the setting is.
  const config = loadConfig(values.role === undefined ? process.env : { ...process.env, HOOKRELAY_ROLE: values.role });
  switch (command) {
    case 'serve': {
      const server = await startServer(config);
      if (server.initialApiKey) process.stdout.write(`\nYour first API key (also in ${join(dataDirectory(config), 'initial-api-key')}):\n  ${server.initialApiKey}\n\n`);
      const failure = await new Promise<Error | null>((resolve) => {
        process.once('SIGTERM', () => resolve(null));
        process.once('SIGINT', () => resolve(null));
        void server.failed.then(resolve);
      });
      await server.close();
      // Exit non-zero when a part died, so that a supervisor restarts the process.
      return failure ? 1 : 0;
    }
    case 'migrate': {
      const applied = await migrateDatabase(config);
      return print(applied.length ? `applied migrations: ${applied.join(', ')}` : 'database is up to date');
    }
    case 'api-key': {
      if (sub !== 'create') return fail(USAGE);
      const masterKey = loadMasterKey(config.masterKey, join(dataDirectory(config), 'master.key'));
      const storage = await openStorage({ database: { ...config, syncCommit: true }, secretBox: new SecretBox(masterKey) });
      const key = generateApiKey();
      await storage.apiKeys.create(values.name ?? 'cli', hashApiKey(key));
      await storage.close();
      return print(key);
    }
    default:
      return fail(`unknown command "${command}"\n\n${USAGE}`);
  }
}

function print(text: string): number {
  process.stdout.write(text + '\n');
  return 0;
}

function fail(text: string): number {
  process.stderr.write(text + '\n');
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`hookrelay: ${error.message}\n`);
      process.exit(78);
    }
    process.stderr.write(`hookrelay: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
