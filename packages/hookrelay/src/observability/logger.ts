import { pino, type Logger } from 'pino';
import type { HookrelayConfig } from '../config/config.js';

/** Structured JSON logs on stdout; each component adds its name so lines can be filtered. */
export function createLogger(level: HookrelayConfig['logLevel'], component: string): Logger {
  return pino({ level, base: { component }, timestamp: pino.stdTimeFunctions.isoTime });
}
