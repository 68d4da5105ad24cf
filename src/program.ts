/**
 * Turns command declarations into a commander program, generically: arguments, flags, help and
 * examples come from the declarations, and a parsed command line becomes an `Invocation` (the
 * command, its typed options, the global flags) handed to `run`. Nothing here knows a command.
 */
import { Argument, Command, Option } from 'commander';
import type { GlobalOptions } from './context.js';
import type { IO } from './ui/streams.js';
import {
  readFlags,
  type Arg,
  type CliTree,
  type CommandDeclaration,
  type Declaration,
  type Flag,
  type FlagSet,
  type ProgramDeclaration,
} from './commands/declaration.js';
import type { globalFlags } from './commands/shared-flags.js';

/** One parsed command line, ready to run. */
export interface Invocation {
  /** The words that name the command: ['job', 'submit']. */
  path: string[];
  command: CommandDeclaration;
  /** The command's options, as its declaration types them. */
  options: unknown;
  global: GlobalOptions;
  cli: CliTree;
}

export function buildProgram(root: ProgramDeclaration<typeof globalFlags>, io: IO, version: string, run: (invocation: Invocation) => Promise<void>): Command {
  const writeOut = (s: string): void => void io.stdout.write(s);
  const writeErr = (s: string): void => void io.stderr.write(s);

  /** Every command shares these settings. */
  const configure = (command: Command): Command =>
    command
      .configureOutput({
        writeOut,
        writeErr,
        outputError: (text, write) => write(text.endsWith('\n') ? text : text + '\n'),
      })
      .exitOverride()
      .showSuggestionAfterError(true)
      .showHelpAfterError('(run with --help for usage)');

  const program = configure(new Command(root.name)).description(root.summary).version(version, root.versionFlag.flags, root.versionFlag.description);
  const globalOptions = addFlags(program, root.flags);
  program.helpCommand(false);
  addHelpText(program, root);

  const cli: CliTree = {
    root,
    showHelp: (path) => {
      let target = program;
      for (const word of path) {
        const next = target.commands.find((c) => c.name() === word || c.aliases().includes(word));
        if (next === undefined) return false;
        target = next;
      }
      target.outputHelp();
      return true;
    },
  };

  const add = (parent: Command, entry: Declaration, parentPath: string[]): void => {
    const path = [...parentPath, entry.name];
    const command = configure(parent.command(entry.name)).description(entry.summary);
    addHelpText(command, entry);
    if (entry.kind === 'group') {
      for (const child of entry.commands) add(command, child, path);
      return;
    }
    for (const [name, declared] of Object.entries(entry.args)) command.addArgument(toArgument(name, declared));
    const options = addFlags(command, entry.flags);
    command.action(async () => {
      const flagValue = (key: string): unknown => {
        const option = options.get(key);
        return option === undefined ? undefined : command.getOptionValue(option.attributeName());
      };
      const globalValue = (key: string): unknown => {
        const option = globalOptions.get(key);
        return option === undefined ? undefined : program.getOptionValue(option.attributeName());
      };
      const global: GlobalOptions = readFlags(root.flags, { flag: globalValue });
      await run({ path, command: entry, options: entry.options({ args: command.processedArgs, flag: flagValue }), global, cli });
    });
  };
  for (const entry of root.commands) add(program, entry, []);
  return program;
}

/** Adds the declared flags; returns the commander option of each key, to read values back by. */
function addFlags(command: Command, flags: FlagSet): Map<string, Option> {
  const options = new Map<string, Option>();
  for (const [key, declared] of Object.entries(flags)) {
    const option = toOption(declared);
    command.addOption(option);
    options.set(key, option);
  }
  return options;
}

function toOption(declared: Flag): Option {
  const option = new Option(declared.flags, declared.description);
  switch (declared.kind) {
    case 'list':
      return option.argParser((value: string, previous: string[]) => [...previous, value]).default([]);
    case 'value':
      if (declared.choices !== undefined) option.choices(declared.choices);
      if (declared.defaultValue !== undefined) option.default(declared.defaultValue);
      if (declared.preset !== undefined) option.preset(declared.preset);
      return option;
    case 'boolean':
    case 'negated':
      return option;
  }
}

function toArgument(name: string, declared: Arg): Argument {
  switch (declared.kind) {
    case 'required': {
      const argument = new Argument(`<${name}>`, declared.description);
      return declared.choices !== undefined ? argument.choices(declared.choices) : argument;
    }
    case 'optional':
      return new Argument(`[${name}]`, declared.description).default(declared.defaultValue);
    case 'variadic':
      return new Argument(declared.required ? `<${name}...>` : `[${name}...]`, declared.description);
  }
}

/** Notes, then examples, after the options (as every command's help shows them). */
function addHelpText(command: Command, declared: { notes?: string; examples: readonly string[] }): void {
  const notes = declared.notes !== undefined ? `\n${declared.notes}\n` : '';
  const examples = declared.examples.length > 0 ? `\nExamples:\n${declared.examples.map((example) => `  $ ${example}`).join('\n')}` : '';
  if (notes + examples !== '') command.addHelpText('after', notes + examples);
}
