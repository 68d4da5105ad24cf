import { arg, defineCommand, type OptionsFrom } from './declaration.js';

const completionArgs = { shell: arg.choice('bash, zsh or fish', ['bash', 'zsh', 'fish']) };
export type CompletionOptions = OptionsFrom<typeof completionArgs, {}>;

export const completion = defineCommand({
  name: 'completion',
  summary: 'print a shell completion script',
  args: completionArgs,
  flags: {},
  examples: [
    'cycle completion bash > ~/.local/share/bash-completion/completions/cycle',
    'cycle completion zsh > "${fpath[1]}/_cycle"',
    'cycle completion fish > ~/.config/fish/completions/cycle.fish',
  ],
  load: () => import('./completion.js'),
});
