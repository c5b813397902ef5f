import { pino, type Logger } from 'pino';
import type { HookrelayConfig } from '../config/config.js';

/** The component-less logger each component logger was made from (see componentLogger). */
const roots = new WeakMap<Logger, Logger>();

/** Structured JSON logs on stdout; each component adds its name so lines can be filtered. */
export function createLogger(level: HookrelayConfig['logLevel'], component: string, destination: pino.DestinationStream = process.stdout): Logger {
  const root = pino({ level, base: null, timestamp: pino.stdTimeFunctions.isoTime }, destination);
  const logger = root.child({ component });
  roots.set(logger, root);
  return logger;
}

/**
 * A logger for another component of the same process: the same destination and level under its
 * own name. A pino child of a component logger would carry `component` twice in every line.
 */
export function componentLogger(logger: Logger, component: string): Logger {
  const root = roots.get(logger) ?? logger;
  const sibling = root.child({ component });
  roots.set(sibling, root);
  return sibling;
}
