import { describe, expect, it } from 'vitest';
import { composeSettingProblems, describeProblems } from './settings.ts';

const good = {
  INFLUX_ADMIN_PASSWORD: 'adm$n#pw`"x',
  INFLUX_PASSWORD: 'p$ss #w0rd with spaces',
  INFLUX_ADMIN_USER: 'admin',
  INFLUX_USERNAME: 'tradeflow',
  GRAFANA_ADMIN_PASSWORD: "any'thing \\ goes",
  INFLUX_DB: 'tradeflow',
};

describe('compose settings', () => {
  it('accepts $, #, backticks and quotes other than \' in passwords, and spaces where the image takes them', () => {
    expect(composeSettingProblems(good)).toEqual([]);
  });

  it('refuses the trailing-comment trap, naming the variable', () => {
    const problems = composeSettingProblems({ ...good, INFLUX_PASSWORD: '# required by docker compose', GRAFANA_ADMIN_PASSWORD: '# required by docker compose' });
    expect(problems.map((p) => p.variable)).toEqual(['INFLUX_PASSWORD', 'GRAFANA_ADMIN_PASSWORD']);
    expect(problems[0]!.problem).toMatch(/looks like a comment/);
  });

  it("refuses what the influxdb image's first start breaks on", () => {
    const problems = composeSettingProblems({ ...good, INFLUX_ADMIN_PASSWORD: 'with space', INFLUX_PASSWORD: "it's", INFLUX_USERNAME: 'a"b', INFLUX_DB: 'trade-flow' });
    expect(problems.map((p) => p.variable)).toEqual(['INFLUX_ADMIN_PASSWORD', 'INFLUX_PASSWORD', 'INFLUX_USERNAME', 'INFLUX_DB']);
    expect(composeSettingProblems({ ...good, INFLUX_ADMIN_PASSWORD: 'back\\slash' })[0]!.problem).toMatch(/' or \\/);
  });

  it('refuses empty passwords and says how to start over', () => {
    const problems = composeSettingProblems({ ...good, INFLUX_ADMIN_PASSWORD: '', GRAFANA_ADMIN_PASSWORD: undefined });
    expect(problems.map((p) => `${p.variable} ${p.problem}`)).toEqual(['INFLUX_ADMIN_PASSWORD is empty: set it in .env', 'GRAFANA_ADMIN_PASSWORD is empty: set it in .env']);
    expect(describeProblems(problems)).toMatch(/docker compose down -v/);
  });
});
