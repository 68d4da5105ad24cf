/** `--data-dir`, shared by every `cycle daemon` verb (and `daemon run`). Cheap to import: declaration.ts only. */
import { flag } from '../declaration.js';

export const dataDirFlag = {
  dataDir: flag.value(
    '--data-dir <dir>',
    "the daemon's data folder, which picks the daemon (default: $XDG_DATA_HOME/cycle/daemon or ~/.local/share/cycle/daemon)",
    {
      emptyIsUnset: true,
    },
  ),
};
