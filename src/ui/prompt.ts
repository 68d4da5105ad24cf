import type { IO } from './streams.js';

export interface Prompter {
  /** True when a person can answer (stdin and stderr are a TTY). */
  readonly available: boolean;
  ask(question: string, defaultAnswer?: string): Promise<string>;
  choose(question: string, choices: readonly string[], defaultChoice: string): Promise<string>;
  /** Input not echoed (tokens). */
  secret(question: string): Promise<string>;
}

export function createPrompter(io: IO, available: boolean): Prompter {
  const ask = async (question: string, defaultAnswer?: string, hidden = false): Promise<string> => {
    const readline = await import('node:readline');
    const rl = readline.createInterface({
      input: io.stdin as NodeJS.ReadableStream,
      output: io.stderr as NodeJS.WritableStream,
      terminal: true,
    });
    if (hidden) {
      // Echo nothing while the user types; readline calls _writeToOutput for each keystroke.
      (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = (s: string) => {
        if (s.includes(question)) io.stderr.write(s);
      };
    }
    const suffix = defaultAnswer ? ` (${defaultAnswer})` : '';
    try {
      const answer = await new Promise<string>((resolve) => rl.question(`${question}${suffix}: `, resolve));
      if (hidden) io.stderr.write('\n');
      return answer.trim() === '' ? (defaultAnswer ?? '') : answer.trim();
    } finally {
      rl.close();
    }
  };
  return {
    available,
    ask: (question, defaultAnswer) => ask(question, defaultAnswer),
    choose: async (question, choices, defaultChoice) => {
      for (;;) {
        const answer = await ask(`${question} [${choices.join('/')}]`, defaultChoice);
        if (choices.includes(answer)) return answer;
        io.stderr.write(`Please answer one of: ${choices.join(', ')}\n`);
      }
    },
    secret: (question) => ask(question, undefined, true),
  };
}
