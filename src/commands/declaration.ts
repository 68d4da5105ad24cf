/**
 * How a command declares itself: name, summary, arguments, flags (with their types), help and
 * examples, and a `load` that imports its logic only when it runs. `cli.ts` turns declarations
 * into commander commands generically; `completion` reads them too.
 *
 * This module is on every command's start-up path: it imports nothing at run time (the one
 * import is a type), so loading every declaration costs next to nothing.
 */
import type { Context } from '../context.js';

// ---- flags ----

interface FlagBase {
  /** As commander spells it: '--api-url <url>', '-q, --quiet', '--no-color'. */
  readonly flags: string;
  readonly description: string;
}

/** `--json`: true when given, false otherwise. */
export interface BooleanFlag extends FlagBase {
  readonly kind: 'boolean';
}

/** `--no-color`: true unless given. */
export interface NegatedFlag extends FlagBase {
  readonly kind: 'negated';
}

/** `--out <file>`: the value, or the default (undefined when there is none). */
export interface ValueFlag<V extends string = string, D extends V | undefined = V | undefined> extends FlagBase {
  readonly kind: 'value';
  readonly choices: readonly V[] | undefined;
  readonly defaultValue: D;
  /** An empty value (`--project ''`) counts as not given, as an empty environment variable does. */
  readonly emptyIsUnset: boolean;
  /** `--resume [RUN]`: the value the flag takes when given without one. */
  readonly preset?: string;
}

/** `--tag <tag>`, repeatable: every value in order, [] when not given. */
export interface ListFlag extends FlagBase {
  readonly kind: 'list';
}

export type Flag = BooleanFlag | NegatedFlag | ValueFlag | ListFlag;
export type FlagSet = Readonly<Record<string, Flag>>;

/** The type a flag's value has in a command's options. */
export type FlagValue<F> = F extends BooleanFlag | NegatedFlag
  ? boolean
  : F extends ListFlag
    ? string[]
    : F extends ValueFlag<infer V, infer D>
      ? D extends V
        ? V
        : V | undefined
      : never;

export const flag = {
  boolean: (flags: string, description: string): BooleanFlag => ({ kind: 'boolean', flags, description }),
  negated: (flags: string, description: string): NegatedFlag => ({ kind: 'negated', flags, description }),
  value: (flags: string, description: string, options: { emptyIsUnset?: boolean } = {}): ValueFlag<string, undefined> => ({
    kind: 'value',
    flags,
    description,
    choices: undefined,
    defaultValue: undefined,
    emptyIsUnset: options.emptyIsUnset === true,
  }),
  withDefault: (flags: string, description: string, defaultValue: string): ValueFlag<string, string> => ({
    kind: 'value',
    flags,
    description,
    choices: undefined,
    defaultValue,
    emptyIsUnset: false,
  }),
  choice: <const V extends string>(flags: string, description: string, choices: readonly V[]): ValueFlag<V, undefined> => ({
    kind: 'value',
    flags,
    description,
    choices,
    defaultValue: undefined,
    emptyIsUnset: false,
  }),
  list: (flags: string, description: string): ListFlag => ({ kind: 'list', flags, description }),
  /** `--resume [RUN]`: a value that may be left out, then `preset`; undefined when not given. */
  optionalValue: (flags: string, description: string, preset: string): ValueFlag<string, undefined> => ({
    kind: 'value',
    flags,
    description,
    choices: undefined,
    defaultValue: undefined,
    emptyIsUnset: false,
    preset,
  }),
};

// ---- positional arguments ----

interface ArgBase {
  readonly description: string;
}

/** `<id>`: always there (commander refuses the command line otherwise). */
export interface RequiredArg<V extends string = string> extends ArgBase {
  readonly kind: 'required';
  readonly choices: readonly V[] | undefined;
}

/** `[dir]`: the value or its default. */
export interface OptionalArg extends ArgBase {
  readonly kind: 'optional';
  readonly defaultValue: string;
}

/** `<ids...>` (at least one) or `[ids...]` (maybe none). */
export interface VariadicArg extends ArgBase {
  readonly kind: 'variadic';
  readonly required: boolean;
}

