/**
 * docker-compose's first step: refuses, with a message naming the .env variable, the settings
 * that would break the stack once it started (see scripts/lib/settings.ts). Exits 0 when all is well.
 */
import { composeSettingProblems, describeProblems } from './lib/settings.ts';

const problems = composeSettingProblems(process.env);
if (problems.length > 0) {
  process.stderr.write(`check-settings: ${describeProblems(problems)}\n`);
  process.exit(1);
}
process.stderr.write('check-settings: the settings are fine\n');
