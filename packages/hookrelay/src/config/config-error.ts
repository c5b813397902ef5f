/** A bad setting at start-up: the message names the setting so the operator knows what to fix. */
export class ConfigError extends Error {
  readonly setting: string;
  constructor(setting: string, message: string) {
    super(`Invalid setting ${setting}: ${message}`);
    this.name = 'ConfigError';
    this.setting = setting;
  }
}