export type Arg = RequiredArg | OptionalArg | VariadicArg;
/** Keys are the names shown in help (`<project>`), in order. */
export type ArgSet = Readonly<Record<string, Arg>>;

export type ArgValue<A> = A extends RequiredArg<infer V> ? V : A extends OptionalArg ? string : A extends VariadicArg ? string[] : never;

export const arg = {
  required: (description: string): RequiredArg => ({ kind: 'required', description, choices: undefined }),
  choice: <const V extends string>(description: string, choices: readonly V[]): RequiredArg<V> => ({ kind: 'required', description, choices }),
  optional: (description: string, defaultValue: string): OptionalArg => ({ kind: 'optional', description, defaultValue }),
  variadic: (description: string, options: { required: boolean }): VariadicArg => ({ kind: 'variadic', description, required: options.required }),
};

// ---- options: what a command's run receives ----

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type KeysWhereUndefinedFits<T> = { [K in keyof T]: undefined extends T[K] ? K : never }[keyof T];
/** Values that may be undefined become optional properties (`out?: string`). */
type WithOptionalKeys<T> = Simplify<{ [K in Exclude<keyof T, KeysWhereUndefinedFits<T>>]: T[K] } & { [K in KeysWhereUndefinedFits<T>]?: T[K] }>;

/** The options a command with these arguments and flags runs with. */
export type OptionsFrom<A extends ArgSet, F extends FlagSet> = WithOptionalKeys<{ [K in keyof A]: ArgValue<A[K]> } & { [K in keyof F]: FlagValue<F[K]> }>;

/** What commander parsed, as the wiring hands it over. */
export interface ParsedValues {
  /** The positional arguments, in declaration order. */
  args: readonly unknown[];
  /** The value commander holds for the flag declared under this key (undefined when absent). */
  flag(key: string): unknown;
}

// readFlag and readArg promise the declared type through their overload: a value flag or argument
// with choices yields one of them, since anything else falls back to the default (commander has
// refused it already).

/** A flag's value in its declared type. */
export function readFlag<F extends Flag>(declared: F, raw: unknown): FlagValue<F>;
export function readFlag(declared: Flag, raw: unknown): boolean | string | string[] | undefined {
  switch (declared.kind) {
    case 'boolean':
      return raw === true;
    case 'negated':
      return raw !== false;
    case 'list':
      return strings(raw);
    case 'value': {
      if (typeof raw !== 'string' || (raw === '' && declared.emptyIsUnset)) return declared.defaultValue;
      if (declared.choices !== undefined && !declared.choices.includes(raw)) return declared.defaultValue;
      return raw;
    }
  }
}

/** An argument's value in its declared type. */
export function readArg<A extends Arg>(declared: A, raw: unknown): ArgValue<A>;
export function readArg(declared: Arg, raw: unknown): string | string[] {
  switch (declared.kind) {
    case 'required':
      if (typeof raw !== 'string' || (declared.choices !== undefined && !declared.choices.includes(raw))) return '';
      return raw;
    case 'optional':
      return typeof raw === 'string' ? raw : declared.defaultValue;
    case 'variadic':
      return strings(raw);
  }
}

function strings(raw: unknown): string[] {
  return Array.isArray(raw) ? raw.filter((item): item is string => typeof item === 'string') : [];
}

/** Every flag of a set, read in its declared type. */
export function readFlags<F extends FlagSet>(flags: F, values: Pick<ParsedValues, 'flag'>): { [K in keyof F]: FlagValue<F[K]> } {
  return mapEntries<F, Flag, { [K in keyof F]: FlagValue<F[K]> }>(flags, (key, declared) => readFlag(declared, values.flag(key)));
}

/** The options a parsed command line describes: arguments and flags, each in its declared type. */
export function readOptions<A extends ArgSet, F extends FlagSet>(args: A, flags: F, values: ParsedValues): OptionsFrom<A, F> {
  const argNames = Object.keys(args);
  const argValues = mapEntries<A, Arg, { [K in keyof A]: ArgValue<A[K]> }>(args, (key, declared) => readArg(declared, values.args[argNames.indexOf(key)]));
  return { ...argValues, ...readFlags(flags, values) };
}

