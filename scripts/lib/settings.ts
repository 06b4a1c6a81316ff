/**
 * The docker-compose settings that would break the stack after it started, refused before it
 * does: the influxdb image creates its users and database at the first start of its volume by
 * pasting the values, unquoted, into shell words and InfluxQL, and a comment written after an
 * empty value in .env becomes the value. Each problem names the .env variable and what to do.
 */

export interface SettingProblem {
  readonly variable: string;
  readonly problem: string;
}

type Env = Readonly<Record<string, string | undefined>>;

const CONTROL = /[\u0000-\u001f\u007f]/;

/** What is wrong with the value of a password, or undefined. */
function passwordProblem(value: string, spaceAllowed: boolean): string | undefined {
  if (value === '') return 'is empty: set it in .env';
  if (/^#/.test(value)) return `is ${JSON.stringify(value)}, which looks like a comment: after an empty value a comment becomes the value, so put comments on lines of their own`;
  if (value.includes("'") || value.includes('\\')) return "contains ' or \\, which the influxdb image's first start breaks on (it pastes passwords unquoted into InfluxQL): choose a password without them";
  if (CONTROL.test(value)) return 'contains a control character (a line break?)';
  if (!spaceAllowed && /\s/.test(value)) return "contains a space, which the influxdb image's first start breaks on (it passes the admin password unquoted to the influx command): choose one without";
  return undefined;
}

function userProblem(value: string, spaceAllowed: boolean): string | undefined {
  if (value === '') return 'is empty';
  if (/["\\]/.test(value) || CONTROL.test(value)) return 'contains " or \\ or a control character, which the influxdb image cannot create a user with';
  if (!spaceAllowed && /\s/.test(value)) return 'contains a space, which the influxdb image cannot log in with';
  return undefined;
}

/** The problems of the settings compose passes (their .env names), empty when all is well. */
export function composeSettingProblems(env: Env): SettingProblem[] {
  const problems: SettingProblem[] = [];
  const check = (variable: string, problem: string | undefined) => {
    if (problem !== undefined) problems.push({ variable, problem });
  };
  const value = (name: string) => env[name] ?? '';
  check('INFLUX_ADMIN_PASSWORD', passwordProblem(value('INFLUX_ADMIN_PASSWORD'), false));
  check('INFLUX_PASSWORD', passwordProblem(value('INFLUX_PASSWORD'), true));
  check('INFLUX_ADMIN_USER', userProblem(value('INFLUX_ADMIN_USER'), false));
  check('INFLUX_USERNAME', userProblem(value('INFLUX_USERNAME'), true));
  const grafana = value('GRAFANA_ADMIN_PASSWORD');
  if (grafana === '') check('GRAFANA_ADMIN_PASSWORD', 'is empty: set it in .env');
  else if (/^#/.test(grafana)) check('GRAFANA_ADMIN_PASSWORD', passwordProblem(grafana, true));
  const database = value('INFLUX_DB');
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(database)) {
    check('INFLUX_DB', `is ${JSON.stringify(database)}: the influxdb image creates the database with an unquoted name, so use letters, digits and _ only, not starting with a digit`);
  }
  return problems;
}

export function describeProblems(problems: readonly SettingProblem[]): string {
  return [
    'the settings in .env cannot work with docker compose:',
    ...problems.map(({ variable, problem }) => `  ${variable} ${problem}`),
    'Fix .env and run docker compose up again. (InfluxDB creates its users at the first start of its volume only:',
    "after a first start with other values, `docker compose down -v` removes the volumes, and the data in them.)",
  ].join('\n');
}
