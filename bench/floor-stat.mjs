// The least a Node.js program can do to notice an edit anywhere in a tree: list every folder and
// stat every file, nothing else (no cache file, no hashing). `npm run bench -- hash` times it
// beside warm `cycle project hash` to show the floor the 1.2x budget sits on.
import fs from 'node:fs';

function walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const child = `${dir}/${entry.name}`;
    if (entry.isDirectory()) walk(child);
    else fs.statSync(child);
  }
}
walk(process.argv[2]);