/**
 * `{ [K in keyof T]: read(T[K]) }`, built key by key. TypeScript cannot carry a mapped type
 * through Object.entries, so this is the one place that asserts it: each value is what `read`
 * made of the entry under the same key, which is what the caller's R says.
 */
function mapEntries<T extends Readonly<Record<string, E>>, E, R>(source: T, read: (key: string, entry: E) => unknown): R {
  return Object.fromEntries(Object.entries(source).map(([key, entry]) => [key, read(key, entry)])) as R;
}

// ---- commands and groups ----

/** What help and completion know about the whole CLI (the wiring provides it). */
export interface CliTree {
  readonly root: ProgramDeclaration;
  /** Prints the help of the command at this path; false when there is none. */
  showHelp(path: readonly string[]): boolean;
}

/** What a command's logic module exports (or what `load` picks out of it). */
export interface CommandModule<O> {
  // A property, not a method: TypeScript then checks that `run` accepts the declared options.
  run: (options: O, ctx: Context, cli: CliTree) => Promise<number | void>;
}

interface HelpText {
  readonly name: string;
  /** One line, shown in the parent's list and at the top of the help. */
  readonly summary: string;
  /** Shown after the options, before the examples. */
  readonly notes?: string;
  /** Full command lines, shown with a `$ ` prompt. */
  readonly examples: readonly string[];
}

/**
 * A command, ready to wire. `options` and `load` are methods on purpose: TypeScript compares
 * method parameters both ways, so commands with different options fit one list of
 * `CommandDeclaration`; the wiring only ever hands a command's options back to its own `load`.
 */
export interface CommandDeclaration<O = unknown> extends HelpText {
  readonly kind: 'command';
  readonly args: ArgSet;
  readonly flags: FlagSet;
  /** The parsed command line as this command's options (no logic loaded). */
  options(values: ParsedValues): O;
  /** Imports the command's logic (only now: start-up time); the result runs it with these options. */
  load(options: O): Promise<CommandRunner>;
}

export type CommandRunner = (ctx: Context, cli: CliTree) => Promise<number | void>;

/** The options type of a declared command (for tests and callers that build options). */
export type OptionsOf<C> = C extends CommandDeclaration<infer O> ? O : never;

export interface GroupDeclaration extends HelpText {
  readonly kind: 'group';
  readonly commands: readonly Declaration[];
}

export type Declaration = CommandDeclaration | GroupDeclaration;

/** The program itself: its own flags (every command accepts them) and its commands. */
export interface ProgramDeclaration<F extends FlagSet = FlagSet> extends Omit<GroupDeclaration, 'kind'> {
  readonly kind: 'program';
  readonly flags: F;
  readonly versionFlag: { readonly flags: string; readonly description: string };
}

export function defineGroup(init: Omit<GroupDeclaration, 'kind'>): GroupDeclaration {
  return { kind: 'group', ...init };
}

export interface CommandInit<A extends ArgSet, F extends FlagSet> extends HelpText {
  /** `{}` when it takes none; keys are the names help shows (`<id>`), in order. */
  readonly args: A;
  readonly flags: F;
  /** The logic, imported only when the command runs: `() => import('./validate.js')`. */
  readonly load: () => Promise<CommandModule<NoInfer<OptionsFrom<A, F>>>>;
}

export function defineCommand<const A extends ArgSet, const F extends FlagSet>(init: CommandInit<A, F>): CommandDeclaration<OptionsFrom<A, F>> {
  const { args, flags } = init;
  return {
    kind: 'command',
    name: init.name,
    summary: init.summary,
    ...(init.notes !== undefined ? { notes: init.notes } : {}),
    examples: init.examples,
    args,
    flags,
    options: (values) => readOptions(args, flags, values),
    load: async (options) => {
      const { run } = await init.load();
      return (ctx, cli) => run(options, ctx, cli);
    },
  };
}
