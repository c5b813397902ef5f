import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

export const HOOKRELAY_VERSION: string = pkg.version;
export const USER_AGENT = `Hookrelay/${HOOKRELAY_VERSION}`;
