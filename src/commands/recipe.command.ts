import { arg, defineCommand, flag, type OptionsFrom } from './declaration.js';
import { apiUrlFlag, jsonFlag, waitFlags } from './shared-flags.js';

const readFlags = { ...apiUrlFlag, ...jsonFlag };
export type ListOptions = OptionsFrom<{}, typeof readFlags>;
const nameArgs = { name: arg.required('the recipe name') };
export type ShowOptions = OptionsFrom<typeof nameArgs, typeof readFlags>;
const submitFlags = {
  ...readFlags,
  payload: flag.value('--payload <JSON|@file|->', "the payload (a JSON object, checked against the recipe's schema by the server)"),
  timeout: flag.value('--timeout <duration>', 'seconds, or 90s, 10m, 1h30m'),
  ...waitFlags,
};
export type SubmitOptions = OptionsFrom<typeof nameArgs, typeof submitFlags>;

export const list = defineCommand({
  name: 'list',
  summary: 'the recipes the server offers (sealed runtimes with a typed payload)',
  args: {},
  flags: readFlags,
  examples: ['cycle recipe list'],
  load: async () => ({ run: (await import('./recipe.js')).list }),
});

export const show = defineCommand({
  name: 'show',
  summary: 'a recipe: its payload schema and operations',
  args: nameArgs,
  flags: readFlags,
  examples: ['cycle recipe show lightgbm-train', 'cycle recipe show lightgbm-train --json | jq .schema'],
  load: async () => ({ run: (await import('./recipe.js')).show }),
});

export const submit = defineCommand({
  name: 'submit',
  summary: "submit a recipe's job; prints its id",
  args: nameArgs,
  flags: submitFlags,
  notes:
    'A payload that does not match the recipe\'s schema is refused by the server (422). Refer to uploaded files by id (`cycle artifacts upload`), e.g. "dataset_ref": "art_…".',
  examples: [`cycle recipe submit simple-amm --payload '{"steps": 1000}' --wait`, 'cycle recipe submit lightgbm-train --payload @payload.json --timeout 30m'],
  load: async () => ({ run: (await import('./recipe.js')).submit }),
});
